// Package schema turns the configured field list into a Parquet schema and decodes
// JSON record values into rows of that schema.
//
// Decoding is the per-record hot path: a Decoder reads a value in one pass with
// its own strict scanner, looks fields up by their JSON key, and converts each
// value straight from its text into a parquet.Value, with no reflection, no
// parse tree and no allocation.
//
// Columns keep the order the fields are declared in (docs/schema.md).
//
// Fields nest: a struct is a Parquet group, a list the standard three-level
// LIST, a map a MAP with string keys, optional at every level. Nested values
// are read in the same single pass, straight into per-column values with
// their repetition and definition levels (nested.go), with no parse tree and
// no allocation per record. A field problem names the field by its path with
// list indexes and map keys: stops[2].zone, attrs["k"], payment.card.last4.
// A null list element or map value is null in the file unless the items or
// values are required; duplicate map keys are kept as given.
//
// Choices made where the input is ambiguous:
//   - Unknown JSON keys are ignored; a JSON key that maps to a schema field may
//     appear once only (a duplicate is ambiguous data: duplicate_key).
//   - A byte-order mark is malformed JSON (RFC 8259 forbids emitting one); it is
//     not stripped, so that the dead letter shows the producer's mistake.
//   - Integers accept any JSON number whose value is integral (1, 1.0, 1e3) and
//     reject 1.5. Decimals are parsed from the text, never through float64, and a
//     value with more fractional digits than the scale is rejected, not rounded.
//   - Strings accept JSON strings only: a number where a string is expected is a
//     type mismatch, because silently stringifying hides producer bugs.
//   - Decimals of precision 19 to 38 are fixed-length byte arrays; times take
//     "HH:MM:SS[.fraction]" strings, UUIDs their canonical text, and json
//     fields any JSON value, kept as its text (docs/schema.md).
//   - Timestamps accept RFC 3339 strings (fraction optional; offset or Z; digits
//     finer than the storage unit are truncated) or JSON numbers counted in the
//     field's Input unit. Dates accept "YYYY-MM-DD" strings only. Timestamps and
//     dates must fall in years 0001 to 9999 (and, for nanosecond timestamps,
//     within the int64 range: 1677 to 2262).
//   - Nesting deeper than MaxDepth anywhere in the value is refused (too_deep),
//     and every value is checked to be UTF-8 (not_utf8) and strictly
//     well-formed JSON (malformed_json), ignored keys included. These checks
//     concern the whole value and win over any field's problem; among them, the
//     order is not_utf8, then a byte-order mark, then too_deep, then syntax.
package schema

// Over 500 lines on purpose: one concern, building a Schema (kinds, units,
// fields, column layout) from the configured fields; decoding is elsewhere.

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/config/conf"
)

// Kind is the logical type of a field.
type Kind uint8

const (
	Int32 Kind = iota + 1
	Int64
	Float
	Double
	String
	Bool
	Timestamp
	Date
	Decimal
	// Time is a time of day; UUID a UUID in its 16 bytes; JSON any JSON value
	// kept as its text.
	Time
	UUID
	JSON
	// Struct, List and Map nest other fields: a Parquet group, a LIST (the
	// standard three-level layout) and a MAP with string keys.
	Struct
	List
	Map
)

var kindNames = [...]string{
	Int32: "int32", Int64: "int64", Float: "float", Double: "double", String: "string",
	Bool: "bool", Timestamp: "timestamp", Date: "date", Decimal: "decimal",
	Time: "time", UUID: "uuid", JSON: "json",
	Struct: "struct", List: "list", Map: "map",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "unknown"
}

// nested reports whether fields of this kind hold other fields.
func (k Kind) nested() bool { return k >= Struct }

func parseKind(s string) (Kind, bool) {
	for k, name := range kindNames {
		if name != "" && name == s {
			return Kind(k), true
		}
	}
	return 0, false
}

// TimeUnit is a power-of-ten fraction of a second.
type TimeUnit uint8

const (
	Seconds TimeUnit = iota + 1
	Millis
	Micros
	Nanos
)

