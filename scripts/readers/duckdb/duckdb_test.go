package duckdb

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeRows(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    []map[string]any
		wantErr string
	}{
		{
			name: "scalars",
			out:  `[{"n":3,"amount":12.34,"big":"9007199254740993","ts":"2018-01-01T00:00:00Z","s":null,"ok":true}]`,
			want: []map[string]any{{"n": int64(3), "amount": 12.34, "big": "9007199254740993", "ts": "2018-01-01T00:00:00Z", "s": nil, "ok": true}},
		},
		{
			name: "nested lists and structs",
			out:  `[{"l":[1,2.5],"st":{"x":-7,"y":[0]}}]`,
			want: []map[string]any{{"l": []any{int64(1), 2.5}, "st": map[string]any{"x": int64(-7), "y": []any{int64(0)}}}},
		},
		{
			name: "int64 extremes stay exact",
			out:  `[{"max":9223372036854775807,"min":-9223372036854775808,"past53":9007199254740993}]`,
			want: []map[string]any{{"max": int64(9223372036854775807), "min": int64(-9223372036854775808), "past53": int64(9007199254740993)}},
		},
		{
			name: "integers beyond int64 keep their text",
			out:  `[{"u":18446744073709551615,"h":-170141183460469231731687303715884105727}]`,
			want: []map[string]any{{"u": "18446744073709551615", "h": "-170141183460469231731687303715884105727"}},
		},
		{
			name: "fractions with integral values stay float64",
			out:  `[{"dec":0.00,"neg":-5.50,"dbl":1.0,"exp":1e+300}]`,
			want: []map[string]any{{"dec": 0.0, "neg": -5.5, "dbl": 1.0, "exp": 1e300}},
		},
		{
			name: "no rows",
			out:  "[]\n",
			want: []map[string]any{},
		},
		{name: "null", out: "null", wantErr: "no result array"},
		{name: "not json", out: "Catalog Error", wantErr: "decoding query.js output"},
		{name: "not rows", out: `{"n":1}`, wantErr: "decoding query.js output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeRows([]byte(tt.out))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("decodeRows(%q) error = %v, want one containing %q", tt.out, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodeRows(%q): %v", tt.out, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("decodeRows(%q) = %#v, want %#v", tt.out, got, tt.want)
			}
		})
	}
}

func TestScriptsDir(t *testing.T) {
	tests := []struct {
		name    string
		wd      func(t *testing.T) string
		wantErr bool
	}{
		{name: "package directory", wd: func(*testing.T) string { return "." }},
		{name: "repository root", wd: func(*testing.T) string { return filepath.Join("..", "..", "..") }},
		{name: "outside the repository", wd: func(t *testing.T) string { return t.TempDir() }, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(tt.wd(t))
			dir, err := scriptsDir()
			if tt.wantErr {
				if err == nil {
					t.Fatalf("scriptsDir() = %q, want an error", dir)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"query.js", "install.sh", "package-lock.json"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("scriptsDir() = %q, which lacks %s: %v", dir, f, err)
				}
			}
		})
	}
}
