package parquetsink

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"
)

// staging holds a file's rows that no encoder has taken yet, in a form the
// garbage collector need not scan: with thousands of open files most of the
// budget can be staged rows, and parquet.Value holds a pointer. A value's
// bytes live in the file's arena, referenced by offset.
type staging struct {
	values []stagedValue
	ends   []int32 // row i is values[ends[i-1]:ends[i]]
	arena  []byte
	raw    int64 // the rows' plain size: what the encoder will buffer for them
	mem    int64 // memory held, by capacity
}

// stagedValue is a parquet.Value without pointers: a fixed-size value in
// bits, or bytes at arena[bits:bits+n].
type stagedValue struct {
	bits   uint64
	n      uint32
	col    uint16
	kind   int8 // a parquet.Kind, or null
	levels uint8
}

const (
	null = -1
	// maxLevel bounds the repetition and definition levels a staged value
	// keeps (four bits each); New rejects deeper schemas.
	maxLevel = 15
)

func (s *staging) rows() int { return len(s.ends) }

// used is the memory the staged rows take, without spare capacity.
func (s *staging) used() int64 {
	return int64(len(s.values))*16 + int64(len(s.ends))*4 + int64(len(s.arena))
}

func (s *staging) add(row parquet.Row) {
	before := int64(cap(s.values))*16 + int64(cap(s.ends))*4 + int64(cap(s.arena))
	if len(s.values) == 0 && cap(s.values) == 0 {
		s.values = make([]stagedValue, 0, 4*len(row))
	}
	for _, v := range row {
		sv := stagedValue{col: uint16(v.Column()), kind: int8(v.Kind()), levels: uint8(v.RepetitionLevel()<<4 | v.DefinitionLevel())}
		switch {
		case v.IsNull():
			sv.kind = null
			s.raw++
		case v.Kind() == parquet.ByteArray || v.Kind() == parquet.FixedLenByteArray:
			b := v.ByteArray()
			sv.bits, sv.n = uint64(len(s.arena)), uint32(len(b))
			s.arena = append(s.arena, b...)
			s.raw += int64(len(b)) + 4
		case v.Kind() == parquet.Int96:
			i := v.Int96()
			sv.bits, sv.n = uint64(len(s.arena)), 12
			for _, w := range i {
				s.arena = binary.LittleEndian.AppendUint32(s.arena, w)
			}
			s.raw += 12
		case v.Kind() == parquet.Boolean:
			if v.Boolean() {
				sv.bits = 1
			}
			s.raw++
		case v.Kind() == parquet.Int32:
			sv.bits = uint64(uint32(v.Int32()))
			s.raw += 4
		case v.Kind() == parquet.Float:
			sv.bits = uint64(math.Float32bits(v.Float()))
			s.raw += 4
		case v.Kind() == parquet.Double:
			sv.bits = math.Float64bits(v.Double())
			s.raw += 8
		default: // Int64
			sv.bits = uint64(v.Int64())
			s.raw += 8
		}
		s.values = append(s.values, sv)
	}
	s.ends = append(s.ends, int32(len(s.values)))
	s.mem += int64(cap(s.values))*16 + int64(cap(s.ends))*4 + int64(cap(s.arena)) - before
}

// appendRow appends staged row i to dst as parquet values; byte values point
// into the arena, so they stay valid until reset.
func (s *staging) appendRow(dst []parquet.Value, i int) []parquet.Value {
	start := int32(0)
	if i > 0 {
		start = s.ends[i-1]
	}
	for _, sv := range s.values[start:s.ends[i]] {
		var v parquet.Value
		switch parquet.Kind(sv.kind) {
		case null:
			v = parquet.NullValue()
		case parquet.ByteArray:
			v = parquet.ByteArrayValue(s.arena[sv.bits : sv.bits+uint64(sv.n) : sv.bits+uint64(sv.n)])
		case parquet.FixedLenByteArray:
			v = parquet.FixedLenByteArrayValue(s.arena[sv.bits : sv.bits+uint64(sv.n) : sv.bits+uint64(sv.n)])
		case parquet.Int96:
			b := s.arena[sv.bits:]
			v = parquet.Int96Value(deprecated.Int96{binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:]), binary.LittleEndian.Uint32(b[8:])})
		case parquet.Boolean:
			v = parquet.BooleanValue(sv.bits == 1)
		case parquet.Int32:
			v = parquet.Int32Value(int32(uint32(sv.bits)))
		case parquet.Float:
			v = parquet.FloatValue(math.Float32frombits(uint32(sv.bits)))
		case parquet.Double:
			v = parquet.DoubleValue(math.Float64frombits(sv.bits))
		default:
			v = parquet.Int64Value(int64(sv.bits))
		}
		dst = append(dst, v.Level(int(sv.levels>>4), int(sv.levels&maxLevel), int(sv.col)))
	}
	return dst
}

