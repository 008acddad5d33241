package schema

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/hamba/avro/v2"
	"github.com/parquet-go/parquet-go"
)

// AvroCDCDecoder unwraps Debezium change events serialised as Avro (the
// Envelope record: before, after, source, op, ...): the row is the after
// image (before for a kept delete), followed by __op and __source_ts_ms, as
// CDCDecoder does for JSON. The images are located first and the chosen one
// decoded once the op is known, in one pass over the payload plus the image.
// It is not safe for concurrent use.
type AvroCDCDecoder struct {
	a          *AvroDecoder
	env        []envField
	keepDelete bool
}

// envField is a field of the envelope and what it is for.
type envField struct {
	role     string // before, after, op, source, or "" (skipped)
	s        avro.Schema
	nullIdx  int64 // images: the null branch
	tsField  int   // source: index of ts_ms, -1 when none
	tsNull   int64 // source.ts_ms: its null branch, -1 when not a union
	children []avro.Schema
}

// NewAvroCDCDecoder binds the writer's envelope schema to s, which must have
// been built from CDCFields of its after record's fields.
func (s *Schema) NewAvroCDCDecoder(envelope string, keepDeletes bool) (*AvroCDCDecoder, error) {
	n := len(s.fields)
	if n < 2 || s.fields[n-2].Name != CDCOpColumn || s.fields[n-1].Name != CDCSourceTSColumn {
		return nil, errors.New("schema: CDC needs the schema built from CDCFields")
	}
	ws, err := avro.ParseWithCache(envelope, "", new(avro.SchemaCache))
	if err != nil {
		return nil, fmt.Errorf("avro schema: %w", err)
	}
	rec, ok := ws.(*avro.RecordSchema)
	if !ok {
		return nil, errors.New("avro schema: the envelope is not a record")
	}
	value, err := EnvelopeValue(rec)
	if err != nil {
		return nil, err
	}
	root, missing, err := bindRecord(value, s.fields[:n-2])
	if err != nil {
		return nil, err
	}
	d := s.newNestedDecoder()
	c := &AvroCDCDecoder{a: &AvroDecoder{d: d, root: root, missing: missing}, keepDelete: keepDeletes}
	for _, f := range rec.Fields() {
		e := envField{s: f.Type(), tsField: -1, tsNull: -1}
		switch f.Name() {
		case "before", "after":
			if u, ok := f.Type().(*avro.UnionSchema); ok && u.Nullable() && len(u.Types()) == 2 {
				null, _ := u.Indices()
				e.role, e.nullIdx = f.Name(), int64(null)
			}
		case "op":
			if f.Type().Type() == avro.String {
				e.role = "op"
			}
		case "source":
			if src, ok := deref(f.Type()).(*avro.RecordSchema); ok {
				e.role = "source"
				for i, sf := range src.Fields() {
					e.children = append(e.children, sf.Type())
					if sf.Name() == "ts_ms" {
						t := sf.Type()
						if u, ok := t.(*avro.UnionSchema); ok && u.Nullable() && len(u.Types()) == 2 {
							null, typ := u.Indices()
							e.tsNull, t = int64(null), u.Types()[typ]
						}
						if t.Type() == avro.Long {
							e.tsField = i
						}
					}
				}
			}
		}
		c.env = append(c.env, e)
	}
	return c, nil
}

func deref(s avro.Schema) avro.Schema {
	if r, ok := s.(*avro.RefSchema); ok {
		return r.Schema()
	}
	return s
}

// EnvelopeValue is the row record of a Debezium envelope: the record of its
// after field (a union of null and the record).
func EnvelopeValue(rec *avro.RecordSchema) (*avro.RecordSchema, error) {
	for _, f := range rec.Fields() {
		if f.Name() != "after" {
			continue
		}
		if u, ok := f.Type().(*avro.UnionSchema); ok && u.Nullable() && len(u.Types()) == 2 {
			_, typ := u.Indices()
			if r, ok := deref(u.Types()[typ]).(*avro.RecordSchema); ok {
				return r, nil
			}
		}
	}
	return nil, fmt.Errorf("avro schema: %s is not a Debezium envelope (no after field of a null and a record)", rec.FullName())
}

