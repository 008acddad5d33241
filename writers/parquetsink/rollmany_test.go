package parquetsink

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
	"github.com/prometheus/client_golang/prometheus"
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
