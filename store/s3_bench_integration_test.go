//go:build integration

package store

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/scripts/stack/stackenv"
)

func openMinIOBench(b *testing.B) (Store, string) {
	env := stackenv.Load(b)
	for k, v := range env.Vars {
		b.Setenv(k, v)
	}
	url := fmt.Sprintf("s3://%s/store-bench/%d", env.S3Bucket, time.Now().UnixNano())
	s, prefix, err := Open(context.Background(), url, S3Config{
		Endpoint: env.S3Endpoint, Region: env.Region, PathStyle: true,
		RequestTimeout: conf.Duration(20 * time.Second),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx := context.Background()
		keys, _ := s.List(ctx, prefix)
		for _, k := range keys {
			_ = s.Delete(ctx, k)
		}
	})
	return s, prefix
}

// BenchmarkSmallFile is what the store costs a file smaller than one part:
// create its multipart upload, upload its one part (16 KiB, the size of a
// bucket's file in a short run with 2,000 buckets) and complete it. One op is
// one file; compare CPU time (-benchtime, with `time`), the server shares the
// machine.
func BenchmarkSmallFile(b *testing.B) {
	s, prefix := openMinIOBench(b)
	ctx := context.Background()
	body := make([]byte, 16<<10)
	for i := range body {
		body[i] = byte(i * 7)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		key := fmt.Sprintf("%sb=%d/f.parquet", prefix, i%50)
		id, err := s.CreateUpload(ctx, key, map[string]string{"sinkd-instance": "i", "sinkd-epoch": "e"})
		if err != nil {
			b.Fatal(err)
		}
		p, err := s.UploadPart(ctx, key, id, 1, body)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.CompleteUpload(ctx, key, id, []Part{p}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestS3SmallRequestsSigned runs the requests rawS3 sends itself against
// MinIO, which checks every signature, with keys that need escaping: a file
// is created, uploaded, completed and read back.
func TestS3SmallRequestsSigned(t *testing.T) {
	s, prefix := openMinIO(t, nil)
	if s.(*s3Store).raw == nil {
		t.Fatal("the stack's MinIO endpoint does not take the direct path")
	}
	ctx := testContext(t)
	for _, name := range []string{"plain.parquet", "a b/ü+%&=;,$@!'()*~.parquet", "x=1/y=ä ö/z.parquet"} {
		key := prefix + name
		id, err := s.CreateUpload(ctx, key, map[string]string{"sinkd-instance": "i-1"})
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		body := []byte("body of " + name)
		p, err := s.UploadPart(ctx, key, id, 1, body)
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		if err := s.CompleteUpload(ctx, key, id, []Part{p}); err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		got, err := s.Get(ctx, key)
		if err != nil || string(got) != string(body) {
			t.Fatalf("%q read back %q, %v", name, got, err)
		}
		meta, err := s.(*s3Store).metadata(ctx, key)
		if err != nil || meta["Sinkd-Instance"]+meta["sinkd-instance"] != "i-1" {
			t.Fatalf("%q metadata %v, %v", name, meta, err)
		}
	}
}

// BenchmarkSmallFilesAt64 is the server's side of a drain of many small
// files: 64 files at a time (s3.complete_concurrency), each a create, one
// 40 KiB part (the average file of benchmark (e)) and a complete. It
// reports files/s and requests/s: a drain of N such files cannot finish
// sooner than N / files/s, whatever sinkd does.
func BenchmarkSmallFilesAt64(b *testing.B) {
	s, prefix := openMinIOBench(b)
	ctx := context.Background()
	body := make([]byte, 40<<10)
	for i := range body {
		body[i] = byte(i * 7)
	}
	var n atomic.Int64
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			key := fmt.Sprintf("%sp/%08d.parquet", prefix, n.Add(1))
			id, err := s.CreateUpload(ctx, key, nil)
			if err != nil {
				b.Error(err)
				return
			}
			p, err := s.UploadPart(ctx, key, id, 1, body)
			if err != nil {
				b.Error(err)
				return
			}
			if err := s.CompleteUpload(ctx, key, id, []Part{p}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	files := float64(n.Load()) / time.Since(start).Seconds()
	b.ReportMetric(files, "files/s")
	b.ReportMetric(3*files, "requests/s")
}
