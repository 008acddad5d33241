// Package backoff is the one retry wait of sinkd: every loop that retries a
// failed call (object store parts, Kinesis reads, OpenSearch bulk requests
// and items, dead-letter writes, the redrive tool, the schema registry, the
// taxi producer) computes its waits here, so that they grow, cap and spread
// the same way and are documented once.
//
// A wait grows exponentially from Base, doubling per attempt, up to Max, and
// is then drawn with "equal jitter" (the name from the AWS Architecture Blog's
// "Exponential Backoff And Jitter"): uniformly from [d/2, d] for the capped
// exponential d. Half of the wait is fixed, so a retry never comes back at
// once; the other half is random, so that many callers failing together (the
// shards of one throttled stream, the letters of one failed batch) spread out
// instead of retrying in lockstep. This is not "full jitter" (uniform in
// [0, d]), which spreads further but lets some retries return immediately.
//
// The package only computes and sleeps; the loops bound their own retries
// (by attempts or by their context) and count them in their own metrics.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is an exponential backoff with equal jitter.
type Policy struct {
	Base time.Duration // the wait before the first retry, before jitter
	Max  time.Duration // the cap of the wait, before jitter
}

// Delay is the wait before retry number attempt (0 for the first retry):
// uniformly in [d/2, d] for d = min(Base·2^attempt, Max).
func (p Policy) Delay(attempt int) time.Duration {
	d := p.Ceiling(attempt)
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// Ceiling is the wait before jitter: min(Base·2^attempt, Max). A Max below
// Base is Base (no growth).
func (p Policy) Ceiling(attempt int) time.Duration {
	if p.Base <= 0 {
		return 0
	}
	limit := max(p.Max, p.Base)
	d := p.Base
	// Doubling stops at the cap, so a large attempt cannot overflow.
	for i := 0; i < attempt && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// Sleep waits d, or returns ctx's error if ctx ends first.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Wait sleeps Delay(attempt), or returns ctx's error if ctx ends first.
func (p Policy) Wait(ctx context.Context, attempt int) error {
	return Sleep(ctx, p.Delay(attempt))
}
