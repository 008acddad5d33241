package taxi

import (
	"math"
	"math/rand/v2"
	"time"
)

// DefaultStart is the event time of the first trip unless told otherwise, the
// start of the reference data set.
func DefaultStart() time.Time { return time.Date(2018, 1, 1, 0, 0, 0, 0, time.UTC) }

// meanGap is the mean event-time distance between two pickups: 20 trips per
// second of event time, so ten million events span almost six days.
const meanGap = 50 * time.Millisecond

// DefaultOversize is the size of an oversized bad event: above the 512 KiB a
// pipeline would sensibly accept as one taxi trip, below the 1 MB that Kafka
// and Kinesis accept, so that it reaches sinkd and sinkd has to reject it.
const DefaultOversize = 600_000

// Generator produces a deterministic stream of trips for its seed. It is not
// safe for concurrent use.
type Generator struct {
	rng      *rand.Rand
	nextID   int64
	clock    time.Time // pickup time of the latest trip, millisecond precision
	lastID   int64
	oversize int
}

// Option configures a Generator.
type Option func(*Generator)

// WithFirstID sets the trip_id of the first event (default 1). Runs that must
// not collide, such as several producers into one topic, use disjoint ranges.
func WithFirstID(id int64) Option { return func(g *Generator) { g.nextID = id } }

// WithOversize sets the size in bytes of Oversized bad events.
func WithOversize(n int) Option { return func(g *Generator) { g.oversize = n } }

// NewGenerator returns a generator whose first pickup is at or shortly after
// start (DefaultStart() when zero).
func NewGenerator(seed int64, start time.Time, opts ...Option) *Generator {
	if start.IsZero() {
		start = DefaultStart()
	}
	g := &Generator{
		// The second PCG word is fixed: the seed alone picks the stream.
		rng:      rand.New(rand.NewPCG(uint64(seed), 0x7a78695f74726970)),
		nextID:   1,
		oversize: DefaultOversize,
	}
	for _, o := range opts {
		o(g)
	}
	g.clock = start.UTC().Truncate(time.Millisecond)
	return g
}

// Last returns the trip_id and the exact (millisecond) pickup time of the
// latest event, good or bad. Trip.PickupDatetime is truncated to the second;
// a replay paces itself on this finer clock.
func (g *Generator) Last() (tripID int64, eventTime time.Time) {
	return g.lastID, g.clock
}

// Next returns the next trip: trip_id one more than the last, pickup a random
// (exponential) gap after the last.
func (g *Generator) Next() Trip {
	r := g.rng
	gap := time.Duration(r.ExpFloat64() * float64(meanGap)).Truncate(time.Millisecond)
	g.clock = g.clock.Add(gap)
	g.lastID = g.nextID
	g.nextID++

	t := Trip{
		TripID:            g.lastID,
		Type:              tripType(r.Float64()),
		VendorID:          1 + r.IntN(2),
		PickupLocationID:  1 + r.IntN(zones),
		DropoffLocationID: 1 + r.IntN(zones),
		PassengerCount:    passengers(r),
		PaymentType:       paymentType(r.Float64()),
		StoreAndFwd:       r.Float64() < 0.01,
	}

	distance := math.Min(0.3+r.ExpFloat64()*2.7, 40)
	t.TripDistance = round(distance, 2)
	mph := 7 + 13*r.Float64()
	ride := time.Duration(distance/mph*float64(time.Hour)) + time.Duration(30+r.IntN(150))*time.Second
	t.PickupDatetime = g.clock.Truncate(time.Second)
	t.DropoffDatetime = t.PickupDatetime.Add(ride.Truncate(time.Second))

	lat, lon := zoneCenter(t.PickupLocationID)
	lat += (r.Float64() - 0.5) * 0.008
	lon += (r.Float64() - 0.5) * 0.008
	bearing := r.Float64() * 2 * math.Pi
	t.PickupLatitude, t.PickupLongitude = inNYC(lat, lon)
	t.DropoffLatitude, t.DropoffLongitude = inNYC(
		lat+distance*milesToLat*math.Cos(bearing),
		lon+distance*milesToLon*math.Sin(bearing),
	)

	// The TLC meter: $2.50 flag drop, $2.50 a mile, about $0.35 a minute in
	// traffic; $0.50 MTA tax and $0.30 improvement surcharge on every trip.
	fare := 2.5 + 2.5*distance + 0.35*ride.Minutes()
	t.FareAmount = round(fare, 2)
	if r.Float64() < 0.05 {
		t.TollsAmount = 5.76
	}
	if t.PaymentType == "credit" {
		t.TipAmount = round(t.FareAmount*(0.1+0.15*r.Float64()), 2)
	}
	t.TotalAmount = round(t.FareAmount+t.TipAmount+t.TollsAmount+0.8, 2)
	return t
}

const zones = 265 // TLC taxi zones

// Degrees per mile around New York's latitude.
const (
	milesToLat = 1 / 69.0
	milesToLon = 1 / 52.4
)

// tripType maps a uniform u in [0,1) to the fleet mix: 70% yellow cabs, 20%
// green cabs, 10% for-hire vehicles.
func tripType(u float64) string {
	switch {
	case u < 0.70:
		return "yellow"
	case u < 0.90:
		return "green"
	}
	return "fhv"
}

func paymentType(u float64) string {
	switch {
	case u < 0.66:
		return "credit"
	case u < 0.97:
		return "cash"
	case u < 0.99:
		return "no_charge"
	}
	return "dispute"
}

func passengers(r *rand.Rand) int {
	switch u := r.Float64(); {
	case u < 0.70:
		return 1
	case u < 0.85:
		return 2
	default:
		return 3 + r.IntN(4)
	}
}

// zoneCenter places a zone at a fixed point of the city, spread by two
// irrational strides so that neighbouring ids are far apart, as real zones are.
func zoneCenter(id int) (lat, lon float64) {
	_, fl := math.Modf(float64(id) * 0.6180339887)
	_, fo := math.Modf(float64(id) * 0.4142135623)
	return 40.58 + 0.30*fl, -74.03 + 0.30*fo
}

// inNYC clamps a point to the five boroughs' bounding box and rounds it to
// five decimals (about a metre), as trip records have it.
func inNYC(lat, lon float64) (float64, float64) {
	lat = math.Max(40.49, math.Min(40.92, lat))
	lon = math.Max(-74.26, math.Min(-73.70, lon))
	return round(lat, 5), round(lon, 5)
}

func round(v float64, decimals int) float64 {
	p := math.Pow10(decimals)
	return math.Round(v*p) / p
}
