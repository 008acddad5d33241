package schema_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/schema/protobuf"
)

const protoTrip = `syntax = "proto3";
package taxi;
import "google/protobuf/timestamp.proto";

message Trip {
  int64 trip_id = 1;
  Kind type = 2;
  google.protobuf.Timestamp pickup = 3;
  Fare fare = 4;
  repeated Stop stops = 5;
  map<string, string> tags = 6;
  repeated int32 zones = 7;
  optional double tip = 8;
  bool ok = 9;
  sint64 delta = 10;
  uint64 big = 11;
  uint32 small = 12;
  float ratio = 13;
  map<int32, Stop> by_zone = 14;
  string note = 15;
}
enum Kind { YELLOW = 0; GREEN = 1; FHV = 2; }
message Fare {
  double amount = 1;
  optional double tolls = 2;
  repeated double extras = 3;
}
message Stop { int32 zone = 1; string name = 2; }
`

func compileTrip(t testing.TB, text string) protoreflect.MessageDescriptor {
	t.Helper()
	fd, err := protobuf.Compile(context.Background(), text, nil)
	if err != nil {
		t.Fatal(err)
	}
	md, err := protobuf.Message(fd, nil)
	if err != nil {
		t.Fatal(err)
	}
	return md
}

// marshal encodes a message given as protobuf JSON with protobuf-go's own
// encoder (dynamicpb), not sinkd's decoder run backwards.
func marshal(t testing.TB, md protoreflect.MessageDescriptor, js string) []byte {
	t.Helper()
	m := dynamicpb.NewMessage(md)
	if err := protojson.Unmarshal([]byte(js), m); err != nil {
		t.Fatal(err)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProtoDecodeMatchesJSON encodes trips with protobuf-go and checks that
// the Protobuf decoder gives the row the JSON decoder gives for the same trip
// written as sinkd's JSON (absent proto3 scalars at their defaults, absent
// messages and optionals null, absent repeated fields empty).
func TestProtoDecodeMatchesJSON(t *testing.T) {
	md := compileTrip(t, protoTrip)
	fields, err := protobuf.Fields(md)
	if err != nil {
		t.Fatal(err)
	}
	s, err := schema.New(fields)
	if err != nil {
		t.Fatal(err)
	}
	pd, err := s.NewProtoDecoder(md)
	if err != nil {
		t.Fatal(err)
	}
	jd := s.NewDecoder()
	cases := []struct{ proto, json string }{
		{`{"tripId":"1","type":"GREEN","pickup":"2018-01-02T03:04:05.123456Z",
		   "fare":{"amount":12.5,"tolls":0,"extras":[0.5,1]},"stops":[{"zone":4,"name":"a"},{"zone":5}],
		   "tags":{"k":"v"},"zones":[1,-2,300000],"tip":1.25,"ok":true,"delta":"-7","big":"18446744073709551615",
		   "small":4294967295,"ratio":0.5,"byZone":{"-3":{"zone":1}},"note":"héllo"}`,
			`{"trip_id":1,"type":"GREEN","pickup":"2018-01-02T03:04:05.123456Z",
			  "fare":{"amount":12.5,"tolls":0,"extras":[0.5,1]},"stops":[{"zone":4,"name":"a"},{"zone":5,"name":""}],
			  "tags":{"k":"v"},"zones":[1,-2,300000],"tip":1.25,"ok":true,"delta":-7,"big":18446744073709551615,
			  "small":4294967295,"ratio":0.5,"by_zone":{"-3":{"zone":1,"name":""}},"note":"héllo"}`},
		{`{}`,
			`{"trip_id":0,"type":"YELLOW","stops":[],"tags":{},"zones":[],"ok":false,"delta":0,"big":0,"small":0,"ratio":0,"by_zone":{},"note":""}`},
		{`{"tripId":"9","fare":{},"byZone":{"0":{}}}`,
			`{"trip_id":9,"type":"YELLOW","fare":{"amount":0,"extras":[]},"stops":[],"tags":{},"zones":[],"ok":false,"delta":0,"big":0,"small":0,"ratio":0,"by_zone":{"0":{"zone":0,"name":""}},"note":""}`},
	}
	for i, c := range cases {
		got, err := pd.Decode(marshal(t, md, c.proto), nil)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		want, err := jd.Decode([]byte(c.json), nil)
		if err != nil {
			t.Fatalf("case %d as JSON: %v", i, err)
		}
		if !rowsEqual(got, want) {
			t.Errorf("case %d:\nproto %v\njson  %v", i, got, want)
		}
	}
}

// TestProtoUnpackedAndOutOfOrder reads a repeated scalar sent unpacked and
// split around other fields, as the encoding allows, and an unknown field.
func TestProtoUnpackedAndOutOfOrder(t *testing.T) {
	md := compileTrip(t, protoTrip)
	fields, _ := protobuf.Fields(md)
	s, _ := schema.New(fields)
	pd, err := s.NewProtoDecoder(md)
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	b = protowire.AppendTag(b, 7, protowire.VarintType)
	b = protowire.AppendVarint(b, 5)
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 3)
	b = protowire.AppendTag(b, 99, protowire.BytesType) // unknown: skipped
	b = protowire.AppendBytes(b, []byte("x"))
	b = protowire.AppendTag(b, 7, protowire.BytesType) // packed run
	b = protowire.AppendBytes(b, protowire.AppendVarint(protowire.AppendVarint(nil, 6), 7))
	got, err := pd.Decode(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := s.NewDecoder().Decode([]byte(`{"trip_id":3,"type":"YELLOW","stops":[],"tags":{},"zones":[5,6,7],"ok":false,"delta":0,"big":0,"small":0,"ratio":0,"by_zone":{},"note":""}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rowsEqual(got, want) {
		t.Errorf("\nproto %v\njson  %v", got, want)
	}
}

// TestProtoBadPayloads checks that each malformed payload is one error of a
// precise class naming the field at fault.
func TestProtoBadPayloads(t *testing.T) {
	md := compileTrip(t, protoTrip)
	fields, _ := protobuf.Fields(md)
	s, _ := schema.New(fields)
	pd, err := s.NewProtoDecoder(md)
	if err != nil {
		t.Fatal(err)
	}
	good := marshal(t, md, `{"tripId":"1","fare":{"amount":2.5},"stops":[{"zone":4,"name":"a"}]}`)
	tag := func(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }
	cases := []struct {
		name    string
		payload []byte
		class   string
		field   string
		got     string
	}{
		{"truncated", good[:len(good)-2], schema.ClassMalformedProtobuf, "stops[0]", "unexpected EOF"},
		{"wrong wire type", append(tag(1, protowire.BytesType), 1, 'x'), schema.ClassMalformedProtobuf, "trip_id", "wire type 2"},
		{"wrong wire type nested", append(append(tag(4, protowire.BytesType), 2), append(tag(1, protowire.VarintType), 1)...), schema.ClassMalformedProtobuf, "fare.amount", "wire type 0"},
		{"bad tag", []byte{0x80}, schema.ClassMalformedProtobuf, "", "unexpected EOF"},
		{"field zero", []byte{0x00, 0x01}, schema.ClassMalformedProtobuf, "", "invalid field number"},
		{"not utf8", append(append(tag(15, protowire.BytesType), 1), 0xff), schema.ClassMalformedProtobuf, "note", "invalid UTF-8"},
		{"message twice", append(append(tag(4, protowire.BytesType), 0), append(tag(4, protowire.BytesType), 0)...), schema.ClassMalformedProtobuf, "fare", "merging"},
		{"timestamp out of range", protowire.AppendBytes(tag(3, protowire.BytesType), protowire.AppendVarint(tag(1, protowire.VarintType), uint64(1)<<40)), schema.ClassOutOfRange, "pickup", "seconds"},
	}
	for _, c := range cases {
		_, err := pd.Decode(c.payload, nil)
		var se *schema.Error
		if !errors.As(err, &se) {
			t.Errorf("%s: got %v, want a *schema.Error", c.name, err)
			continue
		}
		if se.Class != c.class || se.Field != c.field || !strings.Contains(se.Got, c.got) {
			t.Errorf("%s: got class %q field %q (%v), want %q %q containing %q", c.name, se.Class, se.Field, err, c.class, c.field, c.got)
		}
	}
	// The decoder is still good after failures.
	if _, err := pd.Decode(good, nil); err != nil {
		t.Fatal(err)
	}
}

// TestProtoFieldsRefused checks the derivation's refusals.
func TestProtoFieldsRefused(t *testing.T) {
	md := compileTrip(t, `syntax = "proto3";
message R { bytes raw = 1; Node n = 2; Empty e = 3; }
message Node { Node next = 1; int32 v = 2; }
message Empty {}`)
	_, err := protobuf.Fields(md)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"raw: bytes has no column type", "n.next: message Node contains itself", "e: message Empty has no fields"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v: missing %q", err, want)
		}
	}
}

func BenchmarkDecodeProtobuf(b *testing.B) {
	md := compileTrip(b, protoTrip)
	fields, err := protobuf.Fields(md)
	if err != nil {
		b.Fatal(err)
	}
	s, _ := schema.New(fields)
	pd, err := s.NewProtoDecoder(md)
	if err != nil {
		b.Fatal(err)
	}
	// A taxi-size trip: the scalars of a flat trip plus a fare and two stops.
	payload := marshal(b, md, `{"tripId":"1234567","type":"GREEN","pickup":"2018-01-01T00:21:05Z",
	  "fare":{"amount":4.5,"tolls":0,"extras":[0.5]},"stops":[{"zone":41,"name":"Central Harlem"},{"zone":24,"name":"Bloomingdale"}],
	  "tags":{"payment":"credit"},"zones":[41,24],"tip":1,"ok":true,"delta":"-3","big":"7","small":2,"ratio":0.5,"note":"n"}`)
	var row parquet.Row
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if row, err = pd.Decode(payload, row); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzDecodeProtobuf checks the decoder against protobuf-go: whatever sinkd
// accepts, protobuf-go parses too, and what protobuf-go parses sinkd
// accepts unless it is out of range for a column, merges a message given
// twice or has a field of the wrong wire type; every row has a value for every column, in order.
func FuzzDecodeProtobuf(f *testing.F) {
	md := compileTrip(f, protoTrip)
	for _, js := range []string{
		`{"tripId":"1","type":"GREEN","pickup":"2018-01-02T03:04:05Z","fare":{"amount":12.5,"extras":[0.5]},"stops":[{"zone":4}],"tags":{"k":"v"},"byZone":{"1":{"zone":2}}}`,
		`{"zones":[1,2,3],"big":"18446744073709551615","delta":"-1","note":"x"}`,
		`{}`,
	} {
		f.Add(marshal(f, md, js))
	}
	fields, err := protobuf.Fields(md)
	if err != nil {
		f.Fatal(err)
	}
	s, _ := schema.New(fields)
	pd, err := s.NewProtoDecoder(md)
	if err != nil {
		f.Fatal(err)
	}
	columns := len(s.Parquet().Columns())
	var row parquet.Row
	f.Fuzz(func(t *testing.T, payload []byte) {
		row, err = pd.Decode(payload, row)
		perr := proto.Unmarshal(payload, dynamicpb.NewMessage(md))
		if err != nil {
			var e *schema.Error
			if !errors.As(err, &e) {
				t.Fatalf("unclassified error %v", err)
			}
			// protobuf-go keeps a field of the wrong wire type as an
			// unknown field; sinkd refuses it rather than drop the value.
			if perr == nil && e.Class != schema.ClassOutOfRange && !strings.Contains(e.Got, "merging") && !strings.Contains(e.Got, "wire type") {
				t.Fatalf("sinkd refuses what protobuf-go reads: %v", err)
			}
			return
		}
		if perr != nil {
			t.Fatalf("sinkd reads what protobuf-go refuses (%v)", perr)
		}
		checkColumnOrder(t, row, columns)
	})
}
