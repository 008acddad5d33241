package parquetsink

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"
)

// staging holds a file's rows that no encoder has taken yet, as bytes the
// garbage collector need not scan: parquet.Value holds a pointer, and with
// thousands of open files most of the budget can be staged rows.
//
// Rows are written one after another into fixed-size chunks that never move.
// A file staging more takes one more chunk instead of copying what it has
// into a larger buffer, and the chunks a file gives back (its rows spilled or
// encoded) go to the next file that stages: once a writer is warm, staging
// allocates next to nothing, which with thousands of files is most of what
// the garbage collector would otherwise have to keep up with. A row never
// spans two chunks, so a byte value read back can point into its chunk.
//
// A row is its value count (uvarint) and its values. A value is its column
// (2 bytes), kind (1 byte, null for a null value) and levels (1 byte:
// repetition<<4 | definition), then its payload: nothing for a null, 1 byte
// for a boolean, 4 for int32 and float, 8 for int64 and double, 12 for int96,
// a uvarint length and the bytes for byte arrays.
type staging struct {
	chunks [][]byte
	n      int   // rows
	values int   // values in all rows
	bytes  int64 // bytes written into the chunks
	raw    int64 // the rows' plain size: what the encoder will buffer for them
	mem    int64 // memory held, by capacity
}

const (
	null = -1
	// maxLevel bounds the repetition and definition levels a staged value
	// keeps (four bits each); New rejects deeper schemas.
	maxLevel = 15
	// stageChunk is the size of a staging chunk: small, because with
	// thousands of files open each holds a partly filled one; a row larger
	// than a chunk gets a chunk of its own size.
	stageChunk   = 4 << 10
	chunkPointer = 24 // a []byte header in the chunk list
)

func (s *staging) rows() int { return s.n }

// used is the memory the staged rows take, without spare capacity.
func (s *staging) used() int64 { return s.bytes }

// add appends row, taking a chunk from pool when the last one is full.
func (s *staging) add(row parquet.Row, pool *chunkPool) {
	var c []byte
	if k := len(s.chunks); k > 0 {
		c = s.chunks[k-1]
	}
	end, raw, ok := encodeRow(c, row)
	if !ok {
		// Rarely: once a chunk, or for a row larger than one.
		c = s.room(rowBound(row), pool)
		end, raw, _ = encodeRow(c, row)
	}
	s.bytes += int64(end - len(c))
	s.chunks[len(s.chunks)-1] = c[:end]
	s.n++
	s.values += len(row)
	s.raw += raw
}

// rowBound is the most bytes encodeRow can take for row.
func rowBound(row parquet.Row) int {
	// A null's Kind is null (-1): the kind alone tells what follows.
	need := binary.MaxVarintLen32
	for i := range row {
		need += 4 + 12
		if k := row[i].Kind(); k == parquet.ByteArray || k == parquet.FixedLenByteArray {
			need += binary.MaxVarintLen32 + len(row[i].ByteArray())
		}
	}
	return need
}

// encodeRow writes row after the end of c, within its capacity, in one
// pass: it reports where the row ends and its plain size, or false if it
// does not fit.
func encodeRow(c []byte, row parquet.Row) (end int, raw int64, ok bool) {
	p := len(c)
	c = c[:cap(c)]
	if len(c)-p < binary.MaxVarintLen32 {
		return 0, 0, false
	}
	p += binary.PutUvarint(c[p:], uint64(len(row)))
	for i := range row {
		v := &row[i]
		kind := v.Kind()
		// 16 bytes hold the header and any fixed-size payload.
		if len(c)-p < 16 {
			return 0, 0, false
		}
		binary.LittleEndian.PutUint16(c[p:], uint16(v.Column()))
		c[p+2] = byte(kind)
		c[p+3] = byte(v.RepetitionLevel()<<4 | v.DefinitionLevel())
		p += 4
		switch kind {
		case null:
			raw++
		case parquet.ByteArray, parquet.FixedLenByteArray:
			b := v.ByteArray()
			if len(c)-p < binary.MaxVarintLen32+len(b) {
				return 0, 0, false
			}
			p += binary.PutUvarint(c[p:], uint64(len(b)))
			p += copy(c[p:], b)
			raw += int64(len(b)) + 4
		case parquet.Int96:
			for _, w := range v.Int96() {
				binary.LittleEndian.PutUint32(c[p:], w)
				p += 4
			}
			raw += 12
		case parquet.Boolean:
			c[p] = 0
			if v.Boolean() {
				c[p] = 1
			}
			p++
			raw++
		case parquet.Int32:
			binary.LittleEndian.PutUint32(c[p:], uint32(v.Int32()))
			p += 4
			raw += 4
		case parquet.Float:
			binary.LittleEndian.PutUint32(c[p:], math.Float32bits(v.Float()))
			p += 4
			raw += 4
		case parquet.Double:
			binary.LittleEndian.PutUint64(c[p:], math.Float64bits(v.Double()))
			p += 8
			raw += 8
		default: // Int64
			binary.LittleEndian.PutUint64(c[p:], uint64(v.Int64()))
			p += 8
			raw += 8
		}
	}
	return p, raw, true
}

