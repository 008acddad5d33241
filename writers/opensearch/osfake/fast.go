package osfake

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The fake runs beside sinkd on the benchmark machine, so the CPU it spends
// per document is taken from sinkd's. Decoding every action line and document
// into maps with encoding/json was most of that CPU. The fast paths below
// handle the shapes sinkd sends (a plain action line, a flat document of
// scalars) without building anything, and hand everything else, and every
// document they would not accept, to the general code, which stays the one
// that decides what is malformed or rejected and what the error says. A fast
// path therefore only has to be right when it accepts.

// flatField is one member of a flat document: its key, the kind of its value
// and the value's bytes (a string's without quotes; only strings without
// escapes take the fast path).
type flatField struct {
	key  []byte
	kind byte // '"' string, '0' number, 't' true, 'f' false, 'n' null
	raw  []byte
}

// scanFlat reads a document that is one JSON object of scalars whose keys and
// strings have no escapes, checking the grammar as encoding/json does. ok is
// false for anything else (nested values, escapes, trailing data, invalid
// JSON): the general path decides about those.
func scanFlat(b []byte, dst []flatField) (fields []flatField, ok bool) {
	p := flatScanner{b: b}
	p.space()
	if !p.consume('{') {
		return dst, false
	}
	p.space()
	if p.consume('}') {
		return dst, p.end()
	}
	for {
		p.space()
		key, ok := p.plainString()
		if !ok || !utf8.Valid(key) { // encoding/json replaces invalid UTF-8
			return dst, false
		}
		p.space()
		if !p.consume(':') {
			return dst, false
		}
		p.space()
		f := flatField{key: key}
		if p.i >= len(p.b) {
			return dst, false
		}
		switch c := p.b[p.i]; {
		case c == '"':
			f.kind = '"'
			if f.raw, ok = p.plainString(); !ok {
				return dst, false
			}
		case c == '-' || '0' <= c && c <= '9':
			f.kind = '0'
			start := p.i
			if !p.number() {
				return dst, false
			}
			f.raw = p.b[start:p.i]
		case c == 't' || c == 'f' || c == 'n':
			lit := "null"
			switch c {
			case 't':
				lit = "true"
			case 'f':
				lit = "false"
			}
			if !bytes.HasPrefix(p.b[p.i:], []byte(lit)) {
				return dst, false
			}
			f.kind, f.raw = c, p.b[p.i:p.i+len(lit)]
			p.i += len(lit)
		default:
			return dst, false // an object, an array, or not JSON
		}
		dst = append(dst, f)
		p.space()
		if p.consume(',') {
			continue
		}
		if p.consume('}') {
			return dst, p.end()
		}
		return dst, false
	}
}

type flatScanner struct {
	b []byte
	i int
}

func (p *flatScanner) space() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t' || p.b[p.i] == '\n' || p.b[p.i] == '\r') {
		p.i++
	}
}

func (p *flatScanner) consume(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// end reports whether only white space is left.
func (p *flatScanner) end() bool {
	p.space()
	return p.i == len(p.b)
}

// plainString reads a string without escapes or control characters and
// returns its contents.
func (p *flatScanner) plainString() ([]byte, bool) {
	if !p.consume('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return p.b[start : p.i-1], true
		case c == '\\' || c < 0x20:
			return nil, false
		}
		p.i++
	}
	return nil, false
}

// number checks JSON's number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *flatScanner) number() bool {
	p.consume('-')
	switch {
	case p.consume('0'):
	case p.i < len(p.b) && '1' <= p.b[p.i] && p.b[p.i] <= '9':
		p.digits()
	default:
		return false
	}
	if p.consume('.') && p.digits() == 0 {
		return false
	}
	if p.consume('e') || p.consume('E') {
		if !p.consume('+') {
			p.consume('-')
		}
		if p.digits() == 0 {
			return false
		}
	}
	return true
}

func (p *flatScanner) digits() int {
	start := p.i
	for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
		p.i++
	}
	return p.i - start
}

