package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"gopkg.in/yaml.v3"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/config/examples"
	"github.com/sinkd/sinkd/internal/cli"
	"github.com/sinkd/sinkd/store"
	"github.com/sinkd/sinkd/taxi"
	"github.com/sinkd/sinkd/writers/opensearch/osfake"
)

// The deployment files live at the repository root; tests run in daemon/.
const deployDir = "../deploy"

// exitMargin is how long the lifecycle lets a drain overrun
// shutdown.drain_timeout before it stops hard; supervisors must wait
// longer than drain timeout plus this margin before they SIGKILL.
const exitMargin = drainOverrun

// defaultConfig is the demo configuration with every default applied: the
// sizes and timeouts the deployment files are written for.
func defaultConfig(t *testing.T) *config.Config {
	t.Helper()
	t.Setenv("SINKD_DEMO_DIR", t.TempDir())
	cfg, err := config.Parse("config/examples/demo.yaml", examples.Demo)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is not installed: apt-get install -y systemd (it verifies deploy/systemd/sinkd.service)")
	}
	unit, err := os.ReadFile(filepath.Join(deployDir, "systemd", "sinkd.service"))
	if err != nil {
		t.Fatal(err)
	}
	directives := unitDirectives(unit)

	// verify checks that ExecStart names an executable file; any executable
	// will do, so the copy points at this test binary.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const installed = "/usr/local/bin/sinkd"
	if !bytes.Contains(unit, []byte("ExecStart="+installed+" run --config /etc/sinkd/sinkd.yaml")) {
		t.Fatalf("ExecStart should run %s run --config /etc/sinkd/sinkd.yaml", installed)
	}
	copyPath := filepath.Join(t.TempDir(), "sinkd.service")
	if err := os.WriteFile(copyPath, bytes.ReplaceAll(unit, []byte(installed), []byte(self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		// verify exits 0 on unknown keys and misplaced settings, but says so.
		t.Fatalf("systemd-analyze verify: err %v, output:\n%s", err, out)
	}

	for key, want := range map[string]string{
		"Type":                    "notify",
		"WatchdogSec":             "60s",
		"KillSignal":              "SIGTERM",
		"Restart":                 "on-failure",
		"EnvironmentFile":         "-/etc/sinkd/sinkd.env",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"CapabilityBoundingSet":   "",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"StateDirectory":          "sinkd",
		// Restarting cannot fix a bad command line or configuration.
		"RestartPreventExitStatus": fmt.Sprintf("%d %d", cli.ExitUsage, cli.ExitConfig),
		"ExecReload":               "/bin/kill -HUP $MAINPID",
	} {
		if got, ok := directives[key]; !ok || got != want {
			t.Errorf("%s=%q, want %q", key, got, want)
		}
	}
	cfg := defaultConfig(t)
	stop, err := time.ParseDuration(directives["TimeoutStopSec"])
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	if drain := cfg.Shutdown.DrainTimeout.D(); stop <= drain+exitMargin {
		t.Errorf("TimeoutStopSec=%s: systemd would SIGKILL before sinkd gives up on its %s drain (+%s)", stop, drain, exitMargin)
	}
	memMax, err := config.ParseSize(directives["MemoryMax"] + "iB")
	if err != nil {
		t.Fatalf("MemoryMax: %v", err)
	}
	if budget := cfg.Memory.Budget.Bytes(); memMax.Bytes() < 2*budget {
		t.Errorf("MemoryMax=%s leaves too little above the default memory budget %d", directives["MemoryMax"], budget)
	}
}

// unitDirectives returns the last value of each key in a unit file.
func unitDirectives(unit []byte) map[string]string {
	d := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			d[k] = v
		}
	}
	return d
}

func TestPrometheusRules(t *testing.T) {
	cmd := exec.Command(filepath.Join(deployDir, "prometheus", "check.sh"))
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("deploy/prometheus/check.sh: %v", err)
	}
}

