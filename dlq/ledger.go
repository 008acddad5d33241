package dlq

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sinkd/sinkd/internal/backoff"
)

// ledger accounts for letters accepted but not yet acknowledged by the
// stream. It bounds them (Send blocks at the bound) and lets Flush wait for
// exactly the letters accepted before it started, so that a steady stream
// of new letters cannot starve a checkpoint.
type ledger struct {
	slots chan struct{}
	gauge prometheus.Gauge

	mu      sync.Mutex
	epoch   uint64         // incremented by every Flush
	open    map[uint64]int // unacknowledged letters per epoch
	changed chan struct{}  // closed and replaced on every acknowledgement
}

func newLedger(bound int, gauge prometheus.Gauge) *ledger {
	return &ledger{
		slots:   make(chan struct{}, bound),
		gauge:   gauge,
		open:    map[uint64]int{},
		changed: make(chan struct{}),
	}
}

// admit takes a slot for one letter, waiting while the buffer is full, and
// returns the ticket to settle it with.
func (l *ledger) admit(ctx context.Context) (uint64, error) {
	select {
	case l.slots <- struct{}{}:
	case <-ctx.Done():
		return 0, fmt.Errorf("dlq buffer full (%d letters): %w", cap(l.slots), ctx.Err())
	}
	l.gauge.Inc()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open[l.epoch]++
	return l.epoch, nil
}

// settle marks one letter of ticket's epoch acknowledged.
func (l *ledger) settle(ticket uint64) {
	// The slot and the gauge go first: once wait sees the letter settled,
	// the gauge must already say so.
	<-l.slots
	l.gauge.Dec()
	l.mu.Lock()
	if l.open[ticket]--; l.open[ticket] <= 0 {
		delete(l.open, ticket)
	}
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

// wait returns once every letter admitted before the call is settled.
func (l *ledger) wait(ctx context.Context) error {
	l.mu.Lock()
	target := l.epoch
	l.epoch++
	l.mu.Unlock()
	for {
		l.mu.Lock()
		pending := 0
		for e, n := range l.open {
			if e <= target {
				pending += n
			}
		}
		changed := l.changed
		l.mu.Unlock()
		if pending == 0 {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("dlq flush: %d letters not yet acknowledged: %w", pending, ctx.Err())
		}
	}
}

// letterBackoff spaces the retries of a letter: exponential from 100ms,
// capped at 10s, with equal jitter (internal/backoff) so that many letters
// failing together do not retry in lockstep.
var letterBackoff = backoff.Policy{Base: 100 * time.Millisecond, Max: 10 * time.Second}

// retryDelay is the wait before retry number attempt (0-based) of a letter.
func retryDelay(attempt int) time.Duration { return letterBackoff.Delay(attempt) }

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error { return backoff.Sleep(ctx, d) }
