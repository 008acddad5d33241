// Package source is the contract between the pipeline and its sources (Kafka,
// Kinesis): a source yields records of the partitions it owns, asks the
// pipeline where to start a partition it gains, lets it checkpoint a partition
// it loses, and commits positions only when the pipeline says they are durable.
package source

import (
	"context"
	"errors"

	"github.com/sinkd/sinkd/record"
)

// ErrClosed is what Poll returns once the source is closed.
var ErrClosed = errors.New("source closed")

// Start is where reading of a partition begins: at Position, or just after it.
type Start struct {
	Position record.Position
	After    bool
}

// Assignment is a newly owned partition with what the source's own store
// remembers of it (Kafka group offsets, Kinesis lease checkpoints).
type Assignment struct {
	ID record.PartitionID
	// Committed is the last committed restart point; nil for a partition
	// never committed (the configured start position applies).
	Committed *Start
	// Ref is what the pipeline stored beside it (a manifest reference).
	Ref string
}

// Handler is the pipeline side. Sources call it from their own goroutines;
// each call blocks until the pipeline has acted.
type Handler interface {
	// Assigned returns where to start each new partition; a partition
	// absent from the result starts at its Committed position, or at the
	// configured start when it has none.
	Assigned(ctx context.Context, as []Assignment) (map[record.PartitionID]Start, error)
	// Revoked makes everything read from the partitions durable and returns
	// the positions to commit for them and the reference to store beside.
	Revoked(ctx context.Context, ps []record.PartitionID) (map[record.PartitionID]Start, string, error)
	// Lost: the partitions are gone without a chance to commit.
	Lost(ps []record.PartitionID)
}

// Lag is a partition's distance from the end of its stream.
type Lag struct {
	// Records behind the end, when the source can count them (Kafka); -1 otherwise.
	Records int64
	// MillisBehind latest, when the source reports it (Kinesis); -1 otherwise.
	MillisBehind int64
}

// Source reads records for the pipeline.
type Source interface {
	// Poll returns the next records of owned partitions (at most max),
	// blocking until there are some or ctx ends. ErrClosed after Close.
	Poll(ctx context.Context, max int) ([]record.Record, error)
	// Commit stores restart points and the reference beside them. Only the
	// pipeline's checkpoint calls it, after its manifest is written.
	Commit(ctx context.Context, starts map[record.PartitionID]Start, ref string) error
	// Lags reports the lag of owned partitions, given the next position the
	// pipeline will process in each.
	Lags(next map[record.PartitionID]record.Position) map[record.PartitionID]Lag
	// Kind names the source for metrics and positions.
	Kind() record.Kind
	// Pause stops reading new records; Resume starts again.
	Pause()
	Resume()
	// Ping checks the source answers (readiness).
	Ping(ctx context.Context) error
	// Close stops reading; group sources leave their group (revoking, and so
	// checkpointing, what they own).
	Close()
}
