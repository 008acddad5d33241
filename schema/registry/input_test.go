package registry_test

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	hamba "github.com/hamba/avro/v2"
	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/sr"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/schema/protobuf"
	"github.com/sinkd/sinkd/schema/registry"
)

const stopProto = `syntax = "proto3";
package taxi;
message Stop { int32 zone = 1; string name = 2; }
`

const tripProtoV1 = `syntax = "proto3";
package taxi;
import "stop.proto";
import "google/protobuf/timestamp.proto";
message Other { int32 x = 1; }
message Trip {
  int64 trip_id = 1;
  Fare fare = 2;
  repeated Stop stops = 3;
  google.protobuf.Timestamp pickup = 4;
  message Fare { double amount = 1; float tip = 2; }
}
`

// v2 adds a field at the top and one in the fare, and widens tip.
const tripProtoV2 = `syntax = "proto3";
package taxi;
import "stop.proto";
import "google/protobuf/timestamp.proto";
message Other { int32 x = 1; }
message Trip {
  int64 trip_id = 1;
  Fare fare = 2;
  repeated Stop stops = 3;
  google.protobuf.Timestamp pickup = 4;
  optional string zone = 5;
  message Fare { double amount = 1; double tip = 2; optional double tolls = 3; }
}
`

// v3 changes a type: incompatible.
const tripProtoV3 = `syntax = "proto3";
package taxi;
import "stop.proto";
message Trip { string trip_id = 1; }
`

// protoWire frames a payload as Confluent's Protobuf serializer does: magic
// byte, schema id, then the message indexes as zigzag varints (franz-go's
// sr serde writes the same bytes).
func protoWire(id int, index []int, payload []byte) []byte {
	b := []byte{0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(id))
	if len(index) == 1 && index[0] == 0 {
		b = append(b, 0)
	} else {
		b = binary.AppendVarint(b, int64(len(index)))
		for _, i := range index {
			b = binary.AppendVarint(b, int64(i))
		}
	}
	return append(b, payload...)
}

