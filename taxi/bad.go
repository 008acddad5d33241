package taxi

import (
	"bytes"
	"fmt"
	"strconv"
)

// BadKind names one way an event can be broken. Every bad event is built from
// a fresh trip, so it consumes a trip_id like a good one, and the record key
// (Kafka key, Kinesis partition key) is that trip_id even when the payload
// cannot carry it. Unless stated otherwise the payload still contains the text
// `"trip_id":N` so tests can track the event through a dead-letter stream.
type BadKind string

const (
	// Good is no breakage: a valid trip.
	Good BadKind = ""
	// MalformedJSON lacks the colon after "vendor_id".
	MalformedJSON BadKind = "malformed_json"
	// TruncatedJSON is a trip cut after two thirds of its bytes.
	TruncatedJSON BadKind = "truncated_json"
	// NotUTF8 is valid JSON syntax whose "type" value ends in the byte 0xFF.
	NotUTF8 BadKind = "not_utf8"
	// BOM is a valid trip preceded by the UTF-8 byte order mark, which JSON
	// (RFC 8259) forbids in network transmissions.
	BOM BadKind = "bom"
	// WrongType has "passenger_count" as a word ("2 passengers") instead of an integer.
	WrongType BadKind = "wrong_type"
	// MissingRequired lacks "pickup_datetime", which event-time buckets need.
	MissingRequired BadKind = "missing_required"
	// NullRequired has "type": null; type picks the route and the index.
	NullRequired BadKind = "null_required"
	// OutOfRange has, alternately, a pickup_location_id of 99999999999 (beyond
	// int32 and the 265 zones) or a pickup_datetime in the year 99999.
	OutOfRange BadKind = "out_of_range"
	// DuplicateKey has "type" twice with different values: parsers disagree
	// on which one wins.
	DuplicateKey BadKind = "duplicate_key"
	// DeepNesting adds a "nested" array 10,001 levels deep after trip_id,
	// deeper than encoding/json's limit of 10,000.
	DeepNesting BadKind = "deep_nesting"
	// Empty is a zero-length value; only the record key carries the trip_id.
	Empty BadKind = "empty"
	// Oversized is a valid trip padded with a "padding" string field to the
	// generator's oversize (DefaultOversize unless WithOversize).
	Oversized BadKind = "oversized"
)

// BadKinds lists every kind of bad event, in the order Event draws from.
func BadKinds() []BadKind {
	return []BadKind{MalformedJSON, TruncatedJSON, NotUTF8, BOM, WrongType, MissingRequired,
		NullRequired, OutOfRange, DuplicateKey, DeepNesting, Empty, Oversized}
}

// deepNesting is one more than encoding/json's maximum nesting depth.
const deepNesting = 10_001

// Bad returns the next trip, broken in the way kind says. Bad(Good) is the
// trip's valid JSON. An unknown kind is a programming error and panics.
func (g *Generator) Bad(kind BadKind) []byte {
	t := g.Next()
	b := t.AppendJSON(make([]byte, 0, 512))
	switch kind {
	case Good:
		return b
	case MalformedJSON:
		return bytes.Replace(b, []byte(`"vendor_id":`), []byte(`"vendor_id"`), 1)
	case TruncatedJSON:
		return b[:len(b)*2/3]
	case NotUTF8:
		return replaceValue(b, "type", `"`+t.Type+"\xff\"")
	case BOM:
		return append([]byte("\xEF\xBB\xBF"), b...)
	case WrongType:
		// A word where an integer belongs. (A numeric string in a decimal
		// field would be valid: decimals accept exact text.)
		return replaceValue(b, "passenger_count", `"`+strconv.Itoa(t.PassengerCount)+` passengers"`)
	case MissingRequired:
		return removeField(b, "pickup_datetime")
	case NullRequired:
		return replaceValue(b, "type", "null")
	case OutOfRange:
		if t.TripID%2 == 0 {
			return replaceValue(b, "pickup_location_id", "99999999999")
		}
		return replaceValue(b, "pickup_datetime", `"99999`+t.PickupDatetime.Format(`-01-02T15:04:05Z07:00`)+`"`)
	case DuplicateKey:
		other := "green"
		if t.Type == other {
			other = "yellow"
		}
		return replaceValue(b, "type", `"`+t.Type+`","type":"`+other+`"`)
	case DeepNesting:
		at := bytes.IndexByte(b, ',')
		out := make([]byte, 0, len(b)+2*deepNesting+12)
		out = append(out, b[:at]...)
		out = append(out, `,"nested":`...)
		out = append(out, bytes.Repeat([]byte{'['}, deepNesting)...)
		out = append(out, bytes.Repeat([]byte{']'}, deepNesting)...)
		return append(out, b[at:]...)
	case Empty:
		return []byte{}
	case Oversized:
		const field = `,"padding":""`
		pad := max(g.oversize-len(b)-len(field), 0)
		out := make([]byte, 0, len(b)+len(field)+pad)
		out = append(out, b[:len(b)-1]...)
		out = append(out, `,"padding":"`...)
		out = append(out, bytes.Repeat([]byte{'x'}, pad)...)
		return append(out, `"}`...)
	}
	panic(fmt.Sprintf("taxi: unknown bad event kind %q", string(kind)))
}

// Event returns the next event: with probability badRatio a bad one of a
// uniformly drawn kind, otherwise a valid trip. The mix is deterministic for
// the generator's seed and badRatio.
func (g *Generator) Event(badRatio float64) (value []byte, bad BadKind) {
	if badRatio > 0 && g.rng.Float64() < badRatio {
		kinds := BadKinds()
		bad = kinds[g.rng.IntN(len(kinds))]
	}
	return g.Bad(bad), bad
}

// replaceValue swaps the raw value of a top-level scalar field of a generated
// trip. Generated values never contain a comma or a brace, so the value ends
// at the first of them.
func replaceValue(b []byte, key, raw string) []byte {
	start, end := valueSpan(b, key)
	out := make([]byte, 0, len(b)+len(raw))
	out = append(out, b[:start]...)
	out = append(out, raw...)
	return append(out, b[end:]...)
}

// removeField drops a field of a generated trip that is neither first nor last.
func removeField(b []byte, key string) []byte {
	start, end := valueSpan(b, key)
	start -= len(`,"":`) + len(key)
	return append(b[:start:start], b[end:]...)
}

func valueSpan(b []byte, key string) (start, end int) {
	k := `"` + key + `":`
	i := bytes.Index(b, []byte(k))
	if i < 0 {
		panic("taxi: generated trip lacks " + k)
	}
	start = i + len(k)
	end = start + bytes.IndexAny(b[start:], ",}")
	return start, end
}
