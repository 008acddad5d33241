// Package writers is the contract between the pipeline and its destinations
// (DESIGN §3): a writer buffers decoded records and never makes them visible
// on its own; a checkpoint prepares every writer, lists what they prepared in
// one manifest, and the manifest's committers make it visible. The package
// imports neither the pipeline nor any concrete writer.
package writers

import (
	"context"
	"errors"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/checkpoint"
	"github.com/sinkd/sinkd/record"
)

// Writer is one destination of one route. The pipeline drives it from one
// goroutine: no method is called concurrently with another.
type Writer interface {
	// Name keys the writer's replay filter in the manifest; it must stay
	// the same across restarts of a configuration.
	Name() string
	// Write takes one decoded record. now is the pipeline's clock for the
	// batch (processing-time buckets and file age). A record the writer
	// cannot place (a template that fails on it) goes to the dead letters
	// through the writer's DeadLetter; only infrastructure errors return.
	Write(ctx context.Context, row parquet.Row, rec *record.Record, now time.Time) error
	// Tick runs time-driven work (rolling files by age or inactivity).
	Tick(now time.Time) error
	// Prepare makes what the writer holds durable short of visible: rolled
	// files uploaded but not completed, buffers flushed and acknowledged.
	// Files that hold records of roll's partitions close first.
	Prepare(ctx context.Context, roll Roll) (*Prepared, error)
	// Committed says the manifest listing p is written: its entries are the
	// committers' now, and replay filter entries below restart (the
	// partitions' restart points in that manifest) can never match again.
	Committed(p *Prepared, restart map[record.PartitionID]checkpoint.Restart)
	// Restore installs a partition's replay filter from a manifest.
	Restore(id record.PartitionID, filter map[string]record.Position)
	// Release forgets a partition another instance now owns.
	Release(id record.PartitionID)
	// Discard drops everything not yet committed: the partitions were lost
	// and are read again from the last manifest.
	Discard()
	// Close waits for background work and frees what the writer holds.
	Close(ctx context.Context) error
}

// Roller is implemented by writers whose Prepare waits for uploads that a
// roll starts: a checkpoint rolls every such writer before it prepares the
// first, so that their last parts upload at the same time.
type Roller interface {
	Roll(roll Roll) error
}

// Roll says which open files a checkpoint closes first.
type Roll struct {
	All        bool
	Partitions map[record.PartitionID]bool
	Reason     string
	// Until, when set, is when a roller stops starting to close files (a
	// drain against its timeout): the files it leaves open stay open, and
	// Prepared.OpenLow keeps their records replayable.
	Until time.Time
}

// Any reports whether the roll closes anything.
func (r Roll) Any() bool { return r.All || len(r.Partitions) > 0 }

// Prepared is what one writer contributes to a checkpoint.
type Prepared struct {
	// Entries are the commits the manifest must list (Entry.Store filled).
	Entries []checkpoint.Entry
	// OpenLow: partition → the lowest position still only in open files,
	// which replay must start from.
	OpenLow map[record.PartitionID]record.Position
	// Open is how many files are still open after the roll.
	Open int
	// Filter: partition → bucket → the highest position in files committed
	// once this manifest is: replayed records at or below it are skipped.
	Filter map[record.PartitionID]map[string]record.Position
	// State is the writer's own, handed back in Committed.
	State any
}

// ErrLost means data a writer prepared, or still holds open, is gone before
// its commit (a multipart upload aborted by someone else): its records are in
// no committed file, so the process must stop and replay from the last
// manifest.
var ErrLost = errors.New("multipart upload lost before its commit")

// DeadLetter sends a record a writer cannot place to the dead-letter sink.
// stage is a dlq stage name; details are added to the letter.
type DeadLetter func(ctx context.Context, rec *record.Record, stage, class, msg string, details map[string]string) error

// PruneFilter drops the filter entries that replay from restart can no longer
// reach, from filter itself, and returns what is left (nil when nothing is).
func PruneFilter(filter map[string]record.Position, restart checkpoint.Restart) map[string]record.Position {
	for b, c := range filter {
		if cmp := c.Compare(restart.Position); cmp < 0 || (restart.After && cmp == 0) {
			delete(filter, b)
		}
	}
	if len(filter) == 0 {
		return nil
	}
	return filter
}
