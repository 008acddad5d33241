// Binding a Protobuf message descriptor to a schema's fields (done once per
// writer schema); decoding payloads with the result is in protodec.go.

package schema

import (
	"fmt"
	"strconv"

	"github.com/parquet-go/parquet-go"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// pmsg is a message type bound to the fields of the struct it fills.
type pmsg struct {
	fields []Field
	byNum  []*pfield // by field number, for numbers below len(byNum)
	big    map[protowire.Number]*pfield
	bound  []*pfield // per field of fields: the writer's field, nil when it has none
	seen   []bool    // per field of fields, in the message being read
	count  []int     // per list or map field: elements so far
}

// pfield is a field of the writer's message bound to the column field it
// fills.
type pfield struct {
	f        *Field // for a list, the list; for a map, the map
	idx      int    // in pmsg.fields
	kind     protoreflect.Kind
	list     bool
	elem     *pfield // list element or map value (f is then the element)
	key      protoreflect.Kind
	msg      *pmsg // message values
	stamp    bool  // google.protobuf.Timestamp
	presence bool
	def      parquet.Value // when absent without presence
	symbols  map[int32][]byte
}

// NewProtoDecoder binds md, the message payloads were written with, to s.
func (s *Schema) NewProtoDecoder(md protoreflect.MessageDescriptor) (*ProtoDecoder, error) {
	root, err := bindMessage(md, s.fields, "")
	if err != nil {
		return nil, err
	}
	d := s.newNestedDecoder()
	return &ProtoDecoder{d: d, root: root}, nil
}

func bindMessage(md protoreflect.MessageDescriptor, fields []Field, prefix string) (*pmsg, error) {
	m := &pmsg{fields: fields, bound: make([]*pfield, len(fields)), seen: make([]bool, len(fields)), count: make([]int, len(fields))}
	fds := md.Fields()
	maxNum := 0
	for i := 0; i < fds.Len(); i++ {
		maxNum = max(maxNum, int(fds.Get(i).Number()))
	}
	if maxNum < 1024 {
		m.byNum = make([]*pfield, maxNum+1)
	} else {
		m.big = map[protowire.Number]*pfield{}
	}
	for i := 0; i < fds.Len(); i++ {
		fd := fds.Get(i)
		idx := -1
		for j := range fields {
			if fields[j].Name == string(fd.Name()) {
				idx = j
			}
		}
		if idx < 0 {
			return nil, fmt.Errorf("protobuf field %s%s is not in the schema", prefix, fd.Name())
		}
		f := &fields[idx]
		pf := &pfield{f: f, idx: idx, presence: fd.HasPresence()}
		var err error
		switch {
		case fd.IsMap():
			if f.Kind != Map {
				return nil, bindMismatch(prefix, fd, f)
			}
			pf.key = fd.MapKey().Kind()
			pf.elem, err = bindValue(fd.MapValue(), f.Elem, prefix)
		case fd.IsList():
			if f.Kind != List {
				return nil, bindMismatch(prefix, fd, f)
			}
			pf.list = true
			pf.elem, err = bindValue(fd, f.Elem, prefix)
		default:
			var v *pfield
			v, err = bindValue(fd, f, prefix)
			if v != nil {
				v.idx, v.presence = idx, pf.presence
				pf = v
			}
		}
		if err != nil {
			return nil, err
		}
		pf.kind = fd.Kind()
		m.bound[idx] = pf
		if m.big != nil {
			m.big[fd.Number()] = pf
		} else {
			m.byNum[fd.Number()] = pf
		}
	}
	return m, nil
}

func bindMismatch(prefix string, fd protoreflect.FieldDescriptor, f *Field) error {
	kind := fd.Kind().String()
	switch {
	case fd.IsMap():
		kind = "map"
	case fd.IsList():
		kind = "repeated " + kind
	}
	return fmt.Errorf("protobuf field %s%s is %s, the schema's column %s", prefix, fd.Name(), kind, f.Kind)
}

// bindValue binds one value of fd (an element of a repeated field) to f.
func bindValue(fd protoreflect.FieldDescriptor, f *Field, prefix string) (*pfield, error) {
	pf := &pfield{f: f, kind: fd.Kind()}
	ok := false
	switch fd.Kind() {
	case protoreflect.BoolKind:
		ok = f.Kind == Bool
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		ok = f.Kind == Int32 || f.Kind == Int64
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind, protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		ok = f.Kind == Int64
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		ok = f.Kind == Decimal && f.Scale == 0 && f.Precision >= 20
	case protoreflect.FloatKind:
		ok = f.Kind == Float || f.Kind == Double
	case protoreflect.DoubleKind:
		ok = f.Kind == Double
	case protoreflect.StringKind:
		ok = f.Kind == String
	case protoreflect.EnumKind:
		ok = f.Kind == String
		pf.symbols = map[int32][]byte{}
		vals := fd.Enum().Values()
		for i := 0; i < vals.Len(); i++ {
			if _, dup := pf.symbols[int32(vals.Get(i).Number())]; !dup { // the first of aliases
				pf.symbols[int32(vals.Get(i).Number())] = []byte(vals.Get(i).Name())
			}
		}
	case protoreflect.MessageKind:
		if fd.Message().FullName() == timestampName {
			pf.stamp = true
			ok = f.Kind == Timestamp && f.Unit == Micros
			break
		}
		if f.Kind != Struct {
			break
		}
		m, err := bindMessage(fd.Message(), f.Fields, prefix+string(fd.Name())+".")
		if err != nil {
			return nil, err
		}
		pf.msg, ok = m, true
	}
	if !ok {
		return nil, bindMismatch(prefix, fd, f)
	}
	if fd.Kind() != protoreflect.MessageKind && !fd.IsList() {
		pf.def = defaultValue(fd, f)
	}
	return pf, nil
}

// defaultValue is the column value of fd's default.
func defaultValue(fd protoreflect.FieldDescriptor, f *Field) parquet.Value {
	v := fd.Default()
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return parquet.BooleanValue(v.Bool())
	case protoreflect.EnumKind:
		ev := fd.DefaultEnumValue()
		if ev == nil {
			ev = fd.Enum().Values().ByNumber(v.Enum())
		}
		if ev != nil {
			return parquet.ByteArrayValue([]byte(ev.Name()))
		}
		return parquet.ByteArrayValue(strconv.AppendInt(nil, int64(v.Enum()), 10))
	case protoreflect.StringKind:
		return parquet.ByteArrayValue([]byte(v.String()))
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		if f.Kind == Float {
			return parquet.FloatValue(float32(v.Float()))
		}
		return parquet.DoubleValue(v.Float())
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return parquet.FixedLenByteArrayValue(appendDecimal128(nil, 0, v.Uint(), false, f.size))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return parquet.Int64Value(int64(v.Uint()))
	}
	if f.Kind == Int32 {
		return parquet.Int32Value(int32(v.Int()))
	}
	return parquet.Int64Value(v.Int())
}
