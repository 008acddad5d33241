// Package buckets computes where a decoded row goes: the bucket path of a
// Parquet destination (an S3 prefix such as "type=yellow/dt=2018-01-01"), and the
// index name and document id of an OpenSearch destination, from templates over
// payload fields and event time.
//
// Template syntax: literal text with placeholders
//
//	{field}              an int32, int64, string, bool or date field (dates as yyyy-MM-dd)
//	{field:%d}           an integer field; {field:%03d} zero-pads to a width of 3
//	{field:yyyy-MM-dd}   a timestamp or date field through a time pattern
//	{@time:yyyy/MM/dd}   the configured event time through a time pattern
//
// Time patterns use the Java letters yyyy, MM, dd, HH, mm and ss; any other
// character is literal, and text in single quotes is literal too ('T'; two
// single quotes make one). Timestamps render in the configured time zone (UTC by default);
// dates are calendar days and never shift.
//
// Hive escaping (Compile): string values are escaped for S3 keys and Hive
// partition discovery the way Hive does it: control characters, DEL and
// " # % ' * / : = ? \ [ ] ^ { } become %XX, so a value can never add a path
// level or a key=value pair; an empty string renders as
// __HIVE_DEFAULT_PARTITION__, Hive's name for a null partition. Non-ASCII UTF-8
// is kept as it is. Raw templates (CompileRaw, for OpenSearch index names and
// document ids) render values unescaped, and an empty string as nothing.
//
// A null or missing optional field used in a template is an error
// (missing_field) rather than a default bucket: the record goes to the dead
// letters, where it is visible, instead of into a partition nobody queries.
package buckets

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/schema"
)

// Error classes of rendering failures, safe as Prometheus label values.
const (
	ClassMissingField = "missing_field"
	ClassBadTime      = "bad_time"
)

// Error is why a row could not be assigned a bucket.
type Error struct {
	Class string
	Field string // the field, or "@time" for the event time
	Msg   string
}

func (e *Error) Error() string {
	return "bucket template: field " + strconv.Quote(e.Field) + ": " + e.Msg
}

// HiveDefaultPartition is what an empty string renders as in Hive-escaped templates.
const HiveDefaultPartition = "__HIVE_DEFAULT_PARTITION__"

// eventTimeName is the placeholder name of the configured event time.
const eventTimeName = "@time"

type segmentKind uint8

const (
	segLiteral segmentKind = iota
	segInt
	segString
	segBool
	segDate      // a date field: epoch days
	segTimestamp // a timestamp field, in its unit
	segBroker    // the record's broker timestamp
	segNow       // processing time
)

type segment struct {
	kind    segmentKind
	literal string
	field   string // for errors
	column  int
	int32   bool  // segInt: the column is INT32
	width   int   // segInt: zero-pad width
	perSec  int64 // segTimestamp: units per second
	pattern []patternToken
}

type tokenKind uint8

const (
	tokLiteral tokenKind = iota
	tokYear
	tokMonth
	tokDay
	tokHour
	tokMinute
	tokSecond
)

type patternToken struct {
	kind    tokenKind
	literal string
}

// Template renders bucket paths, index names or document ids from rows.
// A Template is immutable and safe for concurrent use.
type Template struct {
	src      string
	raw      bool
	loc      *time.Location
	segments []segment
}

// Compile compiles a bucket-path template with Hive escaping of string values.
// et says where {@time} comes from; tz is an IANA zone name ("" is UTC).
func Compile(tmpl string, s *schema.Schema, et conf.EventTime, tz string) (*Template, error) {
	return compile(tmpl, s, et, tz, false)
}

// CompileRaw compiles a template whose values render unescaped, for OpenSearch
// index names and document ids.
func CompileRaw(tmpl string, s *schema.Schema, et conf.EventTime, tz string) (*Template, error) {
	return compile(tmpl, s, et, tz, true)
}

