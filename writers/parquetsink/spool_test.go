package parquetsink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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

// openTestSpool is a spool of the given bound whose segments rotate at
// segSize, small enough for a test to cross many.
func openTestSpool(t testing.TB, limit, segSize int64, punch bool) *Spool {
	t.Helper()
	sp, err := OpenSpool(t.TempDir(), "p", "i1", "e1", limit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	sp.segSize = segSize
	if !punch {
		sp.punch = func(*os.File, int64, int64) error { return errors.ErrUnsupported }
	}
	return sp
}

// segmentFiles are the spool's segment files and the bytes of disk blocks
// they hold (st_blocks, what the filesystem allocated, not their length).
func segmentFiles(t testing.TB, sp *Spool) (names []string, disk int64) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(sp.Dir(), "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		names = append(names, filepath.Base(p))
		disk += st.Blocks * 512
	}
	return names, disk
}

// punchSupported tells whether the filesystem of the test's temporary
// directory frees the blocks of a punched range.
func punchSupported(t testing.TB) bool {
	f, err := os.CreateTemp(t.TempDir(), "punch")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	return punchHole(f, 0, 64<<10) == nil
}

// TestSpoolSegmentsRoundTrip: spills of random sizes written in random
// order, interleaved across many segments (each rotating at segSize, some
// spills larger than one), taken back or released at random, by one or
// several writers at once, read back byte for byte. The bound holds after
// every write, the disk the segments hold never exceeds what used counts,
// and once every spill is gone the spool holds nothing.
func TestSpoolSegmentsRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		name             string
		writers, spills  int // spills per writer
		ops              int // per writer
		maxSize          int
		limit, segSize   int64
		punch            bool
		wantRotations    uint64
		wantRefusedWrite bool // the bound was reached
	}{
		{"small spills, many segments", 1, 500, 20_000, 6000, 64 << 20, 256 << 10, true, 50, false},
		{"spills larger than a segment", 1, 20, 600, 300 << 10, 64 << 20, 128 << 10, true, 100, false},
		{"at the bound", 1, 300, 20_000, 6000, 1 << 20, 64 << 10, true, 50, true},
		{"no hole punching, at the bound", 1, 300, 20_000, 6000, 1 << 20, 64 << 10, false, 20, true},
		{"at a bound that is not whole blocks", 1, 300, 20_000, 6000, 1_000_000, 64 << 10, true, 50, true},
		{"four writers at once", 4, 100, 5_000, 6000, 64 << 20, 256 << 10, true, 20, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.punch && !punchSupported(t) {
				t.Skip("the filesystem of the temporary directory cannot punch holes")
			}
			sp := openTestSpool(t, tt.limit, tt.segSize, tt.punch)
			var refused atomic.Bool
			errs := make(chan error, tt.writers)
			var wg sync.WaitGroup
			for w := range tt.writers {
				wg.Go(func() {
					errs <- roundTrip(sp, uint64(w), tt.spills, tt.ops, tt.maxSize, tt.writers == 1, &refused)
				})
			}
			// Checked while the writers run: what the spool says it holds
			// against its bound and against the filesystem.
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			var peak, over int64
			for running := true; running; {
				select {
				case <-done:
					running = false
				case <-time.After(time.Millisecond):
				}
				sp.mu.Lock()
				used := sp.Used()
				_, disk := segmentFiles(t, sp)
				sp.mu.Unlock()
				if used > tt.limit {
					t.Fatalf("spool holds %d, bound %d", used, tt.limit)
				}
				// ext4 counts in st_blocks the blocks of an extent tree
				// that holes made too deep for the inode.
				if slack := 8 * sp.block; disk > used+slack || used > disk+slack {
					t.Fatalf("segments hold %d bytes of disk, used says %d", disk, used)
				}
				peak, over = max(peak, used), max(over, disk-used)
			}
			t.Logf("%d segments, peak used %d, disk held above used by at most %d", sp.names, peak, over)
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if sp.names < tt.wantRotations {
				t.Errorf("%d segments, want at least %d", sp.names, tt.wantRotations)
			}
			if refused.Load() != tt.wantRefusedWrite {
				t.Errorf("a write was refused at the bound: %v, want %v", refused.Load(), tt.wantRefusedWrite)
			}
			names, disk := segmentFiles(t, sp)
			if sp.Used() != 0 || disk != 0 || len(names) > 1 {
				t.Errorf("after every spill went: used %d, %d bytes of disk in %v", sp.Used(), disk, names)
			}
		})
	}
}

