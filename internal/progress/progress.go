// Package progress prints a line every few seconds while a long command
// works (rate and ETA) when its output is a terminal, and nothing otherwise,
// so that logs and pipes stay clean.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Interval is how often a line is printed.
const Interval = 3 * time.Second

// IsTerminal reports whether w is a terminal. SINKD_PROGRESS=always or never
// overrides the detection.
func IsTerminal(w io.Writer) bool {
	switch os.Getenv("SINKD_PROGRESS") {
	case "always":
		return true
	case "never":
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Start prints "label: N/TOTAL unit (P%), R unit/s, ETA D" every Interval
// (without the total, percentage and ETA when total <= 0) until the returned
// function is called, when w is a terminal. count is read from this
// goroutine only; it must be safe to call concurrently with the work.
func Start(w io.Writer, label, unit string, total int64, count func() int64) (stop func()) {
	if !IsTerminal(w) {
		return func() {}
	}
	return Always(w, label, unit, total, count)
}

// Always is Start whatever w is: for a command whose user asked for
// progress in a log or a pipe (sinkd produce --progress).
func Always(w io.Writer, label, unit string, total int64, count func() int64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	begin := time.Now()
	go func() {
		defer wg.Done()
		t := time.NewTicker(Interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintln(w, Line(label, unit, count(), total, time.Since(begin)))
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// Line formats one progress line.
func Line(label, unit string, n, total int64, elapsed time.Duration) string {
	rate := float64(n) / max(elapsed.Seconds(), 1e-9)
	if total <= 0 {
		return fmt.Sprintf("%s: %d %s, %.0f %s/s", label, n, unit, rate, unit)
	}
	s := fmt.Sprintf("%s: %d/%d %s (%.0f%%), %.0f %s/s", label, n, total, unit, 100*float64(n)/float64(total), rate, unit)
	if rate > 0 && n < total {
		eta := time.Duration(float64(total-n) / rate * float64(time.Second)).Round(time.Second)
		s += ", ETA " + eta.String()
	}
	return s
}
