package parquetsink

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"
)

// stagingRows is one row of every kind a staged value can hold, levels and
// nulls included, a row longer than a chunk, and enough small rows to fill
// several chunks.
func stagingRows() []parquet.Row {
	rows := []parquet.Row{
		{parquet.Int64Value(1).Level(0, 0, 0), parquet.ByteArrayValue([]byte("alpha")).Level(0, 1, 1), parquet.NullValue().Level(0, 0, 2)},
		{parquet.Int64Value(-7).Level(0, 0, 0), parquet.ByteArrayValue([]byte("")).Level(0, 1, 1), parquet.DoubleValue(2.5).Level(0, 1, 2)},
		{parquet.Int32Value(-3).Level(1, 3, 0), parquet.FloatValue(-1.25).Level(15, 15, 1), parquet.BooleanValue(true).Level(0, 1, 2), parquet.BooleanValue(false).Level(0, 1, 3)},
		{parquet.Int96Value(deprecated.Int96{1, 2, 0xffffffff}).Level(0, 0, 0), parquet.FixedLenByteArrayValue([]byte("0123456789abcdef")).Level(0, 0, 1)},
		{parquet.ByteArrayValue(bytes.Repeat([]byte("γ"), 3*stageChunk)).Level(0, 1, 0)}, // larger than a chunk
	}
	for i := range 2*feedPageRows + 10 {
		rows = append(rows, parquet.Row{parquet.Int64Value(int64(i)).Level(0, 0, 0), parquet.ByteArrayValue(fmt.Appendf(nil, "row %d", i)).Level(0, 1, 1)})
	}
	return rows
}

// stagingColumns is as many columns as stagingRows uses.
const stagingColumns = 4

// readBack reads the staged rows back split by column, as an encoder is fed.
func readBack(t *testing.T, s *staging) columnFeed {
	t.Helper()
	var feed columnFeed
	if err := s.appendColumns(&feed, stagingColumns); err != nil {
		t.Fatal(err)
	}
	return feed
}

// sameRows checks that feed holds want's values column by column, in order,
// and that its ends mark a row boundary every feedPageRows rows and at the
// last row.
func sameRows(t *testing.T, feed columnFeed, want []parquet.Row) {
	t.Helper()
	var cols [stagingColumns][]parquet.Value
	var ends []int
	for i, r := range want {
		for _, v := range r {
			cols[v.Column()] = append(cols[v.Column()], v)
		}
		if (i+1)%feedPageRows == 0 || i == len(want)-1 {
			for c := range cols {
				ends = append(ends, len(cols[c]))
			}
		}
	}
	if !slices.Equal(feed.ends, ends) {
		t.Fatalf("ends %v, want %v", feed.ends, ends)
	}
	for c := range cols {
		got := feed.cols[c]
		if len(got) != len(cols[c]) {
			t.Fatalf("column %d: %d values, want %d", c, len(got), len(cols[c]))
		}
		for i, v := range cols[c] {
			if !parquet.Equal(got[i], v) || got[i].RepetitionLevel() != v.RepetitionLevel() || got[i].DefinitionLevel() != v.DefinitionLevel() || got[i].Column() != v.Column() {
				t.Fatalf("column %d value %d: got %v, want %v", c, i, got[i], v)
			}
		}
	}
}

// TestStagingRoundTrip: rows staged, read back directly, through the spool's
// form in several groups, or moved behind older rows, equal the rows given,
// in order; the memory charged is what the chunks hold.
func TestStagingRoundTrip(t *testing.T) {
	pool := newChunkPool(defaultBudget())
	rows := stagingRows()
	split := len(rows) / 3
	for _, tc := range []struct {
		name  string
		stage func() staging
	}{
		{"direct", func() staging {
			var s staging
			for _, r := range rows {
				s.add(r, &pool)
			}
			return s
		}},
		{"spooled in two groups", func() staging {
			var a, b, back staging
			for _, r := range rows[:split] {
				a.add(r, &pool)
			}
			for _, r := range rows[split:] {
				b.add(r, &pool)
			}
			if err := back.unmarshalAppend(b.marshal(a.marshal(nil)), &pool); err != nil {
				t.Fatal(err)
			}
			if back.raw != a.raw+b.raw {
				t.Errorf("raw %d, want %d", back.raw, a.raw+b.raw)
			}
			a.release(&pool)
			b.release(&pool)
			return back
		}},
		{"older rows taken in front", func() staging {
			var older, newer staging
			for _, r := range rows[:split] {
				older.add(r, &pool)
			}
			for _, r := range rows[split:] {
				newer.add(r, &pool)
			}
			older.take(&newer)
			if newer.rows() != 0 || newer.mem != 0 {
				t.Errorf("the staging taken from still holds %d rows, %d bytes", newer.rows(), newer.mem)
			}
			return older
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.stage()
			if s.rows() != len(rows) {
				t.Fatalf("rows() = %d, want %d", s.rows(), len(rows))
			}
			sameRows(t, readBack(t, &s), rows)
			var held int64
			for _, c := range s.chunks {
				held += int64(cap(c))
			}
			held += int64(cap(s.chunks)) * chunkPointer
			if s.mem != held {
				t.Errorf("mem = %d, the chunks hold %d", s.mem, held)
			}
			if len(s.chunks) < 3 {
				t.Errorf("%d chunks: the rows should need several", len(s.chunks))
			}
			s.release(&pool)
		})
	}
}

