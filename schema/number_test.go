package schema

import (
	"math"
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
