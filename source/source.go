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

// Backlog is the source's view of one partition of its streams, owned by this
// instance or not, so that lag cannot read 0 while records are unread: a
// partition still held by a dead member, a child shard waiting for its
// parents, a shard no instance leases yet. Every instance computes the same
// view; queries aggregate it with max by partition.
type Backlog struct {
	ID record.PartitionID
	// GroupRecords: records after the group's committed restart point
	// (Kafka: high watermark minus committed offset); -1 when unknown.
	GroupRecords int64
	// Pending: the partition has unread records and no live reader.
	Pending bool
	// PendingMillis: for a pending partition, the age of its first unread
	// record when the source knows it (Kinesis); -1 otherwise.
	PendingMillis int64
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
	// Backlogs reports every partition of the source's streams, from a
	// cached view refreshed in the background (no I/O on the call).
	Backlogs() []Backlog
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
