package schema

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"
	"github.com/valyala/fastjson"
)

// MaxDepth bounds the nesting of arrays and objects in a value (the top-level
// object is depth 1). Records are flat events; deeper nesting is refused before
// parsing so that a hostile "[[[[..." cannot cost more than one linear scan.
const MaxDepth = 64

// Decoder decodes JSON values into rows of one schema. It reuses its parser and
// scratch space across calls, so it is not safe for concurrent use: keep one per
// goroutine.
type Decoder struct {
	schema *Schema
	parser fastjson.Parser
	vals   []parquet.Value // per column: the value found in the current record
	seen   []bool          // per column: whether the current record had its key
	err    *Error          // first problem met while visiting the current record
	visit  func(key []byte, v *fastjson.Value)
	// keyCol predicts the column of the i-th key from the previous record:
	// producers emit keys in a stable order, and a byte comparison is cheaper
	// than hashing. -1 means no prediction.
	keyCol []int
	keyPos int
	num    []byte // scratch: the text of a JSON number
}

// NewDecoder returns a decoder for s.
func (s *Schema) NewDecoder() *Decoder {
	d := &Decoder{
		schema: s,
		vals:   make([]parquet.Value, len(s.fields)),
		seen:   make([]bool, len(s.fields)),
	}
	d.visit = d.visitField // bound once: a method value per call would allocate
	return d
}

var bom = []byte("\xEF\xBB\xBF")

// Decode decodes one JSON object into row[:0], appending one value per column in
// column order with its definition level, and returns the row.
//
// Aliasing contract: string (BYTE_ARRAY) values in the returned row point into
// the decoder's parse buffer. They stay valid until the next call to Decode on
// the same Decoder; a caller that keeps a row longer must Clone it (parquet-go
// writers copy rows in WriteRows, so writing the row before the next Decode is
// enough).
//
// A failure returns row[:0] and an *Error.
func (d *Decoder) Decode(value []byte, row parquet.Row) (parquet.Row, error) {
	row = row[:0]
	if err := d.decodeObject(value); err != nil {
		return row, err
	}
	for col := range d.vals {
		if !d.seen[col] {
			f := &d.schema.fields[col]
			if f.Required {
				return row, &Error{Class: ClassMissingRequired, Field: f.Name, Expected: expected(f), Got: "no key " + strconv.Quote(f.From)}
			}
			d.vals[col] = parquet.NullValue().Level(0, 0, col)
		}
	}
	return append(row, d.vals...), nil
}

func (d *Decoder) decodeObject(value []byte) *Error {
	trimmed := trimJSONSpace(value)
	if len(trimmed) == 0 {
		return &Error{Class: ClassEmpty, Expected: "a JSON object", Got: "an empty value"}
	}
	if !utf8.Valid(value) {
		return &Error{Class: ClassNotUTF8, Expected: "UTF-8 text", Got: "invalid UTF-8 at byte " + strconv.Itoa(invalidUTF8At(value))}
	}
	if bytes.HasPrefix(trimmed, bom) {
		return &Error{Class: ClassMalformedJSON, Expected: "a JSON object", Got: "a byte-order mark (U+FEFF) before it"}
	}
	if tooDeep(trimmed) {
		return &Error{Class: ClassTooDeep, Expected: "nesting of at most " + strconv.Itoa(MaxDepth), Got: "more than " + strconv.Itoa(MaxDepth) + " levels"}
	}
	if err := fastjson.ValidateBytes(trimmed); err != nil {
		return &Error{Class: ClassMalformedJSON, Expected: "a JSON object", Got: err.Error()}
	}
	v, err := d.parser.ParseBytes(trimmed)
	if err != nil {
		return &Error{Class: ClassMalformedJSON, Expected: "a JSON object", Got: err.Error()}
	}
	obj, err := v.Object()
	if err != nil {
		return &Error{Class: ClassNotObject, Expected: "a JSON object", Got: describe(v, nil)}
	}
	clear(d.seen)
	d.err = nil
	d.keyPos = 0
	obj.Visit(d.visit)
	return d.err
}

func (d *Decoder) visitField(key []byte, v *fastjson.Value) {
	if d.err != nil {
		return
	}
	col, ok := d.column(key)
	if !ok {
		return
	}
	f := &d.schema.fields[col]
	if d.seen[col] {
		d.err = &Error{Class: ClassDuplicateKey, Field: f.Name, Expected: "key " + strconv.Quote(f.From) + " once", Got: "it twice"}
		return
	}
	d.seen[col] = true
	if v.Type() == fastjson.TypeNull {
		if f.Required {
			d.err = &Error{Class: ClassNullRequired, Field: f.Name, Expected: expected(f), Got: "null"}
			return
		}
		d.vals[col] = parquet.NullValue().Level(0, 0, col)
		return
	}
	val := &d.vals[col]
	if d.err = d.convert(f, v, val); d.err != nil {
		return
	}
	if !f.Required {
		val.SetDefinitionLevel(1)
	}
	val.SetColumnIndex(col)
}

// maxPredictedKeys bounds the key-order memory of a decoder.
const maxPredictedKeys = 256

