package taxi

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestGeneratorDeterministic(t *testing.T) {
	a, b := NewGenerator(42, time.Time{}), NewGenerator(42, time.Time{})
	other := NewGenerator(43, time.Time{})
	differs := false
	for i := 0; i < 1000; i++ {
		ta, tb, to := a.Next(), b.Next(), other.Next()
		if ta != tb {
			t.Fatalf("trip %d differs for the same seed:\n%+v\n%+v", i, ta, tb)
		}
		to.TripID = ta.TripID
		differs = differs || ta != to
	}
	if !differs {
		t.Error("seeds 42 and 43 produced the same trips")
	}
	// The bad-event mix too.
	a, b = NewGenerator(7, time.Time{}), NewGenerator(7, time.Time{})
	for i := 0; i < 2000; i++ {
		va, ka := a.Event(0.2)
		vb, kb := b.Event(0.2)
		if ka != kb || !bytes.Equal(va, vb) {
			t.Fatalf("event %d differs for the same seed: %s/%s", i, ka, kb)
		}
	}
}

func TestGeneratorTrips(t *testing.T) {
	const n = 100_000
	start := time.Date(2019, 6, 1, 12, 0, 0, 0, time.UTC)
	g := NewGenerator(1, start, WithFirstID(5_000_000))
	types := map[string]int{}
	payments := map[string]int{}
	var size int
	prevID, prevPickup := int64(0), start
	var lastClock time.Time
	for i := 0; i < n; i++ {
		tr := g.Next()
		if want := int64(5_000_000 + i); tr.TripID != want {
			t.Fatalf("trip %d has id %d, want %d", i, tr.TripID, want)
		}
		if id, clock := g.Last(); id != tr.TripID || clock.Truncate(time.Second) != tr.PickupDatetime {
			t.Fatalf("Last() = %d %v for trip %+v", id, clock, tr)
		}
		_, lastClock = g.Last()
		if tr.TripID <= prevID || tr.PickupDatetime.Before(prevPickup) {
			t.Fatalf("trip %d goes backwards: %+v", i, tr)
		}
		prevID, prevPickup = tr.TripID, tr.PickupDatetime
		if !tr.DropoffDatetime.After(tr.PickupDatetime) {
			t.Fatalf("dropoff not after pickup: %+v", tr)
		}
		if tr.PickupLocationID < 1 || tr.PickupLocationID > 265 || tr.DropoffLocationID < 1 || tr.DropoffLocationID > 265 {
			t.Fatalf("location out of 1..265: %+v", tr)
		}
		for _, lat := range []float64{tr.PickupLatitude, tr.DropoffLatitude} {
			if lat < 40.49 || lat > 40.92 {
				t.Fatalf("latitude outside NYC: %+v", tr)
			}
		}
		for _, lon := range []float64{tr.PickupLongitude, tr.DropoffLongitude} {
			if lon < -74.26 || lon > -73.70 {
				t.Fatalf("longitude outside NYC: %+v", tr)
			}
		}
		for _, amount := range []float64{tr.FareAmount, tr.TipAmount, tr.TollsAmount, tr.TotalAmount, tr.TripDistance} {
			if amount < 0 || math.Abs(amount*100-math.Round(amount*100)) > 1e-6 {
				t.Fatalf("amount %v is not a non-negative 2-decimal value: %+v", amount, tr)
			}
		}
		if sum := tr.FareAmount + tr.TipAmount + tr.TollsAmount + 0.8; math.Abs(sum-tr.TotalAmount) > 0.006 {
			t.Fatalf("total %v, parts sum to %v", tr.TotalAmount, sum)
		}
		if tr.PaymentType != "credit" && tr.TipAmount != 0 {
			t.Fatalf("tip without a card: %+v", tr)
		}
		if tr.PassengerCount < 1 || tr.PassengerCount > 6 || (tr.VendorID != 1 && tr.VendorID != 2) {
			t.Fatalf("bad count or vendor: %+v", tr)
		}
		types[tr.Type]++
		payments[tr.PaymentType]++
		size += len(tr.AppendJSON(nil))
	}
	for typ, want := range map[string]float64{"yellow": 0.7, "green": 0.2, "fhv": 0.1} {
		if got := float64(types[typ]) / n; math.Abs(got-want) > 0.01 {
			t.Errorf("%s is %.3f of trips, want about %.2f", typ, got, want)
		}
	}
	if len(types) != 3 || len(payments) != 4 {
		t.Errorf("types %v, payment types %v", types, payments)
	}
	if mean := size / n; mean < 400 || mean > 460 {
		t.Errorf("mean JSON size %d bytes, want 400..460", mean)
	}
	// A mean gap of 50 ms: 100,000 trips span about 5,000 s of event time.
	if span := lastClock.Sub(start); span < 4800*time.Second || span > 5200*time.Second {
		t.Errorf("100000 trips span %v of event time, want about 5000s", span)
	}
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	g := NewGenerator(3, time.Time{}, WithFirstID(math.MaxInt64-2000))
	for i := 0; i < 2000; i++ {
		tr := g.Next()
		fast := tr.AppendJSON(nil)
		std, err := json.Marshal(&tr)
		if err != nil {
			t.Fatal(err)
		}
		var a, b map[string]any
		if err := json.Unmarshal(fast, &a); err != nil {
			t.Fatalf("AppendJSON output is not JSON: %v\n%s", err, fast)
		}
		if err := json.Unmarshal(std, &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("documents differ:\nAppendJSON    %s\nencoding/json %s", fast, std)
		}
		var back Trip
		if err := json.Unmarshal(fast, &back); err != nil || back != tr {
			t.Fatalf("round trip: %v\n%+v\n%+v", err, back, tr)
		}
	}
}

