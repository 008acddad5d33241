package schema

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/hamba/avro/v2"
	"github.com/parquet-go/parquet-go"
)

// ClassMalformedAvro is a payload that does not follow its Avro schema's
// binary encoding: truncated, a bad varint, a union or enum index out of
// range, a negative length, or bytes left over.
const ClassMalformedAvro = "malformed_avro"

// AvroDecoder decodes Avro binary payloads written with one Avro schema into
// rows of a Schema derived from that schema (schema/avro.Fields), in one pass
// and without allocation, like Decoder for JSON. It is not safe for
// concurrent use.
type AvroDecoder struct {
	d    *Decoder
	root []*anode
	// missing are the top-level fields the writer does not have.
	missing []*Field
	b       []byte
	i       int
}

// anode is an Avro type bound to the field it fills.
type anode struct {
	f        *Field
	kind     avro.Type
	logical  avro.LogicalType
	nullable bool
	nullIdx  int64
	fields   []*anode // record
	missing  []*Field // record: fields its writer does not have
	elem     *anode   // array items, map values
	symbols  [][]byte // enum
	size     int      // fixed
}

// NewAvroDecoder binds writer, the Avro schema payloads were written with, to
// s, which must have been derived from it.
func (s *Schema) NewAvroDecoder(writer string) (*AvroDecoder, error) {
	ws, err := avro.ParseWithCache(writer, "", new(avro.SchemaCache))
	if err != nil {
		return nil, fmt.Errorf("avro schema: %w", err)
	}
	rec, ok := ws.(*avro.RecordSchema)
	if !ok {
		return nil, errors.New("avro schema: the top level is not a record")
	}
	root, missing, err := bindRecord(rec, s.fields)
	if err != nil {
		return nil, err
	}
	d := s.newNestedDecoder()
	return &AvroDecoder{d: d, root: root, missing: missing}, nil
}

// bindRecord binds the writer's record fields, in their order, to the
// fields of the same name; missing are the fields the writer does not have
// (null in its rows: the schema was merged from several writers).
func bindRecord(rec *avro.RecordSchema, fields []Field) (nodes []*anode, missing []*Field, err error) {
	bound := make([]bool, len(fields))
	for _, af := range rec.Fields() {
		i := slices.IndexFunc(fields, func(f Field) bool { return f.Name == af.Name() })
		if i < 0 {
			return nil, nil, fmt.Errorf("avro field %q of record %s is not in the schema", af.Name(), rec.FullName())
		}
		bound[i] = true
		n, err := bind(af.Type(), &fields[i])
		if err != nil {
			return nil, nil, err
		}
		nodes = append(nodes, n)
	}
	for i := range fields {
		if !bound[i] {
			missing = append(missing, &fields[i])
		}
	}
	return nodes, missing, nil
}

func bind(s avro.Schema, f *Field) (*anode, error) {
	n := &anode{f: f}
	if u, ok := s.(*avro.UnionSchema); ok {
		null, typ := u.Indices()
		n.nullable, n.nullIdx = true, int64(null)
		s = u.Types()[typ]
	}
	if r, ok := s.(*avro.RefSchema); ok {
		s = r.Schema()
	}
	n.kind = s.Type()
	switch t := s.(type) {
	case *avro.PrimitiveSchema:
		if l := t.Logical(); l != nil {
			n.logical = l.Type()
		}
	case *avro.FixedSchema:
		n.size = t.Size()
		if l := t.Logical(); l != nil {
			n.logical = l.Type()
		}
	case *avro.EnumSchema:
		for _, sym := range t.Symbols() {
			n.symbols = append(n.symbols, []byte(sym))
		}
	case *avro.RecordSchema:
		fields, missing, err := bindRecord(t, f.Fields)
		if err != nil {
			return nil, err
		}
		n.fields, n.missing = fields, missing
	case *avro.ArraySchema:
		e, err := bind(t.Items(), f.Elem)
		if err != nil {
			return nil, err
		}
		n.elem = e
	case *avro.MapSchema:
		e, err := bind(t.Values(), f.Elem)
		if err != nil {
			return nil, err
		}
		n.elem = e
	}
	return n, nil
}

