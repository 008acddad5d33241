// Over 500 lines on purpose: one concern, the JSON decoder's hot path (scan a
// value, convert each field straight into a parquet.Value); splitting it would
// scatter one pass over files.

package schema

import (
	"bytes"
	"errors"
	"math"
	"strconv"

	"github.com/parquet-go/parquet-go"
)

// MaxDepth bounds the nesting of arrays and objects in a value (the top-level
// object is depth 1). Records are flat events; the scanner refuses deeper
// nesting as it meets it, so that a hostile "[[[[..." costs one linear scan and
// a bounded stack.
const MaxDepth = 64

// Decoder decodes JSON values into rows of one schema. It reuses its scratch
// space across calls, so it is not safe for concurrent use: keep one per
// goroutine.
//
// A value is read in one pass: the scanner validates the whole value strictly
// (RFC 8259, UTF-8, MaxDepth), converts the values of keys that map to fields
// straight from their text, and skips the values of other keys.
type Decoder struct {
	schema *Schema
	// vals holds, per column outside lists and maps, the value the current
	// record gives it: top-level scalars and the leaves of structs alike, so
	// that a row copies runs of such columns in one append.
	vals []parquet.Value
	seen []bool // per top-level field: whether the current record had its key
	// cols holds, per leaf column under a list or map, the values the
	// current record gives it, in order; fseen the key flags of the struct
	// being read at each level (Field.seenAt).
	cols  [][]parquet.Value
	fseen []bool
	stack []frame // the nested fields being read, for error paths
	err   *Error  // first field problem met in the current record
	// keyCol predicts the column of the i-th key from the previous record:
	// producers emit keys in a stable order, and a byte comparison is cheaper
	// than hashing. -1 means no prediction.
	keyCol []int
	keyPos int
	strs   []byte // the current record's string values, which rows point into
	text   []byte // scratch: an unescaped key, or a string read as a number or time
}

// NewDecoder returns a decoder for s.
func (s *Schema) NewDecoder() *Decoder {
	d := &Decoder{
		schema: s,
		vals:   make([]parquet.Value, s.columns),
		seen:   make([]bool, len(s.fields)),
	}
	if !s.flat {
		d.cols = make([][]parquet.Value, s.columns)
		d.fseen = make([]bool, s.seenSize)
	}
	return d
}

// newNestedDecoder is NewDecoder with the nested columns always allocated:
// the Avro and Protobuf decoders fill every field through them, even in a
// flat schema.
func (s *Schema) newNestedDecoder() *Decoder {
	d := s.NewDecoder()
	if d.cols == nil {
		d.cols = make([][]parquet.Value, s.columns)
		d.fseen = make([]bool, s.seenSize)
	}
	return d
}

// Decode decodes one JSON object into row[:0], appending one value per column in
// column order with its definition level, and returns the row.
//
// Aliasing contract: string (BYTE_ARRAY) values in the returned row point into
// the decoder's own buffer, never into value. They stay valid until the next
// call to Decode on the same Decoder; a caller that keeps a row longer must
// Clone it (parquet-go writers copy rows in WriteRows, so writing the row before
// the next Decode is enough).
//
// A failure returns row[:0] and an *Error.
func (d *Decoder) Decode(value []byte, row parquet.Row) (parquet.Row, error) {
	row = row[:0]
	if err := d.decodeObject(value); err != nil {
		return row, err
	}
	s := d.schema
	for i, seen := range d.seen {
		if !seen {
			f := &s.fields[i]
			if f.Required {
				return row, &Error{Class: ClassMissingRequired, Field: f.Name, Expected: expected(f), Got: "no key " + strconv.Quote(f.From)}
			}
			if f.Kind.nested() {
				d.null(f, 0)
			} else {
				d.vals[f.Column] = nullValue(f.Column)
			}
		}
	}
	if s.flat {
		return append(row, d.vals...), nil
	}
	return d.appendRuns(row), nil
}

