package schema

import (
	"math/bits"
)

// Wide decimals, times of day and UUIDs.

// decimalBytes is the FIXED_LEN_BYTE_ARRAY length of a decimal of each
// precision above MaxInt64Precision: the fewest bytes whose two's complement
// holds every value of that many digits (the Parquet specification's rule).
func decimalBytes(precision int) int {
	for n := 1; ; n++ {
		// 2^(8n-1) > 10^precision - 1
		if float64(8*n-1) > float64(precision)*3.321928094887362 {
			return n
		}
	}
}

// pow10x128 is 10^i as 128 bits (hi, lo), for i up to 38.
var pow10x128 = func() (t [39][2]uint64) {
	t[0] = [2]uint64{0, 1}
	for i := 1; i < len(t); i++ {
		hi, lo := mul128(t[i-1][0], t[i-1][1], 10)
		t[i] = [2]uint64{hi, lo}
	}
	return t
}()

func mul128(hi, lo, m uint64) (uint64, uint64) {
	h, l := bits.Mul64(lo, m)
	return hi*m + h, l
}

func less128(ahi, alo, bhi, blo uint64) bool { return ahi < bhi || (ahi == bhi && alo < blo) }

// parseScaled128 is parseScaled for decimals of up to 38 digits: the JSON
// number text times 10^shift, exactly, as a magnitude below 10^38 and a sign.
func parseScaled128(text []byte, shift int) (hi, lo uint64, neg bool, st numStatus) {
	t, st := lexNumber(text)
	neg = t.neg
	if st != numOK || t.first == t.digits {
		return 0, 0, neg, st
	}
	first, last := t.first, t.last
	e := t.e + shift
	if e < 0 {
		return 0, 0, neg, numFraction
	}
	if last-first+1+e > 38 {
		return 0, 0, neg, numOverflow
	}
	for j := first; j <= last; j++ {
		hi, lo = mul128(hi, lo, 10)
		var c uint64
		lo, c = bits.Add64(lo, uint64(t.digit(j)), 0)
		hi += c
	}
	if e > 0 {
		p := pow10x128[e]
		// At most 38 digits in all, so the product stays below 10^38.
		h1, l1 := bits.Mul64(lo, p[1])
		hi = hi*p[1] + lo*p[0] + h1
		lo = l1
	}
	return hi, lo, neg, numOK
}

// appendDecimal128 appends the big-endian two's complement of the signed
// magnitude in size bytes.
func appendDecimal128(dst []byte, hi, lo uint64, neg bool, size int) []byte {
	if neg {
		lo = ^lo + 1
		hi = ^hi
		if lo == 0 {
			hi++
		}
	}
	for i := size - 1; i >= 0; i-- {
		var b byte
		switch {
		case i < 8:
			b = byte(lo >> (8 * i))
		case i < 16:
			b = byte(hi >> (8 * (i - 8)))
		case neg:
			b = 0xFF
		}
		dst = append(dst, b)
	}
	return dst
}

// parseTimeOfDay reads "HH:MM:SS" with an optional fraction of up to nine
// digits (digits finer than unit are truncated) and returns the time since
// midnight in unit.
func parseTimeOfDay(b []byte, unit TimeUnit) (int64, timeStatus) {
	if len(b) < 8 || b[2] != ':' || b[5] != ':' {
		return 0, timeSyntax
	}
	two := func(i int) (int64, bool) {
		if !isDigit(b[i]) || !isDigit(b[i+1]) {
			return 0, false
		}
		return int64(b[i]-'0')*10 + int64(b[i+1]-'0'), true
	}
	h, ok1 := two(0)
	m, ok2 := two(3)
	s, ok3 := two(6)
	if !ok1 || !ok2 || !ok3 {
		return 0, timeSyntax
	}
	if h > 23 || m > 59 || s > 59 {
		return 0, timeRange
	}
	v := ((h*60+m)*60 + s) * unit.PerSecond()
	if len(b) == 8 {
		return v, timeOK
	}
	if b[8] != '.' || len(b) == 9 || len(b) > 18 {
		return 0, timeSyntax
	}
	var frac int64
	digits := 0
	for _, c := range b[9:] {
		if !isDigit(c) {
			return 0, timeSyntax
		}
		if digits < unit.exp10() {
			frac = frac*10 + int64(c-'0')
			digits++
		}
	}
	for ; digits < unit.exp10(); digits++ {
		frac *= 10
	}
	return v + frac, timeOK
}

// appendUUID appends the 16 bytes of a UUID in its canonical text form
// (8-4-4-4-12 hex digits, either case), or reports false.
func appendUUID(dst, b []byte) ([]byte, bool) {
	if len(b) != 36 || b[8] != '-' || b[13] != '-' || b[18] != '-' || b[23] != '-' {
		return dst, false
	}
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i++
			continue
		}
		hi, lo := b[i], b[i+1]
		if !isHex(hi) || !isHex(lo) {
			return dst, false
		}
		dst = append(dst, unhex(hi)<<4|unhex(lo))
		i += 2
	}
	return dst, true
}

func unhex(c byte) byte {
	if isDigit(c) {
		return c - '0'
	}
	return c | 0x20 - 'a' + 10
}
