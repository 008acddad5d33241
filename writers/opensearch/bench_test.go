package opensearch

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sinkd/sinkd/writers/opensearch/osfake"
)

// BenchmarkWriteDoc is the writer's cost per document at the shipped
// defaults: the action line and the copy into the batch's body, the _bulk
// request, reading and settling the answer. Index and id arrive rendered
// (the route's rendering is in daemon's BenchmarkOpenSearchDoc). cpu-ns/doc
// is the process's user plus system CPU per document, the cluster's included:
// against "stub", a server that only counts lines and answers every item
// created (its cost is small and constant), that is the writer's own cost
// with loopback HTTP; against "osfake", the fake of benchmark (b), the two
// together.
func BenchmarkWriteDoc(b *testing.B) {
	for _, bc := range []struct {
		name    string
		handler http.Handler
	}{
		{"stub", http.HandlerFunc(osfake.Stub)},
		{"osfake", osfake.New()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := httptest.NewServer(bc.handler)
			defer srv.Close()
			cfg := Config{URL: srv.URL}
			cfg.SetDefaults(false)
			w, err := New(context.Background(), cfg, func(context.Context, Doc, int, string, string) error {
				return io.ErrUnexpectedEOF // no document may be dead-lettered
			}, WithMetrics(prometheus.NewRegistry()), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if err := w.Start(ctx); err != nil {
				b.Fatal(err)
			}
			defer w.Close(ctx)
			docs := trips("bench", 50_000, 1)
			index := make([][]byte, len(docs))
			id := make([][]byte, len(docs))
			for i, d := range docs {
				index[i], id[i] = []byte(d.Index), []byte(d.ID)
			}
			cpu := cpuTime()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				j := i % len(docs)
				if err := w.WriteBytes(ctx, index[j], id[j], 0, docs[j].Body, nil); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/doc")
		})
	}
}

// cpuTime is the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
