package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/config/examples"
)

// chromium runs headless Chromium with a fresh profile and the flags that
// keep it from talking to anything but the page.
func chromium(t *testing.T, args ...string) []byte {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: apt-get install -y chromium (make test installs it)")
	}
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir=" + t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
	}
	return out.Bytes()
}

// TestStatusPage runs the pipeline on an embedded broker with broken events,
// then checks /status, renders / in a real headless browser (DOM and
// screenshot), and checks that the admin actions are not on the status
// listener and need the token on their own.
func TestStatusPage(t *testing.T) {
	const events, partitions, topic = 400, 4, "status-trips"
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	addr, admin := freeAddr(t), freeAddr(t)
	t.Setenv("SINKD_KAFKA_BROKERS", strings.Join(cluster.ListenAddrs(), ","))
	t.Setenv("SINKD_KAFKA_TOPIC", topic)
	t.Setenv("SINKD_DEMO_DIR", t.TempDir())
	t.Setenv("SINKD_HTTP_ADDR", addr)
	cfg, err := config.Parse("demo.yaml", examples.Demo)
	if err != nil {
		t.Fatal(err)
	}
	cfg.HTTP.Admin = config.HTTPAdmin{Addr: admin, Token: "s3cret-token"}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	produceTrips(ctx, t, cluster.ListenAddrs(), topic, partitions, 5, events, 0.1)
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, stop, done := startRun(ctx, t, cfg, log)
	defer func() { stop(); <-done }()
	waitFor(ctx, t, "every event processed and checkpointed", func() bool {
		return p.Stats().Records >= events && p.Caught(ctx) && p.Stats().Checkpoints > 0
	})
	base := "http://" + addr

	var s Status
	if err := json.Unmarshal([]byte(httpGet(ctx, t, base+"/status")), &s); err != nil {
		t.Fatal(err)
	}
	if s.Pipeline != "demo" || s.State != "running" || len(s.Partitions) != partitions || s.Records < events {
		t.Errorf("status: pipeline %q, state %q, %d partitions, %d records", s.Pipeline, s.State, len(s.Partitions), s.Records)
	}
	for _, ps := range s.Partitions {
		if ps.Next == "" || ps.Stream != topic {
			t.Errorf("partition without a position: %+v", ps)
		}
	}
	if len(s.DeadLetters) == 0 || s.Checkpoints.LastSuccess.IsZero() {
		t.Errorf("dead letters %v, last checkpoint %v", s.DeadLetters, s.Checkpoints.LastSuccess)
	}
	raw := httpGet(ctx, t, base+"/status")
	if strings.Contains(raw, "s3cret-token") || !strings.Contains(raw, `"token": "(set)"`) {
		t.Error("the effective configuration in /status does not mask the admin token")
	}

	dom := string(chromium(t, "--dump-dom", base+"/"))
	for _, want := range []string{"sinkd · pipeline demo", `id="state">running<`, "<td>" + topic + "</td>", "malformed_json", "open files", "last success 20", "spool_budget: 2GiB", "interval: 1s", "budget: 128MiB"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered page lacks %q", want)
		}
	}
	if strings.Contains(dom, "s3cret-token") {
		t.Error("the page shows the admin token")
	}
	shot := filepath.Join(t.TempDir(), "status.png")
	if d := os.Getenv("SINKD_STATUS_SCREENSHOT"); d != "" {
		shot = d
	}
	chromium(t, "--screenshot="+shot, "--window-size=1200,1400", "--hide-scrollbars", base+"/")
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	colors := map[uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 7 {
		for x := b.Min.X; x < b.Max.X; x += 7 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colors[r>>8<<16|g>>8<<8|bl>>8] = true
		}
	}
	if b.Dx() != 1200 || len(colors) < 8 {
		t.Errorf("screenshot %v with %d colours: blank or not the page", b, len(colors))
	}

	// The admin actions are not on the status listener, and need the token.
	post := func(url, token string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(base+"/admin/pause", "s3cret-token"); code == http.StatusOK {
		t.Error("POST /admin/pause works on the metrics listener")
	}
	if code := post("http://"+admin+"/admin/pause", ""); code != http.StatusUnauthorized {
		t.Errorf("admin without the token: %d, want 401", code)
	}
	if code := post("http://"+admin+"/admin/pause", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("admin with a wrong token: %d, want 401", code)
	}
	if code := post("http://"+admin+"/admin/resume", "s3cret-token"); code != http.StatusOK {
		t.Errorf("admin with the token: %d, want 200", code)
	}
}