func encodeProto(t *testing.T, text string, refs map[string]string, name, js string) []byte {
	t.Helper()
	fd, err := protobuf.Compile(context.Background(), text, refs)
	if err != nil {
		t.Fatal(err)
	}
	md, _, err := protobuf.ByName(fd, name)
	if err != nil {
		t.Fatal(err)
	}
	m := dynamicpb.NewMessage(md)
	if err := protojson.Unmarshal([]byte(js), m); err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProtobufInputEvolves registers a Protobuf schema with a reference,
// reads records through the wire format, then evolves the schema: the
// evolved record is a SchemaChange, and the Input restarted with its fields
// reads both versions (null in the new columns for the old one); an
// incompatible version is a dead letter, or stops the run when configured.
func TestProtobufInputEvolves(t *testing.T) {
	_, srv, cl, _ := setup(t)
	ctx := context.Background()
	admin, _ := sr.NewClient(sr.URLs(srv.URL), sr.BasicAuth("u", "p"))
	ref, err := admin.CreateSchema(ctx, "stop.proto", sr.Schema{Schema: stopProto, Type: sr.TypeProtobuf})
	if err != nil {
		t.Fatal(err)
	}
	refs := []sr.SchemaReference{{Name: "stop.proto", Subject: "stop.proto", Version: ref.Version}}
	register := func(text string) int {
		ss, err := admin.CreateSchema(ctx, "trips-proto-value", sr.Schema{Schema: text, Type: sr.TypeProtobuf, References: refs})
		if err != nil {
			t.Fatal(err)
		}
		return ss.ID
	}
	srcs := map[string]string{"stop.proto": stopProto}
	v1 := register(tripProtoV1)
	opts := registry.InputOptions{Format: sr.TypeProtobuf, Subject: "trips-proto-value", Message: "taxi.Trip"}
	in, err := registry.NewInput(ctx, cl, opts)
	if err != nil {
		t.Fatal(err)
	}
	old := protoWire(v1, []int{1}, encodeProto(t, tripProtoV1, srcs, "taxi.Trip",
		`{"tripId":"7","fare":{"amount":4.5,"tip":1},"stops":[{"zone":41},{"zone":24,"name":"b"}],"pickup":"2018-01-01T00:21:05Z"}`))
	oldJSON := `{"trip_id":7,"fare":{"amount":4.5,"tip":1},"stops":[{"zone":41,"name":""},{"zone":24,"name":"b"}],"pickup":"2018-01-01T00:21:05Z"}`
	check := func(in *registry.Input, value []byte, js string) {
		t.Helper()
		got, err := in.Decode(ctx, value, nil)
		if err != nil {
			t.Fatal(err)
		}
		want, err := in.Schema().NewDecoder().Decode([]byte(js), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !sameRow(got, want) {
			t.Fatalf("\ngot  %v\nwant %v", got, want)
		}
	}
	check(in, old, oldJSON)

	// Bad inputs: each a record at fault of its class.
	for name, c := range map[string]struct {
		value []byte
		class string
	}{
		"unknown message index": {protoWire(v1, []int{5}, nil), registry.ClassBadMessageIndex},
		"another message":       {protoWire(v1, []int{0}, nil), registry.ClassSchemaMismatch},
		"truncated indexes":     {protoWire(v1, nil, nil)[:5], registry.ClassBadMessageIndex},
		"wrong wire type":       {protoWire(v1, []int{1}, []byte{0x0a, 0x01, 0x00}), schema.ClassMalformedProtobuf},
		"truncated":             {old[:len(old)-3], schema.ClassMalformedProtobuf},
		"avro id":               {protoWire(setupID(t, admin), []int{1}, nil), registry.ClassSchemaMismatch},
	} {
		_, err := in.Decode(ctx, c.value, nil)
		var se *schema.Error
		if !errors.As(err, &se) || se.Class != c.class {
			t.Errorf("%s: %v, want class %s", name, err, c.class)
		}
	}

	v2 := register(tripProtoV2)
	young := protoWire(v2, []int{1}, encodeProto(t, tripProtoV2, srcs, "taxi.Trip",
		`{"tripId":"8","fare":{"amount":5,"tip":2.25,"tolls":1},"stops":[],"zone":"Z"}`))
	_, err = in.Decode(ctx, young, nil)
	var change *registry.SchemaChange
	if !errors.As(err, &change) {
		t.Fatalf("evolved record: %v, want a SchemaChange", err)
	}
	// The next run: the subject's latest merged into the changed fields.
	opts.Fields = change.Fields
	in2, err := registry.NewInput(ctx, cl, opts)
	if err != nil {
		t.Fatal(err)
	}
	if cols := strings.Join(flat(in2.Schema().Parquet().Columns()), " "); cols != "trip_id fare.amount fare.tip fare.tolls stops.list.element.zone stops.list.element.name pickup zone" {
		t.Errorf("merged columns %s", cols)
	}
	check(in2, old, oldJSON) // tolls and zone null, tip widened
	check(in2, young, `{"trip_id":8,"fare":{"amount":5,"tip":2.25,"tolls":1},"stops":[],"zone":"Z"}`)

	// An incompatible version: a dead letter by default, the end of the run
	// with on_incompatible: stop.
	admin.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatNone}, "trips-proto-value") // a real registry would refuse v3
	v3 := register(tripProtoV3)
	bad := protoWire(v3, []int{0}, encodeProto(t, tripProtoV3, srcs, "taxi.Trip", `{"tripId":"x"}`))
	_, err = in2.Decode(ctx, bad, nil)
	var se *schema.Error
	if !errors.As(err, &se) || se.Class != schema.ClassIncompatibleSchema || !strings.Contains(se.Error(), "trip_id: int64 in the file schema, string in the writer's") {
		t.Errorf("incompatible: %v", err)
	}
	opts.Stop = true
	in3, err := registry.NewInput(ctx, cl, registry.InputOptions{Format: sr.TypeProtobuf, Subject: "trips-proto-value", Fields: change.Fields, Stop: true, Message: "taxi.Trip"})
	if err == nil {
		_, err = in3.Decode(ctx, bad, nil)
	}
	var ie *registry.IncompatibleError
	if !errors.As(err, &ie) && !strings.Contains(fmtErr(err), "cannot be merged") {
		t.Errorf("incompatible with stop: %v", err)
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestSameParquetSchemaKeepsFiles: a new schema id whose Parquet schema is
// the same (an enum symbol added) is read without a SchemaChange.
func TestSameParquetSchemaKeepsFiles(t *testing.T) {
	_, srv, cl, _ := setup(t)
	ctx := context.Background()
	admin, _ := sr.NewClient(sr.URLs(srv.URL), sr.BasicAuth("u", "p"))
	const e1 = `{"type":"record","name":"T","fields":[{"name":"k","type":{"type":"enum","name":"K","symbols":["A","B"]}}]}`
	e2 := strings.Replace(e1, `"B"]`, `"B","C"]`, 1)
	if _, err := admin.CreateSchema(ctx, "enum-value", sr.Schema{Schema: e1}); err != nil {
		t.Fatal(err)
	}
	in, err := registry.NewAvroInput(ctx, cl, "enum-value")
	if err != nil {
		t.Fatal(err)
	}
	ss, err := admin.CreateSchema(ctx, "enum-value", sr.Schema{Schema: e2})
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := hamba.Marshal(hamba.MustParse(e2), map[string]any{"k": "C"})
	row, err := in.Decode(ctx, wire(ss.ID, payload), nil)
	if err != nil {
		t.Fatalf("a new id with the same Parquet schema: %v", err)
	}
	if row[0].String() != "C" {
		t.Errorf("row %v", row)
	}
}

func setupID(t *testing.T, admin *sr.Client) int {
	ss, err := admin.SchemaByVersion(context.Background(), "trips-value", 1)
	if err != nil {
		t.Fatal(err)
	}
	return ss.ID
}

func flat(cols [][]string) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = strings.Join(c, ".")
	}
	return out
}