func TestBadEvents(t *testing.T) {
	type check func(t *testing.T, v []byte)
	var (
		unmarshalFails = func(t *testing.T, v []byte) {
			var tr Trip
			if err := json.Unmarshal(v, &tr); err == nil {
				t.Errorf("decodes into a Trip: %.200s", v)
			}
		}
		field = func(t *testing.T, v []byte) map[string]any {
			var m map[string]any
			if err := json.Unmarshal(v, &m); err != nil {
				t.Fatalf("should be syntactically valid JSON: %v: %.200s", err, v)
			}
			return m
		}
	)
	tests := []struct {
		kind    BadKind
		tracked bool // the payload holds "trip_id":N
		valid   bool // json.Valid accepts it: the breakage is not syntactic
		check   check
	}{
		{MalformedJSON, true, false, func(t *testing.T, v []byte) {
			var se *json.SyntaxError
			if err := json.Unmarshal(v, new(any)); !errors.As(err, &se) {
				t.Errorf("want a syntax error, got %v", err)
			}
		}},
		{TruncatedJSON, true, false, func(t *testing.T, v []byte) {
			if err := json.Unmarshal(v, new(any)); err == nil || !strings.Contains(err.Error(), "unexpected end") {
				t.Errorf("want unexpected end of input, got %v", err)
			}
		}},
		{NotUTF8, true, true, func(t *testing.T, v []byte) {
			if utf8.Valid(v) {
				t.Error("is valid UTF-8")
			}
			if m := field(t, v); m["type"] == "yellow" || m["type"] == "green" || m["type"] == "fhv" {
				t.Errorf("type %q survived", m["type"])
			}
		}},
		{BOM, true, false, func(t *testing.T, v []byte) {
			if !bytes.HasPrefix(v, []byte{0xEF, 0xBB, 0xBF}) || !json.Valid(v[3:]) {
				t.Errorf("not a BOM before valid JSON: %.20q", v)
			}
			unmarshalFails(t, v)
		}},
		{WrongType, true, true, func(t *testing.T, v []byte) {
			if _, ok := field(t, v)["passenger_count"].(string); !ok {
				t.Error("passenger_count is not a string")
			}
			var ute *json.UnmarshalTypeError
			if err := json.Unmarshal(v, new(Trip)); !errors.As(err, &ute) {
				t.Errorf("want an UnmarshalTypeError, got %v", err)
			}
		}},
		{MissingRequired, true, true, func(t *testing.T, v []byte) {
			m := field(t, v)
			if _, ok := m["pickup_datetime"]; ok || len(m) != 18 {
				t.Errorf("want the 18 other fields, got %v", m)
			}
		}},
		{NullRequired, true, true, func(t *testing.T, v []byte) {
			m := field(t, v)
			if typ, ok := m["type"]; !ok || typ != nil {
				t.Errorf("type is %v, want null", typ)
			}
		}},
		{OutOfRange, true, true, func(t *testing.T, v []byte) {
			m := field(t, v)
			loc, _ := m["pickup_location_id"].(float64)
			pickup, _ := m["pickup_datetime"].(string)
			if loc <= math.MaxInt32 && !strings.HasPrefix(pickup, "99999-") {
				t.Errorf("nothing out of range: %s", v)
			}
			// A schema with a 32-bit zone id and a timestamp rejects both.
			var narrow struct {
				PickupLocationID int32     `json:"pickup_location_id"`
				PickupDatetime   time.Time `json:"pickup_datetime"`
			}
			if err := json.Unmarshal(v, &narrow); err == nil {
				t.Errorf("decodes into int32 and time.Time: %.200s", v)
			}
		}},
		{DuplicateKey, true, true, func(t *testing.T, v []byte) {
			if n := bytes.Count(v, []byte(`"type":`)); n != 2 || !json.Valid(v) {
				t.Errorf("%d type keys, valid %v", n, json.Valid(v))
			}
		}},
		{DeepNesting, true, false, func(t *testing.T, v []byte) {
			if err := json.Unmarshal(v, new(any)); err == nil || !strings.Contains(err.Error(), "depth") {
				t.Errorf("want a max depth error, got %v", err)
			}
		}},
		{Empty, false, false, func(t *testing.T, v []byte) {
			if len(v) != 0 {
				t.Errorf("%d bytes", len(v))
			}
		}},
		{Oversized, true, true, func(t *testing.T, v []byte) {
			if len(v) != 12_345 {
				t.Errorf("%d bytes, want the configured 12345", len(v))
			}
			var tr Trip
			if err := json.Unmarshal(v, &tr); err != nil || tr.Type == "" {
				t.Errorf("should be a valid trip apart from its size: %v", err)
			}
		}},
	}
	if len(tests) != len(BadKinds()) {
		t.Fatalf("%d kinds tested, %d exist", len(tests), len(BadKinds()))
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			g := NewGenerator(11, time.Time{}, WithFirstID(1000), WithOversize(12_345))
			for i := 0; i < 20; i++ { // both variants of out_of_range, several types
				v := g.Bad(tt.kind)
				id, _ := g.Last()
				if want := []byte(`"trip_id":` + strconv.FormatInt(id, 10)); tt.tracked && !bytes.Contains(v, want) {
					t.Fatalf("payload does not carry %s: %.200s", want, v)
				}
				if json.Valid(v) != tt.valid {
					t.Fatalf("json.Valid = %v: %.200s", !tt.valid, v)
				}
				tt.check(t, v)
			}
		})
	}
}