// room returns the last chunk once it has need bytes free, adding one if not.
func (s *staging) room(need int, pool *chunkPool) []byte {
	if k := len(s.chunks); k > 0 {
		if c := s.chunks[k-1]; cap(c)-len(c) >= need {
			return c
		}
	}
	var c []byte
	if need <= stageChunk {
		c = pool.get()
	} else {
		c = make([]byte, 0, need)
	}
	before := cap(s.chunks)
	s.chunks = append(s.chunks, c)
	s.mem += int64(cap(c)) + int64(cap(s.chunks)-before)*chunkPointer
	return c
}

// columnFeed holds staged rows split by column, for an encoder that takes one
// column at a time (parquet.ColumnWriter.WriteRowValues). WriteRows sends
// every value of every row through a per-row, per-column dispatch; at
// thousands of buckets every row is staged first, and that dispatch was a
// quarter of encoding them.
type columnFeed struct {
	cols [][]parquet.Value
	// ends holds, after every feedPageRows rows and after the last, where
	// each column's values for those rows end: column c's k-th end is
	// ends[k*len(cols)+c].
	ends []int
}

// feedPageRows is how many rows go to a column at a time: the encoder can
// start a page only between calls, so this bounds how far a page passes
// its size.
const feedPageRows = 256

// appendColumns appends the staged rows to feed, split into columns columns.
// Byte values point into the chunks: they are valid until release.
func (s *staging) appendColumns(feed *columnFeed, columns int) error {
	for len(feed.cols) < columns {
		feed.cols = append(feed.cols, nil)
	}
	feed.cols = feed.cols[:columns]
	cols := feed.cols
	rows := 0
	for _, c := range s.chunks {
		for p := 0; p < len(c); {
			nv, k := uvarint(c[p:])
			p += k
			for range nv {
				col, kind, levels := int(binary.LittleEndian.Uint16(c[p:])), parquet.Kind(int8(c[p+2])), c[p+3]
				p += 4
				if col >= columns {
					return fmt.Errorf("staged value of column %d in a schema of %d columns", col, columns)
				}
				var v parquet.Value
				switch kind {
				case null:
				case parquet.ByteArray, parquet.FixedLenByteArray:
					n, k := uvarint(c[p:])
					p += k
					b := c[p : p+n : p+n]
					p += n
					if kind == parquet.ByteArray {
						v = parquet.ByteArrayValue(b)
					} else {
						v = parquet.FixedLenByteArrayValue(b)
					}
				case parquet.Int96:
					v = parquet.Int96Value(deprecated.Int96{binary.LittleEndian.Uint32(c[p:]), binary.LittleEndian.Uint32(c[p+4:]), binary.LittleEndian.Uint32(c[p+8:])})
					p += 12
				case parquet.Boolean:
					v = parquet.BooleanValue(c[p] == 1)
					p++
				case parquet.Int32:
					v = parquet.Int32Value(int32(binary.LittleEndian.Uint32(c[p:])))
					p += 4
				case parquet.Float:
					v = parquet.FloatValue(math.Float32frombits(binary.LittleEndian.Uint32(c[p:])))
					p += 4
				case parquet.Double:
					v = parquet.DoubleValue(math.Float64frombits(binary.LittleEndian.Uint64(c[p:])))
					p += 8
				default:
					v = parquet.Int64Value(int64(binary.LittleEndian.Uint64(c[p:])))
					p += 8
				}
				// The pointer setters, not Value.Level: Level is too large to
				// inline, and its copies through the stack stall on every
				// value. Staging and splitting a taxi row took 620 ns with
				// it, 280 without (BenchmarkStaging).
				v.SetRepetitionLevel(int(levels >> 4))
				v.SetDefinitionLevel(int(levels & maxLevel))
				v.SetColumnIndex(col)
				cols[col] = append(cols[col], v)
			}
			if rows++; rows%feedPageRows == 0 {
				feed.mark()
			}
		}
	}
	if rows%feedPageRows != 0 {
		feed.mark()
	}
	return nil
}

