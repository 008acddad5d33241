package schema

import (
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// ClassMalformedProtobuf is a payload that does not follow the Protobuf
// binary encoding of its message: truncated, a bad varint or tag, a field
// with the wrong wire type for its declared type, a string that is not
// UTF-8, or a singular message field given twice (merging is not done).
const ClassMalformedProtobuf = "malformed_protobuf"

// timestampName is the well-known Timestamp, a timestamp column.
const timestampName = "google.protobuf.Timestamp"

// ProtoDecoder decodes Protobuf binary payloads of one message type, as
// described by its writer's descriptor, into rows of a Schema that holds
// every field of that message (derived from it, or merged from it and other
// versions). It reads the wire format in one pass, straight into the
// columns, with no dynamic message and no allocation per record. Fields
// the writer's descriptor does not know are null; fields it knows but the
// payload leaves out take their default value, or null when the field tracks
// presence. Unknown field numbers are skipped, as Protobuf readers do. It is
// not safe for concurrent use.
type ProtoDecoder struct {
	d    *Decoder
	root *pmsg
}

// Decode decodes one Protobuf payload (without the registry's header and
// message indexes) into row[:0]. The aliasing contract is Decoder.Decode's.
func (p *ProtoDecoder) Decode(payload []byte, row parquet.Row) (parquet.Row, error) {
	d := p.d
	row = row[:0]
	d.resetNested()
	if !p.message(p.root, payload, 0) {
		return row, d.err
	}
	return d.appendRuns(row), nil
}

var wireNames = [...]string{
	protowire.VarintType: "0 (varint)", protowire.Fixed64Type: "1 (64-bit)", protowire.BytesType: "2 (length-delimited)",
	protowire.StartGroupType: "3 (start group)", protowire.EndGroupType: "4 (end group)", protowire.Fixed32Type: "5 (32-bit)",
}

func wireName(t protowire.Type) string {
	if int(t) < len(wireNames) && wireNames[t] != "" {
		return wireNames[t]
	}
	return strconv.Itoa(int(t))
}

func (p *ProtoDecoder) malformed(f *Field, want, got string) bool {
	where := ""
	if f != nil {
		where = p.d.where(f)
	}
	p.d.err = &Error{Class: ClassMalformedProtobuf, Field: where, Expected: want, Got: got}
	return false
}

func (p *ProtoDecoder) put(f *Field, v parquet.Value, rep int) {
	p.d.put(f.Column, f.inList, v, rep, f.def)
}

// message reads the fields of one message in b; rep is the repetition level
// of the first value it gives each column.
func (p *ProtoDecoder) message(m *pmsg, b []byte, rep int) bool {
	clear(m.seen)
	clear(m.count)
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return p.malformed(nil, "a field tag", protoErr(n, len(b)))
		}
		b = b[n:]
		var pf *pfield
		if m.big != nil {
			pf = m.big[num]
		} else if int(num) < len(m.byNum) {
			pf = m.byNum[num]
		}
		if pf == nil {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return p.malformed(nil, "the value of field "+strconv.Itoa(int(num)), protoErr(n, len(b)))
			}
			b = b[n:]
			continue
		}
		if n = p.field(m, pf, typ, b, rep); n < 0 {
			return false
		}
		b = b[n:]
	}
	for i := range m.fields {
		f, pf := &m.fields[i], m.bound[i]
		if m.seen[i] && (m.count[i] > 0 || (f.Kind != List && f.Kind != Map)) {
			continue // an empty packed run is seen, yet gives no element
		}
		switch {
		case pf == nil || pf.presence:
			p.d.null(f, rep)
		case f.Kind == List || f.Kind == Map:
			p.d.nulls(f.Column, f.end, rep, f.def) // empty
		default:
			p.put(f, pf.def, rep)
		}
	}
	return true
}