// decodeObject scans value, filling d.vals and d.seen. A problem with the value
// as a whole (encoding, syntax, depth, not an object) wins over a problem with
// a field, even one met earlier in the scan; among field problems the first
// one in key order wins.
func (d *Decoder) decodeObject(value []byte) *Error {
	b := value
	i := skipSpace(b, 0)
	if i == len(b) {
		return &Error{Class: ClassEmpty, Expected: "a JSON object", Got: "an empty value"}
	}
	if b[i] != '{' {
		return notObject(value, i)
	}
	clear(d.seen)
	d.err = nil
	d.keyPos = 0
	d.strs = d.strs[:0]
	if !d.schema.flat {
		for _, c := range d.schema.repeated {
			d.cols[c] = d.cols[c][:0]
		}
		d.stack = d.stack[:0]
	}

	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			if i >= len(b) || b[i] != '"' {
				return refused(value, i, wantKey)
			}
			keyEnd, escaped, want := scanString(b, i+1)
			if want != "" {
				return refused(value, keyEnd, want)
			}
			key := b[i+1 : keyEnd]
			i = skipSpace(b, keyEnd+1)
			if i >= len(b) || b[i] != ':' {
				return refused(value, i, wantColon)
			}
			i = skipSpace(b, i+1)
			col := -1
			if d.err == nil {
				if escaped {
					d.text = appendUnescaped(d.text[:0], key)
					key = d.text
				}
				col = d.column(key)
			}
			if col >= 0 {
				i, want = d.field(b, i, col)
			} else {
				i, want = skipValue(b, i, 1)
			}
			if want != "" {
				return refused(value, i, want)
			}
			// The separator is read inline, not through nextMember: a call
			// per member costs more than the check itself on the hot path.
			i = skipSpace(b, i)
			if i < len(b) && b[i] == ',' {
				i = skipSpace(b, i+1)
				continue
			}
			if i < len(b) && b[i] == '}' {
				i++
				break
			}
			return refused(value, i, wantObjectNext)
		}
	}
	if i = skipSpace(b, i); i != len(b) {
		return refused(value, i, wantEnd)
	}
	return d.err
}

// notObject reports a value that does not start with '{' at start: malformed
// if it is not JSON, otherwise not an object.
func notObject(value []byte, start int) *Error {
	end, want := skipValue(value, start, 0)
	if want == "" {
		if end = skipSpace(value, end); end != len(value) {
			want = wantEnd
		}
	}
	if want != "" {
		return refused(value, end, want)
	}
	return &Error{Class: ClassNotObject, Expected: "a JSON object", Got: describe(trimJSONSpace(value))}
}

// field reads the value at i for top-level field idx and records it, or the
// first field problem of the record in d.err. It returns where the value ends.
func (d *Decoder) field(b []byte, i, idx int) (int, string) {
	f := &d.schema.fields[idx]
	if f.Kind.nested() {
		if d.seen[idx] {
			d.err = &Error{Class: ClassDuplicateKey, Field: f.Name, Expected: "key " + strconv.Quote(f.From) + " once", Got: "it twice"}
			return skipValue(b, i, 1)
		}
		d.seen[idx] = true
		return d.value(f, b, i, 1, 0)
	}
	start := i
	var end int
	var escaped bool
	var want string
	if i < len(b) && b[i] == '"' {
		end, escaped, want = scanString(b, i+1)
		end++ // past the closing quote
	} else {
		end, want = skipValue(b, i, 1)
	}
	if want != "" {
		return end, want
	}
	raw := b[start:end]
	if d.seen[idx] {
		d.err = &Error{Class: ClassDuplicateKey, Field: f.Name, Expected: "key " + strconv.Quote(f.From) + " once", Got: "it twice"}
		return end, ""
	}
	d.seen[idx] = true
	if raw[0] == 'n' {
		if f.Required {
			d.err = &Error{Class: ClassNullRequired, Field: f.Name, Expected: expected(f), Got: "null"}
			return end, ""
		}
		d.vals[f.Column] = nullValue(f.Column)
		return end, ""
	}
	val := &d.vals[f.Column]
	if d.err = d.convert(f, raw, escaped, val); d.err != nil {
		return end, ""
	}
	if !f.Required {
		val.SetDefinitionLevel(1)
	}
	val.SetColumnIndex(f.Column)
	return end, ""
}

// maxPredictedKeys bounds the key-order memory of a decoder.
const maxPredictedKeys = 256

// column returns the column that key maps to, or -1.
func (d *Decoder) column(key []byte) int {
	pos := d.keyPos
	d.keyPos++
	if pos < len(d.keyCol) {
		if c := d.keyCol[pos]; c >= 0 && string(key) == d.schema.fields[c].From {
			return c
		}
	}
	col, ok := d.schema.byKey[string(key)] // no allocation: the compiler special-cases map lookups
	if !ok {
		col = -1
	}
	switch {
	case pos < len(d.keyCol):
		d.keyCol[pos] = col
	case pos < maxPredictedKeys:
		d.keyCol = append(d.keyCol, col)
	}
	return col
}

// jsonType is the type of a scanned value, told by its first byte.
type jsonType uint8

const (
	jsonNumber jsonType = iota
	jsonString
	jsonObject
	jsonArray
	jsonTrue
	jsonFalse
	jsonNull
)