func TestKubernetesSidecar(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(deployDir, "kubernetes", "sidecar.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	type container struct {
		Name          string `yaml:"name"`
		RestartPolicy string `yaml:"restartPolicy"`
		LivenessProbe struct {
			HTTPGet struct{ Path string } `yaml:"httpGet"`
		} `yaml:"livenessProbe"`
		ReadinessProbe struct {
			HTTPGet struct{ Path string } `yaml:"httpGet"`
		} `yaml:"readinessProbe"`
		Resources struct {
			Limits struct {
				Memory string `yaml:"memory"`
			} `yaml:"limits"`
		} `yaml:"resources"`
		SecurityContext struct {
			ReadOnlyRootFilesystem   bool                    `yaml:"readOnlyRootFilesystem"`
			AllowPrivilegeEscalation *bool                   `yaml:"allowPrivilegeEscalation"`
			Capabilities             struct{ Drop []string } `yaml:"capabilities"`
		} `yaml:"securityContext"`
	}
	type object struct {
		Kind     string `yaml:"kind"`
		Metadata struct{ Name string }
		Data     map[string]string `yaml:"data"`
		Spec     struct {
			Template struct {
				Spec struct {
					Grace           int64 `yaml:"terminationGracePeriodSeconds"`
					SecurityContext struct {
						RunAsNonRoot bool `yaml:"runAsNonRoot"`
					} `yaml:"securityContext"`
					InitContainers []container `yaml:"initContainers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	var objs []object
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("document %d: %v", len(objs)+1, err)
		}
		objs = append(objs, o)
	}
	kinds := map[string]object{}
	for _, o := range objs {
		kinds[o.Kind+"/"+o.Metadata.Name] = o
	}
	cm, ok := kinds["ConfigMap/sinkd-config"]
	if !ok {
		t.Fatalf("no ConfigMap sinkd-config among %d documents", len(objs))
	}
	// The ConfigMap's configuration must validate with the ConfigMap's env.
	for k, v := range kinds["ConfigMap/sinkd-env"].Data {
		t.Setenv(k, v)
	}
	cfg, err := config.Parse("sinkd.yaml", []byte(cm.Data["sinkd.yaml"]))
	if err != nil {
		t.Fatalf("ConfigMap sinkd-config: %v", err)
	}
	if err := Check(cfg); err != nil {
		t.Fatalf("ConfigMap sinkd-config: %v", err)
	}

	pod := kinds["Deployment/taxi-dispatch"].Spec.Template.Spec
	i := slices.IndexFunc(pod.InitContainers, func(c container) bool { return c.Name == "sinkd" })
	if i < 0 {
		t.Fatal("no sinkd init container in Deployment taxi-dispatch")
	}
	sc := pod.InitContainers[i]
	if sc.RestartPolicy != "Always" {
		t.Errorf("sinkd restartPolicy %q: a native sidecar needs Always", sc.RestartPolicy)
	}
	// No readiness probe: a sidecar's readiness is the pod's, and a broker
	// outage must not take the application out of its Service.
	if sc.LivenessProbe.HTTPGet.Path != "/healthz" || sc.ReadinessProbe.HTTPGet.Path != "" {
		t.Errorf("probes: liveness %q, readiness %q (want /healthz and none)", sc.LivenessProbe.HTTPGet.Path, sc.ReadinessProbe.HTTPGet.Path)
	}
	if grace := time.Duration(pod.Grace) * time.Second; grace <= cfg.Shutdown.DrainTimeout.D()+exitMargin {
		t.Errorf("terminationGracePeriodSeconds %s does not outlast the %s drain", grace, cfg.Shutdown.DrainTimeout.D())
	}
	limit, err := config.ParseSize(strings.TrimSuffix(sc.Resources.Limits.Memory, "i") + "iB")
	if err != nil || limit.Bytes() <= cfg.Memory.Budget.Bytes() {
		t.Errorf("memory limit %q must exceed memory.budget %s (%v)", sc.Resources.Limits.Memory, cfg.Memory.Budget, err)
	}
	if !pod.SecurityContext.RunAsNonRoot || !sc.SecurityContext.ReadOnlyRootFilesystem ||
		sc.SecurityContext.AllowPrivilegeEscalation == nil || *sc.SecurityContext.AllowPrivilegeEscalation ||
		!slices.Equal(sc.SecurityContext.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("sinkd securityContext is not locked down: pod %+v, container %+v", pod.SecurityContext, sc.SecurityContext)
	}
}

// metricRef matches the names of series sinkd, its Go runtime and the rules
// define. Label values such as job="sinkd" do not match.
var metricRef = regexp.MustCompile(`\b(?:sinkd|process|go)_[a-zA-Z0-9_]*[a-zA-Z0-9]\b|\bsinkd:[a-zA-Z0-9_:]+\b`)

// referencedMetrics lists every metric name the alerting rules, the
// dashboard and the operations docs mention, with where each one appears.
func referencedMetrics(t *testing.T) (names map[string][]string, recorded map[string]bool) {
	t.Helper()
	names = map[string][]string{}
	files := []string{
		filepath.Join(deployDir, "prometheus", "sinkd-rules.yaml"),
		filepath.Join(deployDir, "grafana", "sinkd-dashboard.json"),
		"../docs/operations.md",
		"../docs/scaling.md",
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range metricRef.FindAllString(string(raw), -1) {
			if strings.HasPrefix(n, "sinkd:v1:") {
				continue // a manifest reference (checkpoint.Ref), not a series
			}
			if !slices.Contains(names[n], f) {
				names[n] = append(names[n], f)
			}
		}
	}

	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Record string `yaml:"record"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	recorded = map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
		}
	}

	var dash any
	raw, err = os.ReadFile(files[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	return names, recorded
}

// TestDeployMetricsExported runs the real pipeline (the demo configuration,
// plus an OpenSearch destination on the strict OpenSearch fake and an S3 store
// on the same registry) on an embedded Kafka broker, and checks that every
// metric the rules, the dashboard and the docs use is on /metrics.
func TestDeployMetricsExported(t *testing.T) {
	names, recorded := referencedMetrics(t)
	if len(names) < 20 {
		t.Fatalf("found only %d metric names in the deployment files: is the pattern broken?", len(names))
	}

	const (
		events     = 400
		partitions = 4
		topic      = "taxi-trips"
	)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	// A share of 429 rejections makes the writer retry, as a busy cluster does.
	search := httptest.NewServer(osfake.New(osfake.WithSeed(7), osfake.WithFaults(osfake.Faults{ItemReject429: 0.2})))
	defer search.Close()
	addr := freeAddr(t)

	t.Setenv("SINKD_KAFKA_BROKERS", strings.Join(cluster.ListenAddrs(), ","))
	t.Setenv("SINKD_KAFKA_TOPIC", topic)
	t.Setenv("SINKD_DEMO_DIR", t.TempDir())
	t.Setenv("SINKD_HTTP_ADDR", addr)
	t.Setenv("SINKD_OPENSEARCH_URL", search.URL)
	cfg, err := config.Parse("demo.yaml", opsDemoConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.HTTP.Pprof = true
	cfg.HTTP.Admin.Addr = freeAddr(t)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if ps := produceTrips(ctx, t, cluster.ListenAddrs(), topic, partitions, 3, events, 0.1); ps.Bad == 0 {
		t.Fatal("the generator produced no bad events: dead-letter metrics would stay empty")
	}

	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, stop, done := startRun(ctx, t, cfg, log)

	base := "http://" + addr
	waitFor(ctx, t, "every event processed", func() bool {
		return p.Stats().Records >= events && p.Caught(ctx)
	})
	if code := httpStatus(ctx, t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while running: %d", code)
	}
	if code := httpStatus(ctx, t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz while running: %d", code)
	}
	if code := httpStatus(ctx, t, "http://"+cfg.HTTP.Admin.Addr+"/debug/pprof/cmdline"); code != http.StatusOK {
		t.Errorf("/debug/pprof/cmdline on the admin listener with http.pprof on: %d", code)
	}
	if code := httpStatus(ctx, t, base+"/debug/pprof/cmdline"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/cmdline on the metrics listener: %d, want 404", code)
	}

	// The demo writes to local files, so no S3 client runs. Open an S3 store
	// on the pipeline's registry, exactly as an s3:// destination does, and
	// make one call to a port nobody listens on: the store records duration,
	// retries and the error under its real names. Static credentials keep the
	// SDK from looking for an instance role first.
	t.Setenv("AWS_ACCESS_KEY_ID", "sinkd-ops-test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "sinkd-ops-test")
	s3, _, err := store.Open(ctx, "s3://sinkd-ops-test/x", config.S3{Endpoint: "http://" + freeAddr(t), PathStyle: true, Region: "us-east-1", RequestTimeout: config.Duration(4 * time.Second)}, store.WithMetrics(p.reg))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s3.Get(ctx, "probe"); err == nil {
		t.Fatal("an S3 call to a closed port succeeded")
	}

	// Everything has been processed: what is still missing after a few more
	// checkpoints and rolls is missing for good.
	scrapeCtx, cancelScrape := context.WithTimeout(ctx, 15*time.Second)
	defer cancelScrape()
	var missing []string
	waitFor(scrapeCtx, t, "every referenced metric on /metrics", func() bool {
		exported := scrapeFamilies(ctx, t, base+"/metrics") // a deadline mid-request would hide what is missing
		missing = missing[:0]
		for n, where := range names {
			if !isExported(n, exported, recorded) {
				missing = append(missing, fmt.Sprintf("%s (in %s)", n, strings.Join(where, ", ")))
			}
		}
		return len(missing) == 0
	}, func() string { slices.Sort(missing); return strings.Join(missing, "\n") })

	stop()
	if err := <-done; err != nil {
		t.Fatalf("drain: %v", err)
	}
}

// opsDemoConfig is the demo configuration with an OpenSearch destination on
// one route and quick inactivity rolls, so that every writer metric moves
// within seconds.
func opsDemoConfig(t *testing.T) []byte {
	t.Helper()
	cfg := string(examples.Demo)
	for old, repl := range map[string]string{
		"  - name: by-type\n": "  - name: by-type\n    opensearch:\n      url: ${SINKD_OPENSEARCH_URL}\n      index: trips-{type}\n      id: \"{trip_id}\"\n      flush_interval: 200ms\n",
		"inactivity: 10s":     "inactivity: 1s",
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("config/examples/demo.yaml no longer contains %q", old)
		}
		cfg = strings.ReplaceAll(cfg, old, repl)
	}
	return []byte(cfg)
}

// isExported reports whether a referenced name is a metric family on
// /metrics (histogram and summary series by their family), a recording rule,
// or up, which Prometheus itself records.
func isExported(name string, exported map[string]string, recorded map[string]bool) bool {
	if strings.Contains(name, ":") {
		return recorded[name]
	}
	if _, ok := exported[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if typ := exported[base]; typ == "histogram" || (typ == "summary" && suffix != "_bucket") {
				return true
			}
		}
	}
	return false
}

// scrapeFamilies returns the metric families on a /metrics page with their
// types, from the text format's TYPE lines.
func scrapeFamilies(ctx context.Context, t *testing.T, url string) map[string]string {
	t.Helper()
	body := httpGet(ctx, t, url)
	families := map[string]string{}
	for line := range strings.Lines(body) {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			families[f[2]] = f[3]
		}
	}
	if len(families) == 0 {
		t.Fatalf("%s has no metric families:\n%s", url, body)
	}
	return families
}

func httpGet(ctx context.Context, t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(body)
}

func httpStatus(ctx context.Context, t *testing.T, url string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitFor polls cond until it holds, failing with what detail says when ctx
// ends first.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool, detail ...func() string) {
	t.Helper()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			msg := ""
			for _, d := range detail {
				msg += "\n" + d()
			}
			t.Fatalf("timed out waiting for %s%s", what, msg)
		case <-tick.C:
		}
	}
}

// freeAddr returns a loopback address no one listens on at the moment.
// produceTrips writes n taxi trips of generator seed into topic (created
// with partitions if missing), badRatio of them broken, and says what it
// wrote.
func produceTrips(ctx context.Context, t *testing.T, brokers []string, topic string, partitions int32, seed int64, n int, badRatio float64) taxi.Stats {
	t.Helper()
	sink, err := taxi.NewKafkaSink(ctx, brokers, topic, partitions)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	stats, err := taxi.WriteTopic(ctx, sink, taxi.NewGenerator(seed, taxi.DefaultStart()), n, badRatio)
	if err != nil {
		t.Fatal(err)
	}
	return stats
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
