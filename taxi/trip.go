// Package taxi generates the New York City taxi-trip events of the design's
// reference scenario (DESIGN §10), good and deliberately bad, and produces them
// into Kafka or Kinesis: the `sinkd produce` command.
package taxi

import (
	"strconv"
	"time"
)

// Trip is one completed taxi trip, the event sinkd archives.
type Trip struct {
	TripID            int64     `json:"trip_id"`
	Type              string    `json:"type"` // yellow, green or fhv
	VendorID          int       `json:"vendor_id"`
	PickupDatetime    time.Time `json:"pickup_datetime"`
	DropoffDatetime   time.Time `json:"dropoff_datetime"`
	PickupLocationID  int       `json:"pickup_location_id"` // TLC taxi zone, 1..265
	DropoffLocationID int       `json:"dropoff_location_id"`
	PickupLatitude    float64   `json:"pickup_latitude"`
	PickupLongitude   float64   `json:"pickup_longitude"`
	DropoffLatitude   float64   `json:"dropoff_latitude"`
	DropoffLongitude  float64   `json:"dropoff_longitude"`
	PassengerCount    int       `json:"passenger_count"`
	TripDistance      float64   `json:"trip_distance"` // miles
	FareAmount        float64   `json:"fare_amount"`
	TipAmount         float64   `json:"tip_amount"`
	TollsAmount       float64   `json:"tolls_amount"`
	TotalAmount       float64   `json:"total_amount"`
	PaymentType       string    `json:"payment_type"` // credit, cash, no_charge or dispute
	StoreAndFwd       bool      `json:"store_and_fwd"`
}

// AppendJSON appends the trip as one JSON object, the same document
// encoding/json produces, without reflection: the producer's hot path. String
// fields are written unescaped, so they must hold plain ASCII, as the
// generator's do.
func (t *Trip) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"trip_id":`...)
	dst = strconv.AppendInt(dst, t.TripID, 10)
	dst = append(dst, `,"type":"`...)
	dst = append(dst, t.Type...)
	dst = append(dst, `","vendor_id":`...)
	dst = strconv.AppendInt(dst, int64(t.VendorID), 10)
	dst = append(dst, `,"pickup_datetime":"`...)
	dst = t.PickupDatetime.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","dropoff_datetime":"`...)
	dst = t.DropoffDatetime.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","pickup_location_id":`...)
	dst = strconv.AppendInt(dst, int64(t.PickupLocationID), 10)
	dst = append(dst, `,"dropoff_location_id":`...)
	dst = strconv.AppendInt(dst, int64(t.DropoffLocationID), 10)
	dst = appendFloat(dst, `,"pickup_latitude":`, t.PickupLatitude)
	dst = appendFloat(dst, `,"pickup_longitude":`, t.PickupLongitude)
	dst = appendFloat(dst, `,"dropoff_latitude":`, t.DropoffLatitude)
	dst = appendFloat(dst, `,"dropoff_longitude":`, t.DropoffLongitude)
	dst = append(dst, `,"passenger_count":`...)
	dst = strconv.AppendInt(dst, int64(t.PassengerCount), 10)
	dst = appendFloat(dst, `,"trip_distance":`, t.TripDistance)
	dst = appendFloat(dst, `,"fare_amount":`, t.FareAmount)
	dst = appendFloat(dst, `,"tip_amount":`, t.TipAmount)
	dst = appendFloat(dst, `,"tolls_amount":`, t.TollsAmount)
	dst = appendFloat(dst, `,"total_amount":`, t.TotalAmount)
	dst = append(dst, `,"payment_type":"`...)
	dst = append(dst, t.PaymentType...)
	dst = append(dst, `","store_and_fwd":`...)
	dst = strconv.AppendBool(dst, t.StoreAndFwd)
	return append(dst, '}')
}

// appendFloat writes the shortest decimal that reads back as v, which is what
// encoding/json writes for the magnitudes trips have (1e-6 <= |v| < 1e21, or 0).
func appendFloat(dst []byte, key string, v float64) []byte {
	dst = append(dst, key...)
	return strconv.AppendFloat(dst, v, 'f', -1, 64)
}