// Default units when the configuration leaves them empty: microseconds are what
// Spark, Athena and DuckDB read natively, and producers usually stamp events with
// epoch milliseconds (JavaScript's Date.now(), Java's System.currentTimeMillis()).
const (
	DefaultUnit  = Micros
	DefaultInput = Millis
)

var unitNames = [...]string{Seconds: "seconds", Millis: "millis", Micros: "micros", Nanos: "nanos"}

func (u TimeUnit) String() string {
	if int(u) < len(unitNames) && unitNames[u] != "" {
		return unitNames[u]
	}
	return "unknown"
}

// exp10 is the number of decimal digits of a second the unit counts.
func (u TimeUnit) exp10() int { return 3 * (int(u) - 1) }

// PerSecond is how many units make one second.
func (u TimeUnit) PerSecond() int64 { return pow10[u.exp10()] }

func parseUnit(s string, allowed ...TimeUnit) (TimeUnit, bool) {
	for _, u := range allowed {
		if u.String() == s {
			return u, true
		}
	}
	return 0, false
}

// Field is one field of the schema: a column, or a struct, list or map
// holding other fields.
type Field struct {
	Name string // column name
	From string // JSON key
	// Path is the dotted path from the top level (payment.card.last4); the
	// element of a list and the value of a map add nothing to it.
	Path string
	Kind Kind
	// Column is the index of the field's leaf column in Parquet rows; for a
	// struct, list or map, its first leaf column. Columns keep the declared
	// order, depth first.
	Column   int
	Required bool
	// Unit is the storage unit of a timestamp; Input is the unit a JSON number
	// for this timestamp counts in.
	Unit, Input TimeUnit
	// Precision and Scale of a decimal. Precision <= 9 is stored as INT32,
	// up to 18 as INT64, as the Parquet specification recommends, and up to
	// 38 as a FIXED_LEN_BYTE_ARRAY of the fewest bytes that hold it.
	Precision, Scale int
	// Fields are a struct's fields; Elem is a list's element or a map's value
	// (a map's key is the string column at Column, the value's columns follow).
	Fields []Field
	Elem   *Field

	size   int            // bytes of a wide decimal
	end    int            // one past the last leaf column
	def    int            // definition level of the field's values when present
	rep    int            // repeated nodes among the field and its ancestors
	byKey  map[string]int // struct: JSON key -> index in Fields
	seenAt int            // struct: where its fields' key flags start in Decoder.fseen
	inList bool           // under a list or map: not addressable by path
	// colPath is the Parquet path of the field (with a list's "list",
	// "element" and a map's "key_value", "value" groups).
	colPath []string
}

// Schema is the validated field list and the Parquet schema built from it.
type Schema struct {
	parquet  *parquet.Schema
	fields   []Field // top-level fields, in declared order
	flat     bool    // no nested fields: field i is column i
	columns  int
	seenSize int // key flags the structs need, Field.seenAt
	// repeated lists the leaf columns under a list or map, which take any
	// number of values per row; the others take exactly one.
	repeated   []int
	isRepeated []bool
	// runs cuts the columns into what a row is assembled from: a run of
	// columns that take one value each, copied from Decoder.vals in one
	// append, or a single repeated column, copied from Decoder.cols.
	runs    []colRun
	byName  map[string]int
	byKey   map[string]int // JSON key -> index in fields
	minTime []int64        // per column: smallest accepted timestamp, in the field's unit
	maxTime []int64
}

// colRun is the columns from..to-1, all repeated (then exactly one) or none.
type colRun struct {
	from, to int
	repeated bool
}

// MaxDecimalPrecision is the largest precision a decimal can have: 38 digits,
// what Spark, Athena, DuckDB and Avro's usual 16-byte decimals hold.
const MaxDecimalPrecision = 38

// maxInt64Precision is the largest precision an INT64 decimal holds.
const maxInt64Precision = 18