// reset empties the staging and reports whether it kept its memory: a small
// one keeps it for the next rows; a large one (a file that staged without an
// encoder) is given back, because thousands of idle files must not each keep
// their peak.
func (s *staging) reset() bool {
	if s.mem > 16<<10 {
		return false
	}
	s.values = s.values[:0]
	s.ends = s.ends[:0]
	s.arena = s.arena[:0]
	s.raw = 0
	return true
}

// stagingPool recycles the buffers of large stagings between files, so that
// a file starting to stage does not grow them again from nothing. What it
// keeps is charged to the budget.
type stagingPool struct {
	kept   []staging
	budget *Budget
}

const stagingPoolSize = 8

func (p *stagingPool) put(s *staging) {
	if len(p.kept) < stagingPoolSize && s.mem <= 2*maxStageLimit {
		kept := staging{
			values: s.values[:0], ends: s.ends[:0], arena: s.arena[:0],
			mem: int64(cap(s.values))*16 + int64(cap(s.ends))*4 + int64(cap(s.arena)),
		}
		p.kept = append(p.kept, kept)
		p.budget.Add(kept.mem)
	}
	*s = staging{}
}

// get hands out kept buffers; from then on the file taking them is charged.
func (p *stagingPool) get() staging {
	if len(p.kept) == 0 {
		return staging{}
	}
	s := p.kept[len(p.kept)-1]
	p.kept[len(p.kept)-1] = staging{}
	p.kept = p.kept[:len(p.kept)-1]
	p.budget.Add(-s.mem)
	return s
}

// drop gives every kept buffer back.
func (p *stagingPool) drop() {
	for len(p.kept) > 0 {
		p.get()
	}
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
			v = c.Level(v.RepetitionLevel(), v.DefinitionLevel(), v.Column())
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

// marshal appends the staged rows to b in the spool's form: a header (values,
// rows, arena bytes, raw size), then each value in 16 bytes, each row end in
// 4, and the arena.
func (s *staging) marshal(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.values)))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.ends)))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.arena)))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.raw))
	for _, v := range s.values {
		b = binary.LittleEndian.AppendUint64(b, v.bits)
		b = binary.LittleEndian.AppendUint32(b, v.n)
		b = binary.LittleEndian.AppendUint16(b, v.col)
		b = append(b, byte(v.kind), v.levels)
	}
	for _, e := range s.ends {
		b = binary.LittleEndian.AppendUint32(b, uint32(e))
	}
	return append(b, s.arena...)
}

// unmarshalAppend appends every chunk marshal wrote in b to s, moving arena
// offsets and row ends to where they land.
func (s *staging) unmarshalAppend(b []byte) error {
	const header = 20
	for len(b) > 0 {
		if len(b) < header {
			return errors.New("spooled rows: truncated header")
		}
		nv, nr, na := int(binary.LittleEndian.Uint32(b)), int(binary.LittleEndian.Uint32(b[4:])), int(binary.LittleEndian.Uint32(b[8:]))
		raw := int64(binary.LittleEndian.Uint64(b[12:]))
		b = b[header:]
		if len(b) < nv*16+nr*4+na {
			return errors.New("spooled rows: truncated chunk")
		}
		before := int64(cap(s.values))*16 + int64(cap(s.ends))*4 + int64(cap(s.arena))
		base, first := uint64(len(s.arena)), int32(len(s.values))
		s.values = slices.Grow(s.values, nv)
		for range nv {
			v := stagedValue{
				bits: binary.LittleEndian.Uint64(b), n: binary.LittleEndian.Uint32(b[8:]),
				col: binary.LittleEndian.Uint16(b[12:]), kind: int8(b[14]), levels: b[15],
			}
			switch parquet.Kind(v.kind) {
			case parquet.ByteArray, parquet.FixedLenByteArray, parquet.Int96:
				v.bits += base
			}
			s.values = append(s.values, v)
			b = b[16:]
		}
		s.ends = slices.Grow(s.ends, nr)
		for range nr {
			s.ends = append(s.ends, int32(binary.LittleEndian.Uint32(b))+first)
			b = b[4:]
		}
		s.arena = append(s.arena, b[:na]...)
		b = b[na:]
		s.raw += raw
		s.mem += int64(cap(s.values))*16 + int64(cap(s.ends))*4 + int64(cap(s.arena)) - before
	}
	return nil
}
