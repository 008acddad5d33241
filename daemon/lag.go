package daemon

import (
	"context"
	"strconv"
	"time"

	"github.com/sinkd/sinkd/record"
)

// updateLag publishes fetched and durable lag, and how far behind the
// newest record the pipeline is.
func (p *Pipeline) updateLag() {
	next := make(map[record.PartitionID]record.Position, len(p.owned))
	durable := make(map[record.PartitionID]record.Position, len(p.owned))
	for id, st := range p.owned {
		next[id] = st.next()
		if st.committed != nil {
			durable[id] = (&partState{floor: st.committed.Position, floorAfter: st.committed.After}).next()
		}
	}
	lags, durableLags := p.src.Lags(next), p.src.Lags(durable)
	kind := p.src.Kind().String()
	for id, st := range p.owned {
		l, ok := lags[id]
		if !ok {
			continue
		}
		part := partitionLabel(id)
		if l.Records >= 0 {
			p.m.lagRecords.WithLabelValues(kind, id.Stream, part).Set(float64(l.Records))
		}
		if d, ok := durableLags[id]; ok && d.Records >= 0 {
			p.m.durableLagRecords.WithLabelValues(kind, id.Stream, part).Set(float64(d.Records))
		}
		behind := float64(l.MillisBehind)
		if l.MillisBehind < 0 {
			// Kafka: the age of the last processed record while behind.
			behind = 0
			if l.Records > 0 && !st.lastTime.IsZero() {
				behind = float64(time.Since(st.lastTime).Milliseconds())
			}
		}
		p.m.millisBehind.WithLabelValues(kind, id.Stream, part).Set(behind)
	}
}

// updateBacklog publishes the source's view of every partition, owned or
// not, so that a sum of lag is 0 only when nothing is unread.
func (p *Pipeline) updateBacklog() {
	kind := p.src.Kind().String()
	pending := map[string]int{}
	for _, s := range p.backlogStreams {
		pending[s] = 0
	}
	p.m.groupLagRecords.Reset()
	p.m.pendingMillis.Reset()
	for _, b := range p.src.Backlogs() {
		part := partitionLabel(b.ID)
		if b.GroupRecords >= 0 {
			p.m.groupLagRecords.WithLabelValues(kind, b.ID.Stream, part).Set(float64(b.GroupRecords))
		}
		if b.Pending {
			pending[b.ID.Stream]++
			if b.PendingMillis >= 0 {
				p.m.pendingMillis.WithLabelValues(kind, b.ID.Stream, part).Set(float64(b.PendingMillis))
			}
		}
	}
	for s, n := range pending {
		p.m.pendingParts.WithLabelValues(kind, s).Set(float64(n))
	}
}

func partitionLabel(id record.PartitionID) string {
	if id.Shard != "" {
		return id.Shard
	}
	return strconv.Itoa(int(id.Partition))
}

// Caught reports whether every owned partition has processed up to the end
// of its stream (the demo and tests wait for it).
func (p *Pipeline) Caught(ctx context.Context) bool {
	caught := false
	_ = p.do(ctx, func() {
		if len(p.owned) == 0 {
			return
		}
		next := make(map[record.PartitionID]record.Position, len(p.owned))
		for id, st := range p.owned {
			next[id] = st.next()
		}
		lags := p.src.Lags(next)
		for id := range p.owned {
			l, ok := lags[id]
			if !ok || l.Records > 0 || l.MillisBehind > 0 {
				return
			}
		}
		caught = true
	})
	return caught
}
