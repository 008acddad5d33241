package config

import (
	"errors"
	"fmt"
	"strings"
)

// expand replaces environment references in one scalar value:
//
//	${NAME}          the variable's value; an error naming NAME when it is unset
//	${NAME:-default} default when NAME is unset or empty
//	${NAME-default}  default only when NAME is unset (so NAME= can select "nothing")
//	${NAME:?message} an error naming NAME, with message, when NAME is unset or empty
//	${NAME?message}  the same, only when NAME is unset
//	$$               a literal $
//
// A $ followed by anything else is kept as it is, so that passwords and regular
// expressions containing $ need no escaping. Defaults are literal text up to the
// first "}" and are not expanded again. Expansion runs on parsed YAML scalars,
// never on the raw file, so a variable's value cannot inject YAML syntax.
// The second result reports whether the value contained a reference at all.
// Every unset variable of the value is named in the error, not only the first:
// an unset ${NAME} silently becoming "" used to surface, if at all, as an
// unrelated "is required" or as a default quietly taking its place.
func expand(s string, lookup func(string) (string, bool)) (string, bool, error) {
	if !strings.Contains(s, "$") {
		return s, false, nil
	}
	var b strings.Builder
	used := false
	var missing []string
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
		if j := strings.IndexAny(ref, "-?"); j >= 0 {
			name, def, mode = ref[:j], ref[j+1:], ref[j:j+1]
			if strings.HasSuffix(name, ":") {
				name, mode = name[:len(name)-1], ":"+mode
			}
		}
		if !isEnvName(name) {
			return "", false, fmt.Errorf("${%s}: %q is not a valid environment variable name", ref, name)
		}
		val, set := lookup(name)
		switch {
		case mode == ":-" && val == "", mode == "-" && !set:
			val = def
		case mode == ":?" && val == "", mode == "?" && !set:
			msg := "environment variable " + name + " is not set"
			if set {
				msg = "environment variable " + name + " is empty"
			}
			if def != "" {
				msg += ": " + def
			}
			missing = append(missing, msg)
		case mode == "" && !set:
			missing = append(missing, fmt.Sprintf("environment variable %s is not set (set it, or write ${%s:-default}; ${%s:-} allows empty)", name, name, name))
		}
		b.WriteString(val)
		used = true
		i += end
	}
	if len(missing) > 0 {
		return "", used, errors.New(strings.Join(missing, "; "))
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