func typeOf(raw []byte) jsonType {
	switch raw[0] {
	case '"':
		return jsonString
	case '{':
		return jsonObject
	case '[':
		return jsonArray
	case 't':
		return jsonTrue
	case 'f':
		return jsonFalse
	case 'n':
		return jsonNull
	}
	return jsonNumber
}

// body returns the contents of the scanned string raw, unescaped into d.text
// when it holds escapes.
func (d *Decoder) body(raw []byte, escaped bool) []byte {
	b := raw[1 : len(raw)-1]
	if escaped {
		d.text = appendUnescaped(d.text[:0], b)
		return d.text
	}
	return b
}

// convert writes the scanned, non-null value raw converted for f into dst,
// with zero levels.
func (d *Decoder) convert(f *Field, raw []byte, escaped bool, dst *parquet.Value) *Error {
	typ := typeOf(raw)
	switch f.Kind {
	case String:
		if typ == jsonString {
			start := len(d.strs)
			if b := raw[1 : len(raw)-1]; escaped {
				d.strs = appendUnescaped(d.strs, b)
			} else {
				d.strs = append(d.strs, b...)
			}
			*dst = parquet.ByteArrayValue(d.strs[start:])
			return nil
		}
	case Bool:
		switch typ {
		case jsonTrue:
			*dst = parquet.BooleanValue(true)
			return nil
		case jsonFalse:
			*dst = parquet.BooleanValue(false)
			return nil
		}
	case Int32, Int64:
		if typ == jsonNumber {
			return integer(f, raw, dst)
		}
	case Float, Double:
		if typ == jsonNumber {
			return float(f, raw, dst)
		}
	case Decimal:
		text := raw
		switch typ {
		case jsonString:
			text = d.body(raw, escaped)
		case jsonNumber:
		default:
			return fail(ClassTypeMismatch, f, raw)
		}
		if f.size > 0 {
			return d.wideDecimal(f, raw, text, dst)
		}
		return decimal(f, raw, text, dst)
	case Time:
		if typ == jsonString {
			t, st := parseTimeOfDay(d.body(raw, escaped), f.Unit)
			switch {
			case st == timeRange:
				return fail(ClassOutOfRange, f, raw)
			case st != timeOK:
			case f.Unit == Millis:
				*dst = parquet.Int32Value(int32(t))
				return nil
			default:
				*dst = parquet.Int64Value(t)
				return nil
			}
		}
	case UUID:
		if typ == jsonString {
			start := len(d.strs)
			var ok bool
			if d.strs, ok = appendUUID(d.strs, d.body(raw, escaped)); ok {
				*dst = parquet.FixedLenByteArrayValue(d.strs[start:])
				return nil
			}
		}
	case JSON:
		// The value's text as given: the scanner has checked it is JSON.
		start := len(d.strs)
		d.strs = append(d.strs, raw...)
		*dst = parquet.ByteArrayValue(d.strs[start:])
		return nil
	case Timestamp:
		switch typ {
		case jsonString:
			ts, st := parseRFC3339(d.body(raw, escaped), f.Unit)
			return d.timestamp(f, raw, ts, st, dst)
		case jsonNumber:
			ts, st := parseScaled(raw, f.Unit.exp10()-f.Input.exp10(), true)
			return d.timestamp(f, raw, ts, timeStatusOf(st), dst)
		}
	case Date:
		if typ == jsonString {
			b := d.body(raw, escaped)
			days, n, st := parseDate(b)
			if st == timeOK && n != len(b) {
				st = timeSyntax
			}
			switch st {
			case timeOK:
				*dst = parquet.Int32Value(int32(days))
				return nil
			case timeRange:
				return fail(ClassOutOfRange, f, raw)
			}
		}
	}
	return fail(ClassTypeMismatch, f, raw)
}

func integer(f *Field, raw []byte, dst *parquet.Value) *Error {
	n, st := parseScaled(raw, 0, false)
	switch {
	case st == numFraction || st == numSyntax:
		return fail(ClassTypeMismatch, f, raw)
	case st == numOverflow:
		return fail(ClassOutOfRange, f, raw)
	case f.Kind == Int64:
		*dst = parquet.Int64Value(n)
		return nil
	case n < math.MinInt32 || n > math.MaxInt32:
		return fail(ClassOutOfRange, f, raw)
	}
	*dst = parquet.Int32Value(int32(n))
	return nil
}

func float(f *Field, raw []byte, dst *parquet.Value) *Error {
	x, ok := parseFloatExact(raw)
	if !ok {
		// strconv is correctly rounded, and does not keep (so here does not
		// allocate) its argument.
		var err error
		x, err = strconv.ParseFloat(string(raw), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return fail(ClassTypeMismatch, f, raw)
		}
	}
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return fail(ClassOutOfRange, f, raw)
	}
	if f.Kind == Double {
		*dst = parquet.DoubleValue(x)
		return nil
	}
	if math.Abs(x) > math.MaxFloat32 {
		return fail(ClassOutOfRange, f, raw)
	}
	*dst = parquet.FloatValue(float32(x))
	return nil
}

