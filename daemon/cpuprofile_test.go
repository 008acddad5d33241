package daemon

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sinkd/sinkd/config/examples"
)

// TestCPUProfileCoversTheDrain: `sinkd run --cpu-profile` writes a complete
// profile when the process exits after its drain (the gzip stream of a
// profile stopped early, or never flushed, does not read to its end), and a
// path it cannot create is a command-line error before anything starts.
func TestCPUProfileCoversTheDrain(t *testing.T) {
	t.Run("written at exit", func(t *testing.T) {
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "profiled"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cluster.Close)
		dir := t.TempDir()
		cfgPath := filepath.Join(dir, "sinkd.yaml")
		if err := os.WriteFile(cfgPath, examples.Demo, 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		// Enough trips that reading them takes tens of milliseconds of
		// CPU: at 100 samples a second, a run of a few milliseconds can
		// leave no sample in sinkd's own code at all.
		const trips = 20000
		produceTrips(ctx, t, cluster.ListenAddrs(), "profiled", 2, 3, trips, 0)

		profile := filepath.Join(dir, "cpu.pprof")
		addr := freeAddr(t)
		p := startSinkd(t, []string{"SINKD_KAFKA_BROKERS=" + strings.Join(cluster.ListenAddrs(), ","), "SINKD_KAFKA_TOPIC=profiled",
			"SINKD_DEMO_DIR=" + dir, "SINKD_HTTP_ADDR=" + addr}, "run", "--cpu-profile", profile, cfgPath)
		waitFor(ctx, t, "/readyz", func() bool { return status("http://"+addr+"/readyz") == 200 || p.exited() })
		if p.exited() {
			t.Fatalf("sinkd exited %d before it was ready", p.code)
		}
		waitFor(ctx, t, "every record read", func() bool {
			return sumMetric(addr, "sinkd_source_records_total") >= trips
		})
		p.signal(t, syscall.SIGTERM)
		if code := p.wait(t, time.Minute); code != 0 {
			t.Fatalf("exit %d after SIGTERM, want 0 (drained)", code)
		}
		raw, err := os.ReadFile(profile)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("the profile is not a gzip stream: %v", err)
		}
		body, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("the profile stops short: %v", err)
		}
		// The profile's string table names the sample type and sinkd's code.
		for _, want := range []string{"cpu", "nanoseconds", "github.com/sinkd/sinkd/daemon.(*Pipeline).Run"} {
			if !bytes.Contains(body, []byte(want)) {
				t.Errorf("the profile (%d bytes) does not name %q", len(body), want)
			}
		}
	})
	t.Run("path it cannot create", func(t *testing.T) {
		cfgPath := filepath.Join(t.TempDir(), "sinkd.yaml")
		if err := os.WriteFile(cfgPath, examples.Demo, 0o644); err != nil {
			t.Fatal(err)
		}
		r := sinkd(t, "", []string{"SINKD_DEMO_DIR=" + t.TempDir()}, "run", "--cpu-profile", "/nonexistent/dir/cpu.pprof", cfgPath)
		if r.code != 2 || !strings.Contains(r.stderr, "cpu profile") {
			t.Errorf("exit %d, stderr %q: want 2 and the profile's error", r.code, r.stderr)
		}
	})
}
