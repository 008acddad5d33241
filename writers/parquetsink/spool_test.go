package parquetsink

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sinkd/sinkd/source/kafka"
	"github.com/sinkd/sinkd/store"
)

// spoolFixture is newFixture with a spool of the given bound.
func spoolFixture(t *testing.T, budget, spoolLimit int64) (*fixture, *Spool, *Metrics) {
	t.Helper()
	sp, err := OpenSpool(t.TempDir(), "p", "i1", "e1", spoolLimit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	var m *Metrics
	f := newFixture(t, func(o *Options) {
		o.Budget = NewBudget(budget)
		o.Metrics = NewMetrics(prometheus.NewRegistry(), o.Budget)
		o.MaxOpenFiles = 100_000 // the default
		o.Config.Compression = "none"
		o.Config.RowGroupSize = 16 << 20
		o.Spool = sp
		m = o.Metrics
	})
	return f, sp, m
}

// writeSpread writes n incompressible rows over the given number of buckets
// in random order and returns the peaks of memory and spool use.
func writeSpread(t *testing.T, f *fixture, sp *Spool, buckets, n int) (peakMem, peakSpool int64) {
	t.Helper()
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		b := []byte(fmt.Sprintf("b=%04d", rnd.IntN(buckets)))
		if err := f.w.Write(ctx, b, testRow(int64(i), noise(i, 400)), rec(0, int64(i))); err != nil {
			t.Fatal(err)
		}
		peakMem = max(peakMem, f.budget.Used())
		peakSpool = max(peakSpool, sp.Used())
	}
	return peakMem, peakSpool
}

// TestSpoolKeepsFilesOpenPastMemory: buckets whose data is four times the
// memory budget. With a spool, no file rolls for memory: every bucket ends
// as one file, files that reach a part upload it from the spool, memory
// stays within its bound and the spool within its. Without the spool the
// same load rolls files for memory (the small-file problem the spool exists
// to avoid).
func TestSpoolKeepsFilesOpenPastMemory(t *testing.T) {
	const budget = 8 << 20
	for _, tt := range []struct {
		name          string
		buckets, rows int // rows of 400 bytes
		spool         int64
		wantMemory    bool // files rolled for memory
		wantParts     bool // files reached a part (5 MiB)
	}{
		{"many buckets, spool", 300, 80_000, 256 << 20, false, false},
		{"few big buckets, spool", 3, 84_000, 256 << 20, false, true},
		{"many buckets, no spool", 300, 80_000, 0, true, false},
	} {
		buckets, rows := tt.buckets, tt.rows
		t.Run(tt.name, func(t *testing.T) {
			f, sp, m := spoolFixture(t, budget, tt.spool)
			peakMem, peakSpool := writeSpread(t, f, sp, buckets, rows)
			t.Logf("peak memory %d of %d, peak spool %d of %d, open files %d", peakMem, budget, peakSpool, tt.spool, f.w.OpenFiles())
			if peakMem > budget+budget/4 {
				t.Errorf("memory peaked at %d, budget %d", peakMem, budget)
			}
			if peakSpool > tt.spool {
				t.Errorf("spool peaked at %d, bound %d", peakSpool, tt.spool)
			}
			rolled := counterOf(m.rolled.WithLabelValues("r", "memory"))
			if got := rolled > 0; got != tt.wantMemory {
				t.Errorf("files rolled for memory: %v, want %v", rolled, tt.wantMemory)
			}
			if tt.spool > 0 {
				if peakSpool == 0 {
					t.Error("nothing was spooled")
				}
				if got := counterOf(m.parts.WithLabelValues("r")) > 0; got != tt.wantParts {
					t.Errorf("parts uploaded before the roll: %v, want %v", got, tt.wantParts)
				}
				if f.w.OpenFiles() != buckets {
					t.Errorf("open files = %d, want one per bucket (%d)", f.w.OpenFiles(), buckets)
				}
			}
			if err := f.w.RollPartitions(nil, "test"); err != nil {
				t.Fatal(err)
			}
			prep := f.commit(t)
			if tt.spool > 0 && len(prep.Uploads) != buckets {
				t.Errorf("committed %d files for %d buckets", len(prep.Uploads), buckets)
			}
			if sp.Used() != 0 {
				t.Errorf("spool holds %d bytes after every file rolled", sp.Used())
			}
			if ids := f.readIDs(t); len(ids) != rows {
				t.Fatalf("rows = %d, want %d", len(ids), rows)
			}
		})
	}
}

