package store

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sinkd/sinkd/config/conf"
)

// TestS3SmallRequestsOnTheWire checks what the requests sent without the SDK
// do with answers MinIO does not give: a part upload answered 503 SlowDown
// is retried (and counted), a CompleteMultipartUpload answered 200 with an
// <Error> body fails, and a part upload to a vanished upload is ErrNotFound.
func TestS3SmallRequestsOnTheWire(t *testing.T) {
	fakeCredentials(t)
	var mu sync.Mutex
	partAnswers := []int{http.StatusServiceUnavailable, http.StatusOK, http.StatusNotFound}
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		paths = append(paths, r.Method+" "+r.URL.EscapedPath()+"?"+r.URL.RawQuery)
		if !strings.Contains(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256") {
			http.Error(w, "unsigned", http.StatusForbidden)
			return
		}
		switch {
		case r.Method == http.MethodPut && r.URL.Query().Get("partNumber") == "1":
			status := partAnswers[0]
			partAnswers = partAnswers[1:]
			switch status {
			case http.StatusOK:
				w.Header().Set("ETag", `"e1"`)
			case http.StatusServiceUnavailable:
				w.WriteHeader(status)
				w.Write([]byte(`<Error><Code>SlowDown</Code><Message>m</Message></Error>`))
			default:
				w.WriteHeader(status)
				w.Write([]byte(`<Error><Code>NoSuchUpload</Code><Message>gone</Message></Error>`))
			}
		case r.Method == http.MethodPost && r.URL.Query().Get("uploadId") == "u-1":
			if !strings.Contains(string(body), `<Part><ETag>&#34;e1&#34;</ETag><PartNumber>1</PartNumber></Part>`) {
				http.Error(w, "bad body "+string(body), http.StatusBadRequest)
				return
			}
			w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<Error><Code>InvalidPart</Code><Message>no such part</Message></Error>`))
		default:
			http.Error(w, "unexpected", http.StatusBadRequest)
		}
	}))
	t.Cleanup(srv.Close)
	reg := prometheus.NewRegistry()
	s, _, err := Open(context.Background(), "s3://b", S3Config{
		Endpoint: srv.URL, PathStyle: true, RequestTimeout: conf.Duration(20 * time.Second),
	}, WithMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	if s.(*s3Store).raw == nil {
		t.Fatal("a plain endpoint does not take the direct path")
	}
	ctx := testContext(t)
	p, err := s.UploadPart(ctx, "d=1/a b.parquet", "u-1", 1, []byte("x"))
	if err != nil || p.ETag != `"e1"` {
		t.Fatalf("UploadPart after a 503 = %+v, %v", p, err)
	}
	if got := counterValue(t, s.(*s3Store).metrics.retries.WithLabelValues("UploadPart")); got != 1 {
		t.Errorf("retries{UploadPart} = %v, want 1", got)
	}
	err = s.CompleteUpload(ctx, "d=1/a b.parquet", "u-1", []Part{p})
	if err == nil || apiCode(err) != "InvalidPart" {
		t.Errorf("CompleteUpload answered 200 with an error body = %v, want InvalidPart", err)
	}
	if _, err := s.UploadPart(ctx, "d=1/a b.parquet", "u-1", 1, []byte("x")); !errors.Is(err, ErrNotFound) {
		t.Errorf("UploadPart to a vanished upload = %v, want ErrNotFound", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.HasPrefix(paths[0], "PUT /b/d%3D1/a%20b.parquet?partNumber=1&uploadId=u-1") {
		t.Errorf("first request %q", paths[0])
	}
}

func TestUploadID(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket><Key>k</Key><UploadId>VXBsb2FkIElE-1</UploadId></InitiateMultipartUploadResult>`, "VXBsb2FkIElE-1"},
		{`<InitiateMultipartUploadResult><UploadId>a&amp;b</UploadId></InitiateMultipartUploadResult>`, "a&b"},
		{`<InitiateMultipartUploadResult><UploadId></UploadId></InitiateMultipartUploadResult>`, ""},
		{`<Other/>`, ""},
	} {
		got, err := uploadID([]byte(c.body))
		if got != c.want || (err != nil) != (c.want == "") {
			t.Errorf("uploadID(%s) = %q, %v; want %q", c.body, got, err, c.want)
		}
	}
}