// decimal converts text, the number raw or the body of the string raw.
func decimal(f *Field, raw, text []byte, dst *parquet.Value) *Error {
	n, st := parseScaled(text, f.Scale, false)
	switch st {
	case numSyntax:
		return fail(ClassTypeMismatch, f, raw)
	case numFraction, numOverflow:
		return fail(ClassOutOfRange, f, raw)
	}
	if limit := pow10[f.Precision]; n >= limit || n <= -limit {
		return fail(ClassOutOfRange, f, raw)
	}
	if f.Precision <= 9 {
		*dst = parquet.Int32Value(int32(n))
		return nil
	}
	*dst = parquet.Int64Value(n)
	return nil
}

// wideDecimal converts text, the number raw or the body of the string raw, for
// a decimal stored in f.size bytes.
func (d *Decoder) wideDecimal(f *Field, raw, text []byte, dst *parquet.Value) *Error {
	hi, lo, neg, st := parseScaled128(text, f.Scale)
	switch st {
	case numSyntax:
		return fail(ClassTypeMismatch, f, raw)
	case numFraction, numOverflow:
		return fail(ClassOutOfRange, f, raw)
	}
	if limit := pow10x128[f.Precision]; !less128(hi, lo, limit[0], limit[1]) {
		return fail(ClassOutOfRange, f, raw)
	}
	start := len(d.strs)
	d.strs = appendDecimal128(d.strs, hi, lo, neg, f.size)
	*dst = parquet.FixedLenByteArrayValue(d.strs[start:])
	return nil
}

func timeStatusOf(st numStatus) timeStatus {
	switch st {
	case numOK:
		return timeOK
	case numOverflow:
		return timeRange
	}
	return timeSyntax
}

func (d *Decoder) timestamp(f *Field, raw []byte, ts int64, st timeStatus, dst *parquet.Value) *Error {
	switch {
	case st == timeSyntax:
		return fail(ClassTypeMismatch, f, raw)
	case st == timeRange || ts < d.schema.minTime[f.Column] || ts > d.schema.maxTime[f.Column]:
		return fail(ClassOutOfRange, f, raw)
	}
	*dst = parquet.Int64Value(ts)
	return nil
}

func fail(class string, f *Field, raw []byte) *Error {
	return &Error{Class: class, Field: f.Name, Expected: expected(f), Got: describe(raw)}
}

// expected describes what a field accepts, for error messages.
func expected(f *Field) string {
	switch f.Kind {
	case Int32:
		return "int32 (an integer in [-2147483648, 2147483647])"
	case Int64:
		return "int64 (an integer)"
	case Float, Double:
		return f.Kind.String() + " (a finite number)"
	case String:
		return "string"
	case Bool:
		return "bool (true or false)"
	case Timestamp:
		return "timestamp (an RFC 3339 string or a number of " + f.Input.String() + ", in years 0001..9999)"
	case Date:
		return `date (a "YYYY-MM-DD" string in years 0001..9999)`
	case Time:
		return `time (an "HH:MM:SS[.fraction]" string)`
	case UUID:
		return `uuid (a "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" string)`
	case JSON:
		return "json (any JSON value)"
	case Decimal:
		return "decimal(" + strconv.Itoa(f.Precision) + "," + strconv.Itoa(f.Scale) + ") (at most " +
			strconv.Itoa(f.Precision-f.Scale) + " integer and " + strconv.Itoa(f.Scale) + " fractional digits)"
	}
	return f.Kind.String()
}

// describe renders the scanned value raw briefly for an error message.
func describe(raw []byte) string {
	switch typeOf(raw) {
	case jsonString:
		b := raw[1 : len(raw)-1]
		if bytes.IndexByte(b, '\\') >= 0 {
			b = appendUnescaped(nil, b)
		}
		return "string " + quoteSnippet(b)
	case jsonNumber:
		return "number " + string(snippet(raw))
	case jsonObject:
		return "an object"
	case jsonArray:
		return "an array"
	case jsonTrue:
		return "true"
	case jsonFalse:
		return "false"
	}
	return "null"
}

func snippet(b []byte) []byte {
	if len(b) > maxQuoted {
		return b[:maxQuoted]
	}
	return b
}

// nullValue is a null of column col. Value.Level is too large to inline, and
// its copies through the stack stall: the pointer setter costs next to
// nothing.
func nullValue(col int) parquet.Value {
	v := parquet.NullValue()
	v.SetColumnIndex(col)
	return v
}
