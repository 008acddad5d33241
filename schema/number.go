package schema

import "math"

// numStatus says why a JSON number text did not convert exactly.
type numStatus uint8

const (
	numOK       numStatus = iota
	numSyntax             // not a JSON number
	numFraction           // has non-zero digits below the requested unit
	numOverflow           // does not fit an int64
)

var pow10 = [...]int64{
	1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9,
	1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
}

// numText is a JSON number text located: its value is ±(the significant
// digits first..last of the integer and fraction digits, read in order) ×
// 10^e.
type numText struct {
	text                []byte
	neg                 bool
	intStart, nInt      int // the integer digits
	fracStart           int // the fraction digits follow, up to digits
	digits, first, last int // first == digits: the value is zero
	e                   int // the power of ten of digit last
}

// digit is the j-th digit, integer digits then fraction digits.
func (t *numText) digit(j int) byte {
	if j < t.nInt {
		return t.text[t.intStart+j] - '0'
	}
	return t.text[t.fracStart+j-t.nInt] - '0'
}

// lexNumber checks text against the JSON number grammar (RFC 8259) and
// locates its significant digits; the one lexer of parseScaled and
// parseScaled128.
func lexNumber(text []byte) (numText, numStatus) {
	t := numText{text: text}
	i, n := 0, len(text)
	if i < n && text[i] == '-' {
		t.neg = true
		i++
	}
	intStart := i
	for i < n && isDigit(text[i]) {
		i++
	}
	intEnd := i
	if intEnd == intStart || (text[intStart] == '0' && intEnd-intStart > 1) {
		return t, numSyntax
	}
	fracStart, fracEnd := i, i
	if i < n && text[i] == '.' {
		i++
		fracStart = i
		for i < n && isDigit(text[i]) {
			i++
		}
		fracEnd = i
		if fracEnd == fracStart {
			return t, numSyntax
		}
	}
	exp := 0
	if i < n && (text[i] == 'e' || text[i] == 'E') {
		i++
		expNeg := false
		if i < n && (text[i] == '+' || text[i] == '-') {
			expNeg = text[i] == '-'
			i++
		}
		expStart := i
		for i < n && isDigit(text[i]) {
			// Beyond a million the answer is settled (zero, fraction or overflow).
			if exp < 1e6 {
				exp = exp*10 + int(text[i]-'0')
			}
			i++
		}
		if i == expStart {
			return t, numSyntax
		}
		if expNeg {
			exp = -exp
		}
	}
	if i != n {
		return t, numSyntax
	}
	t.intStart, t.nInt, t.fracStart = intStart, intEnd-intStart, fracStart
	t.digits = t.nInt + fracEnd - fracStart
	for t.first < t.digits && t.digit(t.first) == 0 {
		t.first++
	}
	if t.first == t.digits {
		return t, numOK
	}
	t.last = t.digits - 1
	for t.digit(t.last) == 0 {
		t.last--
	}
	t.e = exp - (fracEnd - fracStart) + (t.digits - 1 - t.last)
	return t, numOK
}

// parseScaled reads a JSON number (RFC 8259 grammar) exactly, without going
// through float64, and returns its value times 10^shift as an int64. Digits
// below the resulting unit are an error (numFraction) unless truncate is set,
// in which case they are dropped (rounding toward zero).
func parseScaled(text []byte, shift int, truncate bool) (int64, numStatus) {
	if n, st, ok := parsePlain(text, shift, truncate); ok {
		return n, st
	}
	return parseLexed(text, shift, truncate)
}