// roundTrip writes, takes and releases spills at random as one writer does,
// checking what it takes against what it wrote.
// alone says no other writer shares the spool: a write room allowed must
// then pass.
func roundTrip(sp *Spool, seed uint64, spills, ops, maxSize int, alone bool, refused *atomic.Bool) error {
	rnd := rand.New(rand.NewPCG(seed, 7))
	all := make([]spill, spills)
	want := make([][]byte, spills)
	check := func(i int) error {
		b, err := sp.take(&all[i], 16)
		if err != nil {
			return err
		}
		if !bytes.Equal(b, want[i]) {
			return fmt.Errorf("writer %d spill %d: took back %d bytes unlike the %d written", seed, i, len(b), len(want[i]))
		}
		if all[i].n != 0 || len(all[i].ext) != 0 || cap(b) != len(b)+16 {
			return fmt.Errorf("writer %d spill %d: not released by take, or no room for the extra bytes", seed, i)
		}
		want[i] = nil
		return nil
	}
	for range ops {
		i := rnd.IntN(spills)
		switch r := rnd.IntN(20); {
		case r < 16:
			b := make([]byte, 1+rnd.IntN(maxSize))
			for j := range b {
				b[j] = byte(rnd.Uint32())
			}
			roomy := sp.room(int64(len(b)))
			if err := sp.write(&all[i], b); err != nil {
				if !errors.Is(err, errSpoolBound) {
					return err
				}
				if roomy && alone {
					return fmt.Errorf("a write of %d bytes that room allowed was refused (used %d of %d)", len(b), sp.Used(), sp.Limit())
				}
				refused.Store(true)
				continue
			}
			if sp.Used() > sp.Limit() {
				return fmt.Errorf("spool holds %d, bound %d", sp.Used(), sp.Limit())
			}
			want[i] = append(want[i], b...)
			if all[i].n != int64(len(want[i])) {
				return fmt.Errorf("spill %d: n = %d, want %d", i, all[i].n, len(want[i]))
			}
		case r < 19:
			if err := check(i); err != nil {
				return err
			}
		default:
			sp.release(&all[i])
			want[i] = nil
		}
	}
	for i := range all {
		if err := check(i); err != nil {
			return err
		}
	}
	return nil
}

// TestSpoolReleaseFreesBlocks: spills packed end to end in one segment,
// released in an order that leaves one alive. Where the filesystem punches
// holes, each release frees the blocks no live spill shares, at once: the
// segment's disk blocks and used go down to the live spill's blocks. Where
// it cannot, released bytes stay on disk and counted until the segment goes.
func TestSpoolReleaseFreesBlocks(t *testing.T) {
	const spills, size = 64, 4000 // not a multiple of a block: neighbours share blocks
	for _, tt := range []struct {
		name  string
		punch bool
		order func(i int) int // the i-th spill released
	}{
		{"in order, punching", true, func(i int) int { return i }},
		{"every other first, punching", true, func(i int) int {
			if i < spills/2 {
				return 2 * i
			}
			return 2*(i-spills/2) + 1
		}},
		{"not punching", false, func(i int) int { return i }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.punch && !punchSupported(t) {
				t.Skip("the filesystem of the temporary directory cannot punch holes")
			}
			sp := openTestSpool(t, 64<<20, 64<<20, tt.punch)
			all := make([]spill, spills+1)
			for i := range all {
				if err := sp.write(&all[i], bytes.Repeat([]byte{byte(i + 1)}, size)); err != nil {
					t.Fatal(err)
				}
			}
			_, disk0 := segmentFiles(t, sp)
			used0 := sp.Used()
			if used0 != sp.roundUp(int64(len(all)*size)) || disk0 < used0 {
				t.Fatalf("used %d, disk %d, for %d bytes written", used0, disk0, len(all)*size)
			}
			released := map[int]bool{}
			for i := range spills {
				j := tt.order(i)
				if released[j] {
					t.Fatalf("order releases spill %d twice", j)
				}
				released[j] = true
				sp.release(&all[j])
			}
			// Only the last spill, written last, is alive.
			names, disk := segmentFiles(t, sp)
			live := all[spills].ext[0]
			liveBlocks := (live.off+live.n-1)/sp.block - live.off/sp.block + 1
			t.Logf("%s: disk %d -> %d, used %d -> %d, the live spill's blocks %d", names, disk0, disk, used0, sp.Used(), liveBlocks*sp.block)
			if tt.punch {
				if sp.Used() != liveBlocks*sp.block {
					t.Errorf("used %d, want the live spill's %d blocks of %d", sp.Used(), liveBlocks, sp.block)
				}
				if disk > sp.Used()+4*sp.block {
					t.Errorf("the segment holds %d bytes of disk after its released spills were punched, used %d", disk, sp.Used())
				}
			} else {
				if sp.Used() != used0 {
					t.Errorf("used %d, want %d: released bytes not freed must stay counted", sp.Used(), used0)
				}
				if disk < used0 {
					t.Errorf("the segment holds %d bytes of disk, %d before: blocks were freed without punching", disk, disk0)
				}
			}
			if b, err := sp.take(&all[spills], 0); err != nil || !bytes.Equal(b, bytes.Repeat([]byte{byte(spills + 1)}, size)) {
				t.Fatalf("the live spill reads back wrong (%v)", err)
			}
			if _, disk := segmentFiles(t, sp); sp.Used() != 0 || disk != 0 {
				t.Errorf("used %d, disk %d after the last spill went", sp.Used(), disk)
			}
		})
	}
}

