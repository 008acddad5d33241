package kinesis

import (
	"context"
	"sync"
	"unsafe"

	"github.com/sinkd/sinkd/record"
)

// sourceBytes bounds what the source holds, all shards together: GetRecords
// calls in flight (reserved before each call, at fetchOverhead times the
// result expected) and records read but not yet handed to the pipeline. A
// reader reserves before it calls, so that a thousand shards cannot each hold
// a result waiting for room; an empty gate admits any one reservation, so
// the bound is exceeded only by a result larger than its reservation (never
// on AWS for a first read, which reserves a full 10 MB result).
const sourceBytes = 40 << 20

// fetchOverhead is what a GetRecords result costs while it is decoded, per
// byte of record data: the JSON body, the base64 text of each record and the
// decoded bytes are all alive at once.
const fetchOverhead = 3

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

// resize turns a reservation of from bytes into one of to bytes without
// waiting: a result larger than reserved is already in memory.
func (g *byteGate) resize(from, to int64) {
	if to < from {
		g.release(from - to)
		return
	}
	g.mu.Lock()
	g.used += to - from
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
