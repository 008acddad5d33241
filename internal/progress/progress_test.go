package progress

import (
	"testing"
	"time"
)

func TestLine(t *testing.T) {
	tests := []struct {
		n, total int64
		elapsed  time.Duration
		want     string
	}{
		{100, 400, 10 * time.Second, "x: 100/400 events (25%), 10 events/s, ETA 30s"},
		{400, 400, 10 * time.Second, "x: 400/400 events (100%), 40 events/s"},
		{50, 0, 5 * time.Second, "x: 50 events, 10 events/s"},
		{0, 400, time.Second, "x: 0/400 events (0%), 0 events/s"},
	}
	for _, tt := range tests {
		if got := Line("x", "events", tt.n, tt.total, tt.elapsed); got != tt.want {
			t.Errorf("Line(%d, %d, %s) = %q, want %q", tt.n, tt.total, tt.elapsed, got, tt.want)
		}
	}
}
