package jsonlines

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/writers"
)

// BenchmarkWrite is the writer's hot path at its defaults: taxi-sized
// records into 10 or 1,000 open buckets on the local file store, parts,
// memory relief and rolls included.
func BenchmarkWrite(b *testing.B) {
	for _, buckets := range []int{10, 1000} {
		b.Run(fmt.Sprintf("buckets=%d", buckets), func(b *testing.B) {
			ctx := context.Background()
			fields := []config.Field{{Name: "id", Type: "int64"}, {Name: "b", Type: "int32"}}
			ww, _, _ := newWriterOn(b, "{destination: %q, path: \"b={b}\"}", testRoute{fields: fields})
			w := ww.(*Writer)
			s, err := schema.New(fields)
			if err != nil {
				b.Fatal(err)
			}
			dec := s.NewDecoder()
			pad := strings.Repeat("x", 360)
			const distinct = 4096
			recs := make([]*record.Record, distinct)
			decoded := make([]parquet.Row, distinct)
			for i := range recs {
				v := []byte(fmt.Sprintf(`{"id":%d,"b":%d,"pad":%q}`, i, (i*7919)%buckets, pad))
				row, err := dec.Decode(v, nil)
				if err != nil {
					b.Fatal(err)
				}
				decoded[i] = row
				recs[i] = &record.Record{Partition: record.PartitionID{Stream: "bench"}, Value: v}
			}
			now := time.Now()
			b.SetBytes(int64(len(recs[0].Value)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rec := recs[i%distinct]
				rec.Position.Offset = int64(i)
				if err := w.Write(ctx, decoded[i%distinct], rec, now); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if _, err := w.Prepare(ctx, writers.Roll{All: true}); err != nil {
				b.Fatal(err)
			}
		})
	}
}
