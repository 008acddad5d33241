package config

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Every default is set once, in the code (defaults.go for the pipeline's
// own settings, each plugin's config.go for its block). The documents that
// list defaults are checked against what Parse fills in, so none can drift.

// defaultsDocs are the documents whose defaults tables are checked, with the
// block a table's keys are relative to when its heading names none.
var defaultsDocs = []struct {
	path     string
	block    string // "" for tables of full paths (config/README.md)
	minCount int    // fewer checked defaults means the layout changed
}{
	{"README.md", "", 55},
	{"../source/kafka/README.md", "source.kafka", 7},
	{"../source/kinesis/README.md", "source.kinesis", 7},
	{"../store/README.md", "s3", 4},
	{"../writers/opensearch/README.md", "routes[].opensearch", 7},
	{"../writers/parquetsink/README.md", "routes[].parquet", 12},
	{"../dlq/README.md", "dlq", 5},
	{"../schema/README.md", "schema", 4},
}

// TestDocumentedDefaults fails when a default that a README's settings
// table lists differs from what Parse fills in, or names no setting.
func TestDocumentedDefaults(t *testing.T) {
	isolateEnv(t) // $AWS_REGION and $HOSTNAME defaults are not compared
	refs := referenceConfigs(t)
	for _, doc := range defaultsDocs {
		n := 0
		for _, d := range readmeDefaults(t, doc.path, doc.block) {
			if !d.noValue && checkDefault(t, doc.path, refs, d) {
				n++
			}
		}
		if n < doc.minCount {
			t.Errorf("%s: checked only %d defaults, want at least %d: has the table's layout changed?", doc.path, n, doc.minCount)
		}
	}
}

// TestExampleDefaults does the same for the "# default" comments of the
// example configurations.
func TestExampleDefaults(t *testing.T) {
	isolateEnv(t)
	refs := referenceConfigs(t)
	for _, ex := range []string{"examples/taxi-kafka.yaml", "examples/taxi-kinesis.yaml"} {
		// A commented-out setting is read from the example itself, where
		// defaults that follow other settings (file_prefix: the route's
		// name) are the example's.
		own, err := Load(ex)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, d := range exampleDefaults(t, ex) {
			from := refs
			if d.commented {
				from = append([]*Config{own}, refs...)
			}
			if checkDefault(t, ex, from, d) {
				n++
			}
		}
		if n < 25 {
			t.Errorf("%s: checked only %d defaults: has the comments' layout changed?", ex, n)
		}
	}
}

// documented is one default as a document gives it.
type documented struct {
	line  int
	path  string // routes[].parquet.page_size
	value string
	kind  string // for schema.fields[]: the field type the row is about
	// commented: an example's "# key: value  # default", not in effect.
	commented bool
	// noValue: the row documents the key but no literal default (the
	// route's name, none: ...).
	noValue bool
}

// referenceConfigs are minimal configurations that between them have every
// block, so that every default has somewhere to be read from.
func referenceConfigs(t *testing.T) []*Config {
	var out []*Config
	for _, src := range []string{`pipeline: p
source: {kafka: {brokers: "127.0.0.1:9092", topics: [in], group: g}}
schema: {fields: [{name: id, type: int64}, {name: ts, type: timestamp}, {name: tm, type: time}]}
routes:
  - {name: r, parquet: {destination: "file:///tmp/x", path: "{id}"}}
  - {name: o, opensearch: {url: "http://127.0.0.1:9200", index: i, id: "{id}", sigv4: {region: eu-west-1}}}
dlq: {kafka: {topic: dead}}
`, `pipeline: p
source: {kinesis: {stream: s}}
schema: {format: avro, registry: {url: "http://127.0.0.1:8081", subject: s-value}}
routes:
  - {name: r, parquet: {destination: "file:///tmp/x", path: "x"}}
dlq: {kinesis: {stream: d}}
`, `pipeline: p
source: {kafka: {brokers: "127.0.0.1:9092", topics: [in], group: g}}
schema: {fields: [{name: id, type: int64}], cdc: {envelope: debezium}}
routes:
  - {name: r, parquet: {destination: "file:///tmp/x", path: "x"}}
`} {
		c, err := Parse("reference.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// checkDefault compares one documented default with the code's and says
// whether it was compared (values that depend on the environment or on other
// settings are not).
func checkDefault(t *testing.T, doc string, refs []*Config, d documented) bool {
	t.Helper()
	v := d.value
	if strings.HasPrefix(v, "$") || strings.Contains(v, "<") {
		return false
	}
	if strings.HasPrefix(d.path, "routes[].writers.") {
		// A registered writer's settings are YAML to this package: its own
		// tests check these rows (writers/jsonlines: TestDocumentedDefaults).
		return false
	}
	for _, c := range refs {
		field, ok := resolve(c, d)
		if !ok {
			continue
		}
		if err := sameValue(field, v); err != nil {
			t.Errorf("%s:%d: %s: documented default %q: %v", doc, d.line, d.path, v, err)
		}
		return true
	}
	t.Errorf("%s:%d: documents a default for %q, which is not a setting", doc, d.line, d.path)
	return false
}

// resolve finds the setting at a documented path such as
// routes[].opensearch.flush_docs in c: routes[] is the first route with that
// destination, schema.fields[] the first field of the row's type.
func resolve(c *Config, d documented) (reflect.Value, bool) {
	path := d.path
	if rest, ok := strings.CutPrefix(path, "routes[]."); ok {
		dest, _, _ := strings.Cut(rest, ".")
		i := -1
		for j, r := range c.Routes {
			if (dest == "parquet" && r.Parquet != nil) || (dest == "opensearch" && r.OpenSearch != nil) {
				i = j
				break
			}
		}
		if i < 0 {
			return reflect.Value{}, false
		}
		path = routePath(i) + "." + rest
	}
	if rest, ok := strings.CutPrefix(path, "schema.fields[]."); ok {
		i := -1
		for j, f := range c.Schema.Fields {
			if d.kind == "" || f.Type == d.kind {
				i = j
				break
			}
		}
		if i < 0 {
			return reflect.Value{}, false
		}
		path = fmt.Sprintf("schema.fields[%d].%s", i, rest)
	}
	return valueAt(reflect.ValueOf(c).Elem(), path)
}

var (
	headingBlock = regexp.MustCompile("^#+ .*`([a-z0-9_.\\[\\]]+)`")
	fieldKind    = map[string]string{"(timestamps)": "timestamp", "(times)": "time"}
)

// readmeDefaults reads the tables whose header is | setting (or key) |
// default | ... |. A row is | `key`, `key2` | `value`, `value2` (why) |:
// keys after the first are siblings of the first, and a value cell that does
// not start with a value (the route's name, none: ...) documents no literal.
// The keys are relative to the block the nearest heading names in
// backticks, else to block.
func readmeDefaults(t *testing.T, path, block string) []documented {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []documented
	inTable, cur := false, block
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if m := headingBlock.FindStringSubmatch(line); m != nil {
			cur = m[1]
		} else if strings.HasPrefix(line, "#") {
			cur = block
		}
		if !strings.HasPrefix(line, "|") {
			inTable = false
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for j := range cells {
			cells[j] = strings.TrimSpace(cells[j])
		}
		if len(cells) >= 2 && (cells[0] == "setting" || cells[0] == "key") && cells[1] == "default" {
			inTable = true
			continue
		}
		if !inTable || strings.HasPrefix(cells[0], "---") || len(cells) < 2 {
			continue
		}
		keys := splitTicks(cells[0])
		values := cellValues(cells[1], len(keys))
		noValue := values == nil
		if noValue {
			values = make([]string, len(keys))
		}
		if len(values) != len(keys) {
			t.Errorf("%s:%d: row has %d settings and %d values", path, i+1, len(keys), len(values))
			continue
		}
		kind := ""
		for word, k := range fieldKind {
			if strings.Contains(cells[0], word) {
				kind = k
			}
		}
		parent := ""
		for j, k := range keys {
			if j == 0 {
				if cur != "" {
					k = cur + "." + k
				}
				if p := strings.LastIndexByte(k, '.'); p >= 0 {
					parent = k[:p+1]
				}
			} else if cur != "" || !strings.Contains(k, ".") {
				k = parent + k // a sibling of the first
			}
			out = append(out, documented{line: i + 1, path: k, value: values[j], kind: kind, noValue: noValue})
		}
	}
	return out
}

// cellValues returns the first n values of a default cell: `quoted` ones,
// or the whole cell when it is one bare word (5MiB). nil means the cell
// documents no literal value.
func cellValues(cell string, n int) []string {
	if cell == "—" || cell == "" {
		return nil
	}
	if !strings.HasPrefix(cell, "`") {
		if strings.ContainsAny(cell, " ,") {
			return nil
		}
		return []string{cell}
	}
	// "`$AWS_REGION` else `us-east-1`" is one value.
	vals := splitTicks(strings.ReplaceAll(cell, "` else `", " else "))
	if len(vals) > n {
		vals = vals[:n]
	}
	for i, v := range vals {
		if v == `""` {
			vals[i] = ""
		}
	}
	return vals
}

var (
	exampleKey     = regexp.MustCompile(`^( *)(# )?(- )?([a-z_][a-z0-9_]*):(.*)$`)
	exampleDefault = regexp.MustCompile(`^(.*?)\s+# default(?: ([^\s:;,]+))?([:;,].*|\s*$|\s+\(.*)`)
)

// exampleDefaults reads "# default" comments such as
//
//	# fetch_max_bytes: 8MiB   # default; 4 × this is set aside
//	start: earliest           # default earliest: an archive must not skip data
//
// A word after "default" is the default; else the line's own value is.
// Nesting comes from the indentation, commented lines included.
func exampleDefaults(t *testing.T, path string) []documented {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type level struct {
		indent int
		key    string
	}
	var stack []level
	var out []documented
	for i, line := range strings.Split(string(b), "\n") {
		m := exampleKey.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		indent, commented, item, key, rest := len(m[1]), m[2] != "", m[3] != "", m[4], m[5]
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		if item { // "- name: x" opens a list item whose keys sit two columns in
			parent := stack[len(stack)-1].key
			stack = append(stack, level{indent, parent + "[]"})
			indent += 2
		}
		var parts []string
		for j, l := range stack {
			if j+1 < len(stack) && stack[j+1].key == l.key+"[]" {
				continue // routes, routes[] → routes[]
			}
			parts = append(parts, l.key)
		}
		full := strings.Join(append(parts, key), ".")
		stack = append(stack, level{indent, key})

		d := exampleDefault.FindStringSubmatch(rest)
		if d == nil {
			continue
		}
		value := strings.TrimSpace(d[1])
		if strings.HasPrefix(value, "{") || strings.HasPrefix(value, "[") {
			continue // a flow mapping: its comment is about a key inside
		}
		if d[2] != "" {
			value = d[2]
		}
		if value == "" || strings.ContainsAny(value, "{[$/") {
			continue // a block, a flow mapping, or a value from the environment
		}
		out = append(out, documented{line: i + 1, path: full, value: value, commented: commented})
	}
	return out
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

// sameValue reads documented the way the configuration reads the field.
func sameValue(field reflect.Value, documented string) error {
	var want any
	var err error
	switch got := field.Interface().(type) {
	case Size:
		want, err = ParseSize(documented)
	case Duration:
		var d time.Duration
		d, err = time.ParseDuration(documented)
		want = Duration(d)
	case int:
		want, err = strconv.Atoi(documented)
	case int32:
		var n int64
		n, err = strconv.ParseInt(documented, 10, 32)
		want = int32(n)
	case int16:
		var n int64
		n, err = strconv.ParseInt(documented, 10, 16)
		want = int16(n)
	case bool:
		want, err = strconv.ParseBool(documented)
	case *bool:
		// create: unset means true (Creates).
		b := got == nil || *got
		field = reflect.ValueOf(b)
		want, err = strconv.ParseBool(documented)
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

// TestEveryDefaultDocumented fails when a plugin's SetDefaults fills a
// setting that its README's settings table does not list: a default nobody
// can find is as bad as a wrong one.
func TestEveryDefaultDocumented(t *testing.T) {
	isolateEnv(t)
	kafkaCfg, kinesisCfg, s3 := &Kafka{}, &Kinesis{}, &S3{}
	kafkaCfg.SetDefaults(nil)
	kinesisCfg.SetDefaults()
	s3.SetDefaults()
	search := &OpenSearch{SigV4: &SigV4{}}
	search.SetDefaults(false)
	pq, mem := &Parquet{}, &Memory{}
	pq.SetDefaults("r")
	mem.SetDefaults(false)
	dl := &DLQ{Kafka: &DLQKafka{}, Kinesis: &DLQKinesis{}}
	dl.SetDefaults(false)
	for _, b := range []struct {
		doc, block string
		cfg        any
	}{
		{"../source/kafka/README.md", "source.kafka", kafkaCfg},
		{"../source/kinesis/README.md", "source.kinesis", kinesisCfg},
		{"../store/README.md", "s3", s3},
		{"../writers/opensearch/README.md", "routes[].opensearch", search},
		{"../writers/parquetsink/README.md", "routes[].parquet", pq},
		{"../writers/parquetsink/README.md", "memory", mem},
		{"../dlq/README.md", "dlq", dl},
	} {
		block := ""
		for _, d := range defaultsDocs {
			if d.path == b.doc {
				block = d.block
			}
		}
		listed := map[string]bool{}
		for _, d := range readmeDefaults(t, b.doc, block) {
			listed[d.path] = true
		}
		for _, key := range defaultedKeys(reflect.ValueOf(b.cfg), b.block) {
			if !listed[key] {
				t.Errorf("%s: %s has a default but no row in a settings table", b.doc, key)
			}
		}
	}
}

// defaultedKeys lists the YAML paths of the non-zero settings under v.
func defaultedKeys(v reflect.Value, path string) []string {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct {
		var out []string
		for i := 0; i < v.Len(); i++ {
			out = append(out, defaultedKeys(v.Index(i), fmt.Sprintf("%s[%d]", path, i))...)
		}
		return out
	}
	if v.Kind() != reflect.Struct {
		if v.IsZero() {
			return nil
		}
		return []string{path}
	}
	var out []string
	for i := 0; i < v.NumField(); i++ {
		tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		out = append(out, defaultedKeys(v.Field(i), path+"."+tag)...)
	}
	return out
}

// TestEveryDefaultInConfigReadme is TestEveryDefaultDocumented for
// config/README.md's table of full paths, over every block: a setting that
// the reference files leave out but Parse fills in must have a row.
func TestEveryDefaultInConfigReadme(t *testing.T) {
	isolateEnv(t)
	listed := map[string]bool{}
	for _, d := range readmeDefaults(t, "README.md", "") {
		listed[d.path] = true
	}
	index := regexp.MustCompile(`\[\d+\]`)
	for _, c := range referenceConfigs(t) {
		for _, key := range defaultedKeys(reflect.ValueOf(c).Elem(), "") {
			key = strings.TrimPrefix(key, ".")
			if c.isSet(key) {
				continue // given by the reference file, not a default
			}
			if doc := index.ReplaceAllString(key, "[]"); !listed[doc] {
				t.Errorf("README.md: %s has a default but no row in the defaults table", doc)
			}
		}
	}
}