func compile(tmpl string, s *schema.Schema, et conf.EventTime, tz string, raw bool) (*Template, error) {
	t := &Template{src: tmpl, raw: raw, loc: time.UTC}
	if tz != "" {
		loc, err := time.LoadLocation(tz)
		if err != nil {
			return nil, fmt.Errorf("template %q: time zone %q: %w", tmpl, tz, err)
		}
		t.loc = loc
	}
	fail := func(offset int, format string, args ...any) error {
		return fmt.Errorf("template %q: at offset %d: %s", tmpl, offset, fmt.Sprintf(format, args...))
	}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.segments = append(t.segments, segment{kind: segLiteral, literal: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(tmpl); i++ {
		switch c := tmpl[i]; c {
		case '}':
			return nil, fail(i, "'}' without a matching '{'")
		case '{':
			end := strings.IndexAny(tmpl[i+1:], "{}")
			if end < 0 || tmpl[i+1+end] == '{' {
				return nil, fail(i, "'{' is not closed by '}'")
			}
			flush()
			seg, err := compilePlaceholder(tmpl[i+1:i+1+end], s, et)
			if err != nil {
				return nil, fail(i, "%v", err)
			}
			t.segments = append(t.segments, seg)
			i += 1 + end
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	return t, nil
}

func compilePlaceholder(body string, s *schema.Schema, et conf.EventTime) (segment, error) {
	name, spec, hasSpec := strings.Cut(body, ":")
	if name == "" {
		return segment{}, fmt.Errorf("empty placeholder {%s}", body)
	}
	if name == eventTimeName {
		if !hasSpec {
			return segment{}, fmt.Errorf("{%s} needs a time pattern, e.g. {%s:yyyy-MM-dd}", name, name)
		}
		return compileEventTime(spec, s, et)
	}
	f, ok := s.Lookup(name)
	if !ok {
		return segment{}, fmt.Errorf("unknown field %q", name)
	}
	seg := segment{field: f.Path, column: f.Column}
	switch {
	case hasSpec && strings.HasPrefix(spec, "%"):
		if f.Kind != schema.Int32 && f.Kind != schema.Int64 {
			return segment{}, fmt.Errorf("format %q on %s field %q: %%d formats apply to int32 and int64 fields", spec, f.Kind, name)
		}
		width, err := parseIntFormat(spec)
		if err != nil {
			return segment{}, err
		}
		seg.kind, seg.width, seg.int32 = segInt, width, f.Kind == schema.Int32
	case hasSpec:
		if f.Kind != schema.Timestamp && f.Kind != schema.Date {
			return segment{}, fmt.Errorf("time pattern %q on %s field %q: time patterns apply to timestamp and date fields", spec, f.Kind, name)
		}
		pattern, err := parsePattern(spec)
		if err != nil {
			return segment{}, err
		}
		seg.pattern = pattern
		seg.kind = segDate
		if f.Kind == schema.Timestamp {
			seg.kind, seg.perSec = segTimestamp, f.Unit.PerSecond()
		}
	default:
		switch f.Kind {
		case schema.Int32, schema.Int64:
			seg.kind, seg.int32 = segInt, f.Kind == schema.Int32
		case schema.String:
			seg.kind = segString
		case schema.Bool:
			seg.kind = segBool
		case schema.Date:
			seg.kind, seg.pattern = segDate, []patternToken{{kind: tokYear}, {literal: "-"}, {kind: tokMonth}, {literal: "-"}, {kind: tokDay}}
		case schema.Timestamp:
			return segment{}, fmt.Errorf("timestamp field %q needs a time pattern, e.g. {%s:yyyy-MM-dd}", name, name)
		default:
			return segment{}, fmt.Errorf("%s field %q cannot be used in a template (use an integer, string, bool, date or timestamp field)", f.Kind, name)
		}
	}
	return seg, nil
}

func compileEventTime(spec string, s *schema.Schema, et conf.EventTime) (segment, error) {
	pattern, err := parsePattern(spec)
	if err != nil {
		return segment{}, err
	}
	seg := segment{field: eventTimeName, pattern: pattern}
	source := et.Source
	if source == "" {
		// An unset source means the field when one is named, else the broker
		// timestamp: both keep bucket assignment deterministic.
		source = "broker"
		if et.Field != "" {
			source = "field"
		}
	}
	switch source {
	case "broker":
		seg.kind = segBroker
	case "processing":
		seg.kind = segNow
	case "field":
		f, ok := s.Lookup(et.Field)
		if !ok {
			return segment{}, fmt.Errorf("event time field %q is not in the schema", et.Field)
		}
		seg.field, seg.column = f.Path, f.Column
		switch f.Kind {
		case schema.Timestamp:
			seg.kind, seg.perSec = segTimestamp, f.Unit.PerSecond()
		case schema.Date:
			seg.kind = segDate
		default:
			return segment{}, fmt.Errorf("event time field %q is a %s, not a timestamp or date", et.Field, f.Kind)
		}
	default:
		return segment{}, fmt.Errorf("unknown event time source %q (want field, broker or processing)", et.Source)
	}
	return seg, nil
}

// parseIntFormat accepts %d and %0Nd and returns the zero-pad width.
func parseIntFormat(spec string) (int, error) {
	if spec == "%d" {
		return 0, nil
	}
	digits, ok := strings.CutPrefix(spec, "%0")
	if ok {
		digits, ok = strings.CutSuffix(digits, "d")
	}
	width, err := strconv.Atoi(digits)
	if !ok || err != nil || width < 1 || width > 20 || digits[0] == '+' || digits[0] == '-' {
		return 0, fmt.Errorf("unsupported format %q (use %%d, or %%0Nd to zero-pad to width N <= 20)", spec)
	}
	return width, nil
}

func parsePattern(spec string) ([]patternToken, error) {
	if spec == "" {
		return nil, fmt.Errorf("empty time pattern")
	}
	var tokens []patternToken
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			tokens = append(tokens, patternToken{literal: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(spec); {
		c := spec[i]
		switch {
		case c == '\'':
			end := strings.IndexByte(spec[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("time pattern %q: unclosed quote", spec)
			}
			if end == 0 {
				lit.WriteByte('\'')
			} else {
				lit.WriteString(spec[i+1 : i+1+end])
			}
			i += end + 2
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			n := 1
			for i+n < len(spec) && spec[i+n] == c {
				n++
			}
			kind, ok := patternLetter(spec[i : i+n])
			if !ok {
				return nil, fmt.Errorf("time pattern %q: unsupported %q (use yyyy, MM, dd, HH, mm, ss; quote literal letters as 'T')", spec, spec[i:i+n])
			}
			flush()
			tokens = append(tokens, patternToken{kind: kind})
			i += n
		default:
			lit.WriteByte(c)
			i++
		}
	}
	flush()
	return tokens, nil
}

func patternLetter(run string) (tokenKind, bool) {
	switch run {
	case "yyyy":
		return tokYear, true
	case "MM":
		return tokMonth, true
	case "dd":
		return tokDay, true
	case "HH":
		return tokHour, true
	case "mm":
		return tokMinute, true
	case "ss":
		return tokSecond, true
	}
	return 0, false
}

// String returns the template's source.
func (t *Template) String() string { return t.src }

// Deterministic reports whether the output is a pure function of the record,
// that is whether the template does not use processing time. Exactly-once
// replay relies on it.
func (t *Template) Deterministic() bool {
	for _, seg := range t.segments {
		if seg.kind == segNow {
			return false
		}
	}
	return true
}

// Append renders the template for row (a row of the template's schema, one value
// per column in column order), rec (for the broker timestamp) and now (for
// processing time), appending to dst. It does not allocate when dst has room.
func (t *Template) Append(dst []byte, row parquet.Row, rec *record.Record, now time.Time) ([]byte, error) {
	for i := range t.segments {
		seg := &t.segments[i]
		if seg.kind == segLiteral {
			dst = append(dst, seg.literal...)
			continue
		}
		var v parquet.Value
		switch seg.kind {
		case segBroker:
			if rec == nil || rec.Timestamp.IsZero() {
				return dst, &Error{Class: ClassBadTime, Field: seg.field, Msg: "the record has no broker timestamp"}
			}
		case segNow:
		default:
			var ok bool
			if v, ok = schema.Value(row, seg.column); !ok || v.IsNull() {
				return dst, &Error{Class: ClassMissingField, Field: seg.field, Msg: "null or missing"}
			}
		}
		var err error
		switch seg.kind {
		case segInt:
			n := v.Int64()
			if seg.int32 {
				n = int64(v.Int32())
			}
			dst = appendInt(dst, n, seg.width)
		case segString:
			dst = t.appendString(dst, v.ByteArray())
		case segBool:
			dst = strconv.AppendBool(dst, v.Boolean())
		case segDate:
			dst, err = appendTime(dst, time.Unix(int64(v.Int32())*86400, 0).UTC(), seg)
		case segTimestamp:
			n := v.Int64()
			dst, err = appendTime(dst, time.Unix(n/seg.perSec, n%seg.perSec*(1e9/seg.perSec)).In(t.loc), seg)
		case segBroker:
			dst, err = appendTime(dst, rec.Timestamp.In(t.loc), seg)
		case segNow:
			dst, err = appendTime(dst, now.In(t.loc), seg)
		}
		if err != nil {
			return dst, err
		}
	}
	return dst, nil
}

// appendInt formats n like fmt's %d or %0Nd: the width counts the sign.
func appendInt(dst []byte, n int64, width int) []byte {
	if n < 0 {
		dst = append(dst, '-')
		width--
	}
	var buf [20]byte
	i := len(buf)
	u := uint64(n)
	if n < 0 {
		u = -u
	}
	for {
		i--
		buf[i] = byte('0' + u%10)
		u /= 10
		if u == 0 {
			break
		}
	}
	for pad := width - (len(buf) - i); pad > 0; pad-- {
		dst = append(dst, '0')
	}
	return append(dst, buf[i:]...)
}

const upperHex = "0123456789ABCDEF"

// hiveEscapes are the bytes besides control characters that Hive escapes in
// partition values, plus '}' so that a rendered value cannot look like a
// placeholder.
const hiveEscapes = "\"#%'*/:=?\\[]^{}"

func mustEscape(c byte) bool {
	return c < 0x20 || c == 0x7F || strings.IndexByte(hiveEscapes, c) >= 0
}

func (t *Template) appendString(dst, s []byte) []byte {
	if t.raw {
		return append(dst, s...)
	}
	if len(s) == 0 {
		return append(dst, HiveDefaultPartition...)
	}
	for _, c := range s {
		if mustEscape(c) {
			dst = append(dst, '%', upperHex[c>>4], upperHex[c&0xF])
		} else {
			dst = append(dst, c)
		}
	}
	return dst
}

// Rendered years are limited to four digits, the range every engine agrees on.
const maxYear = 9999

func appendTime(dst []byte, tm time.Time, seg *segment) ([]byte, error) {
	year, month, day := tm.Date()
	if year < 0 || year > maxYear {
		return dst, &Error{Class: ClassBadTime, Field: seg.field, Msg: "year " + strconv.Itoa(year) + " is outside 0000..9999"}
	}
	hour, minute, sec := tm.Clock()
	for _, tok := range seg.pattern {
		switch tok.kind {
		case tokLiteral:
			dst = append(dst, tok.literal...)
		case tokYear:
			dst = appendInt(dst, int64(year), 4)
		case tokMonth:
			dst = appendInt(dst, int64(month), 2)
		case tokDay:
			dst = appendInt(dst, int64(day), 2)
		case tokHour:
			dst = appendInt(dst, int64(hour), 2)
		case tokMinute:
			dst = appendInt(dst, int64(minute), 2)
		case tokSecond:
			dst = appendInt(dst, int64(sec), 2)
		}
	}
	return dst, nil
}