// Decode decodes one Avro payload (without the registry's wire-format header)
// into row[:0]. The aliasing contract is Decoder.Decode's.
func (a *AvroDecoder) Decode(payload []byte, row parquet.Row) (parquet.Row, error) {
	d := a.d
	row = row[:0]
	d.resetNested()
	a.b, a.i = payload, 0
	for _, n := range a.root {
		if !a.value(n, 0) {
			return row, d.err
		}
	}
	for _, f := range a.missing {
		d.null(f, 0)
	}
	if a.i != len(a.b) {
		return row, &Error{Class: ClassMalformedAvro, Expected: "the end of the payload", Got: strconv.Itoa(len(a.b)-a.i) + " more bytes"}
	}
	return d.appendRuns(row), nil
}

func (a *AvroDecoder) malformed(want string) bool {
	at := "byte " + strconv.Itoa(a.i)
	if a.i >= len(a.b) {
		at = "the end of the payload (" + strconv.Itoa(len(a.b)) + " bytes)"
	}
	a.d.err = &Error{Class: ClassMalformedAvro, Field: a.d.whereStack(), Expected: want, Got: at}
	return false
}

func (a *AvroDecoder) long() (int64, bool) {
	u, n := binary.Uvarint(a.b[a.i:])
	if n <= 0 {
		return 0, a.malformed("a varint")
	}
	a.i += n
	return int64(u>>1) ^ -int64(u&1), true
}

func (a *AvroDecoder) take(n int64) ([]byte, bool) {
	if n < 0 || n > int64(len(a.b)-a.i) {
		return nil, a.malformed(strconv.FormatInt(n, 10) + " bytes")
	}
	b := a.b[a.i : a.i+int(n)]
	a.i += int(n)
	return b, true
}

func (a *AvroDecoder) put(f *Field, v parquet.Value, rep int) {
	a.d.put(f.Column, f.inList, v, rep, f.def)
}

func (a *AvroDecoder) bytesValue(f *Field, b []byte, fixed bool) parquet.Value {
	d := a.d
	start := len(d.strs)
	d.strs = append(d.strs, b...)
	if fixed {
		return parquet.FixedLenByteArrayValue(d.strs[start:])
	}
	return parquet.ByteArrayValue(d.strs[start:])
}

func (a *AvroDecoder) outOfRange(f *Field, got string) bool {
	a.d.err = &Error{Class: ClassOutOfRange, Field: a.d.where(f), Expected: expected(f), Got: got}
	return false
}

// value decodes one value for n; rep is the repetition level of its first
// value in each column.
func (a *AvroDecoder) value(n *anode, rep int) bool {
	f := n.f
	if n.nullable {
		idx, ok := a.long()
		if !ok {
			return false
		}
		if idx == n.nullIdx {
			a.d.null(f, rep)
			return true
		}
		if idx != 1-n.nullIdx {
			return a.malformed("union index 0 or 1")
		}
	}
	switch n.kind {
	case avro.Record:
		a.d.stack = append(a.d.stack, frame{f: f, idx: -1})
		for _, c := range n.fields {
			if !a.value(c, rep) {
				return false
			}
		}
		for _, m := range n.missing {
			a.d.null(m, rep)
		}
		a.d.stack = a.d.stack[:len(a.d.stack)-1]
		return true
	case avro.Array, avro.Map:
		return a.repeated(n, rep)
	case avro.Boolean:
		if a.i >= len(a.b) || a.b[a.i] > 1 {
			return a.malformed("a boolean byte")
		}
		a.put(f, parquet.BooleanValue(a.b[a.i] == 1), rep)
		a.i++
		return true
	case avro.Float:
		b, ok := a.take(4)
		if !ok {
			return false
		}
		x := math.Float32frombits(binary.LittleEndian.Uint32(b))
		if f.Kind == Double { // widened by a merge
			a.put(f, parquet.DoubleValue(float64(x)), rep)
		} else {
			a.put(f, parquet.FloatValue(x), rep)
		}
		return true
	case avro.Double:
		b, ok := a.take(8)
		if !ok {
			return false
		}
		a.put(f, parquet.DoubleValue(math.Float64frombits(binary.LittleEndian.Uint64(b))), rep)
		return true
	case avro.Enum:
		idx, ok := a.long()
		if !ok {
			return false
		}
		if idx < 0 || idx >= int64(len(n.symbols)) {
			return a.malformed("an enum index below " + strconv.Itoa(len(n.symbols)))
		}
		a.put(f, a.bytesValue(f, n.symbols[idx], false), rep)
		return true
	case avro.String, avro.Bytes, avro.Fixed:
		var b []byte
		ok := true
		if n.kind == avro.Fixed {
			b, ok = a.take(int64(n.size))
		} else {
			var l int64
			if l, ok = a.long(); ok {
				b, ok = a.take(l)
			}
		}
		if !ok {
			return false
		}
		switch {
		case n.logical == avro.Decimal:
			return a.decimal(f, b, rep)
		case n.logical == avro.UUID:
			start := len(a.d.strs)
			var good bool
			if a.d.strs, good = appendUUID(a.d.strs, b); !good {
				a.d.err = &Error{Class: ClassTypeMismatch, Field: a.d.where(f), Expected: expected(f), Got: "string " + quoteSnippet(b)}
				return false
			}
			a.put(f, parquet.FixedLenByteArrayValue(a.d.strs[start:]), rep)
			return true
		}
		a.put(f, a.bytesValue(f, b, false), rep)
		return true
	}
	// int and long, with their logical types.
	v, ok := a.long()
	if !ok {
		return false
	}
	switch f.Kind {
	case Int32, Date, Time:
		if n.kind == avro.Long && f.Kind == Time {
			a.put(f, parquet.Int64Value(v), rep) // time-micros
			return true
		}
		if v < math.MinInt32 || v > math.MaxInt32 {
			return a.malformed("an int")
		}
		a.put(f, parquet.Int32Value(int32(v)), rep)
	case Timestamp:
		if v < a.d.schema.minTime[f.Column] || v > a.d.schema.maxTime[f.Column] {
			return a.outOfRange(f, "number "+strconv.FormatInt(v, 10))
		}
		a.put(f, parquet.Int64Value(v), rep)
	default:
		a.put(f, parquet.Int64Value(v), rep)
	}
	return true
}

