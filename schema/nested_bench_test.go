package schema

import (
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/config/conf"
)

// nestedTaxiFields is the taxi trip with its money in a nested fare struct,
// its route as a list of stops and its payment as a struct two deep.
func nestedTaxiFields() []conf.Field {
	return []conf.Field{
		{Name: "trip_id", Type: "int64"},
		{Name: "type", Type: "string"},
		{Name: "vendor_id", Type: "int32"},
		{Name: "pickup_datetime", Type: "timestamp", Required: true, Unit: "micros"},
		{Name: "dropoff_datetime", Type: "timestamp", Unit: "millis", Input: "millis"},
		{Name: "pickup_location_id", Type: "int32", Required: true},
		{Name: "dropoff_location_id", Type: "int32"},
		{Name: "passenger_count", Type: "int32"},
		{Name: "trip_distance", Type: "float"},
		{Name: "fare", Type: "struct", Fields: []conf.Field{
			{Name: "amount", Type: "decimal", Precision: 10, Scale: 2},
			{Name: "tip", Type: "decimal", Precision: 10, Scale: 2},
			{Name: "tolls", Type: "double"},
			{Name: "total", Type: "double"},
		}},
		{Name: "stops", Type: "list", Items: &conf.Field{Type: "struct", Fields: []conf.Field{
			{Name: "lat", Type: "double"},
			{Name: "lon", Type: "double"},
			{Name: "zone", Type: "int32"},
		}}},
		{Name: "payment", Type: "struct", Fields: []conf.Field{
			{Name: "type", Type: "string"},
			{Name: "card", Type: "struct", Fields: []conf.Field{{Name: "last4", Type: "string"}}},
		}},
		{Name: "store_and_fwd", Type: "bool"},
	}
}

const nestedTrip = `{"trip_id":1234567,"type":"yellow","vendor_id":2,` +
	`"pickup_datetime":"2018-01-01T00:21:05Z","dropoff_datetime":"2018-01-01T00:24:23Z",` +
	`"pickup_location_id":41,"dropoff_location_id":24,"passenger_count":1,"trip_distance":0.5,` +
	`"fare":{"amount":4.5,"tip":1.0,"tolls":0.0,"total":6.8},` +
	`"stops":[{"lat":40.8012,"lon":-73.9612,"zone":41},{"lat":40.7921,"lon":-73.9703,"zone":24}],` +
	`"payment":{"type":"credit","card":{"last4":"4242"}},"store_and_fwd":false}`

// BenchmarkDecodeNested is BenchmarkDecode's trip with nested values; compare
// their ns/op per byte (MB/s): nested decoding should cost at most 1.5 times
// the flat decoder's per byte.
func BenchmarkDecodeNested(b *testing.B) {
	s, err := New(nestedTaxiFields())
	if err != nil {
		b.Fatal(err)
	}
	d := s.NewDecoder()
	value := []byte(nestedTrip)
	var row parquet.Row
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	for b.Loop() {
		if row, err = d.Decode(value, row); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDecodeNestedDoesNotAllocate: a nested value is decoded into the
// decoder's reused buffers, not into a parse tree or maps per record.
func TestDecodeNestedDoesNotAllocate(t *testing.T) {
	s, err := New(nestedTaxiFields())
	if err != nil {
		t.Fatal(err)
	}
	d := s.NewDecoder()
	value := []byte(nestedTrip)
	var row parquet.Row
	if row, err = d.Decode(value, row); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { row, _ = d.Decode(value, row) }); n != 0 {
		t.Errorf("%v allocations per nested record, want 0", n)
	}
}