func (feed *columnFeed) mark() {
	for _, c := range feed.cols {
		feed.ends = append(feed.ends, len(c))
	}
}

// writeTo hands every column's values to its writer, whole rows at a time.
// ws must be the writers of the columns appendColumns split the rows into.
func (feed *columnFeed) writeTo(ws []*parquet.ColumnWriter) error {
	for c, w := range ws {
		start := 0
		for k := c; k < len(feed.ends); k += len(ws) {
			end := feed.ends[k]
			if _, err := w.WriteRowValues(feed.cols[c][start:end]); err != nil {
				return err
			}
			start = end
		}
	}
	return nil
}

// reset empties feed, dropping its references into staging chunks.
func (feed *columnFeed) reset() {
	for i := range feed.cols {
		clear(feed.cols[i])
		feed.cols[i] = feed.cols[i][:0]
	}
	feed.ends = feed.ends[:0]
}

// uvarint reads a varint the chunk was written with (checked on the way
// in), most often a single byte.
func uvarint(b []byte) (int, int) {
	if b[0] < 0x80 {
		return int(b[0]), 1
	}
	v, k := binary.Uvarint(b)
	return int(v), k
}

// release empties the staging and gives its chunks to pool.
func (s *staging) release(pool *chunkPool) {
	for _, c := range s.chunks {
		pool.put(c)
	}
	*s = staging{}
}

// take moves every row of o to the end of s.
func (s *staging) take(o *staging) {
	before := cap(s.chunks)
	s.chunks = append(s.chunks, o.chunks...)
	s.mem += o.mem - int64(cap(o.chunks))*chunkPointer + int64(cap(s.chunks)-before)*chunkPointer
	s.n += o.n
	s.values += o.values
	s.bytes += o.bytes
	s.raw += o.raw
	*o = staging{}
}

// marshal appends the staged rows to b in the spool's form: a header (rows,
// values, raw size, chunks), then each chunk's length and bytes.
func (s *staging) marshal(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(s.n))
	b = binary.LittleEndian.AppendUint32(b, uint32(s.values))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.raw))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.chunks)))
	for _, c := range s.chunks {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(c)))
		b = append(b, c...)
	}
	return b
}

// unmarshalAppend appends every group of rows marshal wrote in b to s, each
// chunk checked whole first: the spool is a local disk, and a bad read must be
// an error, not a panic in the encoder.
func (s *staging) unmarshalAppend(b []byte, pool *chunkPool) error {
	for len(b) > 0 {
		var got staging
		rest, err := got.unmarshalGroup(b, pool)
		if err != nil {
			got.release(pool)
			return fmt.Errorf("spooled rows: %w", err)
		}
		s.take(&got)
		b = rest
	}
	return nil
}

// unmarshalGroup reads the group of rows at the front of b into s, an empty
// staging, and returns what follows it.
func (s *staging) unmarshalGroup(b []byte, pool *chunkPool) ([]byte, error) {
	const header = 20
	if len(b) < header {
		return nil, errors.New("truncated header")
	}
	rows, values := int(binary.LittleEndian.Uint32(b)), int(binary.LittleEndian.Uint32(b[4:]))
	raw := int64(binary.LittleEndian.Uint64(b[8:]))
	chunks := int(binary.LittleEndian.Uint32(b[16:]))
	b = b[header:]
	for range chunks {
		if len(b) < 4 || len(b) < 4+int(binary.LittleEndian.Uint32(b)) {
			return nil, errors.New("truncated chunk")
		}
		n := int(binary.LittleEndian.Uint32(b))
		src := b[4 : 4+n]
		b = b[4+n:]
		r, v, err := checkChunk(src)
		if err != nil {
			return nil, err
		}
		c := s.room(n, pool)
		s.chunks[len(s.chunks)-1] = append(c, src...)
		s.n, s.values, s.bytes = s.n+r, s.values+v, s.bytes+int64(n)
	}
	if s.n != rows || s.values != values {
		return nil, fmt.Errorf("%d rows of %d values, the header says %d of %d", s.n, s.values, rows, values)
	}
	s.raw = raw
	return b, nil
}