// repeated decodes an array's or a map's blocks.
func (a *AvroDecoder) repeated(n *anode, rep int) bool {
	f, e := n.f, n.elem
	top := len(a.d.stack)
	a.d.stack = append(a.d.stack, frame{f: f, idx: -1})
	items := 0
	for {
		count, ok := a.long()
		if !ok {
			return false
		}
		if count == 0 {
			break
		}
		if count < 0 {
			// A negative count is followed by the block's size in bytes.
			count = -count
			if _, ok := a.long(); !ok {
				return false
			}
		}
		if count > int64(len(a.b)-a.i) && e.kind != avro.Null {
			// Every item takes at least one byte: a count beyond the
			// payload is corrupt, not a reason to loop.
			return a.malformed("a block count within the payload")
		}
		for ; count > 0; count-- {
			r := rep
			if items > 0 {
				r = e.f.rep
			}
			if f.Kind == Map {
				l, ok := a.long()
				if !ok {
					return false
				}
				key, ok := a.take(l)
				if !ok {
					return false
				}
				a.d.put(f.Column, true, a.bytesValue(f, key, false), r, f.def+1)
				a.d.stack[top].key = key
			} else {
				a.d.stack[top].idx = items
			}
			if !a.value(e, r) {
				return false
			}
			items++
		}
	}
	if items == 0 {
		a.d.nulls(f.Column, f.end, rep, f.def)
	}
	a.d.stack = a.d.stack[:top]
	return true
}

// decimal converts a two's complement big-endian unscaled value.
func (a *AvroDecoder) decimal(f *Field, b []byte, rep int) bool {
	if len(b) > 16 {
		return a.outOfRange(f, strconv.Itoa(len(b))+" bytes")
	}
	var hi, lo uint64
	neg := len(b) > 0 && b[0]&0x80 != 0
	if neg {
		hi, lo = math.MaxUint64, math.MaxUint64
	}
	for _, c := range b {
		hi = hi<<8 | lo>>56
		lo = lo<<8 | uint64(c)
	}
	// Magnitude, to check the precision.
	mhi, mlo := hi, lo
	if neg {
		mlo = ^lo + 1
		mhi = ^hi
		if mlo == 0 {
			mhi++
		}
	}
	if limit := pow10x128[f.Precision]; !less128(mhi, mlo, limit[0], limit[1]) {
		return a.outOfRange(f, "an unscaled value of more than "+strconv.Itoa(f.Precision)+" digits")
	}
	switch {
	case f.size > 0:
		start := len(a.d.strs)
		a.d.strs = appendDecimal128(a.d.strs, mhi, mlo, neg, f.size)
		a.put(f, parquet.FixedLenByteArrayValue(a.d.strs[start:]), rep)
	case f.Precision <= 9:
		a.put(f, parquet.Int32Value(int32(int64(lo))), rep)
	default:
		a.put(f, parquet.Int64Value(int64(lo)), rep)
	}
	return true
}
