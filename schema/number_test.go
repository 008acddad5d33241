package schema

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

func TestParseScaled(t *testing.T) {
	tests := []struct {
		text     string
		shift    int
		truncate bool
		want     int64
		status   numStatus
	}{
		{"0", 0, false, 0, numOK},
		{"-0.000", 2, false, 0, numOK},
		{"123", 0, false, 123, numOK},
		{"1.25", 2, false, 125, numOK},
		{"1.255", 2, false, 0, numFraction},
		{"1.255", 2, true, 125, numOK},
		{"-1.255", 2, true, -125, numOK},
		{"0.001", 2, true, 0, numOK},
		{"1e2", 0, false, 100, numOK},
		{"1E+2", 0, false, 100, numOK},
		{"1500e-3", 0, false, 0, numFraction},
		{"1500e-2", 0, false, 15, numOK},
		{"12.5e-1", 2, false, 125, numOK},
		{"9223372036854775807", 0, false, math.MaxInt64, numOK},
		{"-9223372036854775808", 0, false, math.MinInt64, numOK},
		{"9223372036854775808", 0, false, 0, numOverflow},
		{"922337203685477580.7", 1, false, math.MaxInt64, numOK},
		{"1e18", 0, false, 1e18, numOK},
		{"1e19", 0, false, 0, numOverflow},
		{"1e999999999999", 0, false, 0, numOverflow},
		{"1e-999999999999", 0, true, 0, numOK},
		{"0e999999999999", 0, false, 0, numOK},
		{"00012", 0, false, 0, numSyntax},
		{"", 0, false, 0, numSyntax},
		{"-", 0, false, 0, numSyntax},
		{"1.", 0, false, 0, numSyntax},
		{".5", 0, false, 0, numSyntax},
		{"1e", 0, false, 0, numSyntax},
		{"+1", 0, false, 0, numSyntax},
		{"1 ", 0, false, 0, numSyntax},
		{"NaN", 0, false, 0, numSyntax},
		{"0x10", 0, false, 0, numSyntax},
	}
	for _, tt := range tests {
		got, st := parseScaled([]byte(tt.text), tt.shift, tt.truncate)
		if got != tt.want || st != tt.status {
			t.Errorf("parseScaled(%q, %d, %v) = %d, %d; want %d, %d", tt.text, tt.shift, tt.truncate, got, st, tt.want, tt.status)
		}
	}
}

// TestParsePlainMatchesLexed checks parseScaled's fast path against the
// general path on numbers around every edge the fast path has: digit counts
// at 18 and 19, shifts that overflow or drop digits, signs, leading zeros,
// missing fractions.
func TestParsePlainMatchesLexed(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	inputs := []string{"0", "-0", "00", "01", "-01", "0.0", "1.", "-", "-.5", "1.2.3", "922337203685477580",
		"999999999999999999", "-999999999999999999", "9999999999999999999", "0.000000000000000001", "123456789.123456789"}
	for range 200000 {
		digits := strconv.FormatUint(rng.Uint64N(1<<63), 10)
		digits = digits[:1+rng.IntN(len(digits))]
		if rng.IntN(8) == 0 {
			digits = "0" + digits
		}
		if p := rng.IntN(len(digits) + 2); p < len(digits) {
			digits = digits[:p] + "." + digits[p:]
		}
		if rng.IntN(2) == 0 {
			digits = "-" + digits
		}
		inputs = append(inputs, digits)
	}
	for _, in := range inputs {
		for shift := -3; shift <= 20; shift++ {
			for _, truncate := range []bool{false, true} {
				got, gst := parseScaled([]byte(in), shift, truncate)
				want, wst := parseLexed([]byte(in), shift, truncate)
				if got != want || gst != wst {
					t.Fatalf("parseScaled(%q, %d, %v) = %d, %d; the lexer says %d, %d", in, shift, truncate, got, gst, want, wst)
				}
			}
		}
	}
	if _, _, ok := parsePlain([]byte("1234567"), 0, false); !ok {
		t.Error("the common case missed the fast path")
	}
}

func TestParseFloatExactMatchesStrconv(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	inputs := []string{"0", "-0", "40.8012", "-73.9612", "0.1", "0.3", "6.8", "-2.25e-3", "123456789012345", "1234567890123456", "0.0000000000000000000001", "1e5"}
	for range 100000 {
		digits := strconv.FormatUint(rng.Uint64N(1_000_000_000_000_000), 10)
		if p := rng.IntN(len(digits) + 1); p < len(digits) {
			digits = digits[:p] + "." + digits[p:]
			if p == 0 {
				digits = "0" + digits
			}
		}
		if rng.IntN(2) == 0 {
			digits = "-" + digits
		}
		inputs = append(inputs, digits)
	}
	for _, in := range inputs {
		want, err := strconv.ParseFloat(in, 64)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := parseFloatExact([]byte(in)); ok && math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("parseFloatExact(%q) = %v, strconv says %v", in, got, want)
		}
	}
	if _, ok := parseFloatExact([]byte("40.8012")); !ok {
		t.Error("the common case missed the fast path")
	}
}