// New validates fields and builds their Parquet schema. It reports every problem
// it finds, not only the first.
func New(fields []conf.Field) (*Schema, error) {
	if len(fields) == 0 {
		return nil, errors.New("schema: no fields")
	}
	parsed, group, errs := newFields(fields, nil, "", "schema field ")
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	ps := parquet.NewSchema("sinkd", newOrdered(group))
	s := &Schema{
		parquet: ps,
		fields:  parsed,
		flat:    true,
		byName:  make(map[string]int, len(parsed)),
		byKey:   make(map[string]int, len(parsed)),
	}
	col := 0
	for i := range s.fields {
		f := &s.fields[i]
		s.byName[f.Name] = i
		s.byKey[f.From] = i
		s.flat = s.flat && !f.Kind.nested()
		col = layout(f, col, 0, 0, false)
	}
	s.columns = col
	if n := len(ps.Columns()); n != col {
		return nil, fmt.Errorf("schema: %d leaf columns laid out, the Parquet schema has %d", col, n)
	}
	s.minTime, s.maxTime = make([]int64, col), make([]int64, col)
	s.isRepeated = make([]bool, col)
	walk(s.fields, func(f *Field) {
		if f.Kind == Map || (f.inList && !f.Kind.nested()) {
			s.isRepeated[f.Column] = true // a map's key column, or a leaf in a list
		}
	})
	for c, r := range s.isRepeated {
		switch n := len(s.runs); {
		case r:
			s.repeated = append(s.repeated, c)
			s.runs = append(s.runs, colRun{from: c, to: c + 1, repeated: true})
		case n > 0 && !s.runs[n-1].repeated:
			s.runs[n-1].to = c + 1
		default:
			s.runs = append(s.runs, colRun{from: c, to: c + 1})
		}
	}
	walk(s.fields, func(f *Field) {
		if f.Kind == Struct {
			f.seenAt = s.seenSize
			s.seenSize += len(f.Fields)
		}
	})
	var errs2 []error
	walk(s.fields, func(f *Field) {
		leaf, ok := ps.Lookup(columnPath(f)...)
		if !f.Kind.nested() && (!ok || leaf.ColumnIndex != f.Column) {
			errs2 = append(errs2, fmt.Errorf("schema: column %q is %d in the built Parquet schema, %d laid out", f.Path, leaf.ColumnIndex, f.Column))
		}
		if f.Kind == Timestamp {
			s.minTime[f.Column], s.maxTime[f.Column] = timestampRange(f.Unit)
		}
	})
	if len(errs2) > 0 {
		return nil, errors.Join(errs2...)
	}
	return s, nil
}

// newFields parses the fields of the top level or of a struct.
func newFields(fields []conf.Field, colPath []string, prefix, what string) ([]Field, []parquet.Field, []error) {
	var errs []error
	group := make([]parquet.Field, 0, len(fields))
	parsed := make([]Field, 0, len(fields))
	names := make(map[string]bool, len(fields))
	keys := make(map[string]string, len(fields))
	for i, cf := range fields {
		f, node, err := newField(cf, colPath, prefix)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s%d (%q): %w", what, i+1, prefix+cf.Name, err))
			continue
		}
		if names[f.Name] {
			errs = append(errs, fmt.Errorf("%s%d: duplicate name %q", what, i+1, f.Path))
			continue
		}
		if other, dup := keys[f.From]; dup {
			errs = append(errs, fmt.Errorf("%s%d (%q): JSON key %q is already read by field %q", what, i+1, f.Path, f.From, other))
			continue
		}
		keys[f.From] = f.Name
		names[f.Name] = true
		group = append(group, namedNode{Node: node, name: f.Name})
		parsed = append(parsed, f)
	}
	return parsed, group, errs
}

// layout assigns leaf columns depth first from col, and the levels: def and
// rep are the parent's.
func layout(f *Field, col, def, rep int, inList bool) int {
	f.Column, f.inList = col, inList
	if !f.Required {
		def++
	}
	f.def, f.rep = def, rep
	switch f.Kind {
	case Struct:
		for i := range f.Fields {
			col = layout(&f.Fields[i], col, def, rep, inList)
		}
	case List:
		// The repeated group adds a definition and a repetition level.
		col = layout(f.Elem, col, def+1, rep+1, true)
	case Map:
		col = layout(f.Elem, col+1, def+1, rep+1, true) // after the key column
	default:
		col++
	}
	f.end = col
	return col
}

