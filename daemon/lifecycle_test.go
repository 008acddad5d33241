package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/goleak"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/writers/opensearch/osfake"
)

// lifecycleEnv is what a lifecycle test builds a pipeline against: an
// embedded broker, an OpenSearch (osfake) on loopback, and a directory for
// the lake, the dead letters and the spool.
type lifecycleEnv struct {
	dir, spool, dlq string
	cfg             func(t *testing.T, replace ...string) *config.Config
}

func newLifecycleEnv(t *testing.T) *lifecycleEnv {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "life"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	search := httptest.NewServer(osfake.New())
	t.Cleanup(search.Close)
	e := &lifecycleEnv{dir: t.TempDir()}
	e.spool = filepath.Join(e.dir, "spool")
	e.dlq = filepath.Join(e.dir, "dead-letters.jsonl")
	t.Setenv("SINKD_DEMO_DIR", e.dir)
	t.Setenv("SINKD_KAFKA_BROKERS", strings.Join(cluster.ListenAddrs(), ","))
	t.Setenv("SINKD_KAFKA_TOPIC", "life")
	t.Setenv("SINKD_OPENSEARCH_URL", search.URL)
	t.Setenv("SINKD_HTTP_ADDR", "127.0.0.1:0")
	e.cfg = func(t *testing.T, replace ...string) *config.Config {
		t.Helper()
		yaml := string(opsDemoConfig(t))
		replace = append([]string{"budget: 128MiB", "budget: 128MiB\n  spool_dir: " + e.spool}, replace...)
		for i := 0; i+1 < len(replace); i += 2 {
			if !strings.Contains(yaml, replace[i]) {
				t.Fatalf("the demo configuration no longer contains %q", replace[i])
			}
			yaml = strings.Replace(yaml, replace[i], replace[i+1], 1)
		}
		cfg, err := config.Parse("lifecycle.yaml", []byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	return e
}

// assertAllClosed fails unless everything a pipeline started is gone: no
// goroutine beyond those running before (connections, writers, the source's
// client), no spool directory, no descriptor on the dead-letter file.
func (e *lifecycleEnv) assertAllClosed(t *testing.T, before goleak.Option) {
	t.Helper()
	if err := goleak.Find(before); err != nil {
		t.Errorf("goroutines left behind: %v", err)
	}
	if left, _ := os.ReadDir(e.spool); len(left) > 0 {
		names := make([]string, 0, len(left))
		for _, d := range left {
			names = append(names, d.Name())
		}
		t.Errorf("spool directory left behind: %v", names)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(target, e.dir) {
			t.Errorf("file still open: %s", target)
		}
	}
}

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestNewPipelineClosesEarlierStepsOnFailure: whichever construction step
// fails, everything the earlier steps started (the spool, the Parquet
// writers, the dead-letter sink, the OpenSearch writer and its connections,
// the source's client) is closed before newPipeline returns.
func TestNewPipelineClosesEarlierStepsOnFailure(t *testing.T) {
	e := newLifecycleEnv(t)
	before := goleak.IgnoreCurrent()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Every step, in order, from a construction that succeeds.
	var steps []string
	p, err := newPipeline(ctx, e.cfg(t), quietLog, prometheus.NewRegistry(), options{afterStep: func(step string) error {
		steps = append(steps, step)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	p.closeBuilt(ctx)
	e.assertAllClosed(t, before)
	want := []string{"schema", "spool", "parquet by-location", "parquet by-type", "checkpoint store", "dead letters", "opensearch by-type", "source"}
	if !slices.Equal(steps, want) {
		t.Fatalf("construction steps %v, want %v", steps, want)
	}

	injected := errors.New("injected failure")
	for _, failAt := range steps {
		t.Run("after "+failAt, func(t *testing.T) {
			var ran []string
			p, err := newPipeline(ctx, e.cfg(t), quietLog, prometheus.NewRegistry(), options{afterStep: func(step string) error {
				ran = append(ran, step)
				if step == failAt {
					return injected
				}
				return nil
			}})
			if !errors.Is(err, injected) || p != nil {
				t.Fatalf("newPipeline = %v, %v; want the injected failure", p, err)
			}
			if ran[len(ran)-1] != failAt {
				t.Fatalf("construction went on after the failure: %v", ran)
			}
			e.assertAllClosed(t, before)
		})
	}

	// Failures of the steps themselves, against real endpoints.
	closedPort := freeAddr(t)
	for _, tt := range []struct {
		name    string
		replace []string
		want    string
	}{
		{"dead-letter file in a missing directory", []string{"file: ${SINKD_DEMO_DIR:-/tmp/sinkd-demo}/dead-letters.jsonl", "file: " + filepath.Join(e.dir, "missing", "dl.jsonl")}, "dead-letter sink"},
		{"OpenSearch not answering", []string{"url: ${SINKD_OPENSEARCH_URL}", "url: http://" + closedPort + "\n      max_retries: 0"}, "opensearch"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := newPipeline(ctx, e.cfg(t, tt.replace...), quietLog, prometheus.NewRegistry(), options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				p.closeBuilt(ctx)
				t.Fatalf("newPipeline: %v, want an error about %q", err, tt.want)
			}
			e.assertAllClosed(t, before)
		})
	}
}

// TestListenFailureClosesEverything: when the HTTP address is taken, run
// fails with that error at once and closes the pipeline it had built,
// without running it.
func TestListenFailureClosesEverything(t *testing.T) {
	e := newLifecycleEnv(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	before := goleak.IgnoreCurrent()
	for _, key := range []string{"http.addr", "http.admin.addr"} {
		t.Run(key, func(t *testing.T) {
			replace := []string{"addr: ${SINKD_HTTP_ADDR:-127.0.0.1:9464}", "addr: " + taken.Addr().String()}
			if key == "http.admin.addr" {
				replace[1] = "addr: 127.0.0.1:0\n  admin:\n    addr: " + taken.Addr().String()
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err := run(ctx, e.cfg(t, replace...), quietLog, options{}, func(*Pipeline) { t.Error("the pipeline ran") })
			if err == nil || !strings.Contains(err.Error(), key) {
				t.Fatalf("run: %v, want the %s error", err, key)
			}
			e.assertAllClosed(t, before)
		})
	}
}

// TestRunClosesEverythingAfterDrain: a run that starts, gets ready and is
// stopped drains and leaves nothing running behind.
func TestRunClosesEverythingAfterDrain(t *testing.T) {
	e := newLifecycleEnv(t)
	before := goleak.IgnoreCurrent()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, stop, done := startRun(ctx, t, e.cfg(t), quietLog)
	stop()
	if err := <-done; err != nil {
		t.Fatalf("drain: %v", err)
	}
	e.assertAllClosed(t, before)
}

// stallingSearch is osfake behind a switch: once stall is set, bulk
// requests hang until the client gives up (a cluster that stopped answering
// writes, the way a drain can get stuck).
type stallingSearch struct {
	next    http.Handler
	stall   atomic.Bool
	stalled atomic.Int64
	release chan struct{}
}

func (s *stallingSearch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.stall.Load() && strings.Contains(r.URL.Path, "_bulk") {
		s.stalled.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-s.release:
		}
		return
	}
	s.next.ServeHTTP(w, r)
}

// TestHardStop: a drain that cannot finish (OpenSearch stops answering
// writes) ends hard, with exit code 1 and no final checkpoint, either on a
// second SIGTERM at once, or on its own once it outlives
// shutdown.drain_timeout by drainOverrun; nothing exits from a goroutine, so
// the process reports how it ended. Until then /readyz says "stopping" and
// /metrics answers.
func TestHardStop(t *testing.T) {
	for _, tt := range []struct {
		name   string
		drain  time.Duration
		second bool
		log    string
		within time.Duration // from the first SIGTERM
	}{
		{"second signal", time.Minute, true, "second signal: exiting now without a final checkpoint", 10 * time.Second},
		{"drain outlives its timeout", 2 * time.Second, false, "drain timed out: exiting without a final checkpoint", 2*time.Second + drainOverrun + 10*time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "hard"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cluster.Close)
			search := &stallingSearch{next: osfake.New(), release: make(chan struct{})}
			srv := httptest.NewServer(search)
			t.Cleanup(srv.Close)
			t.Cleanup(func() { close(search.release) })
			dir := t.TempDir()
			cfgPath := filepath.Join(dir, "sinkd.yaml")
			yaml := string(opsDemoConfig(t)) + fmt.Sprintf("\nshutdown:\n  drain_timeout: %s\n", tt.drain)
			if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			addr := freeAddr(t)
			env := []string{"SINKD_KAFKA_BROKERS=" + strings.Join(cluster.ListenAddrs(), ","), "SINKD_KAFKA_TOPIC=hard",
				"SINKD_DEMO_DIR=" + dir, "SINKD_HTTP_ADDR=" + addr, "SINKD_OPENSEARCH_URL=" + srv.URL}
			p := startSinkd(t, env, "run", cfgPath)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			waitFor(ctx, t, "/readyz", func() bool { return status("http://"+addr+"/readyz") == 200 || p.exited() })
			if p.exited() {
				t.Fatalf("sinkd exited %d before it was ready", p.code)
			}

			search.stall.Store(true)
			produceTrips(ctx, t, cluster.ListenAddrs(), "hard", 2, 9, 500, 0)
			waitFor(ctx, t, "a bulk request hanging", func() bool { return search.stalled.Load() > 0 || p.exited() })

			p.signal(t, syscall.SIGTERM)
			began := time.Now()
			waitFor(ctx, t, "the drain to begin", func() bool {
				return strings.Contains(p.stderr.String(), "signal received: draining") || p.exited()
			})
			time.Sleep(time.Second)
			if p.exited() {
				t.Fatalf("the drain finished (exit %d) while OpenSearch hangs", p.code)
			}
			// The listeners answer through the drain.
			if got := status("http://" + addr + "/readyz"); got != http.StatusServiceUnavailable {
				t.Errorf("/readyz during the drain: %d, want 503 (stopping)", got)
			}
			if got := status("http://" + addr + "/metrics"); got != http.StatusOK {
				t.Errorf("/metrics during the drain: %d, want 200", got)
			}
			if tt.second {
				p.signal(t, syscall.SIGTERM)
			}
			code := p.wait(t, tt.within)
			took := time.Since(began)
			t.Logf("exit %d %s after the first SIGTERM", code, took.Round(time.Millisecond))
			if code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			logged := p.stderr.String()
			if !strings.Contains(logged, tt.log) {
				t.Errorf("the log does not say %q", tt.log)
			}
			if !tt.second && took < tt.drain {
				t.Errorf("stopped after %s, before the drain timeout %s", took, tt.drain)
			}
			for _, bad := range []string{"panic:", "goroutine "} {
				if strings.Contains(logged, bad) {
					t.Errorf("the log holds %q:\n%s", bad, logged)
				}
			}
			m, _ := os.ReadDir(filepath.Join(dir, "lake", "_sinkd"))
			t.Logf("manifests: %d entries", len(m))
		})
	}
}

// TestActorFailureStopsTheRun: when one actor of a run fails once the
// pipeline is running, the pipeline drains, the listeners stop, run
// returns that failure, and nothing is left running or open.
func TestActorFailureStopsTheRun(t *testing.T) {
	e := newLifecycleEnv(t)
	before := goleak.IgnoreCurrent()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	injected := errors.New("injected failure")
	var logged syncBuffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	err := run(ctx, e.cfg(t), log, options{afterStep: func(step string) error {
		if step == "ready" {
			return injected
		}
		return nil
	}}, nil)
	if !errors.Is(err, injected) {
		t.Fatalf("run: %v, want the actor's failure", err)
	}
	if !strings.Contains(logged.String(), "draining: final checkpoint") {
		t.Errorf("the pipeline did not drain:\n%s", logged.String())
	}
	e.assertAllClosed(t, before)
}