func (d *Decoder) column(key []byte) (int, bool) {
	pos := d.keyPos
	d.keyPos++
	if pos < len(d.keyCol) {
		if c := d.keyCol[pos]; c >= 0 && string(key) == d.schema.fields[c].From {
			return c, true
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
	return col, ok
}

// convert writes v converted for f into dst, with zero levels.
func (d *Decoder) convert(f *Field, v *fastjson.Value, dst *parquet.Value) *Error {
	val, err := d.value(f, v)
	*dst = val
	return err
}

func (d *Decoder) value(f *Field, v *fastjson.Value) (parquet.Value, *Error) {
	typ := v.Type()
	switch f.Kind {
	case String:
		if typ == fastjson.TypeString {
			b, _ := v.StringBytes()
			return parquet.ByteArrayValue(b), nil
		}
	case Bool:
		switch typ {
		case fastjson.TypeTrue:
			return parquet.BooleanValue(true), nil
		case fastjson.TypeFalse:
			return parquet.BooleanValue(false), nil
		}
	case Int32, Int64:
		if typ == fastjson.TypeNumber {
			return d.integer(f, v)
		}
	case Float, Double:
		if typ == fastjson.TypeNumber {
			return d.float(f, v)
		}
	case Decimal:
		switch typ {
		case fastjson.TypeNumber:
			d.num = v.MarshalTo(d.num[:0])
			return d.decimal(f, v, d.num)
		case fastjson.TypeString:
			b, _ := v.StringBytes()
			return d.decimal(f, v, b)
		}
	case Timestamp:
		switch typ {
		case fastjson.TypeString:
			b, _ := v.StringBytes()
			ts, st := parseRFC3339(b, f.Unit)
			return d.timestamp(f, v, ts, st)
		case fastjson.TypeNumber:
			d.num = v.MarshalTo(d.num[:0])
			ts, st := parseScaled(d.num, f.Unit.exp10()-f.Input.exp10(), true)
			return d.timestamp(f, v, ts, timeStatusOf(st))
		}
	case Date:
		if typ == fastjson.TypeString {
			b, _ := v.StringBytes()
			days, n, st := parseDate(b)
			if st == timeOK && n != len(b) {
				st = timeSyntax
			}
			switch st {
			case timeOK:
				return parquet.Int32Value(int32(days)), nil
			case timeRange:
				return parquet.Value{}, d.fail(ClassOutOfRange, f, v)
			}
		}
	}
	return parquet.Value{}, d.fail(ClassTypeMismatch, f, v)
}

func (d *Decoder) integer(f *Field, v *fastjson.Value) (parquet.Value, *Error) {
	d.num = v.MarshalTo(d.num[:0])
	n, st := parseScaled(d.num, 0, false)
	switch {
	case st == numFraction || st == numSyntax:
		return parquet.Value{}, d.fail(ClassTypeMismatch, f, v)
	case st == numOverflow:
		return parquet.Value{}, d.fail(ClassOutOfRange, f, v)
	case f.Kind == Int64:
		return parquet.Int64Value(n), nil
	case n < math.MinInt32 || n > math.MaxInt32:
		return parquet.Value{}, d.fail(ClassOutOfRange, f, v)
	}
	return parquet.Int32Value(int32(n)), nil
}

func (d *Decoder) float(f *Field, v *fastjson.Value) (parquet.Value, *Error) {
	d.num = v.MarshalTo(d.num[:0])
	x, ok := parseFloatExact(d.num)
	if !ok {
		// fastfloat (behind v.Float64) is not always correctly rounded;
		// strconv is, and does not keep (so here does not allocate) its argument.
		var err error
		x, err = strconv.ParseFloat(string(d.num), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return parquet.Value{}, d.fail(ClassTypeMismatch, f, v)
		}
	}
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return parquet.Value{}, d.fail(ClassOutOfRange, f, v)
	}
	if f.Kind == Double {
		return parquet.DoubleValue(x), nil
	}
	if math.Abs(x) > math.MaxFloat32 {
		return parquet.Value{}, d.fail(ClassOutOfRange, f, v)
	}
	return parquet.FloatValue(float32(x)), nil
}

func (d *Decoder) decimal(f *Field, v *fastjson.Value, text []byte) (parquet.Value, *Error) {
	n, st := parseScaled(text, f.Scale, false)
	switch st {
	case numSyntax:
		return parquet.Value{}, d.fail(ClassTypeMismatch, f, v)
	case numFraction, numOverflow:
		return parquet.Value{}, d.fail(ClassOutOfRange, f, v)
	}
	if limit := pow10[f.Precision]; n >= limit || n <= -limit {
		return parquet.Value{}, d.fail(ClassOutOfRange, f, v)
	}
	if f.Precision <= 9 {
		return parquet.Int32Value(int32(n)), nil
	}
	return parquet.Int64Value(n), nil
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

func (d *Decoder) timestamp(f *Field, v *fastjson.Value, ts int64, st timeStatus) (parquet.Value, *Error) {
	switch {
	case st == timeSyntax:
		return parquet.Value{}, d.fail(ClassTypeMismatch, f, v)
	case st == timeRange || ts < d.schema.minTime[f.Column] || ts > d.schema.maxTime[f.Column]:
		return parquet.Value{}, d.fail(ClassOutOfRange, f, v)
	}
	return parquet.Int64Value(ts), nil
}

func (d *Decoder) fail(class string, f *Field, v *fastjson.Value) *Error {
	return &Error{Class: class, Field: f.Name, Expected: expected(f), Got: describe(v, d.num[:0])}
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
	case Decimal:
		return "decimal(" + strconv.Itoa(f.Precision) + "," + strconv.Itoa(f.Scale) + ") (at most " +
			strconv.Itoa(f.Precision-f.Scale) + " integer and " + strconv.Itoa(f.Scale) + " fractional digits)"
	}
	return f.Kind.String()
}

// describe renders a JSON value briefly for an error message.
func describe(v *fastjson.Value, scratch []byte) string {
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return "string " + quoteSnippet(b)
	case fastjson.TypeNumber:
		return "number " + string(snippet(v.MarshalTo(scratch)))
	case fastjson.TypeObject:
		return "an object"
	case fastjson.TypeArray:
		return "an array"
	}
	return v.Type().String() // true, false, null
}

func snippet(b []byte) []byte {
	if len(b) > maxQuoted {
		return b[:maxQuoted]
	}
	return b
}

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