// TestStagingRejectsBadSpool: a spooled group cut short or corrupted is an
// error, never a panic when the rows are read.
func TestStagingRejectsBadSpool(t *testing.T) {
	pool := newChunkPool(defaultBudget())
	var s staging
	for _, r := range stagingRows()[:4] {
		s.add(r, &pool)
	}
	good := s.marshal(nil)
	badKind := bytes.Clone(good)
	badKind[20+4+1+2] = 99 // the first value's kind
	for name, b := range map[string][]byte{
		"truncated header":  good[:10],
		"truncated chunk":   good[:len(good)-3],
		"unknown kind":      badKind,
		"rows and a header": append(bytes.Clone(good), 1, 2, 3),
	} {
		var back staging
		if err := back.unmarshalAppend(b, &pool); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestStagingRejectsColumnOutsideSchema: a staged value whose column the
// encoder does not have is an error, never an index out of range.
func TestStagingRejectsColumnOutsideSchema(t *testing.T) {
	pool := newChunkPool(defaultBudget())
	var s staging
	s.add(parquet.Row{parquet.Int64Value(1).Level(0, 0, 0), parquet.Int64Value(2).Level(0, 0, stagingColumns)}, &pool)
	var feed columnFeed
	if err := s.appendColumns(&feed, stagingColumns); err == nil {
		t.Fatal("accepted a value of column 4 in a schema of 4 columns")
	}
}

// TestChunkPoolBound: at the shipped budget the pool keeps at most a
// sixteenth of it, and what it keeps is charged; a file's chunks and the
// pool's add up to what was taken, so staging and releasing leaves the budget
// where it was.
func TestChunkPoolBound(t *testing.T) {
	budget := defaultBudget()
	pool := newChunkPool(budget)
	bound := int(budget.Limit() / 16 / stageChunk)
	if pool.limit != bound {
		t.Fatalf("limit %d chunks, want %d", pool.limit, bound)
	}
	// More chunks than the pool keeps: 100 files of about 50 chunks.
	var files [100]staging
	for i := range files {
		for j := range 500 {
			files[i].add(parquet.Row{parquet.ByteArrayValue(bytes.Repeat([]byte{byte(j)}, 400)).Level(0, 0, 0)}, &pool)
		}
		budget.Add(files[i].mem) // as the writer charges a file
	}
	if taken := len(files) * len(files[0].chunks); taken <= bound {
		t.Fatalf("the files took %d chunks, not more than the pool keeps (%d)", taken, bound)
	}
	for i := range files {
		budget.Add(-files[i].mem)
		files[i].release(&pool)
	}
	if len(pool.free) != bound || budget.Used() != int64(bound)*stageChunk {
		t.Fatalf("pool keeps %d chunks, budget used %d; want %d and %d", len(pool.free), budget.Used(), bound, int64(bound)*stageChunk)
	}
	var s staging
	s.add(parquet.Row{parquet.Int64Value(1).Level(0, 0, 0)}, &pool)
	if len(pool.free) != bound-1 || budget.Used() != int64(bound-1)*stageChunk {
		t.Fatalf("after a get: pool %d chunks, budget used %d", len(pool.free), budget.Used())
	}
	pool.drop()
	if budget.Used() != 0 || len(pool.free) != 0 {
		t.Fatalf("after drop: budget used %d, %d chunks kept", budget.Used(), len(pool.free))
	}
}

// defaultBudget is memory.budget at its shipped default.
func defaultBudget() *Budget {
	var mem MemoryConfig
	mem.SetDefaults(false)
	return NewBudget(mem.Budget.Bytes())
}

// BenchmarkStaging stages 1,024 decoded taxi trips and reads them back, as a
// file without an encoder does between its first row and its row group. One
// op is one row staged and read back.
func BenchmarkStaging(b *testing.B) {
	_, rows, bytes := taxiRows(b)
	pool := newChunkPool(defaultBudget())
	var feed columnFeed
	columns := len(rows[0])
	b.SetBytes(bytes / int64(len(rows)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(rows) {
		var s staging
		for _, r := range rows[:min(len(rows), b.N-i)] {
			s.add(r, &pool)
		}
		if err := s.appendColumns(&feed, columns); err != nil {
			b.Fatal(err)
		}
		feed.reset()
		s.release(&pool)
	}
}
