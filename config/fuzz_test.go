package config

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary documents to Parse: it must never panic, and it
// either returns a configuration or a *Problems with at least one problem.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"examples/taxi-kafka.yaml", "examples/taxi-kinesis.yaml", "examples/demo.yaml", "testdata/three-mistakes.yaml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("a: &x {b: *x}\n"))
	f.Add([]byte("source: {kafka: &k {group: g}, <<: *k}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err == nil {
			if c == nil {
				t.Fatal("nil config without error")
			}
			return
		}
		var ps *Problems
		if !errors.As(err, &ps) || len(ps.List) == 0 {
			t.Fatalf("error %v is not a non-empty *Problems", err)
		}
	})
}

func FuzzExpand(f *testing.F) {
	for _, s := range []string{"${A}", "${A:-x}", "$$", "${", "a$b${B-c}d"} {
		f.Add(s)
	}
	lookup := func(k string) (string, bool) { return strings.ToLower(k), k != "UNSET" }
	f.Fuzz(func(t *testing.T, s string) {
		out, used, err := expand(s, lookup)
		if err == nil && !used && !strings.Contains(s, "$$") && out != s {
			t.Fatalf("expand(%q) = %q without a reference", s, out)
		}
	})
}
