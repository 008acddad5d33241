package schema_test

import (
	"errors"
	"testing"

	hamba "github.com/hamba/avro/v2"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/schema/avro"
	"github.com/sinkd/sinkd/schema/protobuf"
)

// TestCDCDecoder unwraps Debezium change events as Kafka Connect's
// JsonConverter writes them (with and without the schema wrapper): the after
// image is the row (before for a kept delete), op and source.ts_ms follow.
func TestCDCDecoder(t *testing.T) {
	fields := schema.CDCFields([]conf.Field{
		{Name: "id", Type: "int64", Required: true},
		{Name: "name", Type: "string"},
		{Name: "addr", Type: "struct", Fields: []conf.Field{{Name: "zip", Type: "string"}}},
	})
	s, err := schema.New(fields)
	if err != nil {
		t.Fatal(err)
	}
	jd := s.NewDecoder()
	cases := []struct {
		name, value string
		keep        bool
		want        string // the row as plain JSON; "" for skipped
		class       string
	}{
		{"create", `{"before":null,"after":{"id":1,"name":"a","addr":{"zip":"10001"}},"source":{"ts_ms":1514766065000,"db":"x"},"op":"c","ts_ms":1514766066000}`, false,
			`{"id":1,"name":"a","addr":{"zip":"10001"},"__op":"c","__source_ts_ms":1514766065000}`, ""},
		{"wrapped update", `{"schema":{"type":"struct"},"payload":{"before":{"id":1},"after":{"id":1,"name":"b"},"source":{"ts_ms":5},"op":"u"}}`, false,
			`{"id":1,"name":"b","__op":"u","__source_ts_ms":5}`, ""},
		{"snapshot read", `{"after":{"id":2},"source":{},"op":"r"}`, false, `{"id":2,"__op":"r"}`, ""},
		{"delete dropped", `{"before":{"id":3},"after":null,"source":{"ts_ms":7},"op":"d"}`, false, "", ""},
		{"delete kept", `{"before":{"id":3,"name":"z"},"after":null,"source":{"ts_ms":7},"op":"d"}`, true,
			`{"id":3,"name":"z","__op":"d","__source_ts_ms":7}`, ""},
		{"tombstone", ``, true, "", ""},
		{"truncate", `{"source":{"ts_ms":7},"op":"t"}`, true, "", ""},
		{"no op", `{"after":{"id":1}}`, false, "", schema.ClassBadEnvelope},
		{"create without after", `{"op":"c","after":null}`, false, "", schema.ClassBadEnvelope},
		{"row at fault", `{"op":"c","after":{"id":"x"}}`, false, "", schema.ClassTypeMismatch},
		{"not json", `{"op":`, false, "", schema.ClassMalformedJSON},
	}
	for _, c := range cases {
		d, err := s.NewCDCDecoder(c.keep)
		if err != nil {
			t.Fatal(err)
		}
		got, err := d.Decode([]byte(c.value), nil)
		switch {
		case c.class != "":
			var se *schema.Error
			if !errors.As(err, &se) || se.Class != c.class {
				t.Errorf("%s: %v, want class %s", c.name, err, c.class)
			}
		case c.want == "":
			if !errors.Is(err, schema.ErrSkip) {
				t.Errorf("%s: %v %v, want skipped", c.name, got, err)
			}
		default:
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			want, err := jd.Decode([]byte(c.want), nil)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if !rowsEqual(got, want) {
				t.Errorf("%s:\ngot  %v\nwant %v", c.name, got, want)
			}
		}
	}
}