// checkChunk walks a chunk's rows and reports how many rows and values it
// holds, or why it cannot be read.
func checkChunk(c []byte) (rows, values int, err error) {
	for len(c) > 0 {
		nv, k := binary.Uvarint(c)
		if k <= 0 {
			return 0, 0, errors.New("bad value count")
		}
		c = c[k:]
		for range nv {
			if len(c) < 4 {
				return 0, 0, errors.New("truncated value")
			}
			kind := parquet.Kind(int8(c[2]))
			c = c[4:]
			var n int
			switch kind {
			case null:
			case parquet.ByteArray, parquet.FixedLenByteArray:
				l, k := binary.Uvarint(c)
				if k <= 0 || l > uint64(len(c)-k) {
					return 0, 0, errors.New("truncated byte array")
				}
				n = k + int(l)
			case parquet.Int96:
				n = 12
			case parquet.Boolean:
				n = 1
			case parquet.Int32, parquet.Float:
				n = 4
			case parquet.Int64, parquet.Double:
				n = 8
			default:
				return 0, 0, fmt.Errorf("unknown kind %d", kind)
			}
			if len(c) < n {
				return 0, 0, errors.New("truncated value")
			}
			c = c[n:]
		}
		rows++
		values += int(nv)
	}
	return rows, values, nil
}

// chunkPool keeps the staging chunks files give back for the next file that
// stages. What it keeps is memory held, charged to the budget, and bounded: a
// sixteenth of the budget covers what files stage between two reliefs, and
// the rest goes back to the runtime.
type chunkPool struct {
	free   [][]byte
	limit  int // chunks
	budget *Budget
}

func newChunkPool(budget *Budget) chunkPool {
	return chunkPool{budget: budget, limit: int(budget.Limit() / 16 / stageChunk)}
}

// get hands out a kept chunk; from then on the file taking it is charged.
func (p *chunkPool) get() []byte {
	n := len(p.free)
	if n == 0 {
		return make([]byte, 0, stageChunk)
	}
	c := p.free[n-1]
	p.free[n-1] = nil
	p.free = p.free[:n-1]
	p.budget.Add(-stageChunk)
	return c
}

func (p *chunkPool) put(c []byte) {
	if cap(c) != stageChunk || len(p.free) >= p.limit {
		return // a row's own chunk, or more than the pool keeps
	}
	p.free = append(p.free, c[:0])
	p.budget.Add(stageChunk)
}

// drop gives every kept chunk back to the runtime.
func (p *chunkPool) drop() {
	p.budget.Add(-int64(len(p.free)) * stageChunk)
	clear(p.free)
	p.free = p.free[:0]
}

// rowBatch holds the few rows a file with an encoder collects before it hands
// them over: one row per call to the encoder costs several times more per
// row. Rows own their bytes, because decoded rows point into the decoder's
// buffer.
type rowBatch struct {
	rows  [][]parquet.Value
	n     int
	arena []byte
	view  []parquet.Row
}

func (b *rowBatch) add(row parquet.Row) {
	if b.n == len(b.rows) {
		b.rows = append(b.rows, make([]parquet.Value, 0, len(row)))
	}
	dst := b.rows[b.n][:0]
	for _, v := range row {
		// Wide decimals and UUIDs are fixed-length byte arrays, which point
		// into the decoder's buffer too.
		if k := v.Kind(); (k == parquet.ByteArray || k == parquet.FixedLenByteArray) && !v.IsNull() {
			off := len(b.arena)
			b.arena = append(b.arena, v.ByteArray()...)
			owned := b.arena[off:len(b.arena):len(b.arena)]
			c := parquet.ByteArrayValue(owned)
			if k == parquet.FixedLenByteArray {
				c = parquet.FixedLenByteArrayValue(owned)
			}
			c.SetRepetitionLevel(v.RepetitionLevel())
			c.SetDefinitionLevel(v.DefinitionLevel())
			c.SetColumnIndex(v.Column())
			v = c
		}
		dst = append(dst, v)
	}
	b.rows[b.n] = dst
	b.n++
}

// take returns the batch's rows, valid until the next add.
func (b *rowBatch) take() []parquet.Row {
	b.view = b.view[:0]
	for _, r := range b.rows[:b.n] {
		b.view = append(b.view, r)
	}
	b.n = 0
	b.arena = b.arena[:0]
	return b.view
}
