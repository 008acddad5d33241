package schema

import (
	"errors"
	"strconv"

	"github.com/parquet-go/parquet-go"
	"github.com/valyala/fastjson"

	"github.com/sinkd/sinkd/config/conf"
)

// The columns CDC unwrapping adds after the row's own, named as Debezium's
// ExtractNewRecordState transform names them (add.fields=op,source.ts_ms).
const (
	CDCOpColumn       = "__op"
	CDCSourceTSColumn = "__source_ts_ms"
)

// ClassBadEnvelope is a CDC record that is not a Debezium change event
// (not an object, no op, an op without its row image).
const ClassBadEnvelope = "bad_envelope"

// ErrSkip is a record that is deliberately not written (a CDC delete with
// deletes: drop, a truncate, a tombstone): not a failure.
var ErrSkip = errors.New("record skipped")

// CDCFields is fields with the two CDC columns appended: __op (the
// operation: c, u, d or r) and __source_ts_ms (when the change happened in
// the source database, a timestamp in milliseconds).
func CDCFields(fields []conf.Field) []conf.Field {
	out := append([]conf.Field(nil), fields...)
	return append(out,
		conf.Field{Name: CDCOpColumn, Type: "string"},
		conf.Field{Name: CDCSourceTSColumn, Type: "timestamp", Unit: "millis", Input: "millis"})
}

// CDCDecoder unwraps Debezium change events serialised as JSON (Kafka
// Connect's JsonConverter, with or without its schema wrapper): the row is
// the event's after image (before for a delete) decoded by the schema's own
// strict decoder, followed by op and source.ts_ms. It is not safe for
// concurrent use.
type CDCDecoder struct {
	d          *Decoder
	p          fastjson.Parser
	buf        []byte
	keepDelete bool
}

// NewCDCDecoder returns a decoder for s, which must have been built from
// CDCFields. keepDeletes writes a delete's before image with op d (routes can
// send it elsewhere by __op); otherwise deletes are skipped.
func (s *Schema) NewCDCDecoder(keepDeletes bool) (*CDCDecoder, error) {
	n := len(s.fields)
	if n < 2 || s.fields[n-2].Name != CDCOpColumn || s.fields[n-1].Name != CDCSourceTSColumn {
		return nil, errors.New("schema: CDC needs the schema built from CDCFields")
	}
	return &CDCDecoder{d: s.NewDecoder(), keepDelete: keepDeletes}, nil
}

func badEnvelope(want, got string) *Error {
	return &Error{Class: ClassBadEnvelope, Expected: want, Got: got}
}

// Decode decodes one change event into row[:0]; a skipped event gives
// ErrSkip. The aliasing contract is Decoder.Decode's.
func (c *CDCDecoder) Decode(value []byte, row parquet.Row) (parquet.Row, error) {
	row = row[:0]
	if len(value) == 0 {
		return row, ErrSkip // a tombstone, which compaction needs after a delete
	}
	v, err := c.p.ParseBytes(value)
	if err != nil {
		// The strict decoder names what is wrong with the text.
		if _, derr := c.d.Decode(value, row); derr != nil {
			return row, derr
		}
		return row, badEnvelope("a JSON change event", err.Error())
	}
	if v.Type() == fastjson.TypeNull {
		return row, ErrSkip
	}
	if p := v.Get("payload"); p != nil && p.Type() == fastjson.TypeObject && v.Get("schema") != nil {
		v = p // JsonConverter with schemas.enable
	}
	if v.Type() != fastjson.TypeObject {
		return row, badEnvelope("a change event object", v.Type().String())
	}
	op := v.GetStringBytes("op")
	image := "after"
	switch string(op) {
	case "c", "u", "r":
	case "d":
		if !c.keepDelete {
			return row, ErrSkip
		}
		image = "before"
	case "t", "m":
		return row, ErrSkip // truncate and message events carry no row
	default:
		return row, badEnvelope("an op of c, u, d, r, t or m", "op "+strconv.Quote(string(op)))
	}
	img := v.Get(image)
	if img == nil || img.Type() != fastjson.TypeObject {
		return row, badEnvelope("the "+image+" image of an op "+string(op)+" event", "none")
	}
	var ts parquet.Value
	if src := v.Get("source"); src != nil && src.Get("ts_ms") != nil {
		ms, err := src.Get("ts_ms").Int64()
		if err != nil {
			return row, badEnvelope("source.ts_ms in milliseconds", err.Error())
		}
		ts = parquet.Int64Value(ms)
	}
	c.buf = img.MarshalTo(c.buf[:0])
	row, derr := c.d.Decode(c.buf, row)
	if derr != nil {
		return row, derr
	}
	// The CDC columns are the last two top-level scalars: the row's last
	// two values. The op's text must outlive c.p's next parse, like the
	// decoder's own strings.
	s := c.d.schema
	c.d.strs = append(c.d.strs, op...)
	opCol, tsCol := s.fields[len(s.fields)-2], s.fields[len(s.fields)-1]
	row[len(row)-2] = parquet.ByteArrayValue(c.d.strs[len(c.d.strs)-len(op):]).Level(0, opCol.def, opCol.Column)
	if ts.IsNull() {
		row[len(row)-1] = parquet.NullValue().Level(0, 0, tsCol.Column)
	} else {
		row[len(row)-1] = ts.Level(0, tsCol.def, tsCol.Column)
	}
	return row, nil
}
