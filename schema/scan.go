package schema

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// A strict JSON (RFC 8259) scanner over a byte slice. Its functions take the
// index to start at and return the index just past what they read, or, when the
// input breaks the grammar, the index of the offending byte together with a
// non-empty description of what should have been there. They never allocate.

// Descriptions of what the grammar wanted where a scan stopped.
const (
	wantValue       = "a value"
	wantKey         = "a quoted key"
	wantColon       = "':' after a key"
	wantObjectNext  = "',' or '}' after a value"
	wantArrayNext   = "',' or ']' after a value"
	wantDigit       = "a digit"
	wantStringByte  = "a string character (control characters must be escaped)"
	wantEscape      = `an escape (\" \\ \/ \b \f \n \r \t or \u and four hex digits)`
	wantUTF8        = "valid UTF-8"
	wantClosedQuote = `a closing '"'`
	wantEnd         = "the end of the value"
	wantShallower   = "a value nested less deeply"
)

// nextMember reads past what follows a member or element of an object or
// array: a ',' (more, i at the next member) or close (i just past it);
// anything else is wantNext. The skip scanner's loops share it; the
// decoder's loops (decodeObject, object, array, mapObject) inline the same
// check, because the call is not inlined (it is over the compiler's budget)
// and a call per member showed up as a few percent of a decode.
func nextMember(b []byte, i int, close byte, wantNext string) (_ int, more bool, want string) {
	i = skipSpace(b, i)
	if i < len(b) && b[i] == ',' {
		return skipSpace(b, i+1), true, ""
	}
	if i < len(b) && b[i] == close {
		return i + 1, false, ""
	}
	return i, false, wantNext
}

// skipSpace returns the index of the first byte at or after i that is not JSON
// whitespace.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// scanString reads the body of a string whose opening quote is at i-1. It
// returns the index of the closing quote and whether the body holds escapes.
func scanString(b []byte, i int) (end int, escaped bool, want string) {
	for i < len(b) {
		if i+8 <= len(b) {
			// Eight bytes at a time. special has the high bit set in every
			// byte that is a quote, a backslash, a control character or not
			// ASCII; the subtractions' borrows may mark later bytes too, never
			// earlier ones, so its lowest mark is the first byte to look at.
			w := binary.LittleEndian.Uint64(b[i:])
			special := (w - 0x2020202020202020) | ((w ^ 0x2222222222222222) - 0x0101010101010101) |
				((w ^ 0x5C5C5C5C5C5C5C5C) - 0x0101010101010101) | w
			if special &= 0x8080808080808080; special == 0 {
				i += 8
				continue
			}
			i += bits.TrailingZeros64(special) / 8
		}
		c := b[i]
		switch {
		case c >= 0x20 && c < utf8.RuneSelf && c != '"' && c != '\\':
			i++
		case c == '"':
			return i, escaped, ""
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return i + 1, escaped, wantEscape
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				for j := i + 2; j < i+6; j++ {
					if j >= len(b) || !isHex(b[j]) {
						return j, escaped, wantEscape
					}
				}
				i += 6
			default:
				return i + 1, escaped, wantEscape
			}
		case c < 0x20:
			return i, escaped, wantStringByte
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return i, escaped, wantUTF8
			}
			i += size
		}
	}
	return i, escaped, wantClosedQuote
}

func isHex(c byte) bool {
	return isDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'f')
}

// scanNumber reads a number starting at i.
func scanNumber(b []byte, i int) (int, string) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b) || !isDigit(b[i]):
		return i, wantDigit
	case b[i] == '0':
		i++ // a leading zero stands alone: "01" stops here and fails in the caller
	default:
		i = skipDigits(b, i+1)
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return i, wantDigit
		}
		i = skipDigits(b, i+1)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return i, wantDigit
		}
		i = skipDigits(b, i+1)
	}
	return i, ""
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	return i
}

// skipLiteral reads lit (true, false or null) at i.
func skipLiteral(b []byte, i int, lit string) (int, string) {
	for j := 0; j < len(lit); j++ {
		if i+j >= len(b) || b[i+j] != lit[j] {
			return i + j, wantValue
		}
	}
	return i + len(lit), ""
}

// skipValue reads any value starting at i, which sits inside depth open arrays
// and objects.
func skipValue(b []byte, i, depth int) (int, string) {
	if i >= len(b) {
		return i, wantValue
	}
	switch c := b[i]; c {
	case '"':
		end, _, want := scanString(b, i+1)
		if want != "" {
			return end, want
		}
		return end + 1, ""
	case '{':
		return skipObject(b, i, depth+1)
	case '[':
		return skipArray(b, i, depth+1)
	case 't':
		return skipLiteral(b, i, "true")
	case 'f':
		return skipLiteral(b, i, "false")
	case 'n':
		return skipLiteral(b, i, "null")
	default:
		if c == '-' || isDigit(c) {
			return scanNumber(b, i)
		}
		return i, wantValue
	}
}

