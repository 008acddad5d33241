package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/sinkd/sinkd/checkpoint"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/source"
)

// partState is what the pipeline knows of one owned source partition.
type partState struct {
	// floor: records at or before it (before it, when !floorAfter) are
	// duplicates fetched again around a rebalance; unknown when !hasFloor.
	floor      record.Position
	floorAfter bool
	hasFloor   bool
	lastTime   time.Time
	committed  *source.Start // last committed restart point, for durable lag
}

// accepts tells whether a record is new to the partition.
func (st *partState) accepts(pos record.Position) bool {
	if !st.hasFloor {
		return true
	}
	c := pos.Compare(st.floor)
	return c > 0 || (c == 0 && !st.floorAfter)
}

// next is the Kafka offset to process next (for lag); for Kinesis, whose
// sequence numbers cannot be counted on, the last processed record itself.
func (st *partState) next() record.Position {
	if st.floorAfter && st.floor.Seq == "" {
		return record.Position{Offset: st.floor.Offset + 1}
	}
	return st.floor
}

// ---- group membership ----

// Assigned adopts new partitions: the manifest their last commit names (or a
// newer one of the same instance) says where replay starts and which replayed
// records committed files already hold.
func (p *Pipeline) Assigned(ctx context.Context, as []source.Assignment) (map[record.PartitionID]source.Start, error) {
	starts := map[record.PartitionID]source.Start{}
	var err error
	doErr := p.do(ctx, func() {
		for _, a := range as {
			st := &partState{committed: a.Committed}
			state, ferr := p.findState(ctx, a)
			if ferr != nil {
				err = ferr
				return
			}
			switch {
			case state != nil:
				start := source.Start{Position: state.Restart, After: state.After}
				starts[a.ID] = start
				st.floor, st.floorAfter, st.hasFloor = start.Position, start.After, true
				for _, w := range p.dests {
					if f := state.Committed[w.Name()]; len(f) > 0 {
						w.Restore(a.ID, f)
					}
				}
			case a.Committed != nil:
				st.floor, st.floorAfter, st.hasFloor = a.Committed.Position, a.Committed.After, true
			}
			p.owned[a.ID] = st
			p.log.Info("partition assigned", "partition", a.ID.String(), "start", st.floor.String(), "after", st.floorAfter, "from_manifest", state != nil)
		}
		p.m.ownedPartitions.Set(float64(len(p.owned)))
	})
	if doErr != nil {
		return nil, doErr
	}
	return starts, err
}

func (p *Pipeline) findState(ctx context.Context, a source.Assignment) (*checkpoint.PartitionState, error) {
	return p.coord.State(ctx, a.Ref, a.Committed != nil, a.ID.String())
}

// Revoked checkpoints with every file that holds records of the revoked
// partitions rolled, so that they leave with an exact position.
func (p *Pipeline) Revoked(ctx context.Context, ps []record.PartitionID) (map[record.PartitionID]source.Start, string, error) {
	var starts map[record.PartitionID]source.Start
	var ref string
	var err error
	doErr := p.do(ctx, func() {
		set := map[record.PartitionID]bool{}
		for _, id := range ps {
			set[id] = true
		}
		// After a drain short of time (leftOpen), what it left open stays
		// open: this checkpoint only writes the positions that keep those
		// records replayable.
		var o cpOptions
		if p.leftOpen == 0 {
			o.roll = set
		}
		if err = p.checkpoint(ctx, o); err != nil {
			// Keeping the partitions would commit their open files later,
			// beside what the next owner writes, and the partitions we keep
			// cannot be rewound here: stop; the restart recovers from the
			// last manifest. (Rare: a checkpoint failing during a rebalance.)
			select {
			case p.fatal <- fmt.Errorf("checkpoint at a partition handover failed: %w", err):
			default:
			}
			return
		}
		starts, ref = p.restartPoints(), p.coord.LastRef()
		for _, id := range ps {
			delete(p.owned, id)
			// A frozen series for a partition another instance now owns
			// would inflate the lag an autoscaler sums.
			p.forgetMetrics(p.src.Kind().String(), id)
			for _, w := range p.dests {
				w.Release(id)
			}
		}
		p.m.ownedPartitions.Set(float64(len(p.owned)))
	})
	if doErr != nil {
		return nil, "", doErr
	}
	return starts, ref, err
}

// Lost partitions cannot be committed any more (the group session expired,
// say during a broker outage). Everything not yet committed is dropped and
// the partitions are forgotten; when the group assigns them again, replay
// starts from the last manifest, exactly as after a crash, without one.
func (p *Pipeline) Lost(ps []record.PartitionID) {
	_ = p.do(context.Background(), p.reset)
	// Again after the callback: a poll that began while the reset ran may
	// still return records of the lost session.
	p.gen.Add(1)
}

// reset discards all uncommitted work: a lost session takes every partition.
func (p *Pipeline) reset() {
	p.gen.Add(1)
	p.log.Warn("partitions lost: dropping uncommitted files; they are read again from the last manifest", "partitions", len(p.owned))
	for _, w := range p.dests {
		w.Discard()
	}
	kind := p.src.Kind().String()
	for id := range p.owned {
		p.forgetMetrics(kind, id)
	}
	p.owned = map[record.PartitionID]*partState{}
	p.lastStarts = nil
	p.m.ownedPartitions.Set(0)
}

func (p *Pipeline) forgetMetrics(kind string, id record.PartitionID) {
	part := partitionLabel(id)
	p.m.lagRecords.DeleteLabelValues(kind, id.Stream, part)
	p.m.durableLagRecords.DeleteLabelValues(kind, id.Stream, part)
	p.m.millisBehind.DeleteLabelValues(kind, id.Stream, part)
}
