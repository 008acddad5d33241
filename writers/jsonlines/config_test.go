package jsonlines

import (
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sinkd/sinkd/config/conf"
)

// TestDocumentedDefaults checks the defaults this package's README and
// config/README.md (rows under routes[].writers.jsonlines) give against
// SetDefaults, and that every setting SetDefaults fills has a README row.
// (config's own test cannot import this package, which imports config.)
func TestDocumentedDefaults(t *testing.T) {
	var c Config
	c.SetDefaults("r")
	fields := map[string]reflect.Value{}
	v := reflect.ValueOf(c)
	for i := 0; i < v.NumField(); i++ {
		fields[strings.Split(v.Type().Field(i).Tag.Get("yaml"), ",")[0]] = v.Field(i)
	}
	for _, doc := range []struct{ path, prefix string }{
		{"README.md", ""},
		{"../../config/README.md", "routes[].writers.jsonlines."},
	} {
		rows := defaultRows(t, doc.path, doc.prefix)
		checked := 0
		for key, value := range rows {
			f, ok := fields[key]
			if !ok {
				t.Errorf("%s documents a default for %q, which is not a setting", doc.path, key)
				continue
			}
			if value == "" {
				continue // no literal: the route's name, required
			}
			if err := sameValue(f, value); err != nil {
				t.Errorf("%s: %s: documented default %q: %v", doc.path, key, value, err)
			}
			checked++
		}
		if checked < 4 {
			t.Errorf("%s: checked only %d defaults: has the table's layout changed?", doc.path, checked)
		}
		if doc.prefix != "" {
			continue
		}
		for key, f := range fields {
			if _, ok := rows[key]; !ok && !f.IsZero() {
				t.Errorf("%s: %s has a default but no row in the settings table", doc.path, key)
			}
		}
	}
}

// defaultRows reads a defaults table's rows | `key`, `key2` | `value`,
// `value2` (why) | whose keys start with prefix; a value cell that does not
// start with a `value` gives "" (no literal).
func defaultRows(t *testing.T, path, prefix string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		if !strings.HasPrefix(line, "| `") || len(cells) < 2 {
			continue
		}
		keys := ticks(cells[0])
		if len(keys) == 0 || !strings.HasPrefix(keys[0], prefix) {
			continue
		}
		var values []string
		if v := strings.TrimSpace(cells[1]); strings.HasPrefix(v, "`") {
			values = ticks(v)
		}
		for i, k := range keys {
			k = strings.TrimPrefix(k, prefix)
			out[k] = ""
			if i < len(values) && !strings.HasPrefix(values[i], "{") {
				out[k] = values[i]
			}
		}
	}
	return out
}

func ticks(cell string) []string {
	parts := strings.Split(cell, "`")
	var out []string
	for i := 1; i < len(parts); i += 2 {
		out = append(out, parts[i])
	}
	return out
}

// sameValue reads documented the way the configuration reads the field.
func sameValue(field reflect.Value, documented string) error {
	var want any
	var err error
	switch field.Interface().(type) {
	case conf.Size:
		want, err = conf.ParseSize(documented)
	case conf.Duration:
		var d time.Duration
		d, err = time.ParseDuration(documented)
		want = conf.Duration(d)
	case int:
		want, err = strconv.Atoi(documented)
	case string:
		want = documented
	default:
		return nil // event_time: a block
	}
	if err != nil {
		return err
	}
	if got := field.Interface(); got != want {
		return fmt.Errorf("the code's default is %v", got)
	}
	return nil
}
