package daemon

import (
	"context"
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
`, taxiFieldsYAML, dir, dir)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		runInProcess(b, yaml, recs)
		el := time.Since(start)
		b.ReportMetric(float64(n)/el.Seconds(), "events/s")
		b.ReportMetric(float64(bytes)/1e6/el.Seconds(), "MB/s")
	}
	_ = context.Background
}

const taxiFieldsYAML = `
    - {name: trip_id, type: int64, required: true}
    - {name: type, type: string, required: true}
    - {name: vendor_id, type: int32}
    - {name: pickup_datetime, type: timestamp, required: true}
    - {name: dropoff_datetime, type: timestamp}
    - {name: pickup_location_id, type: int32, required: true}
    - {name: dropoff_location_id, type: int32}
    - {name: pickup_latitude, type: double}
    - {name: pickup_longitude, type: double}
    - {name: dropoff_latitude, type: double}
    - {name: dropoff_longitude, type: double}
    - {name: passenger_count, type: int32}
    - {name: trip_distance, type: double}
    - {name: fare_amount, type: decimal, precision: 9, scale: 2}
    - {name: tip_amount, type: decimal, precision: 9, scale: 2}
    - {name: tolls_amount, type: decimal, precision: 9, scale: 2}
    - {name: total_amount, type: decimal, precision: 9, scale: 2}
    - {name: payment_type, type: string}
    - {name: store_and_fwd, type: bool}`
