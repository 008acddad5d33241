package schema

import "math"

// Calendar arithmetic on the proleptic Gregorian calendar, done by hand so that
// parsing a timestamp neither allocates nor goes through time.Parse's layouts.

const (
	minYear       = 1
	maxYear       = 9999
	secondsPerDay = 86400
)

// daysFromCivil returns the number of days from 1970-01-01 to y-m-d.
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

func daysInMonth(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// timestampRange is the span of years 0001..9999 in unit, clamped to int64.
func timestampRange(u TimeUnit) (lo, hi int64) {
	loSec := daysFromCivil(minYear, 1, 1) * secondsPerDay
	hiSec := (daysFromCivil(maxYear, 12, 31)+1)*secondsPerDay - 1
	per := u.PerSecond()
	lo, hi = math.MinInt64, math.MaxInt64
	if loSec >= math.MinInt64/per {
		lo = loSec * per
	}
	if hiSec <= math.MaxInt64/per-1 {
		hi = hiSec*per + per - 1
	}
	return lo, hi
}

// timeStatus says why a date or timestamp text did not parse.
type timeStatus uint8

const (
	timeOK     timeStatus = iota
	timeSyntax            // not the expected layout, or an impossible date
	timeRange             // well formed but outside years 0001..9999 or the unit's range
)

// digits reads exactly n decimal digits at b[i:].
func digits(b []byte, i, n int) (int, bool) {
	if i+n > len(b) {
		return 0, false
	}
	v := 0
	for _, c := range b[i : i+n] {
		if !isDigit(c) {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// parseDate reads "YYYY-MM-DD" at the start of b and returns the epoch day and
// the number of bytes read. A year of five digits or more is out of range.
func parseDate(b []byte) (days int64, n int, st timeStatus) {
	yLen := 0
	for yLen < len(b) && isDigit(b[yLen]) {
		yLen++
	}
	if yLen > 4 && yLen < len(b) && b[yLen] == '-' {
		return 0, 0, timeRange
	}
	y, ok1 := digits(b, 0, 4)
	m, ok2 := digits(b, 5, 2)
	d, ok3 := digits(b, 8, 2)
	if !ok1 || !ok2 || !ok3 || b[4] != '-' || b[7] != '-' {
		return 0, 0, timeSyntax
	}
	if m < 1 || m > 12 || d < 1 || d > daysInMonth(y, m) {
		return 0, 0, timeSyntax
	}
	if y < minYear {
		return 0, 0, timeRange
	}
	return daysFromCivil(y, m, d), 10, timeOK
}

// parseRFC3339 reads an RFC 3339 date-time ("2018-01-01T00:21:05Z",
// "2018-01-01T00:21:05.123+01:00") and returns it in unit since the epoch.
// Fractional digits finer than unit are truncated.
func parseRFC3339(b []byte, unit TimeUnit) (int64, timeStatus) {
	days, i, st := parseDate(b)
	if st != timeOK {
		return 0, st
	}
	if i >= len(b) || (b[i] != 'T' && b[i] != 't' && b[i] != ' ') {
		return 0, timeSyntax
	}
	hh, ok1 := digits(b, i+1, 2)
	mm, ok2 := digits(b, i+4, 2)
	ss, ok3 := digits(b, i+7, 2)
	if !ok1 || !ok2 || !ok3 || b[i+3] != ':' || b[i+6] != ':' || hh > 23 || mm > 59 || ss > 59 {
		return 0, timeSyntax
	}
	i += 9
	var frac int64 // in nanoseconds
	if i < len(b) && b[i] == '.' {
		i++
		start := i
		scale := int64(1e8)
		for i < len(b) && isDigit(b[i]) {
			frac += int64(b[i]-'0') * scale
			scale /= 10
			i++
		}
		if i == start {
			return 0, timeSyntax
		}
	}
	if i >= len(b) {
		return 0, timeSyntax
	}
	var offset int64
	switch b[i] {
	case 'Z', 'z':
		i++
	case '+', '-':
		oh, ok1 := digits(b, i+1, 2)
		om, ok2 := digits(b, i+4, 2)
		if !ok1 || !ok2 || b[i+3] != ':' || oh > 23 || om > 59 {
			return 0, timeSyntax
		}
		offset = int64(oh*3600 + om*60)
		if b[i] == '-' {
			offset = -offset
		}
		i += 6
	default:
		return 0, timeSyntax
	}
	if i != len(b) {
		return 0, timeSyntax
	}
	sec := days*secondsPerDay + int64(hh*3600+mm*60+ss) - offset
	per := unit.PerSecond()
	if sec > math.MaxInt64/per-1 || sec < math.MinInt64/per+1 {
		return 0, timeRange
	}
	return sec*per + frac/(1e9/per), timeOK
}
