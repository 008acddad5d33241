package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	const ms = time.Millisecond
	for _, c := range []struct {
		name    string
		p       Policy
		attempt int
		ceiling time.Duration
	}{
		{"first retry", Policy{100 * ms, 10 * time.Second}, 0, 100 * ms},
		{"doubles", Policy{100 * ms, 10 * time.Second}, 3, 800 * ms},
		{"capped", Policy{100 * ms, 10 * time.Second}, 7, 10 * time.Second},
		{"huge attempt stays capped", Policy{100 * ms, 10 * time.Second}, 1 << 30, 10 * time.Second},
		{"negative attempt is the first", Policy{100 * ms, time.Second}, -1, 100 * ms},
		{"max below base", Policy{time.Second, 0}, 5, time.Second},
		{"no base", Policy{0, time.Second}, 5, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.p.Ceiling(c.attempt); got != c.ceiling {
				t.Fatalf("ceiling = %v, want %v", got, c.ceiling)
			}
			// Equal jitter: every wait in [d/2, d], and not all the same.
			seen := map[time.Duration]bool{}
			for range 200 {
				d := c.p.Delay(c.attempt)
				if d < c.ceiling/2 || d > c.ceiling {
					t.Fatalf("delay %v outside [%v, %v]", d, c.ceiling/2, c.ceiling)
				}
				seen[d] = true
			}
			if c.ceiling > 1 && len(seen) < 2 {
				t.Fatalf("200 delays all equal: no jitter")
			}
		})
	}
}

// The jitter is spread over the whole upper half: some waits fall in each
// quarter of [d/2, d], none below d/2 (which full jitter would produce).
func TestEqualJitterSpread(t *testing.T) {
	p := Policy{Base: time.Second, Max: time.Second}
	var low, high int
	for range 1000 {
		d := p.Delay(0)
		switch {
		case d < 500*time.Millisecond:
			t.Fatalf("delay %v below half the ceiling", d)
		case d < 750*time.Millisecond:
			low++
		default:
			high++
		}
	}
	if low < 300 || high < 300 {
		t.Fatalf("quarters hold %d and %d of 1000 waits; want both near 500", low, high)
	}
}

func TestSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("Sleep did not return when its context ended")
	}
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := (Policy{Base: time.Millisecond, Max: time.Millisecond}).Wait(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
}