func TestEventMix(t *testing.T) {
	g := NewGenerator(5, time.Time{})
	const n = 24_000
	kinds := map[BadKind]int{}
	for i := 0; i < n; i++ {
		v, kind := g.Event(0.1)
		kinds[kind]++
		if kind == Good {
			var tr Trip
			if err := json.Unmarshal(v, &tr); err != nil {
				t.Fatalf("good event does not decode: %v", err)
			}
		}
		if id, _ := g.Last(); id != int64(i+1) {
			t.Fatalf("event %d has trip_id %d", i, id)
		}
	}
	if bad := n - kinds[Good]; bad < n/10-300 || bad > n/10+300 {
		t.Errorf("%d bad events of %d, want about 10%%", bad, n)
	}
	for _, k := range BadKinds() {
		if kinds[k] < 100 {
			t.Errorf("kind %s drawn %d times", k, kinds[k])
		}
	}
	if _, kind := NewGenerator(5, time.Time{}).Event(0); kind != Good {
		t.Error("bad event at ratio 0")
	}
}

func TestBadUnknownKindPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	NewGenerator(1, time.Time{}).Bad("nonsense")
}

func BenchmarkAppendJSON(b *testing.B) {
	tr := NewGenerator(1, time.Time{}).Next()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = tr.AppendJSON(buf[:0])
	}
}

func BenchmarkEvent(b *testing.B) {
	g := NewGenerator(1, time.Time{})
	b.ReportAllocs()
	for b.Loop() {
		g.Event(0.01)
	}
}
