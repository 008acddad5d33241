package parquetsink

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
	"github.com/prometheus/client_golang/prometheus"
)

// assemblySchema has a required int64, an optional string and a double, so
// that row groups carry definition levels, dictionaries and statistics.
var assemblySchema = parquet.NewSchema("t", parquet.Group{
	"id":      parquet.Leaf(parquet.Int64Type),
	"note":    parquet.Optional(parquet.String()),
	"payload": parquet.String(),
	"amount":  parquet.Leaf(parquet.DoubleType),
})

type assemblyRow struct {
	id      int64
	note    *string
	payload string
	amount  float64
}

func (r assemblyRow) row() parquet.Row {
	// Leaf columns are ordered by name: amount, id, note, payload.
	note := parquet.NullValue().Level(0, 0, 2)
	if r.note != nil {
		note = parquet.ByteArrayValue([]byte(*r.note)).Level(0, 1, 2)
	}
	return parquet.Row{
		parquet.DoubleValue(r.amount).Level(0, 0, 0),
		parquet.Int64Value(r.id).Level(0, 0, 1),
		note,
		parquet.ByteArrayValue([]byte(r.payload)).Level(0, 0, 3),
	}
}

func makeAssemblyRows(bucket, n int) []assemblyRow {
	rows := make([]assemblyRow, n)
	for i := range rows {
		id := int64(bucket*1_000_000 + i)
		r := assemblyRow{id: id, payload: noise(int(id), 20+i%60), amount: float64(i) / 4}
		if i%7 != 0 {
			s := fmt.Sprintf("note-%d", i%13)
			r.note = &s
		}
		rows[i] = r
	}
	return rows
}

// TestAssembledFilesAreValidParquet writes two buckets through one encoder
// (the one-shot encoder: neither file can hold one), with tiny row groups
// and pages. Every file must read back row for row, with
// statistics, column indexes and offset indexes that describe the bytes where
// they now sit.
func TestAssembledFilesAreValidParquet(t *testing.T) {
	for _, codec := range []string{"snappy", "zstd", "gzip", "none"} {
		t.Run(codec, func(t *testing.T) {
			f := newFixture(t, func(o *Options) {
				o.Schema = assemblySchema
				o.MaxEncoders = 1
				o.Config.Compression = codec
				o.Config.RowGroupSize = 16 << 10
				o.Config.PageSize = 1 << 10
			})
			ctx := context.Background()
			want := map[string][]assemblyRow{}
			for b := range 2 {
				want[fmt.Sprintf("b=%d", b)] = makeAssemblyRows(b, 3000)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			next := map[string]int{}
			for written := 0; written < 6000; {
				bucket := fmt.Sprintf("b=%d", rng.IntN(2))
				i := next[bucket]
				if i == len(want[bucket]) {
					continue
				}
				next[bucket]++
				written++
				if err := f.w.Write(ctx, []byte(bucket), want[bucket][i].row(), rec(0, int64(written))); err != nil {
					t.Fatal(err)
				}
			}
			if f.w.encoders != 1 {
				t.Fatalf("encoders = %d, want the bound 1", f.w.encoders)
			}
			if err := f.w.RollPartitions(nil, "test"); err != nil {
				t.Fatal(err)
			}
			f.commit(t)
			files := f.readFiles(t)
			if len(files) != 2 {
				t.Fatalf("%d files, want 2", len(files))
			}
			for key, body := range files {
				bucket := key[:len("b=0")]
				checkAssembledFile(t, key, body, want[bucket])
			}
		})
	}
}

func (f *fixture) readFiles(t *testing.T) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	keys, err := f.st.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, k := range keys {
		if body, err := f.st.Get(ctx, k); err != nil {
			t.Fatal(err)
		} else {
			out[k] = body
		}
	}
	return out
}

func checkAssembledFile(t *testing.T, key string, body []byte, want []assemblyRow) {
	t.Helper()
	checkAssembledGroups(t, key, body, want, 5)
}

