package schema

import (
	"strconv"
	"strings"
)

// Error classes: a small fixed set, safe to use as Prometheus label values.
const (
	ClassMalformedJSON   = "malformed_json"
	ClassNotUTF8         = "not_utf8"
	ClassEmpty           = "empty"
	ClassNotObject       = "not_object"
	ClassTypeMismatch    = "type_mismatch"
	ClassMissingRequired = "missing_required"
	ClassNullRequired    = "null_required"
	ClassOutOfRange      = "out_of_range"
	ClassDuplicateKey    = "duplicate_key"
	ClassTooDeep         = "too_deep"
)

// Error is why a value did not decode. Field is the column name, empty when the
// problem concerns the whole value.
type Error struct {
	Class    string
	Field    string
	Expected string
	Got      string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Field != "" {
		b.WriteString("field ")
		b.WriteString(strconv.Quote(e.Field))
		b.WriteString(": ")
	}
	b.WriteString("expected ")
	b.WriteString(e.Expected)
	b.WriteString(", got ")
	b.WriteString(e.Got)
	return b.String()
}

// maxQuoted bounds how much of an offending value goes into an error message, so
// that dead-letter metadata and logs stay small.
const maxQuoted = 64

// quoteSnippet quotes at most maxQuoted bytes of b, marking a cut.
func quoteSnippet(b []byte) string {
	if len(b) <= maxQuoted {
		return strconv.Quote(string(b))
	}
	return strconv.Quote(string(b[:maxQuoted])) + "..."
}
