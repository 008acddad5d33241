//go:build integration

package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	neturl "net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/scripts/stack/stackenv"
)

// openMinIO opens the stack's bucket with a small page size, so that every
// List and ListUploads below crosses page boundaries.
func openMinIO(t *testing.T, reg prometheus.Registerer) (Store, string) {
	t.Helper()
	env := stackenv.Load(t)
	env.Setenv(t)
	var run [6]byte
	rand.Read(run[:])
	url := fmt.Sprintf("s3://%s/store-test/%s-%s", env.S3Bucket, time.Now().UTC().Format("20060102T150405"), hex.EncodeToString(run[:]))
	s, prefix, err := Open(testContext(t), url, S3Config{
		Endpoint: env.S3Endpoint, Region: env.Region, PathStyle: true,
		RequestTimeout: conf.Duration(20 * time.Second),
	}, WithPageSize(2), WithMetrics(reg))
	if err != nil {
		t.Fatalf("Open(%s): %v", url, err)
	}
	t.Cleanup(func() { removeAll(t, s, prefix) })
	return s, prefix
}

// removeAll leaves the shared bucket as the test found it.
func removeAll(t *testing.T, s Store, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ups, err := s.ListUploads(ctx, prefix)
	if err != nil {
		t.Errorf("cleanup: %v", err)
	}
	for _, u := range ups {
		if err := s.AbortUpload(ctx, u.Key, u.UploadID); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	keys, err := s.List(ctx, prefix)
	if err != nil {
		t.Errorf("cleanup: %v", err)
	}
	for _, k := range keys {
		if err := s.Delete(ctx, k); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}

func TestS3StoreConformance(t *testing.T) {
	s, prefix := openMinIO(t, prometheus.NewRegistry())
	var n atomic.Int32
	runConformance(t, func(t *testing.T) (Store, string) {
		return s, fmt.Sprintf("%scase-%02d/", prefix, n.Add(1))
	})
}

// TestS3MultipartETagMatchesServer checks the ETag the idempotent complete
// compares against what MinIO itself reports, and that the metrics saw the calls.
func TestS3MultipartETagMatchesServer(t *testing.T) {
	reg := prometheus.NewRegistry()
	st, prefix := openMinIO(t, reg)
	s := st.(*s3Store)
	ctx := testContext(t)
	key := prefix + "etag.parquet"
	id, parts := upload(t, s, key, nil, payload(MinPartSize, 1), payload(MinPartSize, 2), payload(10, 3))
	for _, p := range parts {
		if p.ETag != contentETag(payload(int(p.Size), byte(p.Number))) {
			t.Errorf("part %d ETag %s is not the MD5 of its bytes", p.Number, p.ETag)
		}
	}
	if err := s.CompleteUpload(ctx, key, id, parts); err != nil {
		t.Fatal(err)
	}
	got, err := s.headETag(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	want, err := multipartETag(parts)
	if err != nil {
		t.Fatal(err)
	}
	if unquoteETag(got) != want {
		t.Fatalf("server ETag %s, computed %s", got, want)
	}
	if n := counterValue(t, s.metrics.errors.WithLabelValues("UploadPart")); n != 0 {
		t.Errorf("errors{UploadPart} = %v", n)
	}
	if n := seriesCount(t, reg, "sinkd_s3_request_duration_seconds"); n < 3 {
		t.Errorf("duration series = %d, want one per operation used", n)
	}
}

// TestS3CompleteWhoseObjectIsAlreadyInPlace is a complete retried while an
// earlier attempt, whose response was lost, still holds the parts: the
// server answers InvalidPart, and the complete succeeds when the object
// there is the one the parts make, and fails when it is another.
func TestS3CompleteWhoseObjectIsAlreadyInPlace(t *testing.T) {
	st, prefix := openMinIO(t, prometheus.NewRegistry())
	ctx := testContext(t)
	key := prefix + "raced.parquet"
	id, parts := upload(t, st, key, nil, payload(2000, 5))
	if err := st.CompleteUpload(ctx, key, id, parts); err != nil {
		t.Fatal(err)
	}
	// A second upload of the key that holds none of those parts stands
	// in for the one the earlier attempt is still consuming.
	empty, _ := upload(t, st, key, nil)
	t.Cleanup(func() { _ = st.AbortUpload(context.Background(), key, empty) })
	if err := st.CompleteUpload(ctx, key, empty, parts); err != nil {
		t.Fatalf("complete whose object is in place = %v, want success", err)
	}
	other := []Part{{Number: 1, ETag: contentETag(payload(2000, 6)), Size: 2000}}
	if err := st.CompleteUpload(ctx, key, empty, other); err == nil {
		t.Fatal("complete of parts that are not the object there succeeded")
	}
	mustGet(t, st, key, payload(2000, 5))
}

// TestS3ListPages checks that List follows continuation tokens: with two keys
// a page, seven keys take four requests and all come back.
func TestS3ListPages(t *testing.T) {
	reg := prometheus.NewRegistry()
	st, prefix := openMinIO(t, reg)
	s := st.(*s3Store)
	ctx := testContext(t)
	var want []string
	for i := range 7 {
		key := fmt.Sprintf("%spage/%d", prefix, i)
		if err := s.PutIfAbsent(ctx, key, nil); err != nil {
			t.Fatal(err)
		}
		want = append(want, key)
	}
	got, err := s.List(ctx, prefix+"page/")
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("List = %v, %v; want %v", got, err, want)
	}
	var m dto.Metric
	if err := s.metrics.duration.WithLabelValues("ListObjectsV2").(prometheus.Histogram).Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetHistogram().GetSampleCount(); n != 4 {
		t.Fatalf("ListObjectsV2 requests = %d, want 4 pages of at most 2", n)
	}
}

// TestS3KeepsAConnectionForEveryRequestInFlight: a second wave of as many
// requests as the writers may have in flight at once (S3Config's
// concurrencies) opens no new connection: the first wave's stay open. The
// HTTP client's default keeps ten, and every request beyond them paid a new
// TCP (and, against S3, TLS) handshake.
func TestS3KeepsAConnectionForEveryRequestInFlight(t *testing.T) {
	env := stackenv.Load(t)
	env.Setenv(t)
	endpoint, dials := countingProxy(t, env.S3Endpoint)
	cfg := S3Config{Endpoint: endpoint, Region: env.Region, PathStyle: true}
	cfg.SetDefaults()
	var run [6]byte
	rand.Read(run[:])
	url := fmt.Sprintf("s3://%s/store-test/conns-%s", env.S3Bucket, hex.EncodeToString(run[:]))
	st, prefix, err := Open(testContext(t), url, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeAll(t, st, prefix) })
	inFlight := idleConns(cfg)
	wave := func(n int) {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range inFlight {
			wg.Go(func() {
				<-start
				if _, err := st.CreateUpload(testContext(t), fmt.Sprintf("%sw%d-%03d", prefix, n, i), nil); err != nil {
					t.Error(err)
				}
			})
		}
		close(start)
		wg.Wait()
	}
	before := dials.Load()
	wave(1)
	first := dials.Load() - before
	wave(2)
	second := dials.Load() - before - first
	t.Logf("%d requests at once: %d connections opened in the first wave, %d in the second", inFlight, first, second)
	if first < 20 {
		t.Fatalf("the first wave opened %d connections: the requests did not run side by side", first)
	}
	if second > first/10 {
		t.Fatalf("the second wave opened %d new connections of %d", second, first)
	}
}

// countingProxy is a reverse proxy to target that counts the connections
// clients open to it; it returns its own endpoint URL. The Host header is
// kept, so SigV4 signatures still verify.
func countingProxy(t *testing.T, target string) (string, *atomic.Int64) {
	t.Helper()
	u, err := neturl.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(u))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL, &conns
}
