package parquetsink

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/store"
)

var testSchema = parquet.NewSchema("t", parquet.Group{
	"id":      parquet.Leaf(parquet.Int64Type),
	"payload": parquet.String(),
})

func testRow(id int64, payload string) parquet.Row {
	return parquet.Row{parquet.Int64Value(id).Level(0, 0, 0), parquet.ByteArrayValue([]byte(payload)).Level(0, 0, 1)}
}

type fixture struct {
	w      *Writer
	st     store.Store
	budget *Budget
}

func newFixture(t testing.TB, mutate func(*Options)) *fixture {
	t.Helper()
	st, prefix, err := store.Open(context.Background(), "file://"+t.TempDir(), store.S3Config{})
	if err != nil {
		t.Fatal(err)
	}
	b := NewBudget(64 << 20)
	o := Options{
		Route: "r", PartSize: 5 << 20, Concurrency: 2, MaxOpenFiles: 100,
		Config: Config{
			Compression: "snappy", RowGroupSize: 1 << 20, PageSize: 8 << 10, TargetFileSize: 64 << 20,
			FilePrefix: "part", MaxFileAge: conf.Duration(time.Hour), Inactivity: conf.Duration(time.Hour),
		},
		Schema: testSchema, Store: st, Prefix: prefix, Instance: "i1", Epoch: "e1", Budget: b,
		Metrics: NewMetrics(prometheus.NewRegistry(), b),
	}
	if mutate != nil {
		mutate(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); w.Close() })
	return &fixture{w: w, st: st, budget: o.Budget}
}

// noise is an incompressible payload, so that sizes mean something.
func noise(i, n int) string {
	var b strings.Builder
	x := uint64(i)*0x9E3779B97F4A7C15 + 1
	for b.Len() < n {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b.WriteByte(byte('a' + x%26))
	}
	return b.String()
}

func rec(p int32, off int64) *record.Record {
	return &record.Record{Source: record.Kafka, Partition: record.PartitionID{Stream: "s", Partition: p}, Position: record.Position{Offset: off}, Value: make([]byte, 100)}
}

// commit runs the coordinator's side: pre-commit, then complete every upload.
func (f *fixture) commit(t *testing.T) *Prepared {
	t.Helper()
	ctx := context.Background()
	prep, err := f.w.PreCommit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range prep.Uploads {
		if err := f.st.CompleteUpload(ctx, u.Key, u.UploadID, u.Parts); err != nil {
			t.Fatal(err)
		}
	}
	f.w.Committed(prep)
	return prep
}

func (f *fixture) readIDs(t *testing.T) map[int64]string {
	t.Helper()
	ctx := context.Background()
	keys, err := f.st.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[int64]string{}
	for _, k := range keys {
		body, err := f.st.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		pf, err := parquet.OpenFile(bytes.NewReader(body), int64(len(body)))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		rows := parquet.NewGenericReader[any](pf)
		buf := make([]parquet.Row, 100)
		for {
			n, err := rows.ReadRows(buf)
			for _, r := range buf[:n] {
				id := r[0].Int64()
				if prev, dup := ids[id]; dup {
					t.Fatalf("id %d in %s and %s", id, prev, k)
				}
				ids[id] = k
			}
			if err != nil {
				break
			}
		}
	}
	return ids
}

