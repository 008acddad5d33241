package schema

// The decoder as it was before the single-pass scanner: fastjson validates,
// parses and visits the value. It is kept, unchanged but for its names, as the
// oracle of FuzzDecodeMatchesFastjson.

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"
	"github.com/valyala/fastjson"
)

type fastjsonDecoder struct {
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

func newFastjsonDecoder(s *Schema) *fastjsonDecoder {
	d := &fastjsonDecoder{
		schema: s,
		vals:   make([]parquet.Value, len(s.fields)),
		seen:   make([]bool, len(s.fields)),
	}
	d.visit = d.visitField // bound once: a method value per call would allocate
	return d
}

func (d *fastjsonDecoder) Decode(value []byte, row parquet.Row) (parquet.Row, error) {
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

func (d *fastjsonDecoder) decodeObject(value []byte) *Error {
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
		return &Error{Class: ClassNotObject, Expected: "a JSON object", Got: describeFastjson(v, nil)}
	}
	clear(d.seen)
	d.err = nil
	d.keyPos = 0
	obj.Visit(d.visit)
	return d.err
}

func (d *fastjsonDecoder) visitField(key []byte, v *fastjson.Value) {
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

func (d *fastjsonDecoder) column(key []byte) (int, bool) {
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
func (d *fastjsonDecoder) convert(f *Field, v *fastjson.Value, dst *parquet.Value) *Error {
	val, err := d.value(f, v)
	*dst = val
	return err
}

func (d *fastjsonDecoder) value(f *Field, v *fastjson.Value) (parquet.Value, *Error) {
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

func (d *fastjsonDecoder) integer(f *Field, v *fastjson.Value) (parquet.Value, *Error) {
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

func (d *fastjsonDecoder) float(f *Field, v *fastjson.Value) (parquet.Value, *Error) {
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

func (d *fastjsonDecoder) decimal(f *Field, v *fastjson.Value, text []byte) (parquet.Value, *Error) {
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

func (d *fastjsonDecoder) timestamp(f *Field, v *fastjson.Value, ts int64, st timeStatus) (parquet.Value, *Error) {
	switch {
	case st == timeSyntax:
		return parquet.Value{}, d.fail(ClassTypeMismatch, f, v)
	case st == timeRange || ts < d.schema.minTime[f.Column] || ts > d.schema.maxTime[f.Column]:
		return parquet.Value{}, d.fail(ClassOutOfRange, f, v)
	}
	return parquet.Int64Value(ts), nil
}

func (d *fastjsonDecoder) fail(class string, f *Field, v *fastjson.Value) *Error {
	return &Error{Class: class, Field: f.Name, Expected: expected(f), Got: describeFastjson(v, d.num[:0])}
}

// describe renders a JSON value briefly for an error message.
func describeFastjson(v *fastjson.Value, scratch []byte) string {
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
