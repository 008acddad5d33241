package kinesis

import (
	"context"
	"sync"
	"unsafe"

	"github.com/sinkd/sinkd/record"
)

// queuedBytes bounds the records read from Kinesis and not yet handed to the
// pipeline, all shards together. A GetRecords result is admitted whole, so
// the queue may exceed the bound by one result (at most 10 MB of data on
// AWS, more after de-aggregation).
const queuedBytes = 16 << 20

// byteGate bounds the bytes of queued records: readers wait in acquire while
// the queue is full, which stops them reading.
type byteGate struct {
	limit   int64
	mu      sync.Mutex
	used    int64
	changed chan struct{} // closed and replaced on every release
}

func newByteGate(limit int64) *byteGate {
	return &byteGate{limit: limit, changed: make(chan struct{})}
}

// acquire admits n bytes once they fit, or at once when nothing is queued.
func (g *byteGate) acquire(ctx context.Context, n int64) error {
	for {
		g.mu.Lock()
		if g.used == 0 || g.used+n <= g.limit {
			g.used += n
			g.mu.Unlock()
			return nil
		}
		wait := g.changed
		g.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (g *byteGate) release(n int64) {
	if n == 0 {
		return
	}
	g.mu.Lock()
	g.used -= n
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
}

// recordOverhead is what a queued record costs beside its key and value.
const recordOverhead = int64(unsafe.Sizeof(record.Record{}))

// queuedSize is what recs count against the gate.
func queuedSize(recs []record.Record) int64 {
	n := int64(0)
	for i := range recs {
		n += recordOverhead + int64(len(recs[i].Key)+len(recs[i].Value))
	}
	return n
}
