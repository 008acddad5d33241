package store

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sinkd/sinkd/config/conf"
)

// fakeCredentials keeps the SDK's default chain on the environment, so that no
// test reaches for an instance-metadata endpoint.
func fakeCredentials(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testsecret")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
}

func TestOpenURL(t *testing.T) {
	fakeCredentials(t)
	dir := t.TempDir()
	tests := []struct {
		url        string
		wantS3     bool
		wantPrefix string
		wantErr    bool
	}{
		{url: "s3://bucket", wantS3: true},
		{url: "s3://bucket/", wantS3: true},
		{url: "s3://bucket/archive", wantS3: true, wantPrefix: "archive/"},
		{url: "s3://bucket/archive/taxi/", wantS3: true, wantPrefix: "archive/taxi/"},
		{url: "file://" + dir},
		{url: "file://localhost" + dir},
		{url: "s3:///prefix", wantErr: true},
		{url: "file://relative/dir", wantErr: true},
		{url: "file:relative", wantErr: true},
		{url: "gs://bucket/x", wantErr: true},
		{url: "/just/a/path", wantErr: true},
	}
	for _, tt := range tests {
		s, prefix, err := Open(context.Background(), tt.url, S3Config{})
		if (err != nil) != tt.wantErr {
			t.Errorf("Open(%q) error = %v, want error %v", tt.url, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if _, isS3 := s.(*s3Store); isS3 != tt.wantS3 || prefix != tt.wantPrefix {
			t.Errorf("Open(%q) = %T, %q; want s3 %v, %q", tt.url, s, prefix, tt.wantS3, tt.wantPrefix)
		}
	}
}

func TestOpenRejectsBadEncryption(t *testing.T) {
	fakeCredentials(t)
	for _, cfg := range []S3Config{{SSE: "rot13"}, {SSE: "AES256", KMSKeyID: "k"}, {KMSKeyID: "k"}} {
		if _, _, err := Open(context.Background(), "s3://b", cfg); err == nil {
			t.Errorf("Open with %+v succeeded", cfg)
		}
	}
}

// TestS3RequestTimeout points a store at a server that accepts connections and
// never answers: every call must give up within the request timeout.
func TestS3RequestTimeout(t *testing.T) {
	fakeCredentials(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})

	reg := prometheus.NewRegistry()
	const timeout = 300 * time.Millisecond
	s, _, err := Open(context.Background(), "s3://bucket", S3Config{
		Endpoint: "http://" + ln.Addr().String(), PathStyle: true, RequestTimeout: conf.Duration(timeout),
	}, WithMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	calls := []struct {
		op  string
		run func(ctx context.Context) error
	}{
		{"GetObject", func(ctx context.Context) error { _, err := s.Get(ctx, "k"); return err }},
		{"PutObject", func(ctx context.Context) error { return s.PutIfAbsent(ctx, "k", []byte("x")) }},
		{"CreateMultipartUpload", func(ctx context.Context) error { _, err := s.CreateUpload(ctx, "k", nil); return err }},
		{"UploadPart", func(ctx context.Context) error { _, err := s.UploadPart(ctx, "k", "u", 1, []byte("x")); return err }},
		{"CompleteMultipartUpload", func(ctx context.Context) error {
			return s.CompleteUpload(ctx, "k", "u", []Part{{Number: 1, ETag: `"0123456789abcdef0123456789abcdef"`}})
		}},
		{"ListObjectsV2", func(ctx context.Context) error { _, err := s.List(ctx, ""); return err }},
	}
	for _, c := range calls {
		start := time.Now()
		err := c.run(context.Background())
		elapsed := time.Since(start)
		if err == nil {
			t.Errorf("%s against a silent server succeeded", c.op)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s error = %v, want a deadline", c.op, err)
		}
		if elapsed > timeout+time.Second {
			t.Errorf("%s took %v with a %v timeout", c.op, elapsed, timeout)
		}
		if got := counterValue(t, s.(*s3Store).metrics.errors.WithLabelValues(c.op)); got != 1 {
			t.Errorf("sinkd_s3_request_errors_total{operation=%q} = %v, want 1", c.op, got)
		}
	}
}

// TestS3RequestOptions checks on the wire what MinIO cannot show: encryption
// and storage class headers, user metadata, the conditional write and its
// answers, and the retry counter.
func TestS3RequestOptions(t *testing.T) {
	fakeCredentials(t)
	var mu sync.Mutex
	seen := map[string]http.Header{}
	putAnswers := []int{http.StatusServiceUnavailable, http.StatusOK, http.StatusPreconditionFailed}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == http.MethodPost && r.URL.Query().Has("uploads"):
			seen["create"] = r.Header.Clone()
			w.Header().Set("Content-Type", "application/xml")
			w.Write([]byte(`<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>u-1</UploadId></InitiateMultipartUploadResult>`))
		case r.Method == http.MethodPut:
			seen["put"] = r.Header.Clone()
			status := putAnswers[0]
			putAnswers = putAnswers[1:]
			if status != http.StatusOK {
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(status)
				code := map[int]string{503: "SlowDown", 412: "PreconditionFailed"}[status]
				w.Write([]byte(`<Error><Code>` + code + `</Code><Message>m</Message></Error>`))
				return
			}
			w.Header().Set("ETag", `"x"`)
		default:
			http.Error(w, "unexpected "+r.Method+" "+r.URL.String(), http.StatusBadRequest)
		}
	}))
	t.Cleanup(srv.Close)

	reg := prometheus.NewRegistry()
	cfg := S3Config{
		Endpoint: srv.URL, PathStyle: true, SSE: "aws:kms", KMSKeyID: "key-1", StorageClass: "STANDARD_IA",
		RequestTimeout: conf.Duration(10 * time.Second),
	}
	s, _, err := Open(context.Background(), "s3://b", cfg, WithMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	// A second store on the same registerer shares the metric vectors.
	if _, _, err := Open(context.Background(), "s3://b", cfg, WithMetrics(reg)); err != nil {
		t.Fatalf("second Open on the same registerer: %v", err)
	}
	ctx := testContext(t)
	id, err := s.CreateUpload(ctx, "k", map[string]string{"instance": "i-1"})
	if err != nil || id != "u-1" {
		t.Fatalf("CreateUpload = %q, %v", id, err)
	}
	if err := s.PutIfAbsent(ctx, "k", []byte("body")); err != nil {
		t.Fatalf("PutIfAbsent after a 503: %v", err)
	}
	if err := s.PutIfAbsent(ctx, "k", []byte("body")); !errors.Is(err, ErrExists) {
		t.Fatalf("PutIfAbsent answered 412 = %v, want ErrExists", err)
	}

	mu.Lock()
	defer mu.Unlock()
	for _, name := range []string{"create", "put"} {
		h := seen[name]
		for header, want := range map[string]string{
			"X-Amz-Server-Side-Encryption":                "aws:kms",
			"X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id": "key-1",
			"X-Amz-Storage-Class":                         "STANDARD_IA",
		} {
			if got := h.Get(header); got != want {
				t.Errorf("%s: %s = %q, want %q", name, header, got, want)
			}
		}
	}
	if got := seen["create"].Get("X-Amz-Meta-Instance"); got != "i-1" {
		t.Errorf("create: X-Amz-Meta-Instance = %q", got)
	}
	if got := seen["put"].Get("If-None-Match"); got != "*" {
		t.Errorf("put: If-None-Match = %q, want *", got)
	}
	if got := seen["put"].Get("Content-Md5"); got == "" {
		t.Error("put: no Content-MD5")
	}
	m := s.(*s3Store).metrics
	if got := counterValue(t, m.retries.WithLabelValues("PutObject")); got != 1 {
		t.Errorf("retries{PutObject} = %v, want 1", got)
	}
	// The 412 is an answer, the 503 was retried away: no errors.
	if got := counterValue(t, m.errors.WithLabelValues("PutObject")); got != 0 {
		t.Errorf("errors{PutObject} = %v, want 0", got)
	}
	if got := seriesCount(t, reg, "sinkd_s3_request_duration_seconds"); got != 2 {
		t.Errorf("duration series = %d, want 2 (CreateMultipartUpload, PutObject)", got)
	}
	if !strings.Contains(seen["put"].Get("Authorization"), "AWS4-HMAC-SHA256") {
		t.Error("put was not signed")
	}
}

