// Over 500 lines on purpose: one concern, the YAML loader with its line
// tracking and problem list; every function serves turning nodes into a
// Config with positioned problems.

package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/sinkd/sinkd/config/conf"
	"gopkg.in/yaml.v3"
)

// Load reads, expands, decodes, defaults and validates the configuration file
// at path. On failure the error is a *Problems listing everything wrong, each
// with its line, unless the file could not be read at all.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse is Load for a configuration already in memory; name is the file name
// used in problem reports.
//
// The steps, in order: parse into a yaml.Node; expand ${VAR} references in
// scalar values from the process environment; check every key and value against
// the schema (unknown keys, duplicate keys, values of the wrong type), collecting
// all problems; decode; apply defaults (defaults.go); validate.
func Parse(name string, data []byte) (*Config, error) {
	cfg, err := parse(name, data)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// LoadPartial is Load that also returns what could be decoded when there are
// problems (nil only when the file does not read or parse as YAML), so that
// `sinkd validate` can compile the templates and report their problems in the
// same pass as the others. A configuration with problems must not be run.
func LoadPartial(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parse(path, data)
}

func parse(name string, data []byte) (*Config, error) {
	l := &loader{file: name, lookup: os.LookupEnv, keys: map[string]keyPos{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, NewProblems(l.syntaxProblem(err))
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	if root.Kind == 0 || root.Kind == yaml.DocumentNode || isNull(root) {
		return nil, NewProblems(problemf(name, 0, "", "the configuration is empty"))
	}
	l.keys[""] = keyPos{line: root.Line, set: true}
	l.index(root, "")
	l.check(root, reflect.TypeFor[Config](), "")

	cfg := &Config{origin: &origin{file: name, keys: l.keys}}
	l.decode(root, cfg)
	zeros := l.explicitZeros(cfg)
	applyDefaults(cfg)
	l.rejectDefaultedZeros(cfg, zeros)
	problems := l.problems
	for _, p := range cfg.validate() {
		if !l.reported(p.Path) {
			problems = append(problems, p)
		}
	}
	if err := NewProblems(problems...); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// origin remembers where each key of a loaded file was, so that validation here
// and template compilation in later stages can point at a line.
type origin struct {
	file string
	keys map[string]keyPos // by YAML path
}

type keyPos struct {
	line int  // of the key, or of the item in a list
	set  bool // given a value: not null, and not a ${VAR} reference that expanded to ""
}

// Pos returns "file:line" for a YAML path such as routes[0].parquet.path. For a
// key that is not in the file it returns the position of the nearest enclosing
// key that is, and for a configuration that was not loaded from YAML, "".
func (c *Config) Pos(path string) string {
	file, line := c.locate(path)
	if line == 0 {
		return file
	}
	return file + ":" + strconv.Itoa(line)
}

// Problem makes a Problem located at path (see Pos), for stages after loading
// that find something wrong in the configuration. Collect them and return
// NewProblems(list...).
func (c *Config) Problem(path, format string, args ...any) Problem {
	file, line := c.locate(path)
	return problemf(file, line, path, format, args...)
}

func (c *Config) locate(path string) (file string, line int) {
	if c.origin == nil {
		return "", 0
	}
	for p := path; ; p = parentPath(p) {
		if k, ok := c.origin.keys[p]; ok {
			return c.origin.file, k.line
		}
		if p == "" {
			return c.origin.file, 0
		}
	}
}

// isSet reports whether the file gave path a value. Defaults use it where the
// zero value is meaningful (http.addr: "" turns the server off).
func (c *Config) isSet(path string) bool {
	return c.origin != nil && c.origin.keys[path].set
}

func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		return p[:strings.LastIndexByte(p, '[')]
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// loader holds the state of one Parse.
type loader struct {
	file     string
	lookup   func(string) (string, bool)
	keys     map[string]keyPos
	problems []Problem
}

func (l *loader) addf(line int, path, format string, args ...any) {
	l.problems = append(l.problems, problemf(l.file, line, path, format, args...))
}

// reported says whether a loading problem already covers path or a parent of
// it, so that validation does not repeat it ("x is required" after "x is not a number").
func (l *loader) reported(path string) bool {
	for _, p := range l.problems {
		if p.Path != "" && (path == p.Path || strings.HasPrefix(path, p.Path+".") || strings.HasPrefix(path, p.Path+"[")) {
			return true
		}
	}
	return false
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func (l *loader) syntaxProblem(err error) Problem {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return problemf(l.file, line, "", "YAML syntax: %s", m[2])
	}
	return problemf(l.file, 0, "", "YAML syntax: %s", strings.TrimPrefix(msg, "yaml: "))
}

// decode decodes the checked document into cfg. yaml.v3 panics on a few
// malformed documents (merge keys beside non-scalar keys, for one) instead of
// returning an error; a configuration file is outside input, so such a panic
// becomes a problem report.
func (l *loader) decode(root *yaml.Node, cfg *Config) {
	defer func() {
		if r := recover(); r != nil {
			l.addf(root.Line, "", "the YAML decoder failed on this document: %v", r)
		}
	}()
	if err := root.Decode(cfg); err != nil {
		l.decodeProblems(err)
	}
}

// decodeProblems reports what the decoder found despite check; check is meant
// to catch everything first, so this is a safety net.
func (l *loader) decodeProblems(err error) {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		l.addf(0, "", "%v", err)
		return
	}
	for _, msg := range te.Errors {
		line, text := splitLine(msg)
		l.addf(line, "", "%s", text)
	}
}

func splitLine(msg string) (int, string) {
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return line, m[2]
	}
	return 0, msg
}

// index expands environment references in every scalar value (keys are left
// alone) and records the line of every key and list item.
func (l *loader) index(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := joinPath(path, k.Value)
			set := l.expandValue(v, p)
			if _, dup := l.keys[p]; !dup {
				l.keys[p] = keyPos{line: k.Line, set: set}
			}
			l.index(v, p)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			l.keys[p] = keyPos{line: c.Line, set: l.expandValue(c, p)}
			l.index(c, p)
		}
	}
}

