package daemon

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemoProgressAndInterrupt: a long demo prints progress lines (rate, ETA)
// when its output is a terminal (SINKD_PROGRESS=always stands in for one
// here), none on a pipe, and Ctrl-C says the run was interrupted and the
// output partial, with exit 130, instead of a summary that looks complete.
func TestDemoProgressAndInterrupt(t *testing.T) {
	dir := t.TempDir()
	p := startSinkd(t, []string{"SINKD_PROGRESS=always"}, "demo", "--events", "3000000", "--dir", filepath.Join(dir, "out"))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	waitFor(ctx, t, "a progress line", func() bool {
		return p.exited() || strings.Contains(p.stderr.String(), "demo: producing")
	})
	line := p.stderr.String()
	if !strings.Contains(line, "/3000000 events (") || !strings.Contains(line, "events/s, ETA ") {
		t.Errorf("progress line without count, rate or ETA: %q", line)
	}
	p.signal(t, syscall.SIGINT)
	if code := p.wait(t, 60*time.Second); code != 130 {
		t.Errorf("interrupted demo: exit %d, want 130", code)
	}
	out := p.stdout.String()
	if !strings.Contains(out, "demo interrupted") || strings.Contains(out, "committed ") {
		t.Errorf("the interrupted demo does not say so (or prints a complete-looking summary):\n%s", out)
	}

	// On a pipe: no progress lines.
	r := sinkd(t, dir, []string{"SINKD_PROGRESS="}, "demo", "--events", "20000", "--dir", "quiet")
	if r.code != 0 || strings.Contains(r.stderr, "demo: producing") || strings.Contains(r.stderr, "demo: processing") {
		t.Errorf("demo on a pipe: exit %d, stderr %q", r.code, r.stderr)
	}
}