// TestSpoolAtItsBound: a spool far too small for the load stays within its
// bound; files then roll for memory (bigger than without a spool), and no row
// is lost or doubled.
func TestSpoolAtItsBound(t *testing.T) {
	const (
		budget     = 8 << 20
		spoolLimit = 4 << 20
		rows       = 50_000
	)
	f, sp, m := spoolFixture(t, budget, spoolLimit)
	peakMem, peakSpool := writeSpread(t, f, sp, 300, rows)
	t.Logf("peak memory %d, peak spool %d of %d", peakMem, peakSpool, spoolLimit)
	if peakSpool > spoolLimit {
		t.Fatalf("spool peaked at %d, bound %d", peakSpool, spoolLimit)
	}
	if peakSpool < spoolLimit/2 {
		t.Errorf("spool peaked at %d: the test did not reach its bound (%d)", peakSpool, spoolLimit)
	}
	if peakMem > budget+budget/4 {
		t.Errorf("memory peaked at %d, budget %d", peakMem, budget)
	}
	if counterOf(m.rolled.WithLabelValues("r", "memory")) == 0 {
		t.Error("no file rolled although memory and spool were both full")
	}
	if err := f.w.RollPartitions(nil, "test"); err != nil {
		t.Fatal(err)
	}
	f.commit(t)
	if ids := f.readIDs(t); len(ids) != rows {
		t.Fatalf("rows = %d, want %d", len(ids), rows)
	}
}

// TestSpoolFullDiskDegrades: a spool whose disk refuses writes (here: its
// directory is gone) does not fail the writer: files roll for memory.
func TestSpoolFullDiskDegrades(t *testing.T) {
	f, sp, m := spoolFixture(t, 8<<20, 256<<20)
	if err := os.RemoveAll(sp.Dir()); err != nil {
		t.Fatal(err)
	}
	writeSpread(t, f, sp, 300, 40_000)
	if counterOf(m.rolled.WithLabelValues("r", "memory")) == 0 {
		t.Error("no file rolled although the spool could not be written")
	}
	if err := f.w.RollPartitions(nil, "test"); err != nil {
		t.Fatal(err)
	}
	f.commit(t)
	if ids := f.readIDs(t); len(ids) != 40_000 {
		t.Fatalf("rows = %d, want 40000", len(ids))
	}
}