// expandValue expands n if it is a scalar and reports whether it holds a value.
func (l *loader) expandValue(n *yaml.Node, path string) bool {
	if n.Kind != yaml.ScalarNode {
		return n.Kind != yaml.AliasNode || !isNull(n.Alias)
	}
	val, used, err := expand(n.Value, l.lookup)
	if err != nil {
		l.addf(n.Line, path, "%v", err)
		nullify(n)
		return false
	}
	n.Value = val // also when only $$ was unescaped
	if !used {
		return !isNull(n)
	}
	if n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
		// A plain scalar is typed by what it expands to, as if written in
		// the file: port: ${PORT} reads as a number. Only the empty
		// string means null; "null" from the environment stays text.
		switch val {
		case "":
			n.Tag = "!!null"
		case "~", "null", "Null", "NULL":
			n.Tag = "!!str"
		default:
			n.Tag = ""
		}
	}
	return val != ""
}

func isNull(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// nullify replaces a value already reported as wrong by null, so the decoder
// neither reports it again nor stops on it.
func nullify(n *yaml.Node) {
	*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// check walks the document alongside the Go type it decodes into and reports
// unknown keys, duplicate keys and values of the wrong shape or type, with the
// path and line of each. yaml.v3 can do strict decoding only from bytes, not
// from an expanded node, and its messages name Go types; this walk knows the
// YAML path and the keys allowed at each level.
func (l *loader) check(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode {
		// Anchored values were checked where they are defined.
		return
	}
	if isNull(n) {
		return
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			l.unmarshalerProblems(n, path, err)
			nullify(n)
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		l.check(n, t.Elem(), path)
	case reflect.Struct:
		l.checkMapping(n, t, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			l.addf(n.Line, path, "expected a list, got %s", describe(n))
			nullify(n)
			return
		}
		for i, c := range n.Content {
			l.check(c, t.Elem(), path+"["+strconv.Itoa(i)+"]")
		}
	default:
		if n.Kind != yaml.ScalarNode {
			l.addf(n.Line, path, "expected a single value, got %s", describe(n))
			nullify(n)
			return
		}
		if t.Kind() == reflect.Bool && n.ShortTag() != "!!bool" {
			// yaml.v3 decodes YAML 1.1 words (yes, on, "yes") into a bool
			// target; a quoted "yes" reading as true hides a mistake.
			l.addf(n.Line, path, "expected true or false, got %q", n.Value)
			nullify(n)
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			l.addf(n.Line, path, "expected %s, got %q", kindName(t.Kind()), n.Value)
			nullify(n)
		}
	}
}

func (l *loader) checkMapping(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		l.addf(n.Line, path, "expected a mapping with keys %s, got %s", strings.Join(yamlKeys(t), ", "), describe(n))
		nullify(n)
		return
	}
	allowed := yamlKeys(t)
	first := map[string]int{}
	for i := 0; i+1 < len(n.Content); {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "<<" && k.ShortTag() == "!!merge" {
			i += 2 // merged mappings are checked where they are defined
			continue
		}
		if k.Kind != yaml.ScalarNode {
			l.addf(k.Line, path, "a key must be a plain name, got %s", describe(k))
			n.Content = slices.Delete(n.Content, i, i+2)
			continue
		}
		p := joinPath(path, k.Value)
		if line, dup := first[k.Value]; dup {
			l.addf(k.Line, p, "duplicate key %q (first given on line %d)", k.Value, line)
			n.Content = slices.Delete(n.Content, i, i+2)
			continue
		}
		first[k.Value] = k.Line
		f, ok := yamlField(t, k.Value)
		if !ok {
			msg := fmt.Sprintf("unknown key %q", k.Value)
			if s := closest(k.Value, allowed); s != "" {
				msg += fmt.Sprintf(", did you mean %q?", s)
			}
			l.addf(k.Line, p, "%s (allowed here: %s)", msg, strings.Join(allowed, ", "))
		} else {
			l.check(v, f.Type, p)
		}
		i += 2
	}
}

func (l *loader) unmarshalerProblems(n *yaml.Node, path string, err error) {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		l.addf(n.Line, path, "%v", err)
		return
	}
	for _, msg := range te.Errors {
		line, text := splitLine(msg)
		if line == 0 {
			line = n.Line
		}
		l.addf(line, path, "%s", text)
	}
}

