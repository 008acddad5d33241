package daemon

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestAWSSDKLogsThroughSlog: `sinkd run` with an S3 destination on a machine
// without AWS credentials reaches the instance metadata service last; the
// SDK's warning about it ("falling back to IMDSv1") arrives as a JSON log
// line with component aws-sdk instead of the SDK's own text on stderr. The
// metadata service is a loopback stand-in that refuses tokens (404), as one
// with IMDSv2 disabled would, and has no role.
func TestAWSSDKLogsThroughSlog(t *testing.T) {
	var asked atomic.Int64
	imds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		http.NotFound(w, r)
	}))
	defer imds.Close()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "sinkd.yaml")
	// Nothing answers at the S3 endpoint: credentials fail before any request.
	s3 := "http://" + freeAddr(t)
	demoConfigFile(t, cfgPath,
		"format: text", "format: json",
		"pipeline: demo", "pipeline: demo\ns3:\n  endpoint: "+s3+"\n  path_style: true",
		"destination: file://${SINKD_DEMO_DIR:-/tmp/sinkd-demo}/lake/by-location", "destination: s3://sinkd-awslog/by-location")
	p := startSinkd(t, []string{
		"SINKD_KAFKA_BROKERS=" + freeAddr(t), "SINKD_DEMO_DIR=" + dir, "SINKD_HTTP_ADDR=" + freeAddr(t),
		"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=", "AWS_PROFILE=",
		"AWS_CONFIG_FILE=" + filepath.Join(dir, "none"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "none"),
		"AWS_WEB_IDENTITY_TOKEN_FILE=", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=", "AWS_CONTAINER_CREDENTIALS_FULL_URI=",
		"AWS_EC2_METADATA_DISABLED=", "AWS_EC2_METADATA_SERVICE_ENDPOINT=" + imds.URL,
	}, "run", cfgPath)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	waitFor(ctx, t, "the SDK's IMDS warning in the log", func() bool {
		return p.exited() || strings.Contains(p.stderr.String(), "falling back to IMDSv1")
	})
	if asked.Load() == 0 {
		t.Fatal("the metadata service was never asked")
	}
	log := p.stderr.String()
	var found bool
	for line := range strings.Lines(log) {
		if !strings.HasPrefix(line, "{") {
			t.Errorf("a log line that is not JSON (a library writing on its own?): %q", line)
		}
		if strings.Contains(line, "falling back to IMDSv1") && strings.Contains(line, `"component":"aws-sdk"`) && strings.Contains(line, `"level":"WARN"`) {
			found = true
		}
	}
	if !found {
		t.Errorf("no aws-sdk warning line:\n%s", log)
	}
	if !p.exited() {
		p.signal(t, syscall.SIGTERM)
		p.wait(t, 60*time.Second)
	}
}