// parsePlain is parseScaled's fast path for the numbers events mostly carry
// (ids, counts, prices, epoch timestamps): no exponent and at most 18 digits,
// so that the digits accumulate in one pass without overflow. lexNumber's
// value-returned state and per-digit indexing cost more than the conversion
// itself on such short inputs. ok is false for anything else, or a result at
// the edge of int64, which parseLexed decides.
func parsePlain(text []byte, shift int, truncate bool) (_ int64, _ numStatus, ok bool) {
	i, n := 0, len(text)
	neg := n > 0 && text[0] == '-'
	if neg {
		i++
	}
	start := i
	var m uint64
	for ; i < n && isDigit(text[i]); i++ {
		m = m*10 + uint64(text[i]-'0')
	}
	nInt := i - start
	if nInt == 0 || (nInt > 1 && text[start] == '0') {
		return 0, 0, false
	}
	frac := 0
	if i < n && text[i] == '.' {
		i++
		fracStart := i
		for ; i < n && isDigit(text[i]); i++ {
			m = m*10 + uint64(text[i]-'0')
		}
		frac = i - fracStart
	}
	if i != n || nInt+frac > 18 || (i > start+nInt && frac == 0) {
		return 0, 0, false
	}
	switch e := shift - frac; {
	case m == 0:
	case e >= 0:
		if e >= len(pow10) || m > math.MaxInt64/uint64(pow10[e]) {
			return 0, 0, false
		}
		m *= uint64(pow10[e])
	case -e >= len(pow10):
		return 0, 0, false
	default:
		p := uint64(pow10[-e])
		if m%p != 0 && !truncate {
			return 0, numFraction, true
		}
		m /= p
	}
	if neg {
		return -int64(m), numOK, true
	}
	return int64(m), numOK, true
}

// parseLexed is parseScaled for any JSON number, through lexNumber.
func parseLexed(text []byte, shift int, truncate bool) (int64, numStatus) {
	t, st := lexNumber(text)
	if st != numOK || t.first == t.digits {
		return 0, st
	}
	lo, hi := t.first, t.last
	// value = digits[lo..hi] * 10^e
	e := t.e + shift
	if e < 0 {
		if !truncate {
			return 0, numFraction
		}
		hi += e
		e = 0
		if hi < lo {
			return 0, numOK
		}
	}
	if hi-lo+1+e > 19 {
		return 0, numOverflow
	}
	limit := uint64(math.MaxInt64)
	if t.neg {
		limit++
	}
	var acc uint64
	for j := lo; j <= hi; j++ {
		d := uint64(t.digit(j))
		if acc > (limit-d)/10 {
			return 0, numOverflow
		}
		acc = acc*10 + d
	}
	if e > 0 {
		p := uint64(pow10[e])
		if acc > limit/p {
			return 0, numOverflow
		}
		acc *= p
	}
	if t.neg {
		return int64(-acc), numOK // -(1<<63) wraps to itself, which is right
	}
	return int64(acc), numOK
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// exactPow10 are the powers of ten that a float64 represents exactly.
var exactPow10 = [...]float64{
	1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
}

// parseFloatExact converts the common short JSON numbers (at most 15
// significant digits, a decimal exponent within ±22) with one correctly rounded
// IEEE operation on exact operands, the fast path that strconv also takes. It
// returns false for anything else, which the caller hands to strconv.
func parseFloatExact(text []byte) (float64, bool) {
	i, n := 0, len(text)
	neg := i < n && text[i] == '-'
	if neg {
		i++
	}
	var mant uint64
	digits, exp := 0, 0
	for ; i < n && isDigit(text[i]); i++ {
		mant = mant*10 + uint64(text[i]-'0')
		digits++
	}
	if i < n && text[i] == '.' {
		for i++; i < n && isDigit(text[i]); i++ {
			mant = mant*10 + uint64(text[i]-'0')
			digits++
			exp--
		}
	}
	if i != n || digits == 0 || digits > 15 {
		return 0, false // exponents, long mantissas and junk take the slow path
	}
	f := float64(mant)
	switch {
	case exp == 0:
	case exp >= -22:
		f /= exactPow10[-exp]
	default:
		return 0, false
	}
	if neg {
		f = -f
	}
	return f, true
}
