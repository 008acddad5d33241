package schema

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/parquet-go/parquet-go"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// int64ValueName is the well-known wrapper a converter may give an optional
// int64 (source.ts_ms).
const int64ValueName = "google.protobuf.Int64Value"

// ProtoCDCDecoder unwraps Debezium change events serialised as Protobuf (an
// envelope message whose before and after fields are messages of the row's
// type, with op and source): the row is the after image (the before image of
// a kept delete) decoded by a ProtoDecoder, followed by __op and
// __source_ts_ms, as CDCDecoder does for JSON. The envelope's other fields
// are skipped. It is not safe for concurrent use.
type ProtoCDCDecoder struct {
	p                         *ProtoDecoder
	before, after, op, source protowire.Number // 0 when the envelope has none
	ts                        protowire.Number // source.ts_ms, 0 when none
	tsWrapped                 bool             // ts is an Int64Value message
	tsZigZag                  bool             // ts is a sint64
	keepDelete                bool
}

// ProtoEnvelopeValue returns the row message of a Debezium envelope: the
// message type of its after field.
func ProtoEnvelopeValue(md protoreflect.MessageDescriptor) (protoreflect.MessageDescriptor, error) {
	if fd := md.Fields().ByName("after"); fd != nil && fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() {
		return fd.Message(), nil
	}
	return nil, fmt.Errorf("protobuf message %s is not a Debezium envelope (no after field holding a message)", md.FullName())
}

// NewProtoCDCDecoder binds envelope, the writer's envelope message, to s,
// which must have been built from CDCFields of its row message's fields.
func (s *Schema) NewProtoCDCDecoder(envelope protoreflect.MessageDescriptor, keepDeletes bool) (*ProtoCDCDecoder, error) {
	n := len(s.fields)
	if n < 2 || s.fields[n-2].Name != CDCOpColumn || s.fields[n-1].Name != CDCSourceTSColumn {
		return nil, errors.New("schema: CDC needs the schema built from CDCFields")
	}
	value, err := ProtoEnvelopeValue(envelope)
	if err != nil {
		return nil, err
	}
	p, err := s.NewProtoDecoder(value)
	if err != nil {
		return nil, err
	}
	c := &ProtoCDCDecoder{p: p, keepDelete: keepDeletes}
	fds := envelope.Fields()
	c.after = fds.ByName("after").Number()
	if fd := fds.ByName("before"); fd != nil {
		if fd.Kind() != protoreflect.MessageKind || fd.IsList() || fd.IsMap() || fd.Message().FullName() != value.FullName() {
			return nil, fmt.Errorf("protobuf envelope %s: before is not a %s like after", envelope.FullName(), value.FullName())
		}
		c.before = fd.Number()
	}
	if fd := fds.ByName("op"); fd != nil && fd.Kind() == protoreflect.StringKind && !fd.IsList() {
		c.op = fd.Number()
	} else {
		return nil, fmt.Errorf("protobuf envelope %s: no op string field", envelope.FullName())
	}
	if fd := fds.ByName("source"); fd != nil && fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() {
		if ts := fd.Message().Fields().ByName("ts_ms"); ts != nil && !ts.IsList() {
			switch {
			case ts.Kind() == protoreflect.Int64Kind || ts.Kind() == protoreflect.Uint64Kind:
				c.source, c.ts = fd.Number(), ts.Number()
			case ts.Kind() == protoreflect.Sint64Kind:
				c.source, c.ts, c.tsZigZag = fd.Number(), ts.Number(), true
			case ts.Kind() == protoreflect.MessageKind && ts.Message().FullName() == int64ValueName:
				c.source, c.ts, c.tsWrapped = fd.Number(), ts.Number(), true
			}
		}
	}
	return c, nil
}

func (c *ProtoCDCDecoder) malformed(want string, n, left int) error {
	return &Error{Class: ClassMalformedProtobuf, Expected: want, Got: protoErr(n, left)}
}

