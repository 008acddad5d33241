package conf

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written in Go's units ("500ms", "10s", "2m").
type Duration time.Duration

func (d Duration) D() time.Duration { return time.Duration(d) }

// String drops zero trailing units: 15m rather than Go's 15m0s.
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil || v < 0 {
		return typeError(n, "%q is not a duration (use units like 500ms, 10s, 5m, 1h)", n.Value)
	}
	*d = Duration(v)
	return nil
}

// Size is a byte count written with a binary or decimal unit ("128MiB", "5MB", "512").
type Size int64

func (s Size) Bytes() int64 { return int64(s) }

func (s Size) String() string {
	v := int64(s)
	for _, u := range []struct {
		name string
		n    int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if v >= u.n && v%u.n == 0 {
			return strconv.FormatInt(v/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(v, 10) + "B"
}

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"kb": 1000, "mb": 1000 * 1000, "gb": 1000 * 1000 * 1000,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
	"k": 1 << 10, "m": 1 << 20, "g": 1 << 30,
}

// ParseSize reads "128MiB", "5MB", "64k" or a plain byte count.
func ParseSize(s string) (Size, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
	mult, ok := sizeUnits[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("%q is not a size (use units like 512KiB, 128MiB, 1GiB)", s)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("%q is not a size (use units like 512KiB, 128MiB, 1GiB)", s)
	}
	return Size(f * float64(mult)), nil
}

func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseSize(n.Value)
	if err != nil {
		return typeError(n, "%v", err)
	}
	*s = v
	return nil
}

// StringList accepts a YAML sequence or one comma-separated string, so that a
// single environment variable can carry a list ("b1:9092,b2:9092").
type StringList []string

func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	var raw []string
	switch n.Kind {
	case yaml.ScalarNode:
		raw = strings.Split(n.Value, ",")
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return typeError(c, "expected a string")
			}
			raw = append(raw, strings.Split(c.Value, ",")...)
		}
	default:
		return typeError(n, "expected a list or a comma-separated string")
	}
	out := (*l)[:0]
	for _, s := range raw {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	*l = out
	return nil
}

// typeError is a *yaml.TypeError so that the decoder keeps going and reports
// every problem in the file, not only the first.
func typeError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, fmt.Sprintf(format, args...))}}
}

// MarshalYAML writes a duration as it would be written in the file ("10s"),
// not in nanoseconds (the status page shows the effective configuration).
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalYAML writes a size with its unit ("128MiB").
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }
