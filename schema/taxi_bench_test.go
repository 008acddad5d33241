package schema_test

import (
	"math/big"
	"testing"
	"time"

	hamba "github.com/hamba/avro/v2"
	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/schema/avro"
	"github.com/sinkd/sinkd/schema/protobuf"
)

// The taxi-size Avro and Protobuf trips carry the 19 fields of the flat JSON
// trip that BenchmarkDecode reads (testdata/good/yellow.json), typed as a
// producer would type them: optional fields nullable, timestamps as
// timestamps, money as decimals (Avro) or doubles (Protobuf has no decimal).
// They are what issue 14's "Avro and Protobuf at ≤ 1.5 µs per taxi-size
// record" is measured on; BenchmarkDecodeAvro and BenchmarkDecodeProtobuf
// keep the richer records (maps, lists, wide decimals).

const avroTaxi = `{"type":"record","name":"TaxiTrip","namespace":"taxi","fields":[
 {"name":"trip_id","type":["null","long"],"default":null},
 {"name":"type","type":["null","string"],"default":null},
 {"name":"vendor_id","type":["null","int"],"default":null},
 {"name":"pickup_datetime","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"dropoff_datetime","type":["null",{"type":"long","logicalType":"timestamp-millis"}],"default":null},
 {"name":"pickup_location_id","type":"int"},
 {"name":"dropoff_location_id","type":["null","int"],"default":null},
 {"name":"pickup_latitude","type":["null","double"],"default":null},
 {"name":"pickup_longitude","type":["null","double"],"default":null},
 {"name":"dropoff_latitude","type":["null","double"],"default":null},
 {"name":"dropoff_longitude","type":["null","double"],"default":null},
 {"name":"passenger_count","type":["null","int"],"default":null},
 {"name":"trip_distance","type":["null","float"],"default":null},
 {"name":"fare_amount","type":["null",{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}],"default":null},
 {"name":"tip_amount","type":["null",{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}],"default":null},
 {"name":"tolls_amount","type":["null","double"],"default":null},
 {"name":"total_amount","type":["null","double"],"default":null},
 {"name":"payment_type","type":["null","string"],"default":null},
 {"name":"store_and_fwd","type":["null","boolean"],"default":null}]}`

// taxiTrip is avroTaxi for hamba/avro, the independent encoder.
type taxiTrip struct {
	TripID            *int64     `avro:"trip_id"`
	Type              *string    `avro:"type"`
	VendorID          *int32     `avro:"vendor_id"`
	PickupDatetime    time.Time  `avro:"pickup_datetime"`
	DropoffDatetime   *time.Time `avro:"dropoff_datetime"`
	PickupLocationID  int32      `avro:"pickup_location_id"`
	DropoffLocationID *int32     `avro:"dropoff_location_id"`
	PickupLatitude    *float64   `avro:"pickup_latitude"`
	PickupLongitude   *float64   `avro:"pickup_longitude"`
	DropoffLatitude   *float64   `avro:"dropoff_latitude"`
	DropoffLongitude  *float64   `avro:"dropoff_longitude"`
	PassengerCount    *int32     `avro:"passenger_count"`
	TripDistance      *float32   `avro:"trip_distance"`
	FareAmount        *big.Rat   `avro:"fare_amount"`
	TipAmount         *big.Rat   `avro:"tip_amount"`
	TollsAmount       *float64   `avro:"tolls_amount"`
	TotalAmount       *float64   `avro:"total_amount"`
	PaymentType       *string    `avro:"payment_type"`
	StoreAndFwd       *bool      `avro:"store_and_fwd"`
}

func ptr[T any](v T) *T { return &v }

// yellowTaxi is testdata/good/yellow.json's trip.
func yellowTaxi() taxiTrip {
	return taxiTrip{
		TripID: ptr(int64(1234567)), Type: ptr("yellow"), VendorID: ptr(int32(2)),
		PickupDatetime:   time.Date(2018, 1, 1, 0, 21, 5, 0, time.UTC),
		DropoffDatetime:  ptr(time.Date(2018, 1, 1, 0, 24, 23, 0, time.UTC)),
		PickupLocationID: 41, DropoffLocationID: ptr(int32(24)),
		PickupLatitude: ptr(40.8012), PickupLongitude: ptr(-73.9612), DropoffLatitude: ptr(40.7921), DropoffLongitude: ptr(-73.9703),
		PassengerCount: ptr(int32(1)), TripDistance: ptr(float32(0.5)),
		FareAmount: rat("4.5"), TipAmount: rat("1.0"), TollsAmount: ptr(0.0), TotalAmount: ptr(6.8),
		PaymentType: ptr("credit"), StoreAndFwd: ptr(false),
	}
}

