package schema_test

import (
	"strings"
	"testing"

	hamba "github.com/hamba/avro/v2"
	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/schema/avro"
	"github.com/sinkd/sinkd/schema/protobuf"
)

func TestMerge(t *testing.T) {
	i32 := conf.Field{Name: "n", Type: "int32", Required: true}
	cases := []struct {
		name         string
		file, writer []conf.Field
		want         []conf.Field
		err          string
	}{
		{"same", []conf.Field{i32}, []conf.Field{i32}, []conf.Field{i32}, ""},
		{"added", []conf.Field{i32}, []conf.Field{i32, {Name: "x", Type: "string", Required: true}},
			[]conf.Field{i32, {Name: "x", Type: "string"}}, ""},
		{"dropped", []conf.Field{i32, {Name: "x", Type: "string", Required: true}}, []conf.Field{i32},
			[]conf.Field{i32, {Name: "x", Type: "string"}}, ""},
		{"widened", []conf.Field{i32, {Name: "f", Type: "float"}}, []conf.Field{{Name: "n", Type: "int64", Required: true}, {Name: "f", Type: "double"}},
			[]conf.Field{{Name: "n", Type: "int64", Required: true}, {Name: "f", Type: "double"}}, ""},
		{"narrower writer", []conf.Field{{Name: "n", Type: "int64"}}, []conf.Field{{Name: "n", Type: "int32"}},
			[]conf.Field{{Name: "n", Type: "int64"}}, ""},
		{"nested added", []conf.Field{{Name: "s", Type: "struct", Fields: []conf.Field{i32}}},
			[]conf.Field{{Name: "s", Type: "struct", Fields: []conf.Field{i32, {Name: "y", Type: "bool", Required: true}}}},
			[]conf.Field{{Name: "s", Type: "struct", Fields: []conf.Field{i32, {Name: "y", Type: "bool"}}}}, ""},
		{"changed type", []conf.Field{{Name: "s", Type: "struct", Fields: []conf.Field{i32}}},
			[]conf.Field{{Name: "s", Type: "struct", Fields: []conf.Field{{Name: "n", Type: "string"}}}}, nil,
			"s.n: int32 in the file schema, string in the writer's"},
		{"list items", []conf.Field{{Name: "l", Type: "list", Items: &conf.Field{Type: "float", Required: true}}},
			[]conf.Field{{Name: "l", Type: "list", Items: &conf.Field{Type: "double", Required: true}}},
			[]conf.Field{{Name: "l", Type: "list", Items: &conf.Field{Type: "double", Required: true}}}, ""},
		{"decimal scale", []conf.Field{{Name: "d", Type: "decimal", Precision: 10, Scale: 2}}, []conf.Field{{Name: "d", Type: "decimal", Precision: 10, Scale: 3}},
			nil, "d: decimal(10,2) in the file schema, decimal(10,3) in the writer's"},
	}
	for _, c := range cases {
		got, err := schema.Merge(c.file, c.writer)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: got %v, want %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !fieldsEqual(got, c.want) {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
}

type rowDecoder interface {
	Decode([]byte, parquet.Row) (parquet.Row, error)
}

func fieldsEqual(a, b []conf.Field) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Name != y.Name || x.Type != y.Type || x.Required != y.Required || !fieldsEqual(x.Fields, y.Fields) ||
			(x.Items == nil) != (y.Items == nil) || (x.Items != nil && !fieldsEqual([]conf.Field{*x.Items}, []conf.Field{*y.Items})) {
			return false
		}
	}
	return true
}

// TestEvolvedDecoders decodes records of two schema versions (a field added,
// an int widened, a float widened) into the merged schema: rows of the old
// version are null in the new column and their narrower values widened.
func TestEvolvedDecoders(t *testing.T) {
	const v1 = `{"type":"record","name":"T","fields":[{"name":"id","type":"int"},{"name":"f","type":{"type":"record","name":"F","fields":[{"name":"a","type":"float"}]}}]}`
	const v2 = `{"type":"record","name":"T","fields":[{"name":"id","type":"long"},{"name":"f","type":{"type":"record","name":"F","fields":[{"name":"a","type":"double"},{"name":"b","type":["null","string"],"default":null}]}},{"name":"c","type":["null","long"],"default":null}]}`
	const p1 = `syntax = "proto3"; message T { int32 id = 1; F f = 2; } message F { float a = 1; }`
	const p2 = `syntax = "proto3"; message T { int64 id = 1; F f = 2; optional int64 c = 3; } message F { double a = 1; optional string b = 2; }`
	af1, _ := avro.Fields(v1)
	af2, _ := avro.Fields(v2)
	m1, m2 := compileTrip(t, p1), compileTrip(t, p2)
	pf1, _ := protobuf.Fields(m1)
	pf2, _ := protobuf.Fields(m2)
	for _, c := range []struct {
		name       string
		f1, f2     []conf.Field
		old, young func(s *schema.Schema) ([]byte, rowDecoder)
	}{
		{"avro", af1, af2,
			func(s *schema.Schema) ([]byte, rowDecoder) {
				d, err := s.NewAvroDecoder(v1)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := hamba.Marshal(hamba.MustParse(v1), map[string]any{"id": 7, "f": map[string]any{"a": float32(1.5)}})
				return b, d
			},
			func(s *schema.Schema) ([]byte, rowDecoder) {
				d, err := s.NewAvroDecoder(v2)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := hamba.Marshal(hamba.MustParse(v2), map[string]any{"id": int64(8), "f": map[string]any{"a": 2.5, "b": "x"}, "c": int64(3)})
				return b, d
			}},
		{"protobuf", pf1, pf2,
			func(s *schema.Schema) ([]byte, rowDecoder) {
				d, err := s.NewProtoDecoder(m1)
				if err != nil {
					t.Fatal(err)
				}
				return marshal(t, m1, `{"id":7,"f":{"a":1.5}}`), d
			},
			func(s *schema.Schema) ([]byte, rowDecoder) {
				d, err := s.NewProtoDecoder(m2)
				if err != nil {
					t.Fatal(err)
				}
				return marshal(t, m2, `{"id":8,"f":{"a":2.5,"b":"x"},"c":3}`), d
			}},
	} {
		merged, err := schema.Merge(c.f1, c.f2)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		s, err := schema.New(merged)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		jd := s.NewDecoder()
		for i, v := range []struct {
			mk   func(*schema.Schema) ([]byte, rowDecoder)
			json string
		}{
			{c.old, `{"id":7,"f":{"a":1.5}}`},
			{c.young, `{"id":8,"f":{"a":2.5,"b":"x"},"c":3}`},
		} {
			payload, d := v.mk(s)
			got, err := d.Decode(payload, nil)
			if err != nil {
				t.Fatalf("%s %d: %v", c.name, i, err)
			}
			want, err := jd.Decode([]byte(v.json), nil)
			if err != nil {
				t.Fatalf("%s %d json: %v", c.name, i, err)
			}
			if !rowsEqual(got, want) {
				t.Errorf("%s version %d:\ngot  %v\nwant %v", c.name, i+1, got, want)
			}
		}
	}
}
