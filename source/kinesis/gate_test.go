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
