package parquetsink

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/store"
	"github.com/sinkd/sinkd/taxi"
	"gopkg.in/yaml.v3"
)

// discardStore accepts every upload and keeps nothing: the benchmarks
// measure the writer, not a disk's fsyncs (store's own tests cover those).
type discardStore struct {
	store.Store // anything else panics
	ids         atomic.Int64
}

func (d *discardStore) CreateUpload(context.Context, string, map[string]string) (string, error) {
	return strconv.FormatInt(d.ids.Add(1), 10), nil
}

func (d *discardStore) UploadPart(_ context.Context, _, _ string, n int32, body []byte) (store.Part, error) {
	return store.Part{Number: n, ETag: "e", Size: int64(len(body))}, nil
}

// BenchmarkWriteTaxiRow measures the per-row cost of the Parquet writer on
// decoded taxi trips: staging, encoding, page compression (snappy) and the
// bookkeeping of Write. Uploads are not part of the loop.
func BenchmarkWriteTaxiRow(b *testing.B) {
	s, rows, bytes := taxiRows(b)
	f := newFixture(b, func(o *Options) {
		o.Schema = s.Parquet()
		o.MaxEncoders = 64 // the default
		o.Config.TargetFileSize = 1 << 40
		o.Config.RowGroupSize = 64 << 20
		o.PartSize = 1 << 40 // keep the loop free of uploads
		o.Budget = NewBudget(1 << 40)
		o.Metrics = NewMetrics(nil, o.Budget)
	})
	ctx := context.Background()
	b.SetBytes(bytes / int64(len(rows)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := f.w.Write(ctx, []byte("type=yellow"), rows[i%len(rows)], rec(0, int64(i))); err != nil {
			b.Fatal(err)
		}
	}
}

// taxiRows decodes 1,024 taxi trips into rows of the taxi schema.
func taxiRows(b *testing.B) (*schema.Schema, []parquet.Row, int64) {
	var fields []conf.Field
	if err := yaml.Unmarshal([]byte(taxi.FieldsYAML), &fields); err != nil {
		b.Fatal(err)
	}
	s, err := schema.New(fields)
	if err != nil {
		b.Fatal(err)
	}
	dec := s.NewDecoder()
	g := taxi.NewGenerator(1, taxi.DefaultStart())
	rows := make([]parquet.Row, 1024)
	var bytes int64
	for i := range rows {
		v, _ := g.Event(0)
		r, err := dec.Decode(v, nil)
		if err != nil {
			b.Fatal(err)
		}
		rows[i] = r.Clone()
		bytes += int64(len(v))
	}
	return s, rows, bytes
}

// BenchmarkWriteManyBuckets is BenchmarkWriteTaxiRow spread over 2,000
// buckets under the default memory settings (a 256 MiB budget, 64 encoders,
// a 2 GiB spool): the cost of lending encoders, staging, spilling and memory
// relief. Uploads go nowhere.
func BenchmarkWriteManyBuckets(b *testing.B) {
	s, rows, bytes := taxiRows(b)
	spool, err := OpenSpool(b.TempDir(), "bench", "i", "e", DefaultSpoolBudget)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { spool.Close() })
	f := newFixture(b, func(o *Options) {
		o.Spool = spool
		o.Store = &discardStore{}
		o.Schema = s.Parquet()
		o.MaxEncoders = 64
		o.MaxOpenFiles = 100_000 // the default
		o.Config.TargetFileSize = 1 << 40
		o.Config.RowGroupSize = 16 << 20
		o.Budget = NewBudget(256 << 20)
		o.Metrics = NewMetrics(nil, o.Budget)
	})
	buckets := make([][]byte, 2000)
	for i := range buckets {
		buckets[i] = []byte(fmt.Sprintf("b=%04d", i))
	}
	ctx := context.Background()
	// Every bucket is open before the clock starts: opening (and creating
	// its upload) is a per-file cost, not a per-row one.
	for i, bucket := range buckets {
		if err := f.w.Write(ctx, bucket, rows[i%len(rows)], rec(0, int64(i))); err != nil {
			b.Fatal(err)
		}
	}
	for _, fl := range f.w.files {
		<-fl.up.created // the uploads' creation runs in the background
	}
	b.SetBytes(bytes / int64(len(rows)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := f.w.Write(ctx, buckets[(i*7919)%len(buckets)], rows[i%len(rows)], rec(0, int64(len(buckets)+i))); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRollSmallFiles measures what a small file costs beyond its rows:
// 1,000 buckets of 140 taxi trips each (a bucket's share of a short run with
// 2,000 buckets) are written, then rolled together as a drain rolls them,
// and handed to a checkpoint. One op is one file. Uploads go nowhere.
func BenchmarkRollSmallFiles(b *testing.B) {
	s, rows, _ := taxiRows(b)
	f := newFixture(b, func(o *Options) {
		o.Store = &discardStore{}
		o.Schema = s.Parquet()
		o.MaxEncoders = 64
		o.MaxOpenFiles = 100_000
		o.Config.TargetFileSize = 128 << 20
		o.Config.RowGroupSize = 16 << 20
		o.PartSize = 8 << 20
		o.Concurrency, o.SmallConcurrency = 4, 64
		o.Budget = NewBudget(256 << 20)
		o.Metrics = NewMetrics(nil, o.Budget)
	})
	const buckets, perFile = 1000, 140
	names := make([][]byte, buckets)
	for i := range names {
		names[i] = []byte(fmt.Sprintf("b=%04d", i))
	}
	ctx := context.Background()
	var off int64
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += buckets {
		b.StopTimer()
		for i := range buckets * perFile {
			off++
			if err := f.w.Write(ctx, names[i%buckets], rows[i%len(rows)], rec(0, off)); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		if err := f.w.RollPartitions(nil, "drain"); err != nil {
			b.Fatal(err)
		}
		prep, err := f.w.PreCommit(ctx)
		if err != nil {
			b.Fatal(err)
		}
		f.w.Committed(prep)
	}
}
