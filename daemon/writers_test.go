package daemon

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/taxi"
)

// Settings under routes[].writers are checked by `sinkd validate`: an unknown
// writer and a registered writer's own problems are reported with their lines.
func TestValidateChecksRegisteredWriters(t *testing.T) {
	for _, tt := range []struct {
		name, writers string
		want          []string
	}{
		{"ok", `jsonlines: {destination: "file:///tmp/x", path: "type={type}"}`, nil},
		{"unknown writer", `jsonlinez: {destination: "file:///tmp/x"}`, []string{`:16: routes[0].writers.jsonlinez: unknown writer "jsonlinez" (this build has: jsonlines)`}},
		{"bad settings", `jsonlines: {destination: "file:///tmp/x", path: "type={tpye}", colour: red}`, []string{`routes[0].writers.jsonlines`, `colour`}},
		{"bad template", `jsonlines: {destination: "file:///tmp/x", path: "type={tpye}"}`, []string{`:16: routes[0].writers.jsonlines.path: template "type={tpye}": at offset 5: unknown field "tpye", did you mean "type"?`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			yaml := fmt.Sprintf(`pipeline: w
instance_id: i
source: {kafka: {brokers: "127.0.0.1:9092", topics: [in], group: g}}
schema:
  fields:%s
routes:
  - name: trips
    writers:
      %s
checkpoint: {store: "file:///tmp/unused"}
`, taxi.FieldsYAML, tt.writers)
			// The line of the writers' settings depends on the schema's
			// length: make the wanted lines relative to it.
			line := strings.Count(yaml[:strings.Index(yaml, "      j")], "\n") + 1
			cfg, err := config.Parse("w.yaml", []byte(yaml))
			if err == nil {
				err = Check(cfg)
			}
			if tt.want == nil {
				if err != nil {
					t.Fatalf("unexpected problems: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no problem reported")
			}
			for _, w := range tt.want {
				w = strings.Replace(w, ":16:", fmt.Sprintf(":%d:", line), 1)
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problems %q lack %q", err, w)
				}
			}
		})
	}
}
