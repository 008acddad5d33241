package daemon

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// TestProduceProgress runs `sinkd produce` against a Kafka broker: with
// --progress (or on a terminal, which SINKD_PROGRESS=always stands in for) it
// prints a line every few seconds with the count, the rate and, with
// --count, the ETA; on a pipe without the flag it prints only its summary;
// an interrupted run says so instead of ending on a summary that looks
// complete.
func TestProduceProgress(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "progress-trips"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := strings.Join(cluster.ListenAddrs(), ",")
	args := func(extra ...string) []string {
		return append([]string{"produce", "--kafka-brokers", brokers, "--topic", "progress-trips", "--partitions", "0"}, extra...)
	}
	for _, tt := range []struct {
		name  string
		env   []string
		extra []string
		lines bool
	}{
		{"--progress on a pipe", []string{"SINKD_PROGRESS="}, []string{"--progress"}, true},
		{"a terminal", []string{"SINKD_PROGRESS=always"}, nil, true},
		{"a pipe", []string{"SINKD_PROGRESS="}, nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// 7 s at the paced rate: two lines at a 3 s interval.
			r := sinkd(t, "", tt.env, args(append([]string{"--count", "14000", "--rate", "2000"}, tt.extra...)...)...)
			if r.code != 0 {
				t.Fatalf("exit %d\n%s", r.code, r.stderr)
			}
			var progress []string
			for line := range strings.Lines(r.stderr) {
				if strings.HasPrefix(line, "produce: ") {
					progress = append(progress, line)
				}
			}
			if !tt.lines {
				if len(progress) > 0 || strings.Contains(r.stderr, "\r") {
					t.Errorf("progress on a pipe without --progress:\n%q", r.stderr)
				}
				return
			}
			if len(progress) < 2 {
				t.Fatalf("want a progress line every few seconds, got %d:\n%s", len(progress), r.stderr)
			}
			if l := progress[0]; !strings.Contains(l, "/14000 events (") || !strings.Contains(l, "events/s, ETA ") {
				t.Errorf("a progress line without count, rate or ETA: %q", l)
			}
			if !strings.Contains(r.stderr, "sinkd produce: 14000 events") || strings.Contains(r.stderr, "interrupted") {
				t.Errorf("summary:\n%s", r.stderr)
			}
		})
	}

	t.Run("interrupted", func(t *testing.T) {
		p := startSinkd(t, []string{"SINKD_PROGRESS="}, args("--count", "1000000", "--rate", "2000", "--progress")...)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		waitFor(ctx, t, "a progress line", func() bool {
			return p.exited() || strings.Contains(p.stderr.String(), "produce: ")
		})
		p.signal(t, syscall.SIGINT)
		if code := p.wait(t, 30*time.Second); code != 0 {
			t.Errorf("interrupted after a clean flush: exit %d, want 0", code)
		}
		if s := p.stderr.String(); !strings.Contains(s, "sinkd produce: interrupted after ") || !strings.Contains(s, "of 1000000 events") {
			t.Errorf("the interrupted run does not say so:\n%s", s)
		}
	})
}
