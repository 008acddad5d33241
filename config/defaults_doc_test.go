package config

import (
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestOpenSearchDocumentedDefaults fails when a default that config/README.md
// or writers/opensearch/README.md lists for OpenSearch differs from what
// applyDefaults sets, or when a documented setting is not a setting.
func TestOpenSearchDocumentedDefaults(t *testing.T) {
	cfg, err := Parse("defaults.yaml", []byte(`pipeline: p
source: {kafka: {brokers: "127.0.0.1:9092", topics: [in], group: g}}
schema: {fields: [{name: id, type: int64}]}
routes:
  - name: r
    opensearch: {url: "http://127.0.0.1:9200", index: i, id: "{id}", sigv4: {region: eu-west-1}}
checkpoint: {store: "file:///tmp/x"}
`))
	if err != nil {
		t.Fatal(err)
	}
	applied := cfg.Routes[0].OpenSearch

	docs := map[string]map[string]string{
		"config/README.md":             configReadmeDefaults(t, "README.md"),
		"writers/opensearch/README.md": writerReadmeDefaults(t, "../writers/opensearch/README.md"),
		"examples/taxi-kafka.yaml":     exampleDefaults(t, "examples/taxi-kafka.yaml"),
		"examples/taxi-kinesis.yaml":   exampleDefaults(t, "examples/taxi-kinesis.yaml"),
	}
	for doc, defaults := range docs {
		if len(defaults) < 6 {
			t.Errorf("%s: found only %d OpenSearch defaults (%v): has the table's layout changed?", doc, len(defaults), defaults)
		}
		for key, documented := range defaults {
			if key == "sigv4.region" {
				continue // $AWS_REGION: depends on the environment
			}
			field, ok := fieldByYAMLPath(reflect.ValueOf(applied).Elem(), key)
			if !ok {
				t.Errorf("%s documents a default for %q, which is not an OpenSearch setting", doc, key)
				continue
			}
			if err := sameValue(field, documented); err != nil {
				t.Errorf("%s: %s: documented default %q: %v", doc, key, documented, err)
			}
		}
	}
}

// configReadmeDefaults reads rows like
// | `routes[].opensearch.flush_bytes`, `flush_docs` | `5MiB`, `5000` |
func configReadmeDefaults(t *testing.T, path string) map[string]string {
	const prefix = "routes[].opensearch."
	out := map[string]string{}
	for _, cells := range tableRows(t, path) {
		if len(cells) < 2 || !strings.HasPrefix(strings.Trim(cells[0], "`"), prefix) {
			continue
		}
		// "`$AWS_REGION` else `us-east-1`" is one value.
		keys, values := splitTicks(cells[0]), splitTicks(strings.ReplaceAll(cells[1], "` else `", " else "))
		if len(keys) != len(values) {
			t.Errorf("%s: row %q has %d settings and %d values", path, cells, len(keys), len(values))
			continue
		}
		parent := ""
		for i, k := range keys {
			k = strings.TrimPrefix(k, prefix)
			if i == 0 {
				if j := strings.LastIndexByte(k, '.'); j >= 0 {
					parent = k[:j+1] // "sigv4.service", `region`: region is sigv4's
				}
			} else {
				k = parent + k
			}
			out[k] = values[i]
		}
	}
	return out
}

// writerReadmeDefaults reads rows like | `flush_bytes` | 5MiB | meaning |
func writerReadmeDefaults(t *testing.T, path string) map[string]string {
	out := map[string]string{}
	for _, cells := range tableRows(t, path) {
		if len(cells) < 3 || !strings.HasPrefix(cells[0], "`") || cells[1] == "—" || cells[1] == "default" {
			continue
		}
		key := strings.Trim(cells[0], "`")
		if strings.ContainsAny(key, " ,") {
			continue
		}
		out[key] = strings.Trim(cells[1], "`")
	}
	return out
}

// exampleDefaults reads the commented defaults of an example's opensearch
// block: "      # flush_docs: 5000        # default".
func exampleDefaults(t *testing.T, path string) map[string]string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.TrimSpace(line) == "opensearch:":
			in = true
			continue
		case in && !strings.HasPrefix(line, "      "):
			in = false
		}
		setting, _, ok := strings.Cut(strings.TrimSpace(line), "# default")
		if !in || !ok || !strings.HasPrefix(setting, "# ") {
			continue
		}
		key, value, ok := strings.Cut(strings.TrimPrefix(setting, "# "), ":")
		if ok {
			out[strings.TrimSpace(key)] = strings.TrimSpace(value)
		}
	}
	return out
}

func tableRows(t *testing.T, path string) [][]string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "|---") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, cells)
	}
	return rows
}

// splitTicks returns the `quoted` parts of a cell.
func splitTicks(cell string) []string {
	var out []string
	for {
		i := strings.IndexByte(cell, '`')
		if i < 0 {
			return out
		}
		j := strings.IndexByte(cell[i+1:], '`')
		if j < 0 {
			return out
		}
		out = append(out, cell[i+1:i+1+j])
		cell = cell[i+2+j:]
	}
}

// fieldByYAMLPath finds a struct field by its yaml names ("sigv4.service").
func fieldByYAMLPath(v reflect.Value, path string) (reflect.Value, bool) {
	for _, name := range strings.Split(path, ".") {
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return reflect.Value{}, false
			}
			v = v.Elem()
		}
		found := false
		for i := 0; i < v.NumField(); i++ {
			tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
			if tag == name {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return reflect.Value{}, false
		}
	}
	return v, true
}

// sameValue reads documented the way the configuration reads the field.
func sameValue(field reflect.Value, documented string) error {
	var want any
	var err error
	switch field.Interface().(type) {
	case Size:
		want, err = ParseSize(documented)
	case Duration:
		var d time.Duration
		d, err = time.ParseDuration(documented)
		want = Duration(d)
	case int:
		want, err = strconv.Atoi(documented)
	case string:
		want = documented
	default:
		return fmt.Errorf("no comparison for %T", field.Interface())
	}
	if err != nil {
		return err
	}
	if got := field.Interface(); got != want {
		return fmt.Errorf("the code's default is %v", got)
	}
	return nil
}
