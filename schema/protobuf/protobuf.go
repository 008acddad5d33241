// Package protobuf compiles Protobuf schemas as a schema registry serves them
// (.proto source text, with references to other subjects' files) into
// descriptors, and derives sinkd's field list from a message, so that a user
// of the registry writes no field list.
package protobuf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/sinkd/sinkd/config/conf"
)

// MainFile is the name the schema being compiled gets; its references keep
// the names they are imported by.
const MainFile = "sinkd-registry-schema.proto"

// compileTimeout bounds one compilation: a schema is outside input.
const compileTimeout = 10 * time.Second

// Compile compiles the .proto text of a registry schema. refs maps the
// import paths of its references to their text; the well-known types
// (google/protobuf/timestamp.proto and the others) need no reference.
func Compile(ctx context.Context, text string, refs map[string]string) (protoreflect.FileDescriptor, error) {
	srcs := make(map[string]string, len(refs)+1)
	for k, v := range refs {
		srcs[k] = v
	}
	srcs[MainFile] = text
	c := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
			Accessor: func(path string) (io.ReadCloser, error) {
				if s, ok := srcs[path]; ok {
					return io.NopCloser(strings.NewReader(s)), nil
				}
				return nil, fmt.Errorf("%s: no such reference", path)
			},
		}),
	}
	ctx, cancel := context.WithTimeout(ctx, compileTimeout)
	defer cancel()
	files, err := c.Compile(ctx, MainFile)
	if err != nil {
		return nil, fmt.Errorf("protobuf schema: %w", err)
	}
	return files[0], nil
}

// Message finds the message a Confluent message index names: the first
// number picks a top-level message of fd, each next one a message nested in
// the previous one. An empty index is the first message.
func Message(fd protoreflect.FileDescriptor, index []int) (protoreflect.MessageDescriptor, error) {
	if len(index) == 0 {
		index = []int{0}
	}
	msgs := fd.Messages()
	var md protoreflect.MessageDescriptor
	for _, i := range index {
		if i < 0 || i >= msgs.Len() {
			return nil, fmt.Errorf("message index %v: no message %d (there are %d)", index, i, msgs.Len())
		}
		md = msgs.Get(i)
		msgs = md.Messages()
	}
	return md, nil
}

// ByName finds a message by its full name (package.Message.Nested).
func ByName(fd protoreflect.FileDescriptor, name string) (protoreflect.MessageDescriptor, []int, error) {
	var find func(msgs protoreflect.MessageDescriptors, path []int) (protoreflect.MessageDescriptor, []int)
	find = func(msgs protoreflect.MessageDescriptors, path []int) (protoreflect.MessageDescriptor, []int) {
		for i := 0; i < msgs.Len(); i++ {
			m := msgs.Get(i)
			p := append(path[:len(path):len(path)], i)
			if string(m.FullName()) == name {
				return m, p
			}
			if r, rp := find(m.Messages(), p); r != nil {
				return r, rp
			}
		}
		return nil, nil
	}
	md, path := find(fd.Messages(), nil)
	if md == nil {
		return nil, nil, fmt.Errorf("protobuf schema has no message %q", name)
	}
	return md, path, nil
}

// TimestampName is the well-known Timestamp message, which is a timestamp
// column rather than a struct.
const TimestampName = "google.protobuf.Timestamp"

// Fields derives the field list of a message, in field declaration order:
//
//   - every field is optional: a field its writer did not know is null (a
//     field that a writer knows but left unset has its default value, as
//     Protobuf readers see it, unless the field tracks presence: a message,
//     a proto3 optional, a oneof member or a proto2 optional, which are null);
//   - bool, int32/sint32/sfixed32, int64/sint64/sfixed64, float, double and
//     string are bool, int32, int64, float, double and string; uint32 and
//     fixed32 are int64; uint64 and fixed64 decimal(20,0); an enum is a
//     string (its value's name);
//   - messages are structs, google.protobuf.Timestamp a timestamp
//     (microseconds), repeated fields lists of required elements, and map
//     fields maps (keys as text);
//   - bytes, groups, empty messages and recursive messages are refused with
//     the path of the field.
func Fields(md protoreflect.MessageDescriptor) ([]conf.Field, error) {
	d := deriver{open: map[protoreflect.FullName]bool{md.FullName(): true}}
	fields := d.message(md, "")
	if len(d.errs) > 0 {
		return nil, errors.New("protobuf schema: " + strings.Join(d.errs, "; "))
	}
	return fields, nil
}

type deriver struct {
	open map[protoreflect.FullName]bool
	errs []string
}

func (d *deriver) fail(path, format string, args ...any) {
	d.errs = append(d.errs, path+": "+fmt.Sprintf(format, args...))
}

func (d *deriver) message(md protoreflect.MessageDescriptor, prefix string) []conf.Field {
	fds := md.Fields()
	fields := make([]conf.Field, 0, fds.Len())
	for i := 0; i < fds.Len(); i++ {
		fd := fds.Get(i)
		path := prefix + string(fd.Name())
		var f conf.Field
		switch {
		case fd.IsMap():
			values := d.single(fd.MapValue(), path)
			values.Required = true
			f = conf.Field{Type: "map", Values: &values}
		case fd.IsList():
			items := d.single(fd, path)
			items.Required = true
			f = conf.Field{Type: "list", Items: &items}
		default:
			f = d.single(fd, path)
		}
		f.Name, f.From, f.Required = string(fd.Name()), string(fd.Name()), false
		fields = append(fields, f)
	}
	return fields
}

// single derives the type of one value of fd (an element, for a repeated
// field).
func (d *deriver) single(fd protoreflect.FieldDescriptor, path string) conf.Field {
	var f conf.Field
	switch fd.Kind() {
	case protoreflect.BoolKind:
		f.Type = "bool"
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		f.Type = "int32"
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind, protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		f.Type = "int64"
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		f.Type, f.Precision = "decimal", 20
	case protoreflect.FloatKind:
		f.Type = "float"
	case protoreflect.DoubleKind:
		f.Type = "double"
	case protoreflect.StringKind, protoreflect.EnumKind:
		f.Type = "string"
	case protoreflect.MessageKind:
		m := fd.Message()
		if m.FullName() == TimestampName {
			f.Type, f.Unit, f.Input = "timestamp", "micros", "micros"
			break
		}
		if d.open[m.FullName()] {
			d.fail(path, "message %s contains itself: recursive messages have no Parquet schema", m.FullName())
			break
		}
		if m.Fields().Len() == 0 {
			d.fail(path, "message %s has no fields: an empty struct has no Parquet schema", m.FullName())
			break
		}
		d.open[m.FullName()] = true
		f.Type, f.Fields = "struct", d.message(m, path+".")
		delete(d.open, m.FullName())
	default:
		d.fail(path, "%s has no column type", fd.Kind())
	}
	return f
}