// TestSpoolDeletesSegments: a segment is deleted when its last spill goes,
// whichever that is, and not before; the current segment, appended to next,
// is emptied instead. Consecutive writes of one spill make one extent.
func TestSpoolDeletesSegments(t *testing.T) {
	// Spills a, b, c of 10 KiB, then a again: a 16 KiB segment takes one
	// write, so a's two writes, b and c land in segments 1 to 4 (a: 1 and
	// 4, current).
	for _, tt := range []struct {
		name     string
		release  []string // in this order
		segments [][]string
	}{
		{"b then c then a", []string{"b", "c", "a"},
			[][]string{{"00000001.seg", "00000003.seg", "00000004.seg"}, {"00000001.seg", "00000004.seg"}, {"00000004.seg"}}},
		{"a first", []string{"a", "b", "c"},
			[][]string{{"00000002.seg", "00000003.seg", "00000004.seg"}, {"00000003.seg", "00000004.seg"}, {"00000004.seg"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sp := openTestSpool(t, 64<<20, 16<<10, true)
			spills := map[string]*spill{"a": {}, "b": {}, "c": {}}
			for _, name := range []string{"a", "b", "c", "a"} {
				if err := sp.write(spills[name], make([]byte, 10<<10)); err != nil {
					t.Fatal(err)
				}
			}
			if got, _ := segmentFiles(t, sp); len(got) != 4 {
				t.Fatalf("segments %v, want 4", got)
			}
			for i, name := range tt.release {
				sp.release(spills[name])
				if got, _ := segmentFiles(t, sp); !slices.Equal(got, tt.segments[i]) {
					t.Errorf("after releasing %s: segments %v, want %v", name, got, tt.segments[i])
				}
			}
			if info, err := os.Stat(filepath.Join(sp.Dir(), "00000004.seg")); err != nil || info.Size() != 0 || sp.Used() != 0 {
				t.Errorf("the current segment is not emptied (%v), used %d", err, sp.Used())
			}
		})
	}
	sp := openTestSpool(t, 64<<20, 64<<20, true)
	var a spill
	for range 3 {
		if err := sp.write(&a, make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	if len(a.ext) != 1 || a.ext[0].n != 3000 {
		t.Errorf("three consecutive writes of one spill make extents %v, want one of 3000 bytes", a.ext)
	}
}

// TestSpoolDescriptorsBounded: a spool with hundreds of segments holds at
// most spoolFiles of their descriptors, plus its lock file, and works at
// that bound: every spill, one per segment, reads back in random order.
func TestSpoolDescriptorsBounded(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("no /proc/self/fd to count descriptors")
	}
	const segments = 300
	sp := openTestSpool(t, 64<<20, 8<<10, true)
	open := func() int {
		fds, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(target, sp.Dir()+"/") {
				n++
			}
		}
		return n
	}
	all := make([]spill, segments)
	peak := 0
	for i := range all {
		if err := sp.write(&all[i], bytes.Repeat([]byte{byte(i)}, 6<<10)); err != nil {
			t.Fatal(err)
		}
		peak = max(peak, open())
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	for _, i := range rnd.Perm(segments) {
		b, err := sp.take(&all[i], 0)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, bytes.Repeat([]byte{byte(i)}, 6<<10)) {
			t.Fatalf("spill %d reads back wrong", i)
		}
		peak = max(peak, open())
	}
	if sp.names != segments {
		t.Errorf("%d segments, want one per spill (%d)", sp.names, segments)
	}
	if peak != spoolFiles+1 {
		t.Errorf("at most %d descriptors open in the spool, want %d (its segments' bound and the lock)", peak, spoolFiles+1)
	}
}

// TestSpoolFailedWrite: a write the disk refuses part way (here: beyond the
// process's file size limit, EFBIG) leaves the spill as it was and the
// segment as long as before, and makes the spool refuse until a release.
func TestSpoolFailedWrite(t *testing.T) {
	sp := openTestSpool(t, 64<<20, 64<<20, true)
	var a, b spill
	if err := sp.write(&a, bytes.Repeat([]byte{1}, 10<<10)); err != nil {
		t.Fatal(err)
	}
	used := sp.Used()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	small := lim
	small.Cur = 12 << 10 // room for 2 KiB of the next write
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &small); err != nil {
		t.Skipf("cannot lower the file size limit: %v", err)
	}
	err := sp.write(&b, bytes.Repeat([]byte{2}, 8<<10))
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	if err == nil {
		t.Fatal("a write beyond the file size limit succeeded")
	}
	t.Logf("refused: %v", err)
	info, serr := os.Stat(filepath.Join(sp.Dir(), "00000001.seg"))
	if serr != nil || info.Size() != 10<<10 {
		t.Errorf("segment after the failed write: %v, %v; want its 10 KiB from before", info, serr)
	}
	if b.n != 0 || len(b.ext) != 0 || sp.Used() != used {
		t.Errorf("the failed write left spill %+v, used %d (was %d)", b, sp.Used(), used)
	}
	if sp.room(1) {
		t.Error("the spool has room after a failed write")
	}
	sp.release(&a)
	if !sp.room(1) {
		t.Error("the spool has no room after a release")
	}
	if err := sp.write(&b, bytes.Repeat([]byte{2}, 8<<10)); err != nil {
		t.Fatal(err)
	}
	if got, err := sp.take(&b, 0); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{2}, 8<<10)) {
		t.Errorf("the spill written after the failure reads back wrong (%v)", err)
	}
}

