package registry_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/schema/registry"
)

// dbzProto is a Debezium envelope as Protobuf: the row message in before and
// after, source with ts_ms, and other fields that are skipped.
const dbzProto = `syntax = "proto3";
package dbz;
message Envelope {
  Value before = 1;
  Value after = 2;
  Source source = 3;
  string op = 4;
  optional int64 ts_ms = 5;
  Block transaction = 6;
}
message Value { int64 id = 1; optional string email = 2; repeated string tags = 3; }
message Source { string version = 1; int64 ts_ms = 2; string db = 3; map<string, string> extra = 4; }
message Block { string id = 1; int64 total_order = 2; }
`

// dbzJSONSchema is a Debezium envelope as JSON Schema, its images a union of
// null and a reference, as Debezium's JSON Schema converter writes them.
const dbzJSONSchema = `{"type":"object","title":"Envelope","properties":{
 "before":{"oneOf":[{"type":"null"},{"$ref":"#/definitions/Value"}]},
 "after":{"oneOf":[{"type":"null"},{"$ref":"#/definitions/Value"}]},
 "source":{"type":"object","properties":{"version":{"type":"string"},"ts_ms":{"type":"integer"},"db":{"type":"string"}}},
 "op":{"type":"string"},
 "ts_ms":{"oneOf":[{"type":"null"},{"type":"integer"}]}},
 "required":["op","source"],
 "definitions":{"Value":{"type":"object","properties":{
   "id":{"type":"integer"},"email":{"oneOf":[{"type":"null"},{"type":"string"}]},"tags":{"type":"array","items":{"type":"string"}}},
  "required":["id"]}}}`

// cdcCase is one change event: as protobuf JSON (protobuf-go encodes it) and
// as the event's own JSON, and the row wanted, as sinkd JSON ("" when the
// event is skipped).
type cdcCase struct {
	name        string
	proto, json string
	want        map[bool]string // by keep deletes
}

var cdcCases = []cdcCase{
	{"create",
		`{"after":{"id":"1","email":"a@x","tags":["x","y"]},"source":{"version":"2.7","tsMs":"1514766065000","db":"shop","extra":{"k":"v"}},"op":"c","tsMs":"5","transaction":{"id":"t","totalOrder":"1"}}`,
		`{"before":null,"after":{"id":1,"email":"a@x","tags":["x","y"]},"source":{"version":"2.7","ts_ms":1514766065000,"db":"shop"},"op":"c","ts_ms":5}`,
		map[bool]string{true: `{"id":1,"email":"a@x","tags":["x","y"],"__op":"c","__source_ts_ms":1514766065000}`, false: `{"id":1,"email":"a@x","tags":["x","y"],"__op":"c","__source_ts_ms":1514766065000}`}},
	{"update",
		`{"before":{"id":"1"},"after":{"id":"1"},"source":{"tsMs":"1514766065000"},"op":"u"}`,
		`{"before":{"id":1},"after":{"id":1,"tags":[]},"source":{"ts_ms":1514766065000},"op":"u"}`,
		map[bool]string{true: `{"id":1,"tags":[],"__op":"u","__source_ts_ms":1514766065000}`, false: `{"id":1,"tags":[],"__op":"u","__source_ts_ms":1514766065000}`}},
	{"snapshot without source time",
		`{"after":{"id":"3"},"op":"r"}`,
		`{"after":{"id":3,"tags":[]},"op":"r","source":{}}`,
		map[bool]string{true: `{"id":3,"tags":[],"__op":"r"}`, false: `{"id":3,"tags":[],"__op":"r"}`}},
	{"delete",
		`{"before":{"id":"2","email":"a@x"},"source":{"tsMs":"1514766065000"},"op":"d"}`,
		`{"before":{"id":2,"email":"a@x","tags":[]},"after":null,"source":{"ts_ms":1514766065000},"op":"d"}`,
		map[bool]string{true: `{"id":2,"email":"a@x","tags":[],"__op":"d","__source_ts_ms":1514766065000}`, false: ""}},
	{"truncate", `{"source":{"tsMs":"1"},"op":"t"}`, `{"source":{"ts_ms":1},"op":"t"}`, map[bool]string{true: "", false: ""}},
}