// columnPath is the Parquet path of a leaf field's column.
func columnPath(f *Field) []string { return f.colPath }

// walk calls fn on every field of the tree, parents first.
func walk(fields []Field, fn func(*Field)) {
	for i := range fields {
		walkOne(&fields[i], fn)
	}
}

func walkOne(f *Field, fn func(*Field)) {
	fn(f)
	walk(f.Fields, fn)
	if f.Elem != nil {
		walkOne(f.Elem, fn)
	}
}

// newField parses one field; colPath is its parent's Parquet path, prefix
// its parent's dotted path (with the dot).
func newField(cf conf.Field, colPath []string, prefix string) (Field, parquet.Node, error) {
	f := Field{Name: strings.TrimSpace(cf.Name), From: cf.From, Required: cf.Required}
	if f.Name == "" {
		return f, nil, errors.New("empty name")
	}
	if f.From == "" {
		f.From = f.Name
	}
	f.Path = prefix + f.Name
	f.colPath = append(slices.Clip(colPath), f.Name)
	node, err := f.build(cf)
	if err != nil {
		return f, nil, err
	}
	if !f.Required {
		node = parquet.Optional(node)
	}
	return f, node, nil
}

// newElem parses a list's element or a map's value, which has no name of its
// own: it takes its container's path.
func newElem(cf *conf.Field, colPath []string, path string) (*Field, parquet.Node, error) {
	e := &Field{Name: "element", Path: path, Required: cf.Required, colPath: colPath}
	node, err := e.build(*cf)
	if err != nil {
		return nil, nil, err
	}
	if !e.Required {
		node = parquet.Optional(node)
	}
	return e, node, nil
}