func sameRow(a, b parquet.Row) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !parquet.Equal(a[i], b[i]) || a[i].DefinitionLevel() != b[i].DefinitionLevel() || a[i].RepetitionLevel() != b[i].RepetitionLevel() || a[i].Column() != b[i].Column() {
			return false
		}
	}
	return true
}

const tripJSONSchemaV1 = `{"$schema":"http://json-schema.org/draft-07/schema#","title":"Trip","type":"object",
 "properties":{
  "trip_id":{"type":"integer"},
  "pickup_at":{"type":"string","format":"date-time"},
  "fare":{"$ref":"#/definitions/Fare"},
  "stops":{"type":"array","items":{"type":"object","properties":{"zone":{"type":"integer"}},"required":["zone"]}},
  "tags":{"type":"object","additionalProperties":{"type":"string"}},
  "extra":{"oneOf":[{"type":"string"},{"type":"integer"}]}},
 "required":["trip_id","pickup_at"],
 "definitions":{"Fare":{"type":"object","properties":{"amount":{"type":"number"},"note":{"type":["string","null"]}},"required":["amount","note"]}}}`

// TestJSONSchemaInput reads JSON records framed by the registry's JSON Schema
// serializer: the schema is derived from the JSON Schema (in property order,
// references followed, other unions kept as JSON text), and a version that
// adds a property changes the schema.
func TestJSONSchemaInput(t *testing.T) {
	_, srv, cl, _ := setup(t)
	ctx := context.Background()
	admin, _ := sr.NewClient(sr.URLs(srv.URL), sr.BasicAuth("u", "p"))
	ss, err := admin.CreateSchema(ctx, "trips-json-value", sr.Schema{Schema: tripJSONSchemaV1, Type: sr.TypeJSON})
	if err != nil {
		t.Fatal(err)
	}
	in, err := registry.NewInput(ctx, cl, registry.InputOptions{Format: sr.TypeJSON, Subject: "trips-json-value"})
	if err != nil {
		t.Fatal(err)
	}
	if cols := strings.Join(flat(in.Schema().Parquet().Columns()), " "); cols != "trip_id pickup_at fare.amount fare.note stops.list.element.zone tags.key_value.key tags.key_value.value extra" {
		t.Errorf("derived columns %s", cols)
	}
	if f, _ := in.Schema().Lookup("fare.note"); f.Required {
		t.Errorf("fare.note allows null but is required")
	}
	value := `{"trip_id":1,"pickup_at":"2018-01-01T00:21:05Z","fare":{"amount":4.5,"note":null},"stops":[{"zone":4}],"tags":{"a":"b"},"extra":[1,"x"]}`
	got, err := in.Decode(ctx, wire(ss.ID, []byte(value)), nil)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := in.Schema().NewDecoder().Decode([]byte(value), nil)
	if !sameRow(got, want) {
		t.Errorf("\ngot  %v\nwant %v", got, want)
	}
	if _, err := in.Decode(ctx, wire(ss.ID, []byte(`{"trip_id":"x"}`)), nil); err == nil {
		t.Errorf("a value that does not fit was read")
	}
	v2 := strings.Replace(tripJSONSchemaV1, `"extra":`, `"surcharge":{"type":"number"},"extra":`, 1)
	ss2, err := admin.CreateSchema(ctx, "trips-json-value", sr.Schema{Schema: v2, Type: sr.TypeJSON})
	if err != nil {
		t.Fatal(err)
	}
	_, err = in.Decode(ctx, wire(ss2.ID, []byte(value)), nil)
	var change *registry.SchemaChange
	if !errors.As(err, &change) {
		t.Fatalf("a version adding a property: %v, want a SchemaChange", err)
	}
}

