package config

import (
	"fmt"
	"strings"
)

// expand replaces environment references in one scalar value:
//
//	${NAME}          the variable's value; "" when it is unset
//	${NAME:-default} default when NAME is unset or empty
//	${NAME-default}  default only when NAME is unset (so NAME= can select "nothing")
//	$$               a literal $
//
// A $ followed by anything else is kept as it is, so that passwords and regular
// expressions containing $ need no escaping. Defaults are literal text up to the
// first "}" and are not expanded again. Expansion runs on parsed YAML scalars,
// never on the raw file, so a variable's value cannot inject YAML syntax.
// The second result reports whether the value contained a reference at all.
func expand(s string, lookup func(string) (string, bool)) (string, bool, error) {
	if !strings.Contains(s, "$") {
		return s, false, nil
	}
	var b strings.Builder
	used := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
			continue
		case '{':
		default:
			b.WriteByte(c)
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", false, fmt.Errorf("unterminated ${ in %q (write $$ for a literal $)", s)
		}
		ref := s[i+2 : i+end]
		name, def, mode := ref, "", ""
		if j := strings.IndexByte(ref, '-'); j >= 0 {
			name, def, mode = ref[:j], ref[j+1:], "-"
			if strings.HasSuffix(name, ":") {
				name, mode = name[:len(name)-1], ":-"
			}
		}
		if !isEnvName(name) {
			return "", false, fmt.Errorf("${%s}: %q is not a valid environment variable name", ref, name)
		}
		val, set := lookup(name)
		switch {
		case mode == ":-" && val == "", mode == "-" && !set:
			val = def
		}
		b.WriteString(val)
		used = true
		i += end
	}
	return b.String(), used, nil
}

func isEnvName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