// skipObject reads an object whose '{' is at i and which is the depth-th open
// array or object.
func skipObject(b []byte, i, depth int) (int, string) {
	if depth > MaxDepth {
		return i, wantShallower
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, ""
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return i, wantKey
		}
		end, _, want := scanString(b, i+1)
		if want != "" {
			return end, want
		}
		i = skipSpace(b, end+1)
		if i >= len(b) || b[i] != ':' {
			return i, wantColon
		}
		if i, want = skipValue(b, skipSpace(b, i+1), depth); want != "" {
			return i, want
		}
		var more bool
		if i, more, want = nextMember(b, i, '}', wantObjectNext); want != "" || !more {
			return i, want
		}
	}
}

// skipArray reads an array whose '[' is at i and which is the depth-th open
// array or object.
func skipArray(b []byte, i, depth int) (int, string) {
	if depth > MaxDepth {
		return i, wantShallower
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, ""
	}
	for {
		var want string
		if i, want = skipValue(b, i, depth); want != "" {
			return i, want
		}
		var more bool
		if i, more, want = nextMember(b, i, ']', wantArrayNext); want != "" || !more {
			return i, want
		}
	}
}

// appendUnescaped appends the body of a scanned string, which holds escapes,
// with its escapes decoded. A surrogate escape that does not start a pair is
// kept as its escape text, and a pair that does not combine becomes U+FFFD
// (consuming both escapes): the decoder has always read strings this way, and
// rows must not change with its implementation.
func appendUnescaped(dst, s []byte) []byte {
	for {
		n := bytes.IndexByte(s, '\\')
		if n < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:n]...)
		c := s[n+1]
		s = s[n+2:]
		switch c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(s)
			hex := s[:4]
			s = s[4:]
			switch {
			case !utf16.IsSurrogate(r):
				dst = utf8.AppendRune(dst, r)
			case len(s) < 6 || s[0] != '\\' || s[1] != 'u':
				dst = append(dst, '\\', 'u')
				dst = append(dst, hex...)
			default:
				dst = utf8.AppendRune(dst, utf16.DecodeRune(r, hex4(s[2:])))
				s = s[6:]
			}
		default: // '"', '\\' and '/' stand for themselves
			dst = append(dst, c)
		}
	}
}

// hex4 decodes the four hex digits that the scanner checked at the start of s.
func hex4(s []byte) rune {
	var r rune
	for _, c := range s[:4] {
		switch {
		case isDigit(c):
			r = r<<4 | rune(c-'0')
		default:
			r = r<<4 | rune(c|0x20-'a'+10)
		}
	}
	return r
}

// refused classifies a value that the scanner refused at byte at, wanting
// want there. The checks run in the order the decoder has always applied them
// to the whole value (encoding, byte-order mark, depth, then syntax), so that a
// value with several problems keeps its class.
func refused(value []byte, at int, want string) *Error {
	if !utf8.Valid(value) {
		return &Error{Class: ClassNotUTF8, Expected: "UTF-8 text", Got: "invalid UTF-8 at byte " + strconv.Itoa(invalidUTF8At(value))}
	}
	trimmed := trimJSONSpace(value)
	if bytes.HasPrefix(trimmed, bom) {
		return &Error{Class: ClassMalformedJSON, Expected: "a JSON object", Got: "a byte-order mark (U+FEFF) before it"}
	}
	if tooDeep(trimmed) {
		return &Error{Class: ClassTooDeep, Expected: "nesting of at most " + strconv.Itoa(MaxDepth), Got: "more than " + strconv.Itoa(MaxDepth) + " levels"}
	}
	found := "the end of the input"
	if at < len(value) {
		c := value[at]
		found = "byte 0x" + strconv.FormatUint(uint64(c)|0x100, 16)[1:]
		if c >= 0x20 && c < utf8.RuneSelf {
			found = strconv.QuoteRune(rune(c))
		}
	}
	return &Error{Class: ClassMalformedJSON, Expected: "a JSON object", Got: "malformed JSON: " + found + " at byte " + strconv.Itoa(at) + " where " + want + " should be"}
}

var bom = []byte("\xEF\xBB\xBF")

func trimJSONSpace(b []byte) []byte {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return len(b)
}

// tooDeep reports whether arrays and objects in b nest deeper than MaxDepth.
// Most values hold fewer brackets than the bound, which a fast count proves
// without walking strings.
func tooDeep(b []byte) bool {
	if bytes.Count(b, []byte{'{'})+bytes.Count(b, []byte{'['}) <= MaxDepth {
		return false
	}
	depth, inString := 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString:
			if c == '\\' {
				i++
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			if depth > MaxDepth {
				return true
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return false
}
