package daemon

import (
	"strings"
	"testing"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/schema"
)

// TestVersionFieldTypeAtStart: with an Avro schema the fields are known only
// at start, so compileRoutes checks what validate checks for JSON schemas:
// version_field is read as a whole number, so a string field is refused,
// on the version_field's line.
func TestVersionFieldTypeAtStart(t *testing.T) {
	cfg, err := config.Parse("p.yaml", []byte(`pipeline: p
source: {kafka: {brokers: "127.0.0.1:9092", topics: [in], group: g}}
schema: {fields: [{name: id, type: int64}, {name: v, type: int64}]}
checkpoint: {store: "file:///tmp/sinkd-version-field"}
routes:
  - name: o
    opensearch:
      url: http://127.0.0.1:9200
      index: i
      id: "{id}"
      version_field: v
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		typ  string
		want string // "" for no problem
	}{
		{"int64", ""},
		{"int32", ""},
		{"timestamp", ""},
		{"string", `p.yaml:11: routes[0].opensearch.version_field: "v" is a string field`},
		{"double", `"v" is a double field`},
	} {
		// The schema as a registry might derive it.
		s, err := schema.New([]conf.Field{{Name: "id", Type: "int64"}, {Name: "v", Type: tt.typ}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = compileRoutes(cfg, s)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.typ, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: error %v, want it to contain %q", tt.typ, err, tt.want)
		}
	}
}

// TestTooDeepSchemaRefusedByValidate: a schema nested deeper than the
// Parquet writer can stage is refused by sinkd validate (Check), on the
// schema's line, not only when the writer starts.
func TestTooDeepSchemaRefusedByValidate(t *testing.T) {
	// Each optional struct adds a definition level; 16 leave the leaf at 17.
	inner := "{name: x, type: int64}"
	for range 16 {
		inner = "{name: s, type: struct, fields: [" + inner + "]}"
	}
	src := "pipeline: p\nsource: {kafka: {brokers: \"127.0.0.1:9092\", topics: [in], group: g}}\nschema:\n  fields: [" + inner + "]\n" +
		"routes: [{name: r, parquet: {destination: \"file:///tmp/sinkd-deep\", path: x}}]\n"
	cfg, err := config.Parse("p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	err = Check(cfg)
	if err == nil || !strings.Contains(err.Error(), "p.yaml:3: schema: column s.s.s") || !strings.Contains(err.Error(), "nested deeper than 15 levels") {
		t.Fatalf("Check: %v, want the nesting refused on line 3", err)
	}
}
