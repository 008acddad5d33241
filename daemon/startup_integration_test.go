//go:build integration

package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sinkd/sinkd/scripts/stack/stackenv"
	"github.com/sinkd/sinkd/writers/opensearch/osfake"
)

// notifySocket stands in for systemd's notify socket: it records every
// datagram `sinkd run` sends (READY=1, STATUS=...).
type notifySocket struct {
	path string
	mu   sync.Mutex
	msgs []string
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	dir, err := os.MkdirTemp("", "sd") // unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &notifySocket{path: filepath.Join(dir, "notify")}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 64<<10)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	return n
}

func (n *notifySocket) all() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.msgs, "\n")
}

// proxyTo forwards connections on addr to target from now on: a dependency
// that comes back.
func proxyTo(t *testing.T, addr, target string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.DialTimeout("tcp", target, 5*time.Second)
				if err != nil {
					return
				}
				defer u.Close()
				go io.Copy(u, c)
				io.Copy(c, u)
			}()
		}
	}()
}

// startupConfig is an example configuration with its S3 prefixes, pipeline,
// group and topics made unique, so that a pipeline that does start touches
// nothing another test uses; extra replacements follow (old, new, ...).
func startupConfig(t *testing.T, example, tag string, replace ...string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "config", "examples", example))
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimSuffix(example, ".yaml")
	s := strings.ReplaceAll(string(raw), "/"+name+"/", "/"+tag+"/")
	s = strings.Replace(s, "pipeline: "+name, "pipeline: "+tag, 1)
	s = strings.Replace(s, "group: sinkd-"+name, "group: "+tag, 1)
	s = strings.Replace(s, "lease_table: sinkd-"+name+"-leases", "lease_table: "+tag, 1)
	for i := 0; i+1 < len(replace); i += 2 {
		if !strings.Contains(s, replace[i]) {
			t.Fatalf("%s no longer contains %q", example, replace[i])
		}
		s = strings.Replace(s, replace[i], replace[i+1], 1)
	}
	path := filepath.Join(t.TempDir(), "sinkd.yaml")
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func readyz(addr string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestStartupDependencyDown: with S3, OpenSearch or the DynamoDB lease table
// not answering at start (a closed port: the shared servers stay up), `sinkd
// run` neither exits nor falls silent. It logs what does not answer, where,
// and what to check; /readyz answers 503 saying the same; systemd gets a
// STATUS= line and no READY=1; it is still waiting well after the point
// where it used to give up (OpenSearch 15 s, DynamoDB at once); SIGTERM
// exits 0 at once. For S3 the endpoint then comes back (a proxy to MinIO
// opens on the port): sinkd says so, starts the pipeline and sends READY=1.
func TestStartupDependencyDown(t *testing.T) {
	env := stackenv.Load(t)
	minio, err := url.Parse(env.S3Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, example, envKey string
		what                  string // the start of how the log and /readyz name it
		hint                  string
		hold                  time.Duration // still waiting this long after the start: where it used to give up, and more
		comesBack             string        // host:port the dead address then forwards to
	}{
		{"s3", "taxi-kafka.yaml", "SINKD_S3_ENDPOINT", "s3 bucket " + env.S3Bucket + " at http://", "check that s3.endpoint is reachable", 10 * time.Second, minio.Host},
		{"opensearch", "taxi-kafka.yaml", "SINKD_OPENSEARCH_URL", "opensearch http://", "check that the cluster is up and reachable", 33 * time.Second, ""},
		{"dynamodb", "taxi-kinesis.yaml", "SINKD_DYNAMODB_ENDPOINT", "dynamodb lease table " + "ops-startup-dynamodb-", "check that source.kinesis.dynamodb_endpoint", 5 * time.Second, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tag := fmt.Sprintf("ops-startup-%s-%d", tt.name, time.Now().UnixNano())
			cfg := startupConfig(t, tt.example, tag)
			dead, addr := freeAddr(t), freeAddr(t)
			sd := newNotifySocket(t)
			begin := time.Now()
			p := startSinkd(t, []string{
				"NOTIFY_SOCKET=" + sd.path, "SINKD_HTTP_ADDR=" + addr,
				"SINKD_S3_ENDPOINT=" + env.S3Endpoint, "SINKD_S3_BUCKET=" + env.S3Bucket,
				"SINKD_KAFKA_BROKERS=" + env.KafkaBrokers, "SINKD_KAFKA_TOPIC=" + tag, "SINKD_DLQ_TOPIC=" + tag + "-dlq",
				"SINKD_KINESIS_ENDPOINT=" + env.KinesisEndpoint, "SINKD_KINESIS_STREAM=" + tag, "SINKD_DLQ_STREAM=" + tag + "-dlq",
				"SINKD_DYNAMODB_ENDPOINT=" + env.DynamoDBEndpoint,
				"AWS_ACCESS_KEY_ID=" + env.AccessKey, "AWS_SECRET_ACCESS_KEY=" + env.SecretKey, "AWS_REGION=" + env.Region,
				tt.envKey + "=http://" + dead, // last: it wins
			}, "run", cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			waitFor(ctx, t, "a warning saying what sinkd waits for", func() bool {
				return p.exited() || strings.Contains(p.stderr.String(), `"msg":"waiting for `+tt.what)
			})
			if p.exited() {
				t.Fatalf("sinkd exited (%d) instead of waiting", p.code)
			}
			log := p.stderr.String()
			for _, want := range []string{dead, `"hint":"` + tt.hint, `"waiting":"`} {
				if !strings.Contains(log, want) {
					t.Errorf("the log lacks %q:\n%s", want, log)
				}
			}
			waitFor(ctx, t, "/readyz saying what sinkd waits for", func() bool {
				code, body := readyz(addr)
				return code == http.StatusServiceUnavailable && strings.Contains(body, "waiting for "+tt.what) && strings.Contains(body, dead)
			}, func() string { code, body := readyz(addr); return fmt.Sprintf("%d %q", code, body) })
			var st Status
			if err := json.Unmarshal([]byte(httpGet(ctx, t, "http://"+addr+"/status")), &st); err != nil {
				t.Fatalf("/status while waiting: %v", err)
			}
			if !strings.Contains(st.State, "waiting for "+tt.what) || st.Pipeline != tag || st.Config == nil {
				t.Errorf("/status while waiting: state %q, pipeline %q, config %v", st.State, st.Pipeline, st.Config != nil)
			}
			waitFor(ctx, t, "systemd's STATUS= saying what sinkd waits for", func() bool {
				return strings.Contains(sd.all(), "STATUS=waiting for "+tt.what)
			}, sd.all)
			time.Sleep(time.Until(begin.Add(tt.hold)))
			if p.exited() {
				t.Fatalf("sinkd gave up after %s (exit %d)", time.Since(begin).Round(time.Second), p.code)
			}
			// Retried every few seconds, logged at once and then every 30 s.
			if warned, want := strings.Count(p.stderr.String(), `"msg":"waiting for `+tt.what), 1+int(tt.hold/(30*time.Second)); warned != want {
				t.Errorf("%d warnings in %s, want %d (one at once, then one every 30 s)", warned, tt.hold, want)
			}
			if strings.Contains(sd.all(), "READY=1") {
				t.Fatalf("READY=1 sent while a dependency does not answer:\n%s", sd.all())
			}
			if code, _ := readyz(addr); code != http.StatusServiceUnavailable {
				t.Errorf("/readyz %d while waiting", code)
			}
			if tt.comesBack != "" {
				proxyTo(t, dead, tt.comesBack)
				waitFor(ctx, t, "sinkd noticing the dependency is back", func() bool {
					return p.exited() || strings.Contains(p.stderr.String(), `"msg":"the dependency answers"`)
				})
				waitFor(ctx, t, "READY=1 once every dependency and the source answer", func() bool {
					return p.exited() || strings.Contains(sd.all(), "READY=1")
				}, sd.all)
				if code, body := readyz(addr); code != http.StatusOK {
					t.Errorf("/readyz after the dependency came back: %d %q", code, body)
				}
			}
			p.signal(t, syscall.SIGTERM)
			if code := p.wait(t, 40*time.Second); code != 0 {
				t.Errorf("SIGTERM: exit %d, want 0", code)
			}
		})
	}
}

// TestStartupCannotWork: where waiting cannot help, `sinkd run` exits at
// once with 78 (systemd does not restart it) and says what is wrong and what
// to do: S3 rejects the credentials, the bucket does not exist, OpenSearch
// rejects the password. (dynalite accepts any credentials, so DynamoDB's
// rejection is not tested here.)
func TestStartupCannotWork(t *testing.T) {
	env := stackenv.Load(t)
	cluster := httptest.NewServer(osfake.New(osfake.WithBasicAuth("sinkd", "right")))
	defer cluster.Close()
	for _, tt := range []struct {
		name    string
		env     []string
		replace []string
		want    []string
	}{
		{"s3 wrong secret", []string{"AWS_SECRET_ACCESS_KEY=wrong-" + env.SecretKey}, nil,
			[]string{"cannot start: s3 bucket " + env.S3Bucket, "SignatureDoesNotMatch", "rejects the credentials", "AWS_SECRET_ACCESS_KEY"}},
		{"s3 unknown key", []string{"AWS_ACCESS_KEY_ID=nobody"}, nil,
			[]string{"cannot start: s3 bucket " + env.S3Bucket, "InvalidAccessKeyId", "rejects the credentials"}},
		{"s3 no such bucket", []string{"SINKD_S3_BUCKET=ops-no-such-bucket"}, nil,
			[]string{"cannot start: s3 bucket ops-no-such-bucket", "NoSuchBucket", "create it"}},
		{"opensearch wrong password", []string{"SINKD_OPENSEARCH_URL=" + cluster.URL},
			[]string{"url: ${SINKD_OPENSEARCH_URL:-}", "url: ${SINKD_OPENSEARCH_URL:-}\n      username: sinkd\n      password: wrong"},
			[]string{"cannot start: opensearch " + cluster.URL, "HTTP 401", "opensearch.password"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tag := fmt.Sprintf("ops-startup-fatal-%d", time.Now().UnixNano())
			cfg := startupConfig(t, "taxi-kafka.yaml", tag, tt.replace...)
			sd := newNotifySocket(t)
			p := startSinkd(t, append([]string{
				"NOTIFY_SOCKET=" + sd.path, "SINKD_HTTP_ADDR=" + freeAddr(t),
				"SINKD_S3_ENDPOINT=" + env.S3Endpoint, "SINKD_S3_BUCKET=" + env.S3Bucket,
				"SINKD_KAFKA_BROKERS=" + env.KafkaBrokers, "SINKD_KAFKA_TOPIC=" + tag, "SINKD_DLQ_TOPIC=" + tag + "-dlq",
				"AWS_ACCESS_KEY_ID=" + env.AccessKey, "AWS_SECRET_ACCESS_KEY=" + env.SecretKey, "AWS_REGION=" + env.Region,
			}, tt.env...), "run", cfg)
			if code := p.wait(t, 30*time.Second); code != 78 {
				t.Errorf("exit %d, want 78", code)
			}
			log := p.stderr.String()
			for _, want := range tt.want {
				if !strings.Contains(log, want) {
					t.Errorf("the log lacks %q:\n%s", want, log)
				}
			}
			if strings.Contains(sd.all(), "READY=1") || !strings.Contains(sd.all(), "STATUS=cannot start: ") {
				t.Errorf("systemd notifications:\n%s", sd.all())
			}
		})
	}
}