// field reads one occurrence of pf, whose value starts b; it returns the
// bytes read, or -1 with d.err set.
func (p *ProtoDecoder) field(m *pmsg, pf *pfield, typ protowire.Type, b []byte, rep int) int {
	f := pf.f
	if pf.list || pf.key != 0 {
		if !m.seen[pf.idx] {
			m.seen[pf.idx] = true
		}
		e := pf.elem
		if pf.list && typ == protowire.BytesType && wireOf(e.kind) != protowire.BytesType {
			// Packed: a run of scalars.
			run, n := protowire.ConsumeBytes(b)
			if n < 0 {
				p.malformed(f, "a packed run", protoErr(n, len(b)))
				return -1
			}
			for len(run) > 0 {
				k := p.element(m, pf, wireOf(e.kind), run, rep)
				if k < 0 {
					return -1
				}
				run = run[k:]
			}
			return n
		}
		return p.element(m, pf, typ, b, rep)
	}
	if m.seen[pf.idx] && (f.inList || f.Kind == Struct) {
		p.malformed(f, "a singular field once per message", "it again (merging is not supported)")
		return -1
	}
	m.seen[pf.idx] = true
	return p.value(pf, typ, b, rep)
}

// element reads one element of a list, or one entry of a map.
func (p *ProtoDecoder) element(m *pmsg, pf *pfield, typ protowire.Type, b []byte, rep int) int {
	f, e := pf.f, pf.elem
	r := rep
	if m.count[pf.idx] > 0 {
		r = f.Elem.rep
	}
	top := len(p.d.stack)
	p.d.stack = append(p.d.stack, frame{f: f, idx: m.count[pf.idx]})
	m.count[pf.idx]++
	var n int
	if pf.list {
		n = p.value(e, typ, b, r)
	} else {
		n = p.entry(pf, typ, b, r, top)
	}
	if n >= 0 {
		p.d.stack = p.d.stack[:top]
	}
	return n
}

// entry reads a map entry: a message of the key (1) and the value (2), each
// optional and in any order.
func (p *ProtoDecoder) entry(pf *pfield, typ protowire.Type, b []byte, rep, top int) int {
	f := pf.f
	if typ != protowire.BytesType {
		p.malformed(f.Elem, "wire type "+wireName(protowire.BytesType)+" for a map entry", "wire type "+wireName(typ))
		return -1
	}
	body, n := protowire.ConsumeBytes(b)
	if n < 0 {
		p.malformed(f.Elem, "a map entry", protoErr(n, len(b)))
		return -1
	}
	var key, val []byte
	var keyTyp, valTyp protowire.Type
	hasKey, hasVal := false, false
	for len(body) > 0 {
		num, t, k := consumeTag(body)
		if k < 0 {
			p.malformed(f.Elem, "a map entry's field tag", protoErr(k, len(body)))
			return -1
		}
		body = body[k:]
		k = protowire.ConsumeFieldValue(num, t, body)
		if k < 0 {
			p.malformed(f.Elem, "a map entry's field", protoErr(k, len(body)))
			return -1
		}
		switch num {
		case 1:
			key, keyTyp, hasKey = body[:k], t, true
		case 2:
			val, valTyp, hasVal = body[:k], t, true
		}
		body = body[k:]
	}
	d := p.d
	start := len(d.strs)
	if hasKey {
		if keyTyp != wireOf(pf.key) {
			p.malformed(f.Elem, "wire type "+wireName(wireOf(pf.key))+" for a map key", "wire type "+wireName(keyTyp))
			return -1
		}
		var ok bool
		if d.strs, ok = appendKey(d.strs, pf.key, key); !ok {
			p.malformed(f.Elem, "a "+pf.key.String()+" map key", "bytes that are not one")
			return -1
		}
	} else if pf.key == protoreflect.BoolKind {
		d.strs = append(d.strs, "false"...)
	} else if pf.key != protoreflect.StringKind {
		d.strs = append(d.strs, '0')
	}
	d.stack[top].key = d.strs[start:]
	d.put(f.Column, true, parquet.ByteArrayValue(d.strs[start:]), rep, f.def+1)
	e := pf.elem
	switch {
	case hasVal:
		if p.value(e, valTyp, val, rep) < 0 {
			return -1
		}
	case e.msg != nil:
		if !p.message(e.msg, nil, rep) {
			return -1
		}
	case e.stamp:
		p.put(e.f, parquet.Int64Value(0), rep)
	default:
		p.put(e.f, e.def, rep)
	}
	return n
}