// FuzzDecodeCDC: whatever the value, the CDC decoder gives a row with a
// value for every column in order, ErrSkip, or a classified *schema.Error.
func FuzzDecodeCDC(f *testing.F) {
	for _, v := range []string{
		`{"before":null,"after":{"id":1,"name":"a","addr":{"zip":"1"}},"source":{"ts_ms":5},"op":"c"}`,
		`{"schema":{},"payload":{"before":{"id":1},"after":null,"source":{"ts_ms":5},"op":"d"}}`,
		`{"op":"t"}`, ``, `null`, `{"op":"u","after":{"id":"x"}}`,
	} {
		f.Add([]byte(v), true)
	}
	s, err := schema.New(schema.CDCFields([]conf.Field{
		{Name: "id", Type: "int64", Required: true},
		{Name: "name", Type: "string"},
		{Name: "addr", Type: "struct", Fields: []conf.Field{{Name: "zip", Type: "string"}}},
	}))
	if err != nil {
		f.Fatal(err)
	}
	keep, _ := s.NewCDCDecoder(true)
	drop, _ := s.NewCDCDecoder(false)
	columns := len(s.Parquet().Columns())
	f.Fuzz(func(t *testing.T, value []byte, keepDeletes bool) {
		d := drop
		if keepDeletes {
			d = keep
		}
		row, err := d.Decode(value, nil)
		if err != nil {
			var se *schema.Error
			if !errors.Is(err, schema.ErrSkip) && !errors.As(err, &se) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if len(row) != columns {
			t.Fatalf("%d values for %d columns", len(row), columns)
		}
		for i, v := range row {
			if v.Column() != i {
				t.Fatalf("value %d is of column %d", i, v.Column())
			}
		}
	})
}

const avroEnvelope = `{"type":"record","name":"Envelope","fields":[
 {"name":"before","type":["null",{"type":"record","name":"Value","fields":[
   {"name":"id","type":"long"},{"name":"tags","type":{"type":"array","items":"string"}}]}],"default":null},
 {"name":"after","type":["null","Value"],"default":null},
 {"name":"source","type":{"type":"record","name":"Source","fields":[
   {"name":"ts_ms","type":"long"},{"name":"m","type":{"type":"map","values":["null","double"]}},{"name":"f","type":{"type":"fixed","name":"F","size":2}}]}},
 {"name":"op","type":"string"},
 {"name":"x","type":["null","boolean","float",{"type":"enum","name":"E","symbols":["a"]}],"default":null}]}`

// FuzzDecodeAvroCDC: whatever the payload, the Avro envelope decoder gives a
// well-formed row, ErrSkip or a classified *schema.Error.
func FuzzDecodeAvroCDC(f *testing.F) {
	ws := hamba.MustParse(avroEnvelope)
	for _, v := range []map[string]any{
		{"before": nil, "after": map[string]any{"Value": map[string]any{"id": int64(1), "tags": []string{"a"}}}, "source": map[string]any{"ts_ms": int64(5), "m": map[string]any{}, "f": [2]byte{1, 2}}, "op": "c", "x": nil},
		{"before": map[string]any{"Value": map[string]any{"id": int64(2), "tags": []string{}}}, "after": nil, "source": map[string]any{"ts_ms": int64(5), "m": map[string]any{}, "f": [2]byte{}}, "op": "d", "x": nil},
	} {
		b, err := hamba.Marshal(ws, v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	fields, err := avro.EnvelopeFields(avroEnvelope)
	if err != nil {
		f.Fatal(err)
	}
	s, err := schema.New(schema.CDCFields(fields))
	if err != nil {
		f.Fatal(err)
	}
	d, err := s.NewAvroCDCDecoder(avroEnvelope, true)
	if err != nil {
		f.Fatal(err)
	}
	columns := len(s.Parquet().Columns())
	f.Fuzz(func(t *testing.T, payload []byte) {
		row, err := d.Decode(payload, nil)
		if err != nil {
			var se *schema.Error
			if !errors.Is(err, schema.ErrSkip) && !errors.As(err, &se) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		checkColumnOrder(t, row, columns)
	})
}

const protoEnvelope = `syntax = "proto3";
package dbz;
import "google/protobuf/wrappers.proto";
message Envelope {
  Value before = 1;
  Value after = 2;
  Source source = 3;
  string op = 4;
  optional int64 ts_ms = 5;
}
message Value { int64 id = 1; optional string name = 2; repeated string tags = 3; Inner inner = 4; }
message Inner { double x = 1; map<string, int32> m = 2; }
message Source { string db = 1; google.protobuf.Int64Value ts_ms = 2; }
`

// FuzzDecodeProtoCDC: whatever the payload, the Protobuf envelope decoder
// gives a well-formed row, ErrSkip or a classified *schema.Error.
func FuzzDecodeProtoCDC(f *testing.F) {
	md := compileTrip(f, protoEnvelope)
	for _, js := range []string{
		`{"after":{"id":"1","name":"a","tags":["x"],"inner":{"x":1.5,"m":{"k":2}}},"source":{"db":"s","tsMs":"5"},"op":"c","tsMs":"6"}`,
		`{"before":{"id":"2"},"source":{"tsMs":"0"},"op":"d"}`,
		`{"op":"t"}`,
	} {
		f.Add(marshal(f, md, js))
	}
	value, err := schema.ProtoEnvelopeValue(md)
	if err != nil {
		f.Fatal(err)
	}
	fields, err := protobuf.Fields(value)
	if err != nil {
		f.Fatal(err)
	}
	s, err := schema.New(schema.CDCFields(fields))
	if err != nil {
		f.Fatal(err)
	}
	d, err := s.NewProtoCDCDecoder(md, true)
	if err != nil {
		f.Fatal(err)
	}
	columns := len(s.Parquet().Columns())
	f.Fuzz(func(t *testing.T, payload []byte) {
		row, err := d.Decode(payload, nil)
		if err != nil {
			var se *schema.Error
			if !errors.Is(err, schema.ErrSkip) && !errors.As(err, &se) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		checkColumnOrder(t, row, columns)
	})
}
