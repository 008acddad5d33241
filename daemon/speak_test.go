package daemon

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestUnreachableKafkaSpeaks: with no broker listening, `sinkd run` says what
// it waits for (the broker address, a hint) in its log, /readyz says the
// same, franz-go's own warnings arrive through slog as JSON, durations are
// text, and SIGTERM still drains and exits 0.
func TestUnreachableKafkaSpeaks(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "sinkd.yaml")
	demoConfigFile(t, cfgPath, "format: text", "format: json")
	dead := freeAddr(t)
	addr := freeAddr(t)
	p := startSinkd(t, []string{"SINKD_KAFKA_BROKERS=" + dead, "SINKD_DEMO_DIR=" + dir, "SINKD_HTTP_ADDR=" + addr}, "run", cfgPath)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	waitFor(ctx, t, "a log line saying what sinkd waits for", func() bool {
		s := p.stderr.String()
		return p.exited() || strings.Contains(s, "waiting for the source") && strings.Contains(s, dead)
	})
	if p.exited() {
		t.Fatalf("sinkd exited (%d) instead of waiting for Kafka", p.code)
	}
	log := p.stderr.String()
	for _, want := range []string{`"hint":"check that the brokers are reachable`, `"waiting":"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
	for line := range strings.Lines(log) {
		if !strings.HasPrefix(line, "{") {
			t.Errorf("a log line that is not JSON (a library writing on its own?): %q", line)
		}
	}
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "waiting for the source kafka "+dead) {
		t.Errorf("/readyz: %d %q", resp.StatusCode, body)
	}
	waitFor(ctx, t, "franz-go's warnings through slog", func() bool {
		return strings.Contains(p.stderr.String(), `"component":"kafka-client"`)
	})
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, 40*time.Second); code != 0 {
		t.Errorf("SIGTERM while waiting for Kafka: exit %d, want 0", code)
	}
}
