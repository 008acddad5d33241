package schema_test

import (
	"errors"
	"fmt"
	"math/big"
	"testing"
	"time"

	hamba "github.com/hamba/avro/v2"
	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/schema/avro"
)

const avroTrip = `{"type":"record","name":"Trip","namespace":"taxi","fields":[
 {"name":"trip_id","type":"long"},
 {"name":"type","type":{"type":"enum","name":"Kind","symbols":["yellow","green","fhv"]}},
 {"name":"pickup","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"day","type":["null",{"type":"int","logicalType":"date"}],"default":null},
 {"name":"fare","type":["null",{"type":"record","name":"Fare","fields":[
   {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
   {"name":"big","type":{"type":"fixed","name":"Big","size":16,"logicalType":"decimal","precision":38,"scale":4}},
   {"name":"tip","type":["null","float"],"default":null}]}],"default":null},
 {"name":"stops","type":{"type":"array","items":{"type":"record","name":"Stop","fields":[
   {"name":"zone","type":"int"},{"name":"at","type":{"type":"int","logicalType":"time-millis"}}]}}},
 {"name":"tags","type":{"type":"map","values":["null","string"]}},
 {"name":"id","type":{"type":"string","logicalType":"uuid"}},
 {"name":"ok","type":"boolean"},{"name":"x","type":"double"}]}`

// Go types for hamba/avro, the independent encoder of the test payloads.
type fare struct {
	Amount *big.Rat `avro:"amount"`
	Big    *big.Rat `avro:"big"`
	Tip    *float32 `avro:"tip"`
}

type stop struct {
	Zone int32         `avro:"zone"`
	At   time.Duration `avro:"at"`
}

type trip struct {
	TripID int64              `avro:"trip_id"`
	Type   string             `avro:"type"`
	Pickup time.Time          `avro:"pickup"`
	Day    *time.Time         `avro:"day"`
	Fare   *fare              `avro:"fare"`
	Stops  []stop             `avro:"stops"`
	Tags   map[string]*string `avro:"tags"`
	ID     string             `avro:"id"`
	Ok     bool               `avro:"ok"`
	X      float64            `avro:"x"`
}

func rat(s string) *big.Rat { r, _ := new(big.Rat).SetString(s); return r }

