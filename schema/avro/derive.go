// Package avro derives sinkd's schema from an Avro schema, so that a user of
// a schema registry writes no field list (decoding is schema/avrodec.go).
package avro

import (
	"fmt"
	"strings"

	"github.com/hamba/avro/v2"

	"github.com/sinkd/sinkd/config/conf"
)

// Fields derives the field list of an Avro record schema, in its field order:
//
//   - a union of null and one type is that type, optional; any other field is
//     required; other unions have no column type and are refused;
//   - boolean, int, long, float, double and string are bool, int32, int64,
//     float, double and string; an enum is a string (its symbol);
//   - records are structs, arrays lists and maps maps;
//   - the logical types date, time-millis, time-micros, timestamp-millis,
//     timestamp-micros (and the local- timestamps, stored as they are),
//     decimal (bytes or fixed, precision up to 38) and uuid map to date, time,
//     timestamp, decimal and uuid;
//   - bytes and fixed without a logical type, duration, and recursive records
//     are refused, with the path of the field.
func Fields(text string) ([]conf.Field, error) {
	s, err := avro.ParseWithCache(text, "", new(avro.SchemaCache))
	if err != nil {
		return nil, fmt.Errorf("avro schema: %w", err)
	}
	rec, ok := s.(*avro.RecordSchema)
	if !ok {
		return nil, fmt.Errorf("avro schema: the top level is a %s, not a record", s.Type())
	}
	return recordFields(rec)
}

// EnvelopeFields derives the field list of the row of a Debezium envelope
// (the record of its after field), without the CDC columns.
func EnvelopeFields(text string) ([]conf.Field, error) {
	s, err := avro.ParseWithCache(text, "", new(avro.SchemaCache))
	if err != nil {
		return nil, fmt.Errorf("avro schema: %w", err)
	}
	if rec, ok := s.(*avro.RecordSchema); ok {
		for _, f := range rec.Fields() {
			if u, ok := f.Type().(*avro.UnionSchema); ok && f.Name() == "after" && u.Nullable() && len(u.Types()) == 2 {
				_, typ := u.Indices()
				t := u.Types()[typ]
				if r, ok := t.(*avro.RefSchema); ok {
					t = r.Schema()
				}
				if r, ok := t.(*avro.RecordSchema); ok {
					return recordFields(r)
				}
			}
		}
	}
	return nil, fmt.Errorf("avro schema: not a Debezium envelope (no after field of a null and a record)")
}

func recordFields(rec *avro.RecordSchema) ([]conf.Field, error) {
	d := deriver{open: map[string]bool{rec.FullName(): true}}
	fields := d.record(rec, "")
	if len(d.errs) > 0 {
		return nil, fmt.Errorf("avro schema: %s", strings.Join(d.errs, "; "))
	}
	return fields, nil
}

type deriver struct {
	open map[string]bool // records being derived, to refuse recursion
	errs []string
}

func (d *deriver) fail(path, format string, args ...any) {
	d.errs = append(d.errs, path+": "+fmt.Sprintf(format, args...))
}

func (d *deriver) record(rec *avro.RecordSchema, prefix string) []conf.Field {
	fields := make([]conf.Field, 0, len(rec.Fields()))
	for _, af := range rec.Fields() {
		f := d.field(af.Type(), prefix+af.Name())
		f.Name, f.From = af.Name(), af.Name()
		fields = append(fields, f)
	}
	return fields
}

// field derives the type of one value at path.
func (d *deriver) field(s avro.Schema, path string) conf.Field {
	f := conf.Field{Required: true}
	if u, ok := s.(*avro.UnionSchema); ok {
		types := u.Types()
		if !u.Nullable() || len(types) != 2 {
			names := make([]string, len(types))
			for i, t := range types {
				names[i] = string(t.Type())
			}
			d.fail(path, "a union of %s has no column type (only a union of null and one type does)", strings.Join(names, ", "))
			return f
		}
		_, typ := u.Indices()
		s, f.Required = types[typ], false
	}
	if r, ok := s.(*avro.RefSchema); ok {
		s = r.Schema()
	}
	switch t := s.(type) {
	case *avro.PrimitiveSchema:
		d.primitive(&f, t, path)
	case *avro.EnumSchema:
		f.Type = "string"
	case *avro.FixedSchema:
		if dl, ok := t.Logical().(*avro.DecimalLogicalSchema); ok {
			d.decimal(&f, dl, path)
		} else {
			d.fail(path, "fixed(%d) without a decimal logical type has no column type", t.Size())
		}
	case *avro.RecordSchema:
		if d.open[t.FullName()] {
			d.fail(path, "record %s contains itself: recursive records have no Parquet schema", t.FullName())
			return f
		}
		d.open[t.FullName()] = true
		f.Type, f.Fields = "struct", d.record(t, path+".")
		delete(d.open, t.FullName())
	case *avro.ArraySchema:
		items := d.field(t.Items(), path)
		f.Type, f.Items = "list", &items
	case *avro.MapSchema:
		values := d.field(t.Values(), path)
		f.Type, f.Values = "map", &values
	default:
		d.fail(path, "%s has no column type", s.Type())
	}
	return f
}

func (d *deriver) primitive(f *conf.Field, p *avro.PrimitiveSchema, path string) {
	if l := p.Logical(); l != nil {
		switch l.Type() {
		case avro.Date:
			f.Type = "date"
		case avro.TimeMillis, avro.TimeMicros:
			f.Type, f.Unit = "time", map[avro.LogicalType]string{avro.TimeMillis: "millis", avro.TimeMicros: "micros"}[l.Type()]
		case avro.TimestampMillis, avro.LocalTimestampMillis:
			f.Type, f.Unit, f.Input = "timestamp", "millis", "millis"
		case avro.TimestampMicros, avro.LocalTimestampMicros:
			f.Type, f.Unit, f.Input = "timestamp", "micros", "micros"
		case avro.UUID:
			f.Type = "uuid"
		case avro.Decimal:
			if dl, ok := l.(*avro.DecimalLogicalSchema); ok {
				d.decimal(f, dl, path)
			}
		default:
			d.fail(path, "logical type %s has no column type", l.Type())
		}
		return
	}
	switch p.Type() {
	case avro.Boolean:
		f.Type = "bool"
	case avro.Int:
		f.Type = "int32"
	case avro.Long:
		f.Type = "int64"
	case avro.Float:
		f.Type = "float"
	case avro.Double:
		f.Type = "double"
	case avro.String:
		f.Type = "string"
	default:
		d.fail(path, "%s has no column type", p.Type())
	}
}

func (d *deriver) decimal(f *conf.Field, dl *avro.DecimalLogicalSchema, path string) {
	if dl.Precision() > 38 {
		d.fail(path, "decimal(%d,%d) is wider than 38 digits", dl.Precision(), dl.Scale())
		return
	}
	f.Type, f.Precision, f.Scale = "decimal", dl.Precision(), dl.Scale()
}
