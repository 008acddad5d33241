package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestExplicitZeroIsNeverTheDefault: a written 0 is either kept (where zero
// means something) or refused with the default named; never silently replaced.
func TestExplicitZeroIsNeverTheDefault(t *testing.T) {
	isolateEnv(t)
	tests := []struct {
		name, yaml, path string
		refused          bool
	}{
		{"interval", "checkpoint: {interval: 0}\n", "checkpoint.interval", true},
		{"interval 0s", "checkpoint: {interval: 0s}\n", "checkpoint.interval", true},
		{"budget", "memory: {budget: 0}\n", "memory.budget", true},
		{"open files", "memory: {max_open_files: 0}\n", "memory.max_open_files", true},
		{"record size", "max_record_size: 0\n", "max_record_size", true},
		{"nested in a route", strings.Replace(baseYAML, "      path: kind={kind}\n", "      path: kind={kind}\n      target_file_size: 0\n", 1), "routes[0].parquet.target_file_size", true},
		{"from a variable", "checkpoint:\n  interval: ${SINKD_TEST_ZERO:-0}\n", "checkpoint.interval", true},
		{"max_redrives keeps 0", "dlq: {max_redrives: 0, file: /tmp/x.jsonl}\n", "dlq.max_redrives", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.yaml
			if !strings.HasPrefix(src, "pipeline:") {
				src = baseYAML + src
			}
			c, err := Parse("test.yaml", []byte(src))
			if !tt.refused {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if v, _ := valueAt(reflectOf(c), tt.path); !v.IsZero() {
					t.Errorf("%s = %v, want the explicit 0 kept", tt.path, v)
				}
				return
			}
			if err == nil {
				t.Fatalf("%s: 0 accepted (and silently replaced by the default)", tt.path)
			}
			found := false
			for _, p := range problemsOf(t, err) {
				if p.Path == tt.path && strings.Contains(p.Msg, "0 is not allowed here; leave the key out for the default") {
					found = true
				}
			}
			if !found {
				t.Errorf("no problem about %s: %v", tt.path, err)
			}
		})
	}
}

// TestBooleansAreTrueOrFalse: YAML 1.1 words and quoted text are not booleans.
func TestBooleansAreTrueOrFalse(t *testing.T) {
	isolateEnv(t)
	for _, v := range []string{`"yes"`, `yes`, `on`, `"true"`, `1`} {
		src := strings.Replace(baseYAML, "{name: id, type: int64, required: true}", "{name: id, type: int64, required: "+v+"}", 1)
		_, err := Parse("test.yaml", []byte(src))
		if err == nil || !strings.Contains(err.Error(), "schema.fields[0].required: expected true or false") {
			t.Errorf("required: %s: got %v, want it refused", v, err)
		}
	}
	t.Setenv("SINKD_TEST_BOOL", "true")
	src := strings.Replace(baseYAML, "- {name: id, type: int64, required: true}", "- name: id\n      type: int64\n      required: ${SINKD_TEST_BOOL}", 1)
	if c := mustParse(t, src); !c.Schema.Fields[0].Required {
		t.Error("a plain ${VAR} holding true is not a bool")
	}
}

func reflectOf(c *Config) reflect.Value { return reflect.ValueOf(c).Elem() }