// Decode decodes one envelope payload (without the registry's header and
// message indexes) into row[:0]; a skipped event gives ErrSkip. The aliasing
// contract is Decoder.Decode's.
func (c *ProtoCDCDecoder) Decode(payload []byte, row parquet.Row) (parquet.Row, error) {
	row = row[:0]
	var before, after, op []byte
	hasBefore, hasAfter := false, false
	var ts int64
	hasTS := false
	for b := payload; len(b) > 0; {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return row, c.malformed("a field tag", n, len(b))
		}
		b = b[n:]
		if num == 0 || (num != c.before && num != c.after && num != c.op && num != c.source) {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return row, c.malformed("the value of field "+strconv.Itoa(int(num)), n, len(b))
			}
			b = b[n:]
			continue
		}
		if typ != protowire.BytesType {
			return row, &Error{Class: ClassMalformedProtobuf, Expected: "wire type " + wireName(protowire.BytesType) + " for envelope field " + strconv.Itoa(int(num)), Got: "wire type " + wireName(typ)}
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return row, c.malformed("the value of field "+strconv.Itoa(int(num)), n, len(b))
		}
		b = b[n:]
		switch num {
		case c.before:
			before, hasBefore = v, true
		case c.after:
			after, hasAfter = v, true
		case c.op:
			op = v
		case c.source:
			var err error
			if ts, hasTS, err = c.sourceTS(v); err != nil {
				return row, err
			}
		}
	}
	image, has := after, hasAfter
	switch string(op) {
	case "c", "u", "r":
	case "d":
		if !c.keepDelete {
			return row, ErrSkip
		}
		image, has = before, hasBefore
	case "t", "m":
		return row, ErrSkip // truncate and message events carry no row
	default:
		return row, badEnvelope("an op of c, u, d, r, t or m", "op "+strconv.Quote(string(op)))
	}
	if !has {
		return row, badEnvelope("the row image of an op "+string(op)+" event", "none")
	}
	row, err := c.p.Decode(image, row)
	if err != nil {
		return row, err
	}
	// The CDC columns are the last two top-level scalars: the row's last
	// two values. The op's text is copied next to the row's other strings.
	d := c.p.d
	s := d.schema
	d.strs = append(d.strs, op...)
	opCol, tsCol := &s.fields[len(s.fields)-2], &s.fields[len(s.fields)-1]
	row[len(row)-2] = parquet.ByteArrayValue(d.strs[len(d.strs)-len(op):]).Level(0, opCol.def, opCol.Column)
	if hasTS {
		row[len(row)-1] = parquet.Int64Value(ts).Level(0, tsCol.def, tsCol.Column)
	} else {
		row[len(row)-1] = parquet.NullValue().Level(0, 0, tsCol.Column)
	}
	return row, nil
}

// sourceTS reads source.ts_ms out of the envelope's source message; the last
// occurrence wins, as in Protobuf.
func (c *ProtoCDCDecoder) sourceTS(b []byte) (ts int64, has bool, err error) {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return 0, false, c.malformed("a field tag in source", n, len(b))
		}
		b = b[n:]
		if num != c.ts {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return 0, false, c.malformed("the value of source field "+strconv.Itoa(int(num)), n, len(b))
			}
			b = b[n:]
			continue
		}
		want := protowire.VarintType
		if c.tsWrapped {
			want = protowire.BytesType
		}
		if typ != want {
			return 0, false, &Error{Class: ClassMalformedProtobuf, Field: CDCSourceTSColumn, Expected: "wire type " + wireName(want) + " for source.ts_ms", Got: "wire type " + wireName(typ)}
		}
		if c.tsWrapped {
			w, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, false, c.malformed("source.ts_ms", n, len(b))
			}
			b = b[n:]
			// Int64Value: its value is field 1, 0 when absent.
			ts, has = 0, true
			for len(w) > 0 {
				wn, wt, k := consumeTag(w)
				if k < 0 {
					return 0, false, c.malformed("a field tag in source.ts_ms", k, len(w))
				}
				w = w[k:]
				if wn == 1 && wt == protowire.VarintType {
					x, k := protowire.ConsumeVarint(w)
					if k < 0 {
						return 0, false, c.malformed("source.ts_ms", k, len(w))
					}
					ts, w = int64(x), w[k:]
					continue
				}
				if k = protowire.ConsumeFieldValue(wn, wt, w); k < 0 {
					return 0, false, c.malformed("source.ts_ms", k, len(w))
				}
				w = w[k:]
			}
			continue
		}
		x, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return 0, false, c.malformed("source.ts_ms", n, len(b))
		}
		b = b[n:]
		ts, has = int64(x), true
		if c.tsZigZag {
			ts = protowire.DecodeZigZag(x)
		}
	}
	return ts, has, nil
}