// applyFlat is mapping.apply for a flat document: it returns the fields that
// dynamic mapping adds, and ok false when the document is not accepted as
// it is (a conflict, a metadata field) or has a repeated key, for the
// general path to reject it with OpenSearch's words. Like apply, it leaves m
// unchanged.
func (m mapping) applyFlat(fields []flatField) (added mapping, ok bool) {
	// encoding/json keeps the last of repeated keys: the general path
	// decides what that means. (Documents have tens of members: comparing
	// them pairwise is cheaper than a set.)
	for i, f := range fields {
		for _, g := range fields[:i] {
			if len(f.key) == len(g.key) && string(f.key) == string(g.key) {
				return nil, false
			}
		}
	}
	for _, f := range fields {
		if len(f.key) == 0 || f.key[0] == '_' {
			return nil, false
		}
		if f.kind == 'n' {
			continue // null maps nothing and matches every type
		}
		t, known := m[string(f.key)]
		if !known {
			t = f.dynamicType()
			if added == nil {
				added = mapping{}
			}
			added[string(f.key)] = t
		}
		if !f.fits(t) {
			return nil, false
		}
	}
	return added, true
}

// dynamicType is dynamicType for a flat field.
func (f flatField) dynamicType() fieldType {
	switch f.kind {
	case 't', 'f':
		return typeBoolean
	case '0':
		if bytes.ContainsAny(f.raw, ".eE") {
			return typeDouble
		}
		return typeLong
	}
	if isDate(string(f.raw)) {
		return typeDate
	}
	return typeText
}

// fits is checkScalar's acceptance for a flat field.
func (f flatField) fits(t fieldType) bool {
	switch t {
	case typeText, typeKeyword:
		return true
	case typeLong, typeDouble:
		switch f.kind {
		case '0':
			if t == typeDouble {
				return true
			}
			_, err := strconv.ParseFloat(string(f.raw), 64)
			return err == nil
		case '"':
			_, err := strconv.ParseFloat(strings.TrimSpace(string(f.raw)), 64)
			return err == nil
		}
	case typeBoolean:
		switch f.kind {
		case 't', 'f':
			return true
		case '"':
			s := string(f.raw)
			return s == "true" || s == "false" || s == ""
		}
	case typeDate:
		switch f.kind {
		case '0':
			return true
		case '"':
			return isDate(string(f.raw))
		}
	}
	return false // an object mapping, or a kind the type refuses
}

// parseActionFast reads an action line of the plain form sinkd writes,
// {"index":{"_index":"…","_id":"…"}} with an optional version and
// version_type, members without white space or escapes. ok is false for
// anything else, which parseAction reads.
func parseActionFast(line []byte, pathIndex string) (o op, ok bool) {
	p := flatScanner{b: line}
	if !p.consume('{') {
		return o, false
	}
	action, ok := p.plainString()
	if !ok || !p.consume(':') || !p.consume('{') {
		return o, false
	}
	switch string(action) {
	case "index", "create", "update", "delete":
		o.action = string(action)
	default:
		return o, false
	}
	o.index, o.versionType = pathIndex, "internal"
	var seen [4]bool // _index, _id, version, version_type
	for first := true; !p.consume('}'); first = false {
		if !first && !p.consume(',') {
			return o, false
		}
		key, ok := p.plainString()
		if !ok || !p.consume(':') {
			return o, false
		}
		var slot int
		switch string(key) {
		case "_index":
			slot = 0
		case "_id":
			slot = 1
		case "version":
			slot = 2
		case "version_type":
			slot = 3
		default:
			return o, false
		}
		if seen[slot] {
			return o, false
		}
		seen[slot] = true
		if slot == 2 {
			start := p.i
			p.consume('-')
			if p.digits() == 0 {
				return o, false
			}
			n, err := strconv.ParseInt(string(p.b[start:p.i]), 10, 64)
			if err != nil || p.b[start] == '0' && p.i-start > 1 || p.b[start] == '-' && p.b[start+1] == '0' {
				return o, false
			}
			o.version = n
			continue
		}
		val, ok := p.plainString()
		if !ok || !utf8.Valid(val) { // encoding/json replaces invalid UTF-8
			return o, false
		}
		switch slot {
		case 0:
			o.index = string(val)
		case 1:
			o.id = string(val)
		case 3:
			o.versionType = string(val)
		}
	}
	if !p.consume('}') || p.i != len(p.b) {
		return o, false
	}
	return o, true
}
