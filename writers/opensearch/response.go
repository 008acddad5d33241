package opensearch

import (
	"bytes"
	"errors"
	"fmt"
)

// itemStatus is one bulk item's result: its HTTP status and, when it failed,
// the raw JSON of its error object (decoded only then).
type itemStatus struct {
	status int
	err    []byte // points into the answer, valid until the next request
}

// parseBulkResponse reads a _bulk answer, filtered or not:
//
//	{"took":3,"errors":false,"items":[{"index":{"_index":…,"status":201}},…]}
//
// and appends one itemStatus per item to dst. It reads only what settling
// needs and skips the rest without building it, which makes it several times
// cheaper than encoding/json on the answers of large batches. The answer must
// be valid JSON; an item holds one action whose object has a numeric status.
func parseBulkResponse(b []byte, dst []itemStatus) ([]itemStatus, error) {
	p := scanner{b: b}
	p.space()
	if !p.consume('{') {
		return dst, p.fail("expected an object")
	}
	base, sawItems := len(dst), false
	for first := true; ; first = false {
		more, err := p.next('}', first)
		if err != nil {
			return dst, err
		}
		if !more {
			break
		}
		key, err := p.key()
		if err != nil {
			return dst, err
		}
		if key != "items" {
			if err := p.skip(0); err != nil {
				return dst, err
			}
			continue
		}
		sawItems = true
		if dst, err = p.items(dst[:base]); err != nil { // a repeated key counts once, the last
			return dst, err
		}
	}
	p.space()
	if p.i != len(p.b) {
		return dst, p.fail("trailing data")
	}
	if !sawItems {
		return dst, errors.New("no items in the answer")
	}
	return dst, nil
}

// maxDepth bounds nesting in skipped values (an error's caused_by chain).
const maxDepth = 64

type scanner struct {
	b []byte
	i int
}

func (p *scanner) fail(what string) error {
	return fmt.Errorf("invalid bulk answer at byte %d: %s", p.i, what)
}

func (p *scanner) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// next starts an element of an object or array closed by end: false at the
// end, an error where neither the end nor a comma (after the first) comes.
func (p *scanner) next(end byte, first bool) (bool, error) {
	p.space()
	if p.consume(end) {
		return false, nil
	}
	if !first && !p.consume(',') {
		if end == '}' {
			return false, p.fail("expected , or }")
		}
		return false, p.fail("expected , or ]")
	}
	return true, nil
}