// appendKey appends the text of a map key of kind k whose value is b.
func appendKey(dst []byte, k protoreflect.Kind, b []byte) ([]byte, bool) {
	switch wireOf(k) {
	case protowire.BytesType:
		s, n := protowire.ConsumeBytes(b)
		if n < 0 || !utf8.Valid(s) {
			return dst, false
		}
		return append(dst, s...), true
	case protowire.VarintType:
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return dst, false
		}
		switch k {
		case protoreflect.BoolKind:
			return strconv.AppendBool(dst, v != 0), true
		case protoreflect.Int32Kind:
			return strconv.AppendInt(dst, int64(int32(v)), 10), true
		case protoreflect.Sint32Kind:
			return strconv.AppendInt(dst, int64(int32(protowire.DecodeZigZag(v&math.MaxUint32))), 10), true
		case protoreflect.Sint64Kind:
			return strconv.AppendInt(dst, protowire.DecodeZigZag(v), 10), true
		case protoreflect.Uint32Kind:
			return strconv.AppendUint(dst, uint64(uint32(v)), 10), true
		case protoreflect.Uint64Kind:
			return strconv.AppendUint(dst, v, 10), true
		}
		return strconv.AppendInt(dst, int64(v), 10), true
	case protowire.Fixed32Type:
		v, n := protowire.ConsumeFixed32(b)
		if n < 0 {
			return dst, false
		}
		if k == protoreflect.Sfixed32Kind {
			return strconv.AppendInt(dst, int64(int32(v)), 10), true
		}
		return strconv.AppendUint(dst, uint64(v), 10), true
	default:
		v, n := protowire.ConsumeFixed64(b)
		if n < 0 {
			return dst, false
		}
		if k == protoreflect.Sfixed64Kind {
			return strconv.AppendInt(dst, int64(v), 10), true
		}
		return strconv.AppendUint(dst, v, 10), true
	}
}

// wireOf is the wire type of a single value of kind k.
func wireOf(k protoreflect.Kind) protowire.Type {
	switch k {
	case protoreflect.FloatKind, protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind:
		return protowire.Fixed32Type
	case protoreflect.DoubleKind, protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind:
		return protowire.Fixed64Type
	case protoreflect.StringKind, protoreflect.BytesKind, protoreflect.MessageKind:
		return protowire.BytesType
	case protoreflect.GroupKind:
		return protowire.StartGroupType
	}
	return protowire.VarintType
}

// value reads one value of pf (one element, for a list) of wire type typ at
// b into its column; it returns the bytes read or -1.
func (p *ProtoDecoder) value(pf *pfield, typ protowire.Type, b []byte, rep int) int {
	f := pf.f
	if want := wireOf(pf.kind); typ != want {
		p.malformed(f, "wire type "+wireName(want)+" (field type "+pf.kind.String()+")", "wire type "+wireName(typ))
		return -1
	}
	d := p.d
	switch typ {
	case protowire.VarintType:
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			p.malformed(f, "a varint", protoErr(n, len(b)))
			return -1
		}
		var x int64
		switch pf.kind {
		case protoreflect.BoolKind:
			p.put(f, parquet.BooleanValue(v != 0), rep)
			return n
		case protoreflect.EnumKind:
			start := len(d.strs)
			if sym, ok := pf.symbols[int32(v)]; ok {
				d.strs = append(d.strs, sym...)
			} else {
				// Proto3 enums are open: a number the writer's
				// descriptor does not name is still a value.
				d.strs = strconv.AppendInt(d.strs, int64(int32(v)), 10)
			}
			p.put(f, parquet.ByteArrayValue(d.strs[start:]), rep)
			return n
		case protoreflect.Uint64Kind:
			start := len(d.strs)
			d.strs = appendDecimal128(d.strs, 0, v, false, f.size)
			p.put(f, parquet.FixedLenByteArrayValue(d.strs[start:]), rep)
			return n
		case protoreflect.Int32Kind:
			x = int64(int32(v))
		case protoreflect.Uint32Kind:
			x = int64(uint32(v))
		case protoreflect.Sint32Kind:
			x = int64(int32(protowire.DecodeZigZag(v & math.MaxUint32)))
		case protoreflect.Sint64Kind:
			x = protowire.DecodeZigZag(v)
		default:
			x = int64(v)
		}
		p.integer(f, x, rep)
		return n
	case protowire.Fixed32Type:
		v, n := protowire.ConsumeFixed32(b)
		if n < 0 {
			p.malformed(f, "4 bytes", protoErr(n, len(b)))
			return -1
		}
		switch pf.kind {
		case protoreflect.FloatKind:
			x := math.Float32frombits(v)
			if f.Kind == Double {
				p.put(f, parquet.DoubleValue(float64(x)), rep)
			} else {
				p.put(f, parquet.FloatValue(x), rep)
			}
		case protoreflect.Sfixed32Kind:
			p.integer(f, int64(int32(v)), rep)
		default:
			p.integer(f, int64(v), rep)
		}
		return n
	case protowire.Fixed64Type:
		v, n := protowire.ConsumeFixed64(b)
		if n < 0 {
			p.malformed(f, "8 bytes", protoErr(n, len(b)))
			return -1
		}
		switch pf.kind {
		case protoreflect.DoubleKind:
			p.put(f, parquet.DoubleValue(math.Float64frombits(v)), rep)
		case protoreflect.Fixed64Kind:
			start := len(d.strs)
			d.strs = appendDecimal128(d.strs, 0, v, false, f.size)
			p.put(f, parquet.FixedLenByteArrayValue(d.strs[start:]), rep)
		default:
			p.integer(f, int64(v), rep)
		}
		return n
	}
	body, n := protowire.ConsumeBytes(b)
	if n < 0 {
		p.malformed(f, "a length-delimited value", protoErr(n, len(b)))
		return -1
	}
	switch {
	case pf.stamp:
		if !p.timestamp(f, body, rep) {
			return -1
		}
	case pf.msg != nil:
		d.stack = append(d.stack, frame{f: f, idx: -1})
		if !p.message(pf.msg, body, rep) {
			return -1
		}
		d.stack = d.stack[:len(d.stack)-1]
	default: // string
		if !utf8.Valid(body) {
			p.malformed(f, "a UTF-8 string", "invalid UTF-8 "+quoteSnippet(body))
			return -1
		}
		start := len(d.strs)
		d.strs = append(d.strs, body...)
		p.put(f, parquet.ByteArrayValue(d.strs[start:]), rep)
	}
	return n
}