// TestOpenSpoolClearsOnlyDeadRuns: a start removes what a dead run of the
// same pipeline and instance left, never a live run's directory nor anything
// else in the root.
func TestOpenSpoolClearsOnlyDeadRuns(t *testing.T) {
	root := t.TempDir()
	dead := filepath.Join(root, "p.i1.old")
	if err := os.MkdirAll(dead, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dead, "00000001.spill"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(root, "unrelated.txt")
	if err := os.WriteFile(other, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	live, err := OpenSpool(root, "p", "i1", "e1", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("a dead run's spool survived the start: %v", err)
	}
	second, err := OpenSpool(root, "p", "i1", "e2", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(live.Dir()); err != nil {
		t.Errorf("a live run's spool was removed: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("a file sinkd did not create was removed: %v", err)
	}
	second.Close()
	live.Close()
}

// TestDefaultsOpenAThousandBuckets: the shipped memory defaults (budget,
// spool, max_open_files) on 1,000 buckets in random order keep one file per
// bucket: no file rolls early.
func TestDefaultsOpenAThousandBuckets(t *testing.T) {
	// The shipped defaults, each from the one place it is set: a Kafka
	// source's share of the budget, the S3 part size, the route's.
	var mem MemoryConfig
	mem.SetDefaults(false)
	var src kafka.Config
	src.SetDefaults(nil)
	var s3 store.S3Config
	s3.SetDefaults()
	var route Config
	route.SetDefaults("r")
	sp, err := OpenSpool(t.TempDir(), "p", "i1", "e1", mem.SpoolBudget.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	var m *Metrics
	f := newFixture(t, func(o *Options) {
		o.Budget = NewBudget(mem.Budget.Bytes())
		o.Budget.Reserve(src.MemoryBytes())
		o.Metrics = NewMetrics(prometheus.NewRegistry(), o.Budget)
		o.MaxOpenFiles, o.MaxEncoders, o.Spool = mem.MaxOpenFiles, mem.MaxEncoders, sp
		o.PartSize = s3.PartSize.Bytes()
		o.Config = route
		o.Config.Compression = "none"
		m = o.Metrics
	})
	const buckets, rows = 1000, 200_000
	writeSpread(t, f, sp, buckets, rows)
	for _, reason := range []string{"evicted", "memory", "size"} {
		if n := counterOf(m.rolled.WithLabelValues("r", reason)); n > 0 {
			t.Errorf("%v files rolled (%s) on the defaults", n, reason)
		}
	}
	if f.w.OpenFiles() != buckets {
		t.Errorf("open files = %d, want %d", f.w.OpenFiles(), buckets)
	}
}

func counterOf(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// TestStagedRowsRoundTrip: rows spooled in two chunks and read back equal the
// rows staged, bytes, nulls and levels included.
func TestStagedRowsRoundTrip(t *testing.T) {
	rows := []parquet.Row{
		{parquet.Int64Value(1).Level(0, 0, 0), parquet.ByteArrayValue([]byte("alpha")).Level(0, 1, 1), parquet.NullValue().Level(0, 0, 2)},
		{parquet.Int64Value(-7).Level(0, 0, 0), parquet.ByteArrayValue([]byte("")).Level(0, 1, 1), parquet.DoubleValue(2.5).Level(0, 1, 2)},
		{parquet.Int64Value(3).Level(0, 0, 0), parquet.ByteArrayValue([]byte("γάμμα")).Level(0, 1, 1), parquet.BooleanValue(true).Level(0, 1, 2)},
	}
	var a, b staging
	a.add(rows[0])
	a.add(rows[1])
	b.add(rows[2])
	var back staging
	if err := back.unmarshalAppend(b.marshal(a.marshal(nil))); err != nil {
		t.Fatal(err)
	}
	if back.rows() != 3 || back.raw != a.raw+b.raw {
		t.Fatalf("rows %d raw %d, want 3 and %d", back.rows(), back.raw, a.raw+b.raw)
	}
	for i, want := range rows {
		got := parquet.Row(back.appendRow(nil, i))
		if !got.Equal(want) {
			t.Errorf("row %d: got %v, want %v", i, got, want)
		}
	}
	if err := back.unmarshalAppend([]byte{1, 2, 3}); err == nil {
		t.Error("a truncated chunk was accepted")
	}
}

// BenchmarkSpoolWrite: 20,000 spills of 4 KiB written round robin (one
// relief over 20,000 open buckets), then all taken back, on the default
// spool bound. One op is one spill written and taken; cpu-ns/op is the
// process's user+sys time, which the shared machine disturbs less than wall
// time.
func BenchmarkSpoolWrite(b *testing.B) {
	const spills, size = 20_000, 4 << 10
	sp, err := OpenSpool(b.TempDir(), "bench", "i", "e", DefaultSpoolBudget)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sp.Close() })
	all := make([]spill, spills)
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte(i)
	}
	takeAll := func() {
		for j := range all {
			if all[j].n == 0 {
				continue
			}
			if _, err := sp.take(&all[j], 0); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.SetBytes(size)
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := range b.N {
		if err := sp.write(&all[i%spills], buf); err != nil {
			b.Fatal(err)
		}
		if i%spills == spills-1 {
			takeAll()
		}
	}
	takeAll()
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	if sp.Used() != 0 {
		b.Fatalf("spool holds %d bytes after every spill was taken", sp.Used())
	}
}

// cpuTime is the process's user+sys time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