// build sets f's type from cf and returns its Parquet node, not yet made
// optional.
func (f *Field) build(cf conf.Field) (parquet.Node, error) {
	kind, ok := parseKind(cf.Type)
	if !ok {
		return nil, fmt.Errorf("unknown type %q (want int32, int64, float, double, string, bool, timestamp, date, time, decimal, uuid, json, struct, list or map)", cf.Type)
	}
	f.Kind = kind

	var node parquet.Node
	switch kind {
	case Int32:
		node = parquet.Leaf(parquet.Int32Type)
	case Int64:
		node = parquet.Leaf(parquet.Int64Type)
	case Float:
		node = parquet.Leaf(parquet.FloatType)
	case Double:
		node = parquet.Leaf(parquet.DoubleType)
	case String:
		node = parquet.String()
	case Bool:
		node = parquet.Leaf(parquet.BooleanType)
	case Date:
		node = parquet.Date()
	case Timestamp:
		f.Unit, f.Input = DefaultUnit, DefaultInput
		if cf.Unit != "" {
			if f.Unit, ok = parseUnit(cf.Unit, Millis, Micros, Nanos); !ok {
				return nil, fmt.Errorf("unknown timestamp unit %q (want millis, micros or nanos)", cf.Unit)
			}
		}
		if cf.Input != "" {
			if f.Input, ok = parseUnit(cf.Input, Seconds, Millis, Micros); !ok {
				return nil, fmt.Errorf("unknown timestamp input %q (want seconds, millis or micros)", cf.Input)
			}
		}
		unit := parquet.Microsecond
		switch f.Unit {
		case Millis:
			unit = parquet.Millisecond
		case Nanos:
			unit = parquet.Nanosecond
		}
		node = parquet.Timestamp(unit)
	case Decimal:
		f.Precision, f.Scale = cf.Precision, cf.Scale
		if f.Precision < 1 || f.Precision > MaxDecimalPrecision {
			return nil, fmt.Errorf("decimal precision %d out of range 1..%d", f.Precision, MaxDecimalPrecision)
		}
		if f.Scale < 0 || f.Scale > f.Precision {
			return nil, fmt.Errorf("decimal scale %d out of range 0..%d (the precision)", f.Scale, f.Precision)
		}
		physical := parquet.Int64Type
		switch {
		case f.Precision <= 9:
			physical = parquet.Int32Type
		case f.Precision > maxInt64Precision:
			f.size = decimalBytes(f.Precision)
			physical = parquet.FixedLenByteArrayType(f.size)
		}
		node = parquet.Decimal(f.Scale, f.Precision, physical)
	case Time:
		f.Unit = DefaultUnit
		if cf.Unit != "" {
			if f.Unit, ok = parseUnit(cf.Unit, Millis, Micros, Nanos); !ok {
				return nil, fmt.Errorf("unknown time unit %q (want millis, micros or nanos)", cf.Unit)
			}
		}
		unit := parquet.Microsecond
		switch f.Unit {
		case Millis:
			unit = parquet.Millisecond
		case Nanos:
			unit = parquet.Nanosecond
		}
		// A time of day in an event is wall-clock time: not adjusted to UTC,
		// which readers show as a plain TIME.
		node = parquet.TimeAdjusted(unit, false)
	case UUID:
		node = parquet.UUID()
	case JSON:
		node = parquet.JSON()
	case Struct:
		if len(cf.Fields) == 0 {
			return nil, errors.New("a struct needs at least one field")
		}
		fields, group, errs := newFields(cf.Fields, f.colPath, f.Path+".", "field ")
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		f.Fields = fields
		f.byKey = make(map[string]int, len(fields))
		for i := range fields {
			f.byKey[fields[i].From] = i
		}
		node = newOrdered(group)
	case List:
		if cf.Items == nil {
			return nil, errors.New("a list needs items")
		}
		elem, en, err := newElem(cf.Items, append(slices.Clip(f.colPath), "list", "element"), f.Path)
		if err != nil {
			return nil, fmt.Errorf("items: %w", err)
		}
		f.Elem = elem
		node = parquet.List(en)
	case Map:
		if cf.Values == nil {
			return nil, errors.New("a map needs values")
		}
		elem, en, err := newElem(cf.Values, append(slices.Clip(f.colPath), "key_value", "value"), f.Path)
		if err != nil {
			return nil, fmt.Errorf("values: %w", err)
		}
		f.Elem = elem
		node = parquet.Map(parquet.String(), en)
	}
	if kind != Struct && len(cf.Fields) > 0 {
		return nil, errors.New("fields apply to struct fields only")
	}
	if kind != List && cf.Items != nil {
		return nil, errors.New("items apply to list fields only")
	}
	if kind != Map && cf.Values != nil {
		return nil, errors.New("values apply to map fields only")
	}
	return node, nil
}

// Parquet is the schema that writers use.
func (s *Schema) Parquet() *parquet.Schema { return s.parquet }

// Fields returns the top-level fields in declared order. The slice must not be
// modified.
func (s *Schema) Fields() []Field { return s.fields }

// Columns is the number of leaf columns.
func (s *Schema) Columns() int { return s.columns }

// Lookup finds a field by its dotted path (trip_id, payment.card.last4). Fields
// inside lists and maps have no path: a record holds any number of them.
func (s *Schema) Lookup(path string) (Field, bool) {
	name, rest, nested := strings.Cut(path, ".")
	i, ok := s.byName[name]
	if !ok {
		return Field{}, false
	}
	f := &s.fields[i]
	for nested {
		if f.Kind != Struct {
			return Field{}, false
		}
		name, rest, nested = strings.Cut(rest, ".")
		next := -1
		for j := range f.Fields {
			if f.Fields[j].Name == name {
				next = j
			}
		}
		if next < 0 {
			return Field{}, false
		}
		f = &f.Fields[next]
	}
	return *f, true
}

// Value returns the value of the leaf column col in a row the decoder built,
// for a column outside lists and maps (one that Lookup finds). Columns before
// col may hold several values each, never none, so the value sits at col or
// after it.
func Value(row parquet.Row, col int) (parquet.Value, bool) {
	for i := col; i < len(row); i++ {
		if row[i].Column() == col {
			return row[i], true
		}
	}
	return parquet.Value{}, false
}