// yellowTaxiJSON is yellowTaxi as JSON for the schemas derived from
// avroTaxi and protoTaxi (the same keys as yellow.json).
const yellowTaxiJSON = `{"trip_id":1234567,"type":"yellow","vendor_id":2,"pickup_datetime":"2018-01-01T00:21:05Z",` +
	`"dropoff_datetime":"2018-01-01T00:24:23Z","pickup_location_id":41,"dropoff_location_id":24,"pickup_latitude":40.8012,` +
	`"pickup_longitude":-73.9612,"dropoff_latitude":40.7921,"dropoff_longitude":-73.9703,"passenger_count":1,"trip_distance":0.5,` +
	`"fare_amount":4.5,"tip_amount":1.0,"tolls_amount":0.0,"total_amount":6.8,"payment_type":"credit","store_and_fwd":false}`

const protoTaxi = `syntax = "proto3";
package taxi;
import "google/protobuf/timestamp.proto";

message TaxiTrip {
  int64 trip_id = 1;
  string type = 2;
  int32 vendor_id = 3;
  google.protobuf.Timestamp pickup_datetime = 4;
  google.protobuf.Timestamp dropoff_datetime = 5;
  int32 pickup_location_id = 6;
  int32 dropoff_location_id = 7;
  double pickup_latitude = 8;
  double pickup_longitude = 9;
  double dropoff_latitude = 10;
  double dropoff_longitude = 11;
  int32 passenger_count = 12;
  float trip_distance = 13;
  double fare_amount = 14;
  double tip_amount = 15;
  double tolls_amount = 16;
  double total_amount = 17;
  string payment_type = 18;
  bool store_and_fwd = 19;
}
`

// protoTaxiJSON is the same trip in protobuf's JSON mapping, for protobuf-go's
// encoder.
const protoTaxiJSON = `{"tripId":"1234567","type":"yellow","vendorId":2,"pickupDatetime":"2018-01-01T00:21:05Z",
  "dropoffDatetime":"2018-01-01T00:24:23Z","pickupLocationId":41,"dropoffLocationId":24,"pickupLatitude":40.8012,
  "pickupLongitude":-73.9612,"dropoffLatitude":40.7921,"dropoffLongitude":-73.9703,"passengerCount":1,"tripDistance":0.5,
  "fareAmount":4.5,"tipAmount":1.0,"tollsAmount":0.0,"totalAmount":6.8,"paymentType":"credit","storeAndFwd":false}`

func avroTaxiDecoder(t testing.TB) (*schema.Schema, *schema.AvroDecoder, []byte) {
	t.Helper()
	fields, err := avro.Fields(avroTaxi)
	if err != nil {
		t.Fatal(err)
	}
	s, err := schema.New(fields)
	if err != nil {
		t.Fatal(err)
	}
	ad, err := s.NewAvroDecoder(avroTaxi)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := hamba.Marshal(hamba.MustParse(avroTaxi), yellowTaxi())
	if err != nil {
		t.Fatal(err)
	}
	return s, ad, payload
}

func protoTaxiDecoder(t testing.TB) (*schema.Schema, *schema.ProtoDecoder, []byte) {
	t.Helper()
	md := compileTrip(t, protoTaxi)
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
	return s, pd, marshal(t, md, protoTaxiJSON)
}

// TestTaxiSizeDecodersMatchJSON: the taxi-size benchmarks decode the whole
// trip, to the row the JSON decoder gives for yellow.json's trip, and do not
// allocate.
func TestTaxiSizeDecodersMatchJSON(t *testing.T) {
	type decoder interface {
		Decode([]byte, parquet.Row) (parquet.Row, error)
	}
	as, ad, ap := avroTaxiDecoder(t)
	ps, pd, pp := protoTaxiDecoder(t)
	for _, c := range []struct {
		name    string
		s       *schema.Schema
		d       decoder
		payload []byte
	}{{"avro", as, ad, ap}, {"protobuf", ps, pd, pp}} {
		got, err := c.d.Decode(c.payload, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		want, err := c.s.NewDecoder().Decode([]byte(yellowTaxiJSON), nil)
		if err != nil {
			t.Fatalf("%s schema, JSON: %v", c.name, err)
		}
		if len(got) != 19 || !rowsEqual(got, want) {
			t.Errorf("%s:\ngot  %v\njson %v", c.name, got, want)
		}
		if n := testing.AllocsPerRun(100, func() { got, _ = c.d.Decode(c.payload, got) }); n != 0 {
			t.Errorf("%s: %v allocations per record", c.name, n)
		}
	}
}

// BenchmarkDecodeAvroTaxi is BenchmarkDecode's trip as Avro.
func BenchmarkDecodeAvroTaxi(b *testing.B) {
	_, ad, payload := avroTaxiDecoder(b)
	var row parquet.Row
	var err error
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if row, err = ad.Decode(payload, row); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeProtobufTaxi is BenchmarkDecode's trip as Protobuf.
func BenchmarkDecodeProtobufTaxi(b *testing.B) {
	_, pd, payload := protoTaxiDecoder(b)
	var row parquet.Row
	var err error
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if row, err = pd.Decode(payload, row); err != nil {
			b.Fatal(err)
		}
	}
}