func yamlKeys(t reflect.Type) []string {
	var keys []string
	for f := range t.Fields() {
		if k := yamlKey(f); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

func yamlField(t reflect.Type, key string) (reflect.StructField, bool) {
	for f := range t.Fields() {
		if yamlKey(f) == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func yamlKey(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

func kindName(k reflect.Kind) string {
	switch k {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "text"
}

// closest returns the allowed key within two edits of key, if there is one:
// most unknown keys are typos.
func closest(key string, allowed []string) string {
	best, bestDist := "", 3
	for _, a := range allowed {
		if d := conf.EditDistance(key, a); d < bestDist {
			best, bestDist = a, d
		}
	}
	return best
}

// explicitZeros returns the numeric settings (counts, sizes, durations) that
// the file set to zero, before defaults are applied.
func (l *loader) explicitZeros(cfg *Config) []string {
	var zeros []string
	root := reflect.ValueOf(cfg).Elem()
	for path, k := range l.keys {
		if !k.set || path == "" || l.reported(path) {
			continue
		}
		if v, ok := valueAt(root, path); ok && isNumber(v.Kind()) && v.IsZero() {
			zeros = append(zeros, path)
		}
	}
	return zeros
}

// rejectDefaultedZeros reports every explicit zero that a default replaced: a
// written 0 must never silently mean "the default". Settings where zero means
// something (max_retries: 0) keep it, and pass.
func (l *loader) rejectDefaultedZeros(cfg *Config, zeros []string) {
	root := reflect.ValueOf(cfg).Elem()
	for _, path := range zeros {
		v, ok := valueAt(root, path)
		if !ok || v.IsZero() {
			continue
		}
		def := fmt.Sprint(v.Interface())
		if s, ok := v.Interface().(fmt.Stringer); ok {
			def = s.String()
		}
		l.addf(l.keys[path].line, path, "0 is not allowed here; leave the key out for the default (%s)", def)
		v.SetZero()
	}
}

func isNumber(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// valueAt finds the field at a YAML path such as routes[0].parquet.roll_size
// in a decoded configuration.
func valueAt(v reflect.Value, path string) (reflect.Value, bool) {
	for _, part := range strings.Split(path, ".") {
		key, rest, _ := strings.Cut(part, "[")
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return reflect.Value{}, false
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return reflect.Value{}, false
		}
		f, ok := yamlField(v.Type(), key)
		if !ok {
			return reflect.Value{}, false
		}
		v = v.FieldByIndex(f.Index)
		for rest != "" {
			idx, after, _ := strings.Cut(rest, "]")
			i, err := strconv.Atoi(idx)
			if err != nil || v.Kind() != reflect.Slice || i >= v.Len() {
				return reflect.Value{}, false
			}
			v = v.Index(i)
			rest = strings.TrimPrefix(after, "[")
		}
	}
	return v, true
}