const debeziumEnvelope = `{"type":"record","name":"Envelope","namespace":"db.public.customers","fields":[
 {"name":"before","type":["null",{"type":"record","name":"Value","fields":[
   {"name":"id","type":"long"},{"name":"email","type":["null","string"],"default":null},
   {"name":"tags","type":{"type":"array","items":"string"}}]}],"default":null},
 {"name":"after","type":["null","Value"],"default":null},
 {"name":"source","type":{"type":"record","name":"Source","namespace":"io.debezium.connector.postgresql","fields":[
   {"name":"version","type":"string"},{"name":"ts_ms","type":"long"},{"name":"db","type":"string"},
   {"name":"sequence","type":["null","string"],"default":null},{"name":"lsn","type":["null","long"],"default":null},
   {"name":"xmin","type":{"type":"map","values":"long"}}]}},
 {"name":"op","type":"string"},
 {"name":"ts_ms","type":["null","long"],"default":null},
 {"name":"transaction","type":["null",{"type":"record","name":"block","namespace":"event","fields":[
   {"name":"id","type":"string"},{"name":"total_order","type":"long"},{"name":"data_collection_order","type":"long"}]}],"default":null}]}`

type dbzValue struct {
	ID    int64    `avro:"id"`
	Email *string  `avro:"email"`
	Tags  []string `avro:"tags"`
}

type dbzSource struct {
	Version  string           `avro:"version"`
	TsMs     int64            `avro:"ts_ms"`
	DB       string           `avro:"db"`
	Sequence *string          `avro:"sequence"`
	Lsn      *int64           `avro:"lsn"`
	Xmin     map[string]int64 `avro:"xmin"`
}

type dbzBlock struct {
	ID                  string `avro:"id"`
	TotalOrder          int64  `avro:"total_order"`
	DataCollectionOrder int64  `avro:"data_collection_order"`
}

type dbzEnvelope struct {
	Before      *dbzValue `avro:"before"`
	After       *dbzValue `avro:"after"`
	Source      dbzSource `avro:"source"`
	Op          string    `avro:"op"`
	TsMs        *int64    `avro:"ts_ms"`
	Transaction *dbzBlock `avro:"transaction"`
}

// TestAvroDebeziumInput unwraps Debezium envelopes encoded by hamba/avro:
// the after image is the row (a kept delete's before image), op and
// source.ts_ms follow; the other envelope fields, whatever their types, are
// skipped; a dropped delete and a truncate are skipped.
func TestAvroDebeziumInput(t *testing.T) {
	_, srv, cl, _ := setup(t)
	ctx := context.Background()
	admin, _ := sr.NewClient(sr.URLs(srv.URL), sr.BasicAuth("u", "p"))
	ss, err := admin.CreateSchema(ctx, "customers-value", sr.Schema{Schema: debeziumEnvelope})
	if err != nil {
		t.Fatal(err)
	}
	ws := hamba.MustParse(debeziumEnvelope)
	email, seq, lsn := "a@x", "[1]", int64(9)
	src := dbzSource{Version: "2.7", TsMs: 1514766065000, DB: "shop", Sequence: &seq, Lsn: &lsn, Xmin: map[string]int64{"a": 1}}
	enc := func(e dbzEnvelope) []byte {
		b, err := hamba.Marshal(ws, e)
		if err != nil {
			t.Fatal(err)
		}
		return wire(ss.ID, b)
	}
	for _, keep := range []bool{true, false} {
		in, err := registry.NewInput(ctx, cl, registry.InputOptions{Format: sr.TypeAvro, Subject: "customers-value", CDC: true, KeepDeletes: keep})
		if err != nil {
			t.Fatal(err)
		}
		if cols := strings.Join(flat(in.Schema().Parquet().Columns()), " "); cols != "id email tags.list.element __op __source_ts_ms" {
			t.Fatalf("columns %s", cols)
		}
		cases := []struct {
			name string
			env  dbzEnvelope
			want string // "" for skipped
		}{
			{"create", dbzEnvelope{After: &dbzValue{ID: 1, Email: &email, Tags: []string{"x", "y"}}, Source: src, Op: "c", Transaction: &dbzBlock{ID: "t", TotalOrder: 1}},
				`{"id":1,"email":"a@x","tags":["x","y"],"__op":"c","__source_ts_ms":1514766065000}`},
			{"update", dbzEnvelope{Before: &dbzValue{ID: 1}, After: &dbzValue{ID: 1, Tags: []string{}}, Source: src, Op: "u"},
				`{"id":1,"tags":[],"__op":"u","__source_ts_ms":1514766065000}`},
			{"delete", dbzEnvelope{Before: &dbzValue{ID: 2, Email: &email}, Source: src, Op: "d"},
				map[bool]string{true: `{"id":2,"email":"a@x","tags":[],"__op":"d","__source_ts_ms":1514766065000}`, false: ""}[keep]},
			{"truncate", dbzEnvelope{Source: src, Op: "t"}, ""},
		}
		for _, c := range cases {
			got, err := in.Decode(ctx, enc(c.env), nil)
			if c.want == "" {
				if !errors.Is(err, schema.ErrSkip) {
					t.Errorf("%s (keep %t): %v, want skipped", c.name, keep, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			want, err := in.Schema().NewDecoder().Decode([]byte(c.want), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !sameRow(got, want) {
				t.Errorf("%s (keep %t):\ngot  %v\nwant %v", c.name, keep, got, want)
			}
		}
		bad := enc(dbzEnvelope{Source: src, Op: "c"})
		var se *schema.Error
		if _, err := in.Decode(ctx, bad, nil); !errors.As(err, &se) || se.Class != schema.ClassBadEnvelope {
			t.Errorf("a create without its image: %v", err)
		}
		good := enc(dbzEnvelope{After: &dbzValue{ID: 1}, Source: src, Op: "c"})
		if _, err := in.Decode(ctx, good[:len(good)-3], nil); !errors.As(err, &se) || se.Class != schema.ClassMalformedAvro {
			t.Errorf("truncated: %v", err)
		}
	}
}