func TestFilesInvisibleUntilCommitted(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	for i := int64(0); i < 100; i++ {
		if err := f.w.Write(ctx, []byte(fmt.Sprintf("b=%d", i%3)), testRow(i, "x"), rec(0, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.w.RollPartitions(nil, "test"); err != nil {
		t.Fatal(err)
	}
	prep, err := f.w.PreCommit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if keys, _ := f.st.List(ctx, ""); len(keys) != 0 {
		t.Fatalf("objects visible before the commit: %v", keys)
	}
	if len(prep.Uploads) != 3 {
		t.Fatalf("want 3 uploads (one per bucket), got %d", len(prep.Uploads))
	}
	for _, u := range prep.Uploads {
		if !strings.HasSuffix(u.Key, ".parquet") || !strings.Contains(u.Key, ".i1.e1.") {
			t.Errorf("key %q does not carry instance and epoch", u.Key)
		}
		if inst, ok := InstanceOf(u.Key); !ok || inst != "i1" {
			t.Errorf("InstanceOf(%q) = %q, %v", u.Key, inst, ok)
		}
	}
	if got := prep.Highs[rec(0, 0).Partition]; len(got) != 3 {
		t.Fatalf("highs per bucket: %v", got)
	}
	for _, u := range prep.Uploads {
		if err := f.st.CompleteUpload(ctx, u.Key, u.UploadID, u.Parts); err != nil {
			t.Fatal(err)
		}
	}
	f.w.Committed(prep)
	if ids := f.readIDs(t); len(ids) != 100 {
		t.Fatalf("want 100 rows, got %d", len(ids))
	}
}

func TestReplayFilterSkipsCommittedRecords(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	pid := rec(0, 0).Partition
	f.w.Restore(pid, map[string]record.Position{"b=a": {Offset: 9}})
	for i := int64(0); i < 20; i++ {
		if err := f.w.Write(ctx, []byte("b=a"), testRow(i, "x"), rec(0, i)); err != nil {
			t.Fatal(err)
		}
		// Another partition is not filtered by partition 0's state.
		if err := f.w.Write(ctx, []byte("b=a"), testRow(1000+i, "x"), rec(1, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.w.RollPartitions(nil, "test"); err != nil {
		t.Fatal(err)
	}
	f.commit(t)
	ids := f.readIDs(t)
	for i := int64(0); i < 20; i++ {
		if _, ok := ids[i]; ok != (i > 9) {
			t.Errorf("id %d present=%v, want %v", i, ok, i > 9)
		}
		if _, ok := ids[1000+i]; !ok {
			t.Errorf("partition 1 id %d missing", 1000+i)
		}
	}
	// Pruning: once replay starts after offset 19, the filter entry is gone.
	if st := f.w.CommittedState(pid, record.Position{Offset: 19}, true); len(st) != 0 {
		t.Errorf("filter not pruned: %v", st)
	}
}

func TestOpenLowIsRestartPoint(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	for i := int64(0); i < 10; i++ {
		_ = f.w.Write(ctx, []byte("b=early"), testRow(i, "x"), rec(0, i))
	}
	if err := f.w.RollPartitions(nil, "test"); err != nil {
		t.Fatal(err)
	}
	for i := int64(10); i < 20; i++ {
		_ = f.w.Write(ctx, []byte("b=late"), testRow(i, "x"), rec(0, i))
	}
	prep := f.commit(t)
	if low := prep.OpenLow[rec(0, 0).Partition]; low.Offset != 10 {
		t.Fatalf("open low = %v, want 10", low)
	}
	if f.w.OpenFiles() != 1 {
		t.Fatalf("the open file must stay open across a checkpoint")
	}
}

func TestRollPolicies(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Options)
		advance time.Duration
		rows    int
		want    int // files closed
	}{
		{"age", func(o *Options) { o.Config.MaxFileAge = conf.Duration(time.Minute) }, 2 * time.Minute, 10, 1},
		{"inactivity", func(o *Options) { o.Config.Inactivity = conf.Duration(time.Second) }, 2 * time.Second, 10, 1},
		{"neither", nil, 30 * time.Second, 10, 0},
		{"size", func(o *Options) { o.Config.TargetFileSize = 64 << 10; o.Config.RowGroupSize = 16 << 10 }, 0, 5000, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.mutate)
			start := time.Unix(1_700_000_000, 0)
			f.w.SetNow(start)
			for i := 0; i < tt.rows; i++ {
				if err := f.w.Write(context.Background(), []byte("b"), testRow(int64(i), noise(i, 50)), rec(0, int64(i))); err != nil {
					t.Fatal(err)
				}
			}
			f.w.SetNow(start.Add(tt.advance))
			if err := f.w.Tick(); err != nil {
				t.Fatal(err)
			}
			if got := f.w.Pending(); (got >= 1) != (tt.want >= 1) {
				t.Fatalf("closed files = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestMaxOpenFilesEvictsLeastRecentlyWritten: at memory.max_open_files a new
// bucket rolls the files written least recently (a 64th of the cap at once,
// at least one), never more than the cap stay open, and every row is kept.
func TestMaxOpenFilesEvictsLeastRecentlyWritten(t *testing.T) {
	for _, tt := range []struct {
		cap, evicted int
	}{{4, 1}, {128, 2}} {
		t.Run(fmt.Sprint(tt.cap), func(t *testing.T) {
			f := newFixture(t, func(o *Options) { o.MaxOpenFiles = tt.cap })
			ctx := context.Background()
			n := int64(0)
			write := func(b int) {
				n++
				if err := f.w.Write(ctx, []byte(fmt.Sprintf("b=%d", b)), testRow(n, "x"), rec(0, n)); err != nil {
					t.Fatal(err)
				}
				if f.w.OpenFiles() > tt.cap {
					t.Fatalf("%d files open, bound is %d", f.w.OpenFiles(), tt.cap)
				}
			}
			for b := range tt.cap {
				write(b)
			}
			// Bucket 0 is written again: bucket 1 and those after it are now
			// the least recently written.
			write(0)
			write(tt.cap)
			for b := range tt.cap + 1 {
				_, open := f.w.files[fmt.Sprintf("b=%d", b)]
				if want := b == 0 || b > tt.evicted; open != want {
					t.Errorf("bucket %d open: %v, want %v", b, open, want)
				}
			}
			for b := tt.cap + 1; b < 3*tt.cap; b++ {
				write(b)
			}
			if err := f.w.RollPartitions(nil, "test"); err != nil {
				t.Fatal(err)
			}
			f.commit(t)
			if ids := f.readIDs(t); int64(len(ids)) != n {
				t.Fatalf("rows = %d, want %d", len(ids), n)
			}
		})
	}
}

// TestBudgetBoundsBufferedBytes writes into many buckets under a small budget:
// the bytes held never exceed the budget by more than one file's worth.
func TestBudgetBoundsBufferedBytes(t *testing.T) {
	const budget = 6 << 20 // above the fixed cost of the 50 open files (50 × 52 KiB)
	f := newFixture(t, func(o *Options) {
		o.Budget = NewBudget(budget)
		o.Metrics = NewMetrics(prometheus.NewRegistry(), o.Budget)
		o.Config.RowGroupSize = 8 << 20
		o.Config.Compression = "none"
	})
	ctx := context.Background()
	var peak int64
	for i := 0; i < 12_000; i++ {
		if err := f.w.Write(ctx, []byte(fmt.Sprintf("b=%d", i%50)), testRow(int64(i), noise(i, 400)), rec(0, int64(i))); err != nil {
			t.Fatal(err)
		}
		peak = max(peak, f.budget.Used())
	}
	t.Logf("peak held %d bytes under a budget of %d", peak, budget)
	if peak > budget+budget/2 {
		t.Fatalf("held %d bytes, budget %d", peak, budget)
	}
	if err := f.w.RollPartitions(nil, "test"); err != nil {
		t.Fatal(err)
	}
	f.commit(t)
	if ids := f.readIDs(t); len(ids) != 12_000 {
		t.Fatalf("rows = %d, want 12000", len(ids))
	}
}