// Decode decodes one envelope payload (without the registry's header) into
// row[:0]; a skipped event gives ErrSkip.
func (c *AvroCDCDecoder) Decode(payload []byte, row parquet.Row) (parquet.Row, error) {
	a := c.a
	d := a.d
	row = row[:0]
	d.resetNested()
	a.b, a.i = payload, 0
	before, after := -1, -1
	var op []byte
	var ts int64
	hasTS := false
	for _, e := range c.env {
		switch e.role {
		case "before", "after":
			idx, ok := a.long()
			if !ok {
				return row, d.err
			}
			if idx == e.nullIdx {
				continue
			}
			if idx != 1-e.nullIdx {
				a.malformed("union index 0 or 1")
				return row, d.err
			}
			if e.role == "before" {
				before = a.i
			} else {
				after = a.i
			}
			if !a.skip(e.s.(*avro.UnionSchema).Types()[idx]) {
				return row, d.err
			}
		case "op":
			l, ok := a.long()
			if !ok {
				return row, d.err
			}
			if op, ok = a.take(l); !ok {
				return row, d.err
			}
		case "source":
			for i, cs := range e.children {
				if i != e.tsField {
					if !a.skip(cs) {
						return row, d.err
					}
					continue
				}
				if e.tsNull >= 0 {
					idx, ok := a.long()
					if !ok {
						return row, d.err
					}
					if idx == e.tsNull {
						continue
					}
				}
				v, ok := a.long()
				if !ok {
					return row, d.err
				}
				ts, hasTS = v, true
			}
		default:
			if !a.skip(e.s) {
				return row, d.err
			}
		}
	}
	if a.i != len(a.b) {
		return row, &Error{Class: ClassMalformedAvro, Expected: "the end of the payload", Got: strconv.Itoa(len(a.b)-a.i) + " more bytes"}
	}
	start := after
	switch string(op) {
	case "c", "u", "r":
	case "d":
		if !c.keepDelete {
			return row, ErrSkip
		}
		start = before
	case "t", "m":
		return row, ErrSkip
	default:
		return row, badEnvelope("an op of c, u, d, r, t or m", "op "+strconv.Quote(string(op)))
	}
	if start < 0 {
		return row, badEnvelope("the row image of an op "+string(op)+" event", "null")
	}
	opText := append([]byte(nil), op...)
	a.i = start
	for _, n := range a.root {
		if !a.value(n, 0) {
			return row, d.err
		}
	}
	s := d.schema
	for _, f := range a.missing {
		d.null(f, 0)
	}
	opCol, tsCol := &s.fields[len(s.fields)-2], &s.fields[len(s.fields)-1]
	d.strs = append(d.strs, opText...)
	d.put(opCol.Column, false, parquet.ByteArrayValue(d.strs[len(d.strs)-len(opText):]), 0, opCol.def)
	if hasTS {
		d.put(tsCol.Column, false, parquet.Int64Value(ts), 0, tsCol.def)
	} else {
		d.put(tsCol.Column, false, parquet.NullValue(), 0, 0)
	}
	return d.appendRuns(row), nil
}

// skip reads past one value of s.
func (a *AvroDecoder) skip(s avro.Schema) bool {
	s = deref(s)
	switch t := s.(type) {
	case *avro.UnionSchema:
		idx, ok := a.long()
		if !ok {
			return false
		}
		if idx < 0 || idx >= int64(len(t.Types())) {
			return a.malformed("a union index below " + strconv.Itoa(len(t.Types())))
		}
		return a.skip(t.Types()[idx])
	case *avro.RecordSchema:
		for _, f := range t.Fields() {
			if !a.skip(f.Type()) {
				return false
			}
		}
		return true
	case *avro.FixedSchema:
		_, ok := a.take(int64(t.Size()))
		return ok
	case *avro.ArraySchema, *avro.MapSchema:
		for {
			count, ok := a.long()
			if !ok {
				return false
			}
			if count == 0 {
				return true
			}
			if count < 0 {
				size, ok := a.long()
				if !ok {
					return false
				}
				if _, ok := a.take(size); !ok {
					return false
				}
				continue
			}
			if count > int64(len(a.b)-a.i) {
				return a.malformed("a block count within the payload")
			}
			for ; count > 0; count-- {
				if m, isMap := t.(*avro.MapSchema); isMap {
					l, ok := a.long()
					if !ok {
						return false
					}
					if _, ok := a.take(l); !ok {
						return false
					}
					if !a.skip(m.Values()) {
						return false
					}
				} else if !a.skip(t.(*avro.ArraySchema).Items()) {
					return false
				}
			}
		}
	}
	switch s.Type() {
	case avro.Null:
		return true
	case avro.Boolean:
		_, ok := a.take(1)
		return ok
	case avro.Int, avro.Long, avro.Enum:
		_, ok := a.long()
		return ok
	case avro.Float:
		_, ok := a.take(4)
		return ok
	case avro.Double:
		_, ok := a.take(8)
		return ok
	case avro.String, avro.Bytes:
		l, ok := a.long()
		if !ok {
			return false
		}
		_, ok = a.take(l)
		return ok
	}
	return a.malformed("a value of a known type")
}
