package daemon

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// TestSIGHUPReloads: SIGHUP with a broken configuration logs every problem
// and keeps running; with a valid one it drains and restarts the pipeline in
// process; SIGTERM still drains and exits 0.
func TestSIGHUPReloads(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "hup"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "sinkd.yaml")
	demoConfigFile(t, cfgPath)
	addr := freeAddr(t)
	env := []string{"SINKD_KAFKA_BROKERS=" + strings.Join(cluster.ListenAddrs(), ","), "SINKD_KAFKA_TOPIC=hup",
		"SINKD_DEMO_DIR=" + dir, "SINKD_HTTP_ADDR=" + addr}
	p := startSinkd(t, env, "run", cfgPath)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ready := func() bool { return status("http://"+addr+"/readyz") == 200 }
	waitFor(ctx, t, "/readyz", func() bool { return ready() || p.exited() })

	// A broken configuration: every problem logged, the old pipeline goes on.
	demoConfigFile(t, cfgPath, "interval: 1s", "interval: 0", "format: json", "format: yaml")
	p.signal(t, syscall.SIGHUP)
	waitFor(ctx, t, "the problems of the new configuration in the log", func() bool {
		s := p.stderr.String()
		return p.exited() || strings.Contains(s, "checkpoint.interval: 0 is not allowed") && strings.Contains(s, `schema.format: \"yaml\"`)
	})
	time.Sleep(500 * time.Millisecond)
	if p.exited() {
		t.Fatalf("SIGHUP with a broken configuration stopped sinkd (exit %d)", p.code)
	}
	if !ready() {
		t.Error("not ready after a rejected reload")
	}

	// A valid one: drained, restarted, ready again.
	demoConfigFile(t, cfgPath, "interval: 1s", "interval: 2s")
	p.signal(t, syscall.SIGHUP)
	waitFor(ctx, t, "the reload", func() bool {
		return p.exited() || strings.Contains(p.stderr.String(), "configuration reloaded")
	})
	if p.exited() {
		t.Fatalf("SIGHUP stopped sinkd (exit %d)", p.code)
	}
	waitFor(ctx, t, "/readyz after the reload", func() bool { return ready() || p.exited() })
	if n := strings.Count(p.stderr.String(), "sinkd running"); n != 2 {
		t.Errorf("the pipeline started %d times, want 2", n)
	}

	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, 60*time.Second); code != 0 {
		t.Errorf("SIGTERM after a reload: exit %d, want 0", code)
	}
}
