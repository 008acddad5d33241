package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/taxi"
	"github.com/sinkd/sinkd/writers/opensearch"
	"github.com/sinkd/sinkd/writers/opensearch/osfake"
)

// BenchmarkOpenSearchDoc is sinkd's own cost per document on the OpenSearch
// path: the pipeline renders index and id (writeDoc), the writer appends the
// document and builds the _bulk body, sends it and settles every item of the
// answer. Decoding is left out (the Parquet path pays it too). The cluster is
// a stub that drains each body and answers every item "created", in the
// shape OpenSearch gives (filtered when the request asks for filter_path), so
// that its own work stays small; cpu-ns/doc is the process's user+system CPU,
// goroutines and the stub included, per document. Settings are the shipped
// defaults.
func BenchmarkOpenSearchDoc(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(osfake.Stub))
	defer srv.Close()
	cfg, err := config.Parse("bench.yaml", []byte(fmt.Sprintf(`pipeline: bench
http: {addr: ""}
source: {kafka: {brokers: "127.0.0.1:9092", topics: [in], group: g}}
schema:
  fields:%s
routes:
  - name: trips
    opensearch:
      url: %s
      index: trips-{type}-{pickup_datetime:yyyy.MM}
      id: "{trip_id}"
checkpoint: {store: "file:///tmp/unused"}
`, taxi.FieldsYAML, srv.URL)))
	if err != nil {
		b.Fatal(err)
	}
	s, err := schema.New(cfg.Schema.Fields)
	if err != nil {
		b.Fatal(err)
	}
	routes, err := compileRoutes(cfg, s)
	if err != nil {
		b.Fatal(err)
	}
	r := routes[0]
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ow, err := opensearch.New(context.Background(), *cfg.Routes[0].OpenSearch, func(context.Context, opensearch.Doc, int, string, string) error {
		return fmt.Errorf("unexpected dead letter")
	}, opensearch.WithMetrics(prometheus.NewRegistry()), opensearch.WithLogger(log))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := ow.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer ow.Close(ctx)
	w := opensearch.NewRoute(ow, r.name, r.id, r.indexes, r.version, func(context.Context, *record.Record, string, string, string, map[string]string) error {
		return fmt.Errorf("unexpected dead letter")
	})

	const n = 50_000
	g := taxi.NewGenerator(1, taxi.DefaultStart())
	dec := s.NewDecoder()
	recs := make([]record.Record, n)
	rows := make([]parquet.Row, n)
	for i := range recs {
		v, _ := g.Event(0)
		recs[i] = record.Record{Value: v, Timestamp: time.Now()}
		if rows[i], err = dec.Decode(v, nil); err != nil {
			b.Fatal(err)
		}
	}
	now := time.Now()
	cpu := cpuTime()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := w.Write(ctx, rows[i%n], &recs[i%n], now); err != nil {
			b.Fatal(err)
		}
	}
	if err := ow.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/doc")
}

// cpuTime is the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
