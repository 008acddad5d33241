package dlq

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A Flush waits for the letters sent before it, not for later ones, so a
// steady stream of new letters cannot starve a checkpoint.
func TestLedgerFlushWaitsForEarlierLettersOnly(t *testing.T) {
	ctx := context.Background()
	l := newLedger(4, prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"}))
	early, err := l.admit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.wait(ctx) }()
	time.Sleep(50 * time.Millisecond) // let the flush take its barrier
	late, err := l.admit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("flush returned %v with an earlier letter pending", err)
	case <-time.After(100 * time.Millisecond):
	}
	l.settle(early)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("flush still waiting after the earlier letter settled; it waits for a later one")
	}

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := l.wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("flush with the late letter pending: %v", err)
	}
	l.settle(late)
	if err := l.wait(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestLedgerBound(t *testing.T) {
	l := newLedger(2, prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"}))
	ctx := context.Background()
	a, _ := l.admit(ctx)
	l.admit(ctx)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := l.admit(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third admit into a ledger of 2: %v", err)
	}
	l.settle(a)
	if _, err := l.admit(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestBackoffIsCapped(t *testing.T) {
	for attempt := range 100 {
		d := retryDelay(attempt)
		if d < 50*time.Millisecond || d > 10*time.Second {
			t.Fatalf("retryDelay(%d) = %v", attempt, d)
		}
	}
}
