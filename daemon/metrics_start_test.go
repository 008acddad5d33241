package daemon

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/config/examples"
)

// TestMetricsFromStartWithPipelineLabel: before any record, the dead-letter
// counter exists at zero for every reason (the rules and the dashboard rate
// it), every sinkd series carries the pipeline's name, and the memory budget
// is what files and fetched records may hold: memory.budget less the room
// left for garbage, of which the fetch buffers are held from the start.
func TestMetricsFromStartWithPipelineLabel(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "quiet"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	addr := freeAddr(t)
	t.Setenv("SINKD_KAFKA_BROKERS", strings.Join(cluster.ListenAddrs(), ","))
	t.Setenv("SINKD_KAFKA_TOPIC", "quiet")
	t.Setenv("SINKD_DEMO_DIR", t.TempDir())
	t.Setenv("SINKD_HTTP_ADDR", addr)
	cfg, err := config.Parse("demo.yaml", examples.Demo)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	_, stop, done := startRun(ctx, t, cfg, log)
	body := httpGet(ctx, t, "http://"+addr+"/metrics")
	stop()
	<-done

	for _, want := range []string{
		`sinkd_dlq_records_total{pipeline="demo",reason="malformed_json",stage="decode"} 0`,
		`sinkd_dlq_records_total{pipeline="demo",reason="missing_required",stage="schema"} 0`,
		`sinkd_checkpoint_failures_total{pipeline="demo"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for line := range strings.Lines(body) {
		if strings.HasPrefix(line, "sinkd_") && !strings.Contains(line, `pipeline="demo"`) {
			t.Errorf("series without the pipeline label: %s", strings.TrimSpace(line))
		}
	}
	room := cfg.GarbageRoom()
	if room <= 0 {
		t.Fatalf("the demo's budget %s leaves no room for garbage", cfg.Memory.Budget)
	}
	for name, want := range map[string]int64{
		"sinkd_memory_budget_bytes":   cfg.Memory.Budget.Bytes() - room,
		"sinkd_memory_buffered_bytes": cfg.Source.MemoryBytes(),
	} {
		if got := gaugeValue(t, body, name+`{pipeline="demo"}`); got != float64(want) {
			t.Errorf("%s = %.0f, want %d", name, got, want)
		}
	}
}

// gaugeValue reads one series' value from a text exposition.
func gaugeValue(t *testing.T, body, series string) float64 {
	t.Helper()
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics lacks %s", series)
	return 0
}