func (p *scanner) consume(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// key reads an object key and its colon. Keys are compared as they are
// written: no server escapes them, and one that does is refused rather than
// misread.
func (p *scanner) key() (string, error) {
	p.space()
	start := p.i
	if err := p.str(); err != nil {
		return "", err
	}
	k := p.b[start+1 : p.i-1]
	if bytes.IndexByte(k, '\\') >= 0 {
		return "", p.fail("escaped key")
	}
	p.space()
	if !p.consume(':') {
		return "", p.fail("expected :")
	}
	// Compared as bytes: the conversion in a comparison does not allocate.
	switch string(k) {
	case "items":
		return "items", nil
	case "status":
		return "status", nil
	case "error":
		return "error", nil
	}
	return "", nil
}

// str skips a string, checking its escapes and that it has no control
// characters.
func (p *scanner) str() error {
	if !p.consume('"') {
		return p.fail("expected a string")
	}
	for p.i < len(p.b) {
		c := p.b[p.i]
		p.i++
		switch {
		case c == '"':
			return nil
		case c < 0x20:
			return p.fail("control character in a string")
		case c == '\\':
			if p.i >= len(p.b) {
				return p.fail("unterminated escape")
			}
			e := p.b[p.i]
			p.i++
			switch e {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if p.i+4 > len(p.b) {
					return p.fail("short \\u escape")
				}
				for _, h := range p.b[p.i : p.i+4] {
					if !isHex(h) {
						return p.fail("bad \\u escape")
					}
				}
				p.i += 4
			default:
				return p.fail("bad escape")
			}
		}
	}
	return p.fail("unterminated string")
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// items reads the items array.
func (p *scanner) items(dst []itemStatus) ([]itemStatus, error) {
	p.space()
	if !p.consume('[') {
		return dst, p.fail("items is not an array")
	}
	for first := true; ; first = false {
		more, err := p.next(']', first)
		if err != nil {
			return dst, err
		}
		if !more {
			return dst, nil
		}
		it, err := p.item()
		if err != nil {
			return dst, err
		}
		dst = append(dst, it)
	}
}

// item reads {"<action>":{…,"status":N,…,"error":{…}}}.
func (p *scanner) item() (itemStatus, error) {
	var it itemStatus
	p.space()
	if !p.consume('{') {
		return it, p.fail("an item is not an object")
	}
	actions := 0
	for first := true; ; first = false {
		more, err := p.next('}', first)
		if err != nil {
			return it, err
		}
		if !more {
			break
		}
		if _, err := p.key(); err != nil {
			return it, err
		}
		actions++
		if actions > 1 {
			return it, p.fail("an item has more than one action")
		}
		if it, err = p.result(); err != nil {
			return it, err
		}
	}
	if actions == 0 {
		return it, p.fail("an item has no action")
	}
	return it, nil
}

// result reads an action's object for its status and error.
func (p *scanner) result() (itemStatus, error) {
	var it itemStatus
	p.space()
	if !p.consume('{') {
		return it, p.fail("an item's result is not an object")
	}
	sawStatus := false
	for first := true; ; first = false {
		more, err := p.next('}', first)
		if err != nil {
			return it, err
		}
		if !more {
			break
		}
		key, err := p.key()
		if err != nil {
			return it, err
		}
		p.space()
		switch key {
		case "status":
			n, err := p.integer()
			if err != nil {
				return it, err
			}
			it.status, sawStatus = n, true
		case "error":
			it.err = nil
			start := p.i
			if err := p.skip(0); err != nil {
				return it, err
			}
			if p.b[start] == '{' {
				it.err = p.b[start:p.i]
			}
		default:
			if err := p.skip(0); err != nil {
				return it, err
			}
		}
	}
	if !sawStatus {
		return it, p.fail("an item has no status")
	}
	return it, nil
}

// integer reads a status: a small non-negative integer.
func (p *scanner) integer() (int, error) {
	start, n := p.i, 0
	for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' && p.i-start < 4 {
		n = n*10 + int(p.b[p.i]-'0')
		p.i++
	}
	if p.i == start || p.b[start] == '0' && p.i-start > 1 || p.i < len(p.b) && (p.b[p.i] == '.' || p.b[p.i] == 'e' || p.b[p.i] == 'E' || '0' <= p.b[p.i] && p.b[p.i] <= '9') {
		return 0, p.fail("status is not a small integer")
	}
	return n, nil
}

// skip passes over one value of any kind, checking its syntax.
func (p *scanner) skip(depth int) error {
	if depth > maxDepth {
		return p.fail("nested too deep")
	}
	p.space()
	if p.i >= len(p.b) {
		return p.fail("unexpected end")
	}
	switch c := p.b[p.i]; {
	case c == '"':
		return p.str()
	case c == '{':
		p.i++
		for first := true; ; first = false {
			more, err := p.next('}', first)
			if err != nil || !more {
				return err
			}
			p.space()
			if err := p.str(); err != nil {
				return err
			}
			p.space()
			if !p.consume(':') {
				return p.fail("expected :")
			}
			if err := p.skip(depth + 1); err != nil {
				return err
			}
		}
	case c == '[':
		p.i++
		for first := true; ; first = false {
			more, err := p.next(']', first)
			if err != nil || !more {
				return err
			}
			if err := p.skip(depth + 1); err != nil {
				return err
			}
		}
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	case c == '-' || '0' <= c && c <= '9':
		return p.number()
	}
	return p.fail("unexpected character")
}

func (p *scanner) literal(lit string) error {
	if len(p.b)-p.i < len(lit) || string(p.b[p.i:p.i+len(lit)]) != lit {
		return p.fail("bad literal")
	}
	p.i += len(lit)
	return nil
}

// number checks JSON's number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *scanner) number() error {
	p.consume('-')
	switch {
	case p.consume('0'):
	case p.i < len(p.b) && '1' <= p.b[p.i] && p.b[p.i] <= '9':
		p.digits()
	default:
		return p.fail("bad number")
	}
	if p.consume('.') {
		if p.digits() == 0 {
			return p.fail("bad fraction")
		}
	}
	if p.consume('e') || p.consume('E') {
		if !p.consume('+') {
			p.consume('-')
		}
		if p.digits() == 0 {
			return p.fail("bad exponent")
		}
	}
	return nil
}

func (p *scanner) digits() int {
	start := p.i
	for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
		p.i++
	}
	return p.i - start
}
