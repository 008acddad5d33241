package kinesis

import (
	"context"
	"testing"
	"time"
)

func TestByteGateBoundsQueuedBytes(t *testing.T) {
	g := newByteGate(100)
	ctx := context.Background()
	if err := g.acquire(ctx, 250); err != nil {
		t.Fatalf("an empty gate must admit a result larger than its limit: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := g.acquire(short, 1); err == nil {
		t.Fatal("a gate over its limit admitted more")
	}
	g.release(250)

	if err := g.acquire(ctx, 60); err != nil {
		t.Fatal(err)
	}
	admitted := make(chan struct{})
	go func() {
		if err := g.acquire(ctx, 60); err == nil {
			close(admitted)
		}
	}()
	select {
	case <-admitted:
		t.Fatal("60 + 60 bytes admitted under a limit of 100")
	case <-time.After(50 * time.Millisecond):
	}
	g.release(60)
	select {
	case <-admitted:
	case <-time.After(5 * time.Second):
		t.Fatal("a release did not admit the waiting reader")
	}
	g.release(60)
	if g.used != 0 {
		t.Fatalf("%d bytes left after every release", g.used)
	}
}

func TestNextLimitKeepsResultsNearTenMB(t *testing.T) {
	for _, c := range []struct {
		name                     string
		limit, configured, bytes int
		want                     int
	}{
		{"a 450 MB result cuts the limit to fit 10 MB", 10000, 10000, 450 << 20, 222},
		{"never below one record", 1, 10000, 50 << 20, 1},
		{"a small result doubles the limit back", 222, 10000, 1 << 20, 444},
		{"up to the configured limit only", 8000, 10000, 1 << 20, 10000},
		{"a result between 5 and 10 MB keeps it", 500, 10000, 7 << 20, 500},
	} {
		if got := nextLimit(c.limit, c.configured, c.bytes); got != c.want {
			t.Errorf("%s: nextLimit(%d, %d, %d) = %d, want %d", c.name, c.limit, c.configured, c.bytes, got, c.want)
		}
	}
}

func TestReservationBeforeReadBoundsShardsInFlight(t *testing.T) {
	g := newByteGate(sourceBytes)
	ctx := context.Background()
	// Shards that know nothing yet reserve a full result each: only as
	// many as fit call at once, however many shards there are.
	first := fetchOverhead * expectedBytes(firstLimit, 0)
	admitted := 0
	for range 1000 {
		short, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
		err := g.acquire(short, first)
		cancel()
		if err != nil {
			break
		}
		admitted++
	}
	if want := int(max(1, sourceBytes/first)); admitted != want {
		t.Fatalf("%d reads in flight, want %d (of %d bytes each under %d)", admitted, want, first, sourceBytes)
	}
	// A result smaller than reserved gives the rest back at once.
	g.resize(first, 1<<20)
	if g.used != int64(admitted-1)*first+1<<20 {
		t.Fatalf("used %d after a resize", g.used)
	}
	// A result larger than reserved is counted whole, without waiting.
	g.resize(1<<20, 40<<20)
	if g.used != int64(admitted-1)*first+40<<20 {
		t.Fatalf("used %d after a resize up", g.used)
	}
}

func TestExpectedBytesFollowsTheLastResult(t *testing.T) {
	for _, c := range []struct {
		limit     int
		perRecord int64
		want      int64
	}{
		{100, 0, maxResultBytes},         // nothing read yet: a full result
		{200, 45 << 10, 200 * 45 << 10},  // KPL aggregates of 45 KB
		{10000, 2 << 10, maxResultBytes}, // capped at what a result can hold
		{10000, 100, 10000 * 100},        // small records
	} {
		if got := expectedBytes(c.limit, c.perRecord); got != c.want {
			t.Errorf("expectedBytes(%d, %d) = %d, want %d", c.limit, c.perRecord, got, c.want)
		}
	}
}