// TestCDCProtobufAndJSONSchema reads Debezium change events through the
// registry as Protobuf (encoded by protobuf-go) and as JSON Schema: the row
// is the after image (before for a kept delete) with __op and
// __source_ts_ms, deletes are kept or dropped, truncates and tombstones are
// skipped, and an event without its image is a bad_envelope dead letter, as
// for JSON and Avro envelopes.
func TestCDCProtobufAndJSONSchema(t *testing.T) {
	_, srv, cl, _ := setup(t)
	ctx := context.Background()
	admin, _ := sr.NewClient(sr.URLs(srv.URL), sr.BasicAuth("u", "p"))
	protoID, err := admin.CreateSchema(ctx, "dbz-proto-value", sr.Schema{Schema: dbzProto, Type: sr.TypeProtobuf})
	if err != nil {
		t.Fatal(err)
	}
	jsonID, err := admin.CreateSchema(ctx, "dbz-json-value", sr.Schema{Schema: dbzJSONSchema, Type: sr.TypeJSON})
	if err != nil {
		t.Fatal(err)
	}
	formats := []struct {
		name    string
		format  sr.SchemaType
		subject string
		encode  func(c cdcCase) []byte
		bad     []byte // a create without its after image
		mangled []byte // an envelope field of the wrong type
		class   string // mangled's class
	}{
		{"protobuf", sr.TypeProtobuf, "dbz-proto-value",
			func(c cdcCase) []byte {
				return protoWire(protoID.ID, []int{0}, encodeProto(t, dbzProto, nil, "dbz.Envelope", c.proto))
			},
			protoWire(protoID.ID, []int{0}, encodeProto(t, dbzProto, nil, "dbz.Envelope", `{"op":"c"}`)),
			protoWire(protoID.ID, []int{0}, []byte{0x20, 0x01}), // op (field 4) as a varint
			schema.ClassMalformedProtobuf},
		{"jsonschema", sr.TypeJSON, "dbz-json-value",
			func(c cdcCase) []byte { return wire(jsonID.ID, []byte(c.json)) },
			wire(jsonID.ID, []byte(`{"after":null,"op":"c","source":{}}`)),
			wire(jsonID.ID, []byte(`{"after":{"id":"one"},"op":"c"}`)),
			schema.ClassTypeMismatch},
	}
	for _, f := range formats {
		for _, keep := range []bool{true, false} {
			in, err := registry.NewInput(ctx, cl, registry.InputOptions{Format: f.format, Subject: f.subject, CDC: true, KeepDeletes: keep})
			if err != nil {
				t.Fatalf("%s: %v", f.name, err)
			}
			if cols := strings.Join(flat(in.Schema().Parquet().Columns()), " "); cols != "id email tags.list.element __op __source_ts_ms" {
				t.Fatalf("%s: columns %s", f.name, cols)
			}
			for _, c := range cdcCases {
				got, err := in.Decode(ctx, f.encode(c), nil)
				want := c.want[keep]
				if want == "" {
					if !errors.Is(err, schema.ErrSkip) {
						t.Errorf("%s %s (keep %t): %v, want skipped", f.name, c.name, keep, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s %s: %v", f.name, c.name, err)
				}
				row, err := in.Schema().NewDecoder().Decode([]byte(want), nil)
				if err != nil {
					t.Fatal(err)
				}
				if !sameRow(got, row) {
					t.Errorf("%s %s (keep %t):\ngot  %v\nwant %v", f.name, c.name, keep, got, row)
				}
			}
			for name, c := range map[string]struct {
				value []byte
				class string
			}{"no after image": {f.bad, schema.ClassBadEnvelope}, "mangled": {f.mangled, f.class}} {
				var se *schema.Error
				if _, err := in.Decode(ctx, c.value, nil); !errors.As(err, &se) || se.Class != c.class {
					t.Errorf("%s %s: %v, want class %s", f.name, name, err, c.class)
				}
			}
			if _, err := in.Decode(ctx, nil, parquet.Row{}); !errors.Is(err, schema.ErrSkip) {
				t.Errorf("%s tombstone: %v, want skipped", f.name, err)
			}
		}
	}
}