func (p *ProtoDecoder) integer(f *Field, x int64, rep int) {
	if f.Kind == Int32 {
		p.put(f, parquet.Int32Value(int32(x)), rep)
	} else {
		p.put(f, parquet.Int64Value(x), rep)
	}
}

// timestamp reads a google.protobuf.Timestamp: seconds (1) and nanos (2).
func (p *ProtoDecoder) timestamp(f *Field, b []byte, rep int) bool {
	var secs, nanos int64
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return p.malformed(f, "a Timestamp field tag", protoErr(n, len(b)))
		}
		b = b[n:]
		if (num == 1 || num == 2) && typ != protowire.VarintType {
			return p.malformed(f, "wire type "+wireName(protowire.VarintType)+" for a Timestamp's seconds or nanos", "wire type "+wireName(typ))
		}
		switch num {
		case 1, 2:
			v, k := protowire.ConsumeVarint(b)
			if k < 0 {
				return p.malformed(f, "a varint", protoErr(k, len(b)))
			}
			if num == 1 {
				secs = int64(v)
			} else {
				nanos = int64(int32(v))
			}
			n = k
		default:
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return p.malformed(f, "a Timestamp field", protoErr(n, len(b)))
			}
		}
		b = b[n:]
	}
	s := p.d.schema
	if nanos < 0 || nanos > 999_999_999 || secs < s.minTime[f.Column]/1e6-1 || secs > s.maxTime[f.Column]/1e6+1 {
		p.d.err = &Error{Class: ClassOutOfRange, Field: p.d.where(f), Expected: expected(f), Got: fmt.Sprintf("seconds %d, nanos %d", secs, nanos)}
		return false
	}
	v := secs*1e6 + nanos/1000
	if v < s.minTime[f.Column] || v > s.maxTime[f.Column] {
		p.d.err = &Error{Class: ClassOutOfRange, Field: p.d.where(f), Expected: expected(f), Got: fmt.Sprintf("seconds %d, nanos %d", secs, nanos)}
		return false
	}
	p.put(f, parquet.Int64Value(v), rep)
	return true
}

// protoErr describes a protowire failure at a place with left bytes.
func protoErr(n, left int) string {
	if err := protowire.ParseError(n); err != nil {
		return err.Error() + " (" + strconv.Itoa(left) + " bytes left)"
	}
	return "bad input"
}

// consumeTag is protowire.ConsumeTag that also refuses field numbers above
// the largest valid one, as protobuf-go's parser does.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, -2 // protowire's code for an invalid field number
	}
	return num, typ, n
}
