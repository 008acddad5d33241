package dlq_test

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/dlq"
	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/taxi"
)

// TestEveryEmittedClassIsAReason reads the packages that produce dead-letter
// classes and checks that each class they can emit is a label of
// sinkd_dlq_records_total, not "other": the Class* constants of the decoder,
// the bucket templates and the KPL reader, and every literal class passed to
// a deadLetter call (pipeline, OpenSearch writer).
func TestEveryEmittedClassIsAReason(t *testing.T) {
	found := map[string]string{} // class -> where
	for _, dir := range []string{"../schema", "../buckets", "../source/kinesis/kpl"} {
		for class, where := range classConstants(t, dir) {
			found[class] = where
		}
	}
	for _, dir := range []string{"../daemon", "../writers/opensearch"} {
		for class, where := range deadLetterLiterals(t, dir) {
			found[class] = where
		}
	}
	for _, must := range []string{"malformed_json", "not_utf8", "missing_required", "missing_field", "kpl_checksum", "oversize"} {
		if _, ok := found[must]; !ok {
			t.Errorf("the scan did not find class %q: it no longer sees what the stages emit", must)
		}
	}
	for class, where := range found {
		if got := dlq.Reason(class); got != class {
			t.Errorf("class %q (%s) is counted as reason %q: add it to the class table in dlq/reason.go", class, where, got)
		}
	}
}

// TestDecoderClassesAreReasons runs the real decoder, on the demo's schema, over
// every kind of broken event the taxi generator makes and over the decoder's own
// corpus of bad values: no failure may end up as reason "other".
func TestDecoderClassesAreReasons(t *testing.T) {
	cfg, err := config.Load("../config/examples/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := schema.New(cfg.Schema.Fields)
	if err != nil {
		t.Fatal(err)
	}
	dec := s.NewDecoder()
	values := map[string][]byte{}
	g := taxi.NewGenerator(1, taxi.DefaultStart())
	for _, k := range taxi.BadKinds() {
		if k != taxi.Oversized { // oversize is decided before decoding
			values["taxi "+string(k)] = g.Bad(k)
		}
	}
	paths, _ := filepath.Glob("../schema/testdata/bad/*.json")
	if len(paths) == 0 {
		t.Fatal("no decoder corpus in ../schema/testdata/bad")
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		values[filepath.Base(p)] = b
	}
	seen := map[string]bool{}
	for name, v := range values {
		_, err := dec.Decode(v, make(parquet.Row, 0, 32))
		var se *schema.Error
		if !errors.As(err, &se) {
			continue // valid for this schema (the corpus targets another one)
		}
		seen[se.Class] = true
		if got := dlq.Reason(se.Class); got != se.Class {
			t.Errorf("%s: decoder class %q is counted as reason %q", name, se.Class, got)
		}
	}
	if len(seen) < 5 {
		t.Errorf("only %d distinct classes decoded (%v): the test no longer exercises the decoder", len(seen), seen)
	}
}

// TestClassTable checks the table itself: unique classes, each with a known
// stage and a meaning, all valid label values.
func TestClassTable(t *testing.T) {
	label := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	seen := map[string]bool{}
	for _, c := range dlq.Classes() {
		if seen[c.Class] {
			t.Errorf("class %q twice", c.Class)
		}
		seen[c.Class] = true
		if !label.MatchString(c.Class) || c.Meaning == "" || c.Stage == "" {
			t.Errorf("bad row %+v", c)
		}
	}
	if dlq.Reason("no such class") != dlq.ReasonOther {
		t.Error("an unknown class is not clamped to other")
	}
}

func parseDir(t *testing.T, dir string) []*ast.File {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

// classConstants returns the string constants named Class* in dir.
func classConstants(t *testing.T, dir string) map[string]string {
	out := map[string]string{}
	for _, f := range parseDir(t, dir) {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if !strings.HasPrefix(n.Name, "Class") || i >= len(vs.Values) {
						continue
					}
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						v, _ := strconv.Unquote(lit.Value)
						out[v] = dir + " " + n.Name
					}
				}
			}
		}
	}
	return out
}

// deadLetterLiterals returns the string literals that look like a class among
// the arguments of calls to a function or method named deadLetter in dir.
func deadLetterLiterals(t *testing.T, dir string) map[string]string {
	class := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	out := map[string]string{}
	for _, f := range parseDir(t, dir) {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			name := ""
			switch fn := call.Fun.(type) {
			case *ast.SelectorExpr:
				name = fn.Sel.Name
			case *ast.Ident:
				name = fn.Name
			}
			if name != "deadLetter" {
				return true
			}
			for _, a := range call.Args {
				if lit, ok := a.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if v, _ := strconv.Unquote(lit.Value); class.MatchString(v) {
						out[v] = dir + " deadLetter call"
					}
				}
			}
			return true
		})
	}
	return out
}