// TestAvroDecodeMatchesJSON encodes trips with hamba/avro and checks that the
// Avro decoder gives exactly the row the JSON decoder gives for the same trip
// written as JSON.
func TestAvroDecodeMatchesJSON(t *testing.T) {
	fields, err := avro.Fields(avroTrip)
	if err != nil {
		t.Fatal(err)
	}
	s, err := schema.New(fields)
	if err != nil {
		t.Fatal(err)
	}
	ad, err := s.NewAvroDecoder(avroTrip)
	if err != nil {
		t.Fatal(err)
	}
	jd := s.NewDecoder()
	ws := hamba.MustParse(avroTrip)
	tip := float32(1.5)
	day := time.Date(2018, 1, 2, 0, 0, 0, 0, time.UTC)
	a, b := "a", "b"
	cases := []struct {
		v    trip
		json string
	}{
		{trip{TripID: 1, Type: "green", Pickup: time.Date(2018, 1, 2, 3, 4, 5, 123456000, time.UTC), Day: &day,
			Fare:  &fare{Amount: rat("12.34"), Big: rat("-1234567890123456789012345678.0123"), Tip: &tip},
			Stops: []stop{{Zone: 4, At: 3723004 * time.Millisecond}, {Zone: -5}}, Tags: map[string]*string{"k": &a},
			ID: "123e4567-e89b-12d3-a456-426614174000", Ok: true, X: -2.25},
			`{"trip_id":1,"type":"green","pickup":"2018-01-02T03:04:05.123456Z","day":"2018-01-02",
			  "fare":{"amount":"12.34","big":"-1234567890123456789012345678.0123","tip":1.5},
			  "stops":[{"zone":4,"at":"01:02:03.004"},{"zone":-5,"at":"00:00:00"}],"tags":{"k":"a"},
			  "id":"123e4567-e89b-12d3-a456-426614174000","ok":true,"x":-2.25}`},
		{trip{TripID: 2, Type: "fhv", Pickup: time.Unix(0, 0).UTC(), Stops: []stop{}, Tags: map[string]*string{"n": nil},
			ID: "00000000-0000-0000-0000-000000000000"},
			`{"trip_id":2,"type":"fhv","pickup":"1970-01-01T00:00:00Z","stops":[],"tags":{"n":null},"id":"00000000-0000-0000-0000-000000000000","ok":false,"x":0}`},
		{trip{TripID: 3, Type: "yellow", Pickup: time.Unix(1, 0).UTC(), Fare: &fare{Amount: rat("-0.01"), Big: rat("0")},
			Tags: map[string]*string{"b": &b}, ID: "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"},
			`{"trip_id":3,"type":"yellow","pickup":"1970-01-01T00:00:01Z","fare":{"amount":"-0.01","big":0},"stops":[],"tags":{"b":"b"},"id":"ffffffff-ffff-ffff-ffff-ffffffffffff","ok":false,"x":0}`},
	}
	for _, c := range cases {
		payload, err := hamba.Marshal(ws, c.v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ad.Decode(payload, nil)
		if err != nil {
			t.Fatalf("trip %d: %v", c.v.TripID, err)
		}
		want, err := jd.Decode([]byte(c.json), nil)
		if err != nil {
			t.Fatalf("trip %d as JSON: %v", c.v.TripID, err)
		}
		if !rowsEqual(got, want) {
			t.Errorf("trip %d:\navro %v\njson %v", c.v.TripID, got, want)
		}
	}
}

func rowsEqual(a, b parquet.Row) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Column() != b[i].Column() || a[i].RepetitionLevel() != b[i].RepetitionLevel() ||
			a[i].DefinitionLevel() != b[i].DefinitionLevel() || !parquet.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// TestAvroMalformed: truncated payloads, bad union and enum indexes and
// trailing bytes are malformed_avro, never a panic or a hang.
func TestAvroMalformed(t *testing.T) {
	fields, err := avro.Fields(avroTrip)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := schema.New(fields)
	ad, err := s.NewAvroDecoder(avroTrip)
	if err != nil {
		t.Fatal(err)
	}
	good, err := hamba.Marshal(hamba.MustParse(avroTrip), trip{TripID: 7, Type: "yellow", Stops: []stop{{Zone: 1}}, ID: "123e4567-e89b-12d3-a456-426614174000"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ad.Decode(good, nil); err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(good); n++ {
		_, err := ad.Decode(good[:n], nil)
		var e *schema.Error
		if !errors.As(err, &e) || e.Class != schema.ClassMalformedAvro {
			t.Errorf("truncated to %d bytes: %v", n, err)
		}
	}
	for name, payload := range map[string][]byte{
		"trailing byte": append(append([]byte{}, good...), 0),
		"enum index":    append([]byte{14, 6}, good[2:]...), // trip_id 7, then enum index 3 of 3 symbols
	} {
		_, err := ad.Decode(payload, nil)
		var e *schema.Error
		if !errors.As(err, &e) || e.Class != schema.ClassMalformedAvro {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func BenchmarkDecodeAvro(b *testing.B) {
	fields, err := avro.Fields(avroTrip)
	if err != nil {
		b.Fatal(err)
	}
	s, _ := schema.New(fields)
	ad, err := s.NewAvroDecoder(avroTrip)
	if err != nil {
		b.Fatal(err)
	}
	tip := float32(1.5)
	payload, err := hamba.Marshal(hamba.MustParse(avroTrip), trip{TripID: 1234567, Type: "yellow", Pickup: time.Now().UTC(),
		Fare: &fare{Amount: rat("4.50"), Big: rat("6.8"), Tip: &tip}, Stops: []stop{{Zone: 41}, {Zone: 24}},
		Tags: map[string]*string{}, ID: "123e4567-e89b-12d3-a456-426614174000", X: 0.5})
	if err != nil {
		b.Fatal(err)
	}
	var row parquet.Row
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if row, err = ad.Decode(payload, row); err != nil {
			b.Fatal(err)
		}
	}
	_ = fmt.Sprint()
}

// FuzzDecodeAvro feeds arbitrary payloads to the Avro decoder: no panic, no
// hang, every failure a classified *Error, and every row has each leaf
// column in order.
func FuzzDecodeAvro(f *testing.F) {
	ws := hamba.MustParse(avroTrip)
	tip := float32(2)
	for _, v := range []trip{
		{TripID: 1, Type: "green", Fare: &fare{Amount: rat("1.25"), Big: rat("-7"), Tip: &tip}, Stops: []stop{{Zone: 1}, {Zone: 2}},
			Tags: map[string]*string{"a": nil}, ID: "123e4567-e89b-12d3-a456-426614174000"},
		{TripID: -1, Type: "fhv", ID: "00000000-0000-0000-0000-000000000000"},
	} {
		payload, err := hamba.Marshal(ws, v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(payload)
	}
	fields, err := avro.Fields(avroTrip)
	if err != nil {
		f.Fatal(err)
	}
	s, _ := schema.New(fields)
	ad, err := s.NewAvroDecoder(avroTrip)
	if err != nil {
		f.Fatal(err)
	}
	columns := len(s.Parquet().Columns())
	var row parquet.Row
	f.Fuzz(func(t *testing.T, payload []byte) {
		row, err = ad.Decode(payload, row)
		if err != nil {
			var e *schema.Error
			if !errors.As(err, &e) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		checkColumnOrder(t, row, columns)
	})
}

// checkColumnOrder fails t unless row holds values of each of the schema's
// leaf columns (there are columns of them), in order, each at least once (a
// repeated column's values follow one another).
func checkColumnOrder(t *testing.T, row parquet.Row, columns int) {
	t.Helper()
	col := -1
	for i, v := range row {
		if c := v.Column(); c != col && c != col+1 {
			t.Fatalf("value %d: column %d after %d", i, c, col)
		} else {
			col = c
		}
	}
	if col != columns-1 {
		t.Fatalf("row ends at column %d of %d", col, columns)
	}
}