// TestSpoolBoundUnderConcurrentWriters: writers that do not ask room first
// (as two writers may both be told there is room) are refused at the bound:
// used never exceeds it.
func TestSpoolBoundUnderConcurrentWriters(t *testing.T) {
	for _, punch := range []bool{true, false} {
		t.Run(fmt.Sprintf("punch=%v", punch), func(t *testing.T) {
			const limit = 2 << 20
			sp := openTestSpool(t, limit, 256<<10, punch)
			var peak atomic.Int64
			var refused atomic.Int64
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Go(func() {
					rnd := rand.New(rand.NewPCG(uint64(w), 9))
					all := make([]spill, 50)
					for range 3000 {
						i := rnd.IntN(len(all))
						if rnd.IntN(10) == 0 {
							sp.release(&all[i])
							continue
						}
						if err := sp.write(&all[i], make([]byte, 1+rnd.IntN(20<<10))); errors.Is(err, errSpoolBound) {
							refused.Add(1)
						} else if err != nil {
							t.Error(err)
							return
						}
						for u := sp.Used(); u > peak.Load(); {
							peak.CompareAndSwap(peak.Load(), u)
						}
					}
					for i := range all {
						sp.release(&all[i])
					}
				})
			}
			wg.Wait()
			t.Logf("peak %d of %d, %d writes refused", peak.Load(), limit, refused.Load())
			if peak.Load() > limit {
				t.Errorf("spool held %d, bound %d", peak.Load(), limit)
			}
			if peak.Load() < limit-64<<10 || refused.Load() == 0 {
				t.Error("the writers did not reach the bound")
			}
			if sp.Used() != 0 {
				t.Errorf("used %d after every spill went", sp.Used())
			}
		})
	}
}
