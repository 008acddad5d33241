package buckets

import (
	"fmt"
	"strconv"

	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/schema"
)

// Condition selects rows whose field equals one of a set of values. A nil
// *Condition matches every row.
type Condition struct {
	column  int
	kind    schema.Kind
	strings []string
	ints    []int64
	bools   [2]bool // [false], [true]: whether the value is in the set
}

// NewCondition compiles c against s. A nil c yields a nil *Condition, which
// matches everything. The field must be a string, integer or bool field, and
// every value in c.In must parse as that type.
func NewCondition(c *conf.Condition, s *schema.Schema) (*Condition, error) {
	if c == nil {
		return nil, nil
	}
	f, ok := s.Lookup(c.Field)
	if !ok {
		return nil, fmt.Errorf("condition: unknown field %q", c.Field)
	}
	if len(c.In) == 0 {
		return nil, fmt.Errorf("condition on %q: 'in' needs at least one value", c.Field)
	}
	cond := &Condition{column: f.Column, kind: f.Kind}
	for _, want := range c.In {
		switch f.Kind {
		case schema.String:
			cond.strings = append(cond.strings, want)
		case schema.Int32, schema.Int64:
			n, err := strconv.ParseInt(want, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("condition on %s field %q: %q is not an integer", f.Kind, c.Field, want)
			}
			cond.ints = append(cond.ints, n)
		case schema.Bool:
			b, err := strconv.ParseBool(want)
			if err != nil || (want != "true" && want != "false") {
				return nil, fmt.Errorf("condition on bool field %q: %q is not true or false", c.Field, want)
			}
			if b {
				cond.bools[1] = true
			} else {
				cond.bools[0] = true
			}
		default:
			return nil, fmt.Errorf("condition on %s field %q: conditions apply to string, integer and bool fields", f.Kind, c.Field)
		}
	}
	return cond, nil
}

// Match reports whether row satisfies the condition. A null field matches nothing.
func (c *Condition) Match(row parquet.Row) bool {
	if c == nil {
		return true
	}
	v, ok := schema.Value(row, c.column)
	if !ok || v.IsNull() {
		return false
	}
	switch c.kind {
	case schema.String:
		b := v.ByteArray()
		for _, s := range c.strings {
			if string(b) == s {
				return true
			}
		}
	case schema.Int32, schema.Int64:
		n := v.Int64()
		if c.kind == schema.Int32 {
			n = int64(v.Int32())
		}
		for _, want := range c.ints {
			if n == want {
				return true
			}
		}
	case schema.Bool:
		if v.Boolean() {
			return c.bools[1]
		}
		return c.bools[0]
	}
	return false
}
