package parquetsink

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sinkd/sinkd/writers"
)

// TestRollManyInParallel rolls hundreds of open files at once, as a drain
// does, on several encoders side by side: files that only staged rows, files
// that already hold row groups (and spooled bytes) from memory relief, and
// files whose staged rows wait in the spool. Every file must read back row
// for row with statistics and page index where they belong, and the budget
// must come back to what the writer held before the files opened.
func TestRollManyInParallel(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	sp, err := OpenSpool(t.TempDir(), "p", "i1", "e1", 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	f := newFixture(t, func(o *Options) {
		o.Schema = assemblySchema
		o.MaxEncoders = 2
		o.MaxOpenFiles = 100_000
		o.Budget = NewBudget(32 << 20)
		o.Metrics = NewMetrics(prometheus.NewRegistry(), o.Budget)
		o.Spool = sp
	})
	if f.w.rollWorkers() < 2 {
		t.Fatalf("%d roll workers, want several", f.w.rollWorkers())
	}
	ctx := context.Background()
	const buckets = 300
	want := map[string][]assemblyRow{}
	for b := range buckets {
		want[fmt.Sprintf("b=%03d", b)] = makeAssemblyRows(b, 20+b%7*40)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	next := map[string]int{}
	written := 0
	write := func(bucket string, n int) {
		for range n {
			i := next[bucket]
			if i == len(want[bucket]) {
				return
			}
			next[bucket]++
			written++
			if err := f.w.Write(ctx, []byte(bucket), want[bucket][i].row(), rec(0, int64(written))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for range 20_000 {
		write(fmt.Sprintf("b=%03d", rng.IntN(buckets)), 1)
	}
	// Some files get row groups (and spooled bytes) or spooled rows before
	// the rest of their rows.
	for b := 0; b < buckets; b += 3 {
		fl := f.w.files[fmt.Sprintf("b=%03d", b)]
		if fl == nil {
			continue
		}
		if b%2 == 0 {
			if err := f.w.finishRowGroup(fl); err != nil {
				t.Fatal(err)
			}
			if err := f.w.shrink(fl); err != nil {
				t.Fatal(err)
			}
		} else if fl.enc == nil && fl.staged.rows() > 0 {
			if err := f.w.spillRows(fl); err != nil {
				t.Fatal(err)
			}
		}
	}
	for b := range buckets {
		bucket := fmt.Sprintf("b=%03d", b)
		write(bucket, len(want[bucket]))
	}
	if sp.Used() == 0 {
		t.Fatal("nothing was spooled: the test does not cover spooled files")
	}
	if err := f.w.RollPartitions(nil, "test"); err != nil {
		t.Fatal(err)
	}
	if n := f.w.OpenFiles(); n != 0 {
		t.Fatalf("%d files still open", n)
	}
	f.commit(t)
	files := f.readFiles(t)
	if len(files) != buckets {
		t.Fatalf("%d files, want %d", len(files), buckets)
	}
	for key, body := range files {
		checkAssembledGroups(t, key, body, want[key[:len("b=000")]], 1)
	}
	if sp.Used() != 0 {
		t.Errorf("spool holds %d bytes after every file rolled", sp.Used())
	}
	f.w.dropIdleEncoders()
	f.w.recycled.drop()
	if used, encs := f.budget.Used(), int64(f.w.encoders)*f.w.overhead; used != encs {
		t.Errorf("budget used %d after every file rolled, want the %d of the encoders left", used, encs)
	}
}

// TestShiftOffsetIndex: the hand-read offset index gives byte for byte what
// decoding, shifting and encoding it by reflection gives, for lists short and
// long, offsets whose varint grows, and the optional unencoded sizes.
func TestShiftOffsetIndex(t *testing.T) {
	for _, pages := range []int{1, 2, 14, 15, 16, 300} {
		for _, unencoded := range []bool{false, true} {
			for _, delta := range []int64{0, 5, 1 << 40, -3} {
				var oi format.OffsetIndex
				for i := range pages {
					oi.PageLocations = append(oi.PageLocations, format.PageLocation{Offset: int64(4 + 1000*i), CompressedPageSize: int32(900 + i), FirstRowIndex: int64(64 * i)})
					if unencoded {
						oi.UnencodedByteArrayDataBytes = append(oi.UnencodedByteArrayDataBytes, int64(77*i))
					}
				}
				src, err := thrift.Marshal(new(thrift.CompactProtocol), &oi)
				if err != nil {
					t.Fatal(err)
				}
				for j := range oi.PageLocations {
					oi.PageLocations[j].Offset += delta
				}
				want, err := thrift.Marshal(new(thrift.CompactProtocol), &oi)
				if err != nil {
					t.Fatal(err)
				}
				got, ok := shiftOffsetIndexFast([]byte("x"), src, delta)
				if !ok {
					t.Fatalf("%d pages, unencoded %v: the fast path refused parquet-go's encoding", pages, unencoded)
				}
				if !bytes.Equal(got[1:], want) || got[0] != 'x' {
					t.Fatalf("%d pages, unencoded %v, delta %d:\n got %x\nwant %x", pages, unencoded, delta, got[1:], want)
				}
			}
		}
	}
	if _, ok := shiftOffsetIndexFast(nil, []byte{0x15, 0x00}, 1); ok {
		t.Fatal("a struct of another shape took the fast path")
	}
}

// TestRollUntil: a roll with a deadline (a drain short of time) closes the
// files open longest first and starts none once the deadline has passed;
// the files it leaves open stay open, and the checkpoint's restart point
// stays at the oldest record they hold. Both paths are covered: one file at
// a time (few files) and batches on parallel encoders (many).
func TestRollUntil(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	for _, tt := range []struct {
		name          string
		files         int
		checksAllowed int // deadline checks that find time left: one before listing the files, then one a file or batch
		wantRolled    int
	}{
		{"serial, deadline passed", 4, 0, 0},
		{"serial, cut after 2 files", 4, 3, 2},
		{"serial, time for all", 4, 100, 4},
		{"parallel, deadline passed", 100, 0, 0},
		{"parallel, cut after one batch", 100, 2, 2 * rollBatchPerWorker},
		{"parallel, time for all", 100, 100, 100},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(o *Options) { o.MaxOpenFiles = 100_000 })
			if tt.files >= minParallelRolls && f.w.rollWorkers() != 2 {
				t.Fatalf("%d roll workers, want 2", f.w.rollWorkers())
			}
			ctx := context.Background()
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			// Bucket b opens at minute files-b: the last bucket is the oldest.
			// Its first record has offset b; a second record comes later.
			for b := tt.files - 1; b >= 0; b-- {
				f.w.SetNow(start.Add(time.Duration(tt.files-b) * time.Minute))
				if err := f.w.Write(ctx, []byte(fmt.Sprintf("b=%03d", b)), testRow(int64(b), "x"), rec(0, int64(b))); err != nil {
					t.Fatal(err)
				}
			}
			for b := range tt.files {
				if err := f.w.Write(ctx, []byte(fmt.Sprintf("b=%03d", b)), testRow(int64(1000+b), "x"), rec(0, int64(1000+b))); err != nil {
					t.Fatal(err)
				}
			}
			until := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			checks := 0
			defer func(c func() time.Time) { wallClock = c }(wallClock)
			wallClock = func() time.Time {
				checks++
				if checks > tt.checksAllowed {
					return until
				}
				return until.Add(-time.Hour)
			}
			if err := f.w.Roll(writers.Roll{All: true, Reason: "test", Until: until}); err != nil {
				t.Fatal(err)
			}
			if open := f.w.OpenFiles(); open != tt.files-tt.wantRolled {
				t.Fatalf("%d files open after the roll, want %d", open, tt.files-tt.wantRolled)
			}
			// Oldest first: the files left open are the newest, buckets
			// 0 .. open-1.
			for b := range tt.files {
				_, open := f.w.files[fmt.Sprintf("b=%03d", b)]
				if want := b < tt.files-tt.wantRolled; open != want {
					t.Errorf("bucket %d open: %v, want %v", b, open, want)
				}
			}
			prep := f.commit(t)
			if len(prep.Uploads) != tt.wantRolled {
				t.Errorf("%d files committed, want %d", len(prep.Uploads), tt.wantRolled)
			}
			low, ok := prep.OpenLow[rec(0, 0).Partition]
			if left := tt.files - tt.wantRolled; left == 0 && ok {
				t.Errorf("restart point %v with no file open", low)
			} else if left > 0 && (!ok || low.Offset != 0) {
				t.Errorf("restart point %v (set: %v), want offset 0, the first record of the files left open", low, ok)
			}
		})
	}
}
