package awsconf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/smithy-go/logging"
)

// isolate empties the SDK's inputs from the environment and shared files.
func isolate(t *testing.T) {
	t.Helper()
	for _, k := range []string{"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID",
		"AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_SESSION_TOKEN",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_EC2_METADATA_DISABLED", "AWS_EC2_METADATA_SERVICE_ENDPOINT"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
}

func TestLoadRegion(t *testing.T) {
	isolate(t)
	for _, c := range []struct {
		name string
		o    Options
		want string
		err  error
	}{
		{"configured", Options{Region: "eu-west-1"}, "eu-west-1", nil},
		{"default when none", Options{DefaultRegion: EmulatorRegion}, EmulatorRegion, nil},
		{"configured wins over the default", Options{Region: "eu-west-1", DefaultRegion: EmulatorRegion}, "eu-west-1", nil},
		{"AWS without one", Options{}, "", ErrNoRegion},
		{"credentials only", Options{CredentialsOnly: true}, "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Load(context.Background(), c.o)
			if !errors.Is(err, c.err) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			if cfg.Region != c.want {
				t.Fatalf("region = %q, want %q", cfg.Region, c.want)
			}
		})
	}
}

func TestLoggerLevels(t *testing.T) {
	for _, c := range []struct {
		name  string
		class logging.Classification
		min   slog.Level
		want  string // level logged, "" for none
	}{
		{"warn at info", logging.Warn, slog.LevelInfo, "WARN"},
		{"debug hidden at info", logging.Debug, slog.LevelInfo, ""},
		{"debug at debug", logging.Debug, slog.LevelDebug, "DEBUG"},
		{"unknown class is debug", logging.Classification("TRACE"), slog.LevelDebug, "DEBUG"},
		{"warn hidden at error", logging.Warn, slog.LevelError, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := NewLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: c.min})))
			l.Logf(c.class, "retrying %s after %d attempts", "GetRecords", 2)
			if c.want == "" {
				if buf.Len() != 0 {
					t.Fatalf("logged %q, want nothing", buf.String())
				}
				return
			}
			var line map[string]any
			if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
				t.Fatalf("not one JSON line: %q: %v", buf.String(), err)
			}
			if line["level"] != c.want || line["component"] != "aws-sdk" || line["msg"] != "retrying GetRecords after 2 attempts" {
				t.Fatalf("logged %v", line)
			}
		})
	}
}

// fakeIMDS answers like a host whose metadata service refuses IMDSv2 tokens
// (404) and has no instance role, and counts what it was asked.
func fakeIMDS(t *testing.T) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", srv.URL)
	return &n
}

// Without credentials the chain ends at IMDS, whose fallback warning must
// reach slog as a structured line, not the SDK's default stderr logger.
func TestIMDSWarningGoesToSlog(t *testing.T) {
	isolate(t)
	asked := fakeIMDS(t)
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	cfg, err := Load(context.Background(), Options{Region: "eu-west-1", Timeout: 5 * time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cfg.Credentials.Retrieve(ctx); err == nil {
		t.Fatal("credentials retrieved from a metadata service that has none")
	}
	if asked.Load() == 0 {
		t.Fatal("IMDS was not asked although nothing else names credentials")
	}
	var found bool
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var line map[string]any
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		if line["component"] == "aws-sdk" && line["level"] == "WARN" && strings.Contains(line["msg"].(string), "falling back to IMDSv1") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no aws-sdk warning about the IMDSv1 fallback in %q", buf.String())
	}
}

// With keys in the environment or a profile that holds them, IMDS is never
// asked, whatever the client.
func TestGivenCredentialsSkipIMDS(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(t *testing.T)
	}{
		{"environment keys", func(t *testing.T) {
			t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
			t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
		}},
		{"named profile", func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "credentials")
			body := "[sinkd-test]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = secret\n"
			if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv("AWS_SHARED_CREDENTIALS_FILE", f)
			t.Setenv("AWS_PROFILE", "sinkd-test")
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			isolate(t)
			asked := fakeIMDS(t)
			c.setup(t)
			cfg, err := Load(context.Background(), Options{DefaultRegion: EmulatorRegion, Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			creds, err := cfg.Credentials.Retrieve(context.Background())
			if err != nil || creds.AccessKeyID != "AKIDEXAMPLE" {
				t.Fatalf("credentials %q, %v", creds.AccessKeyID, err)
			}
			if n := asked.Load(); n != 0 {
				t.Fatalf("IMDS asked %d times although credentials were given", n)
			}
		})
	}
}
