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

import (
	"errors"
	"fmt"
	"strings"

	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/config"
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
)

var kindNames = [...]string{
	Int32: "int32", Int64: "int64", Float: "float", Double: "double", String: "string",
	Bool: "bool", Timestamp: "timestamp", Date: "date", Decimal: "decimal",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "unknown"
}

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

// Field is one column of the schema.
type Field struct {
	Name     string // column name
	From     string // JSON key
	Kind     Kind
	Column   int // index of the column in Parquet rows: fields keep their declared order
	Required bool
	// Unit is the storage unit of a timestamp; Input is the unit a JSON number
	// for this timestamp counts in.
	Unit, Input TimeUnit
	// Precision and Scale of a decimal. Precision <= 9 is stored as INT32,
	// larger as INT64, as the Parquet specification recommends.
	Precision, Scale int
}

// Schema is the validated field list and the Parquet schema built from it.
type Schema struct {
	parquet *parquet.Schema
	fields  []Field // in column order
	byName  map[string]int
	byKey   map[string]int // JSON key -> column
	minTime []int64        // per column: smallest accepted timestamp, in the field's unit
	maxTime []int64
}

// MaxDecimalPrecision is the largest precision an INT64 decimal can hold.
const MaxDecimalPrecision = 18

// New validates fields and builds their Parquet schema. It reports every problem
// it finds, not only the first.
func New(fields []config.Field) (*Schema, error) {
	if len(fields) == 0 {
		return nil, errors.New("schema: no fields")
	}
	var errs []error
	group := make([]parquet.Field, 0, len(fields))
	names := make(map[string]bool, len(fields))
	parsed := make([]Field, 0, len(fields))
	keys := make(map[string]string, len(fields))
	for i, cf := range fields {
		f, node, err := newField(cf)
		if err != nil {
			errs = append(errs, fmt.Errorf("schema field %d (%q): %w", i+1, cf.Name, err))
			continue
		}
		if names[f.Name] {
			errs = append(errs, fmt.Errorf("schema field %d: duplicate name %q", i+1, f.Name))
			continue
		}
		if other, dup := keys[f.From]; dup {
			errs = append(errs, fmt.Errorf("schema field %d (%q): JSON key %q is already read by field %q", i+1, f.Name, f.From, other))
			continue
		}
		keys[f.From] = f.Name
		names[f.Name] = true
		group = append(group, namedNode{Node: node, name: f.Name})
		parsed = append(parsed, f)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	ps := parquet.NewSchema("sinkd", newOrdered(group))
	s := &Schema{
		parquet: ps,
		fields:  make([]Field, len(parsed)),
		byName:  make(map[string]int, len(parsed)),
		byKey:   make(map[string]int, len(parsed)),
		minTime: make([]int64, len(parsed)),
		maxTime: make([]int64, len(parsed)),
	}
	for _, f := range parsed {
		leaf, ok := ps.Lookup(f.Name)
		if !ok || leaf.ColumnIndex < 0 || leaf.ColumnIndex >= len(parsed) {
			return nil, fmt.Errorf("schema: column %q missing from the built Parquet schema", f.Name)
		}
		f.Column = leaf.ColumnIndex
		s.fields[f.Column] = f
		s.byName[f.Name] = f.Column
		s.byKey[f.From] = f.Column
		if f.Kind == Timestamp {
			s.minTime[f.Column], s.maxTime[f.Column] = timestampRange(f.Unit)
		}
	}
	return s, nil
}

func newField(cf config.Field) (Field, parquet.Node, error) {
	f := Field{Name: strings.TrimSpace(cf.Name), From: cf.From, Required: cf.Required}
	if f.Name == "" {
		return f, nil, errors.New("empty name")
	}
	if f.From == "" {
		f.From = f.Name
	}
	kind, ok := parseKind(cf.Type)
	if !ok {
		return f, nil, fmt.Errorf("unknown type %q (want int32, int64, float, double, string, bool, timestamp, date or decimal)", cf.Type)
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
				return f, nil, fmt.Errorf("unknown timestamp unit %q (want millis, micros or nanos)", cf.Unit)
			}
		}
		if cf.Input != "" {
			if f.Input, ok = parseUnit(cf.Input, Seconds, Millis, Micros); !ok {
				return f, nil, fmt.Errorf("unknown timestamp input %q (want seconds, millis or micros)", cf.Input)
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
			return f, nil, fmt.Errorf("decimal precision %d out of range 1..%d", f.Precision, MaxDecimalPrecision)
		}
		if f.Scale < 0 || f.Scale > f.Precision {
			return f, nil, fmt.Errorf("decimal scale %d out of range 0..%d (the precision)", f.Scale, f.Precision)
		}
		physical := parquet.Int64Type
		if f.Precision <= 9 {
			physical = parquet.Int32Type
		}
		node = parquet.Decimal(f.Scale, f.Precision, physical)
	}
	if !f.Required {
		node = parquet.Optional(node)
	}
	return f, node, nil
}

// Parquet is the schema that writers use.
func (s *Schema) Parquet() *parquet.Schema { return s.parquet }

// Fields returns the fields in column order. The slice must not be modified.
func (s *Schema) Fields() []Field { return s.fields }

// Lookup finds a field by column name.
func (s *Schema) Lookup(name string) (Field, bool) {
	i, ok := s.byName[name]
	if !ok {
		return Field{}, false
	}
	return s.fields[i], true
}