// checkAssembledGroups is checkAssembledFile for a file of at least
// minGroups row groups.
func checkAssembledGroups(t *testing.T, key string, body []byte, want []assemblyRow, minGroups int) {
	t.Helper()
	pf, err := parquet.OpenFile(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	if pf.NumRows() != int64(len(want)) {
		t.Fatalf("%s: %d rows, want %d", key, pf.NumRows(), len(want))
	}
	groups := pf.Metadata().RowGroups
	if len(groups) < minGroups {
		t.Fatalf("%s: %d row groups; the test needs several", key, len(groups))
	}

	// Every row, in order.
	r := parquet.NewGenericReader[any](pf)
	buf := make([]parquet.Row, 128)
	var got []parquet.Row
	for {
		n, err := r.ReadRows(buf)
		for _, row := range buf[:n] {
			got = append(got, row.Clone())
		}
		if err != nil {
			break
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%s: read %d rows, want %d", key, len(got), len(want))
	}
	for i := range want {
		if !got[i].Equal(want[i].row()) {
			t.Fatalf("%s: row %d = %v, want %v", key, i, got[i], want[i].row())
		}
	}

	// Statistics and the page index of the id column, per row group.
	first := 0
	for g, rg := range groups {
		ids := want[first : first+int(rg.NumRows)]
		cc := rg.Columns[1]
		if lo, hi := parquet.Int64Value(ids[0].id), parquet.Int64Value(ids[len(ids)-1].id); !bytes.Equal(cc.MetaData.Statistics.MinValue, lo.Bytes()) || !bytes.Equal(cc.MetaData.Statistics.MaxValue, hi.Bytes()) {
			t.Fatalf("%s: row group %d id statistics %x..%x, want %d..%d", key, g, cc.MetaData.Statistics.MinValue, cc.MetaData.Statistics.MaxValue, ids[0].id, ids[len(ids)-1].id)
		}
		for c := range rg.Columns {
			if got, want := rg.Columns[c].MetaData.PathInSchema, assemblySchema.Columns()[c]; !slices.Equal(got, want) {
				t.Fatalf("%s: row group %d column %d path_in_schema %q, want %q", key, g, c, got, want)
			}
			checkOffsetIndex(t, key, body, &rg, g, c)
		}
		first += int(rg.NumRows)
	}

	// Seeking uses the offset index to find the page of a row.
	rng := rand.New(rand.NewPCG(3, 4))
	for range 50 {
		i := rng.IntN(len(want))
		if err := r.SeekToRow(int64(i)); err != nil {
			t.Fatal(err)
		}
		n, err := r.ReadRows(buf[:1])
		if n != 1 {
			t.Fatalf("%s: seek to row %d: %v", key, i, err)
		}
		if !buf[0].Equal(want[i].row()) {
			t.Fatalf("%s: row %d after a seek = %v, want %v", key, i, buf[0], want[i].row())
		}
	}
}

// checkOffsetIndex decodes the page header at every location of a column
// chunk's offset index: each must be a page of the stated size, in order.
func checkOffsetIndex(t *testing.T, key string, body []byte, rg *format.RowGroup, g, c int) {
	t.Helper()
	cc := &rg.Columns[c]
	if cc.OffsetIndexLength == 0 || cc.ColumnIndexLength == 0 {
		t.Fatalf("%s: row group %d column %d has no page index", key, g, c)
	}
	var oi format.OffsetIndex
	if err := thrift.Unmarshal(new(thrift.CompactProtocol), body[cc.OffsetIndexOffset:cc.OffsetIndexOffset+int64(cc.OffsetIndexLength)], &oi); err != nil {
		t.Fatalf("%s: row group %d column %d offset index: %v", key, g, c, err)
	}
	var ci format.ColumnIndex
	if err := thrift.Unmarshal(new(thrift.CompactProtocol), body[cc.ColumnIndexOffset:cc.ColumnIndexOffset+int64(cc.ColumnIndexLength)], &ci); err != nil {
		t.Fatalf("%s: row group %d column %d column index: %v", key, g, c, err)
	}
	if len(ci.MinValues) != len(oi.PageLocations) {
		t.Fatalf("%s: row group %d column %d: %d column index pages, %d offset index pages", key, g, c, len(ci.MinValues), len(oi.PageLocations))
	}
	chunkStart := cc.MetaData.DataPageOffset
	if cc.MetaData.DictionaryPageOffset > 0 {
		chunkStart = cc.MetaData.DictionaryPageOffset
	}
	chunkEnd := chunkStart + cc.MetaData.TotalCompressedSize
	for p, loc := range oi.PageLocations {
		if loc.Offset < chunkStart || loc.Offset+int64(loc.CompressedPageSize) > chunkEnd {
			t.Fatalf("%s: row group %d column %d page %d at %d+%d, outside its chunk %d..%d", key, g, c, p, loc.Offset, loc.CompressedPageSize, chunkStart, chunkEnd)
		}
		in := bytes.NewReader(body[loc.Offset : loc.Offset+int64(loc.CompressedPageSize)])
		var h format.PageHeader
		if err := thrift.NewDecoder(new(thrift.CompactProtocol).NewReader(in)).Decode(&h); err != nil {
			t.Fatalf("%s: row group %d column %d page %d: no page header at %d: %v", key, g, c, p, loc.Offset, err)
		}
		if h.Type != format.DataPage && h.Type != format.DataPageV2 {
			t.Fatalf("%s: row group %d column %d page %d at %d is a %v page", key, g, c, p, loc.Offset, h.Type)
		}
		if int(h.CompressedPageSize) != in.Len() {
			t.Fatalf("%s: row group %d column %d page %d: header says %d bytes, offset index leaves %d", key, g, c, p, h.CompressedPageSize, in.Len())
		}
	}
}

// TestManyBucketsAtTheEncoderBound opens 2,000 buckets at once with four
// encoders and a budget too small for one parquet-go writer per bucket; half
// the rows go to 8 hot buckets, which take the encoders from each other. The
// encoder count stays at its bound, the bytes held stay within the budget,
// and every row reads back once.
func TestManyBucketsAtTheEncoderBound(t *testing.T) {
	const (
		buckets = 2000
		budget  = 16 << 20
		rows    = 60_000
	)
	f := newFixture(t, func(o *Options) {
		o.MaxEncoders = 4
		o.MaxOpenFiles = buckets + 8
		o.Budget = NewBudget(budget)
		o.Metrics = NewMetrics(prometheus.NewRegistry(), o.Budget)
	})
	ctx := context.Background()
	var peak int64
	for i := range rows {
		bucket := fmt.Sprintf("b=%04d", (i/2)%buckets)
		if i%2 == 1 {
			bucket = fmt.Sprintf("hot=%d", (i/2)%8)
		}
		if err := f.w.Write(ctx, []byte(bucket), testRow(int64(i), noise(i, 200)), rec(0, int64(i))); err != nil {
			t.Fatal(err)
		}
		peak = max(peak, f.budget.Used())
		if i == 2*buckets {
			if open := f.w.OpenFiles(); open != buckets+8 {
				t.Fatalf("%d files open after one row per bucket, want %d", open, buckets+8)
			}
		}
	}
	if f.w.encoders != 4 {
		t.Fatalf("encoders = %d, want the bound 4", f.w.encoders)
	}
	t.Logf("peak held %d bytes under a budget of %d; %d files pending", peak, budget, f.w.Pending())
	if peak > budget+budget/8 {
		t.Fatalf("held %d bytes, budget %d", peak, budget)
	}
	if err := f.w.RollPartitions(nil, "test"); err != nil {
		t.Fatal(err)
	}
	f.commit(t)
	if ids := f.readIDs(t); len(ids) != rows {
		t.Fatalf("rows = %d, want %d", len(ids), rows)
	}
}

// TestEncoderLeasePolicy walks the encoder pool through its cases: files get
// encoders while the pool has room, a file finding none makes one-shot row
// groups instead of ending a busy file's row group, and takes the encoder of
// a file left unwritten for stealAfter.
func TestEncoderLeasePolicy(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.MaxEncoders = 3 // two to lend, one for one-shot row groups
		o.Config.RowGroupSize = 64 << 20
	})
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	f.w.SetNow(now)
	id := int64(0)
	// fill writes rows into bucket until it holds an encoder or has made a
	// row group without one.
	fill := func(bucket string) *file {
		t.Helper()
		groups := 0
		if fl := f.w.files[bucket]; fl != nil {
			groups = len(fl.groups)
		}
		for {
			id++
			if err := f.w.Write(ctx, []byte(bucket), testRow(id, noise(int(id), 300)), rec(0, id)); err != nil {
				t.Fatal(err)
			}
			fl := f.w.files[bucket]
			if fl.enc != nil || len(fl.groups) > groups {
				return fl
			}
		}
	}
	a, b := fill("b=a"), fill("b=b")
	if a.enc == nil || b.enc == nil || a.enc == b.enc {
		t.Fatal("the first two files did not get encoders of their own")
	}
	c := fill("b=c")
	if c.enc != nil || len(c.groups) != 1 || len(b.groups) != 0 {
		t.Fatalf("with the pool lent out, c holds an encoder (%v) or b's row group ended (%d groups)", c.enc != nil, len(b.groups))
	}
	if f.w.encoders != 3 {
		t.Fatalf("%d encoders, want 3", f.w.encoders)
	}

	// b goes quiet; a keeps being written.
	now = now.Add(stealAfter)
	f.w.SetNow(now)
	fill("b=a")
	c = fill("b=c")
	if c.enc == nil || b.enc != nil || len(b.groups) != 1 || a.enc == nil {
		t.Fatalf("after b went quiet: c has an encoder %v, b has one %v with %d row groups, a has one %v",
			c.enc != nil, b.enc != nil, len(b.groups), a.enc != nil)
	}

	if err := f.w.RollPartitions(nil, "test"); err != nil {
		t.Fatal(err)
	}
	f.commit(t)
	if ids := f.readIDs(t); len(ids) != int(id) {
		t.Fatalf("read %d rows, wrote %d", len(ids), id)
	}
}
