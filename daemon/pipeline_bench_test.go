package daemon

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sinkd/sinkd/taxi"
)

// BenchmarkPipelineTaxi runs the whole pipeline (decode, route, bucket,
// Parquet encode, file:// commit) over taxi trips from an embedded broker.
// The broker shares the CPU, so read it as a lower bound; scripts/bench
// measures the real thing against the local stack.
func BenchmarkPipelineTaxi(b *testing.B) {
	const n = 200_000
	g := taxi.NewGenerator(1, taxi.DefaultStart())
	recs := make([]*kgo.Record, n)
	var bytes int64
	for i := range recs {
		v, _ := g.Event(0)
		id, _ := g.Last()
		recs[i] = &kgo.Record{Key: []byte(strconv.FormatInt(id, 10)), Value: v}
		bytes += int64(len(v))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Each run starts clean: a lake left by the previous run would hold
		// its manifests, which a new broker's offsets do not match.
		b.StopTimer()
		dir := b.TempDir()
		yaml := fmt.Sprintf(`pipeline: bench
http: {addr: "127.0.0.1:0"}
source: {kafka: {brokers: BROKERS, topics: [in], group: g}}
schema:
  fields:%s
routes:
  - name: trips
    parquet:
      destination: file://%s/lake
      path: type={type}/dt={pickup_datetime:yyyy-MM-dd}
      event_time: {field: pickup_datetime}
checkpoint: {interval: 1s}
dlq: {file: %s/dlq.jsonl}
`, taxi.FieldsYAML, dir, dir)
		b.StartTimer()
		start := time.Now()
		runInProcess(b, yaml, recs)
		el := time.Since(start)
		b.ReportMetric(float64(n)/el.Seconds(), "events/s")
		b.ReportMetric(float64(bytes)/1e6/el.Seconds(), "MB/s")
	}
}