func TestMultipartETag(t *testing.T) {
	// The MD5 of the empty string is well known; a one-part upload of nothing
	// has the MD5 of that digest.
	empty := contentETag(nil)
	if empty != `"d41d8cd98f00b204e9800998ecf8427e"` {
		t.Fatalf("contentETag(nil) = %s", empty)
	}
	one, err := multipartETag([]Part{{Number: 1, ETag: empty}})
	if err != nil {
		t.Fatal(err)
	}
	two, err := multipartETag([]Part{{Number: 1, ETag: empty}, {Number: 2, ETag: unquoteETag(empty)}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(one, "-1") || !strings.HasSuffix(two, "-2") || strings.TrimSuffix(one, "-1") == strings.TrimSuffix(two, "-2") {
		t.Fatalf("multipartETag = %s, %s", one, two)
	}
	if _, err := multipartETag([]Part{{Number: 1, ETag: `"not-hex"`}}); err == nil {
		t.Fatal("multipartETag accepted a non-hex ETag")
	}
}

func TestCheckParts(t *testing.T) {
	tests := []struct {
		numbers []int32
		ok      bool
	}{
		{[]int32{1}, true},
		{[]int32{1, 2, 5}, true},
		{nil, false},
		{[]int32{0}, false},
		{[]int32{10001}, false},
		{[]int32{2, 1}, false},
		{[]int32{1, 1}, false},
	}
	for _, tt := range tests {
		var parts []Part
		for _, n := range tt.numbers {
			parts = append(parts, Part{Number: n, ETag: contentETag(nil)})
		}
		if err := checkParts(parts); (err == nil) != tt.ok {
			t.Errorf("checkParts(%v) = %v, want ok=%v", tt.numbers, err, tt.ok)
		}
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func seriesCount(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return len(f.GetMetric())
		}
	}
	return 0
}
