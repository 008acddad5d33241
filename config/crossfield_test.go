package config

import (
	"fmt"
	"strings"
	"testing"
)

// crossYAML is a valid pipeline whose lines the cases below point at.
const crossYAML = `pipeline: test
checkpoint: {store: "file:///tmp/sinkd-cross"}
source:
  kafka:
    brokers: [127.0.0.1:9092]
    topics: [trips]
    group: g
schema:
  fields:
    - {name: id, type: int64, required: true}
    - {name: kind, type: string}
    - {name: at, type: timestamp}
    - {name: n, type: int32}
    - {name: amount, type: double}
routes:
  - name: all
    opensearch:
      url: http://127.0.0.1:9200
      index: trips
      id: "{id}"
`

// TestCrossFieldRules: every rule that joins two settings, or a setting and
// the schema, is reported by Parse with the line of the setting to change,
// not left for a constructor to refuse at start (or for the pipeline to get
// wrong at run time).
func TestCrossFieldRules(t *testing.T) {
	tests := []struct {
		name string
		add  string // appended to crossYAML's opensearch block, or the whole file when it starts with "pipeline:"
		line int
		path string
		msg  string // "" for no problem
	}{
		{"create with version_field", "      action: create\n      version_field: id\n", 22, "routes[0].opensearch.version_field", "cannot be used with action: create"},
		{"version_field not in the schema", "      version_field: nope\n", 21, "routes[0].opensearch.version_field", `"nope" is not a schema field`},
		{"version_field a string", "      version_field: kind\n", 21, "routes[0].opensearch.version_field", `"kind" is a string field; an external version is a whole number`},
		{"version_field a double", "      version_field: amount\n", 21, "routes[0].opensearch.version_field", `"amount" is a double field`},
		{"version_field int64", "      version_field: id\n", 0, "", ""},
		{"version_field int32", "      version_field: n\n", 0, "", ""},
		{"version_field timestamp", "      version_field: at\n", 0, "", ""},
		{"pprof without the admin listener", "http:\n  pprof: true\n", 22, "http.pprof", "needs http.admin.addr"},
		{"pprof with the admin listener", "http:\n  pprof: true\n  admin: {addr: 127.0.0.1:0}\n", 0, "", ""},
		{"msk iam without tls", "dlq:\n  kafka:\n    topic: dead\n    sasl: {mechanism: aws-msk-iam}\n", 24, "dlq.kafka.sasl.mechanism", "aws-msk-iam needs tls.enabled: true"},
		{"msk iam with tls", "dlq:\n  kafka:\n    topic: dead\n    tls: {enabled: true}\n    sasl: {mechanism: aws-msk-iam}\n", 0, "", ""},
		{"dead letters into the source topic", "dlq:\n  kafka: {topic: trips}\n", 22, "dlq.kafka.topic", `"trips" is a topic the source reads`},
		{"dead letters into the source topic on another cluster", "dlq:\n  kafka: {topic: trips, brokers: [127.0.0.2:9092]}\n", 0, "", ""},
		{"dead letters into the source stream", strings.Replace(crossYAML, "  kafka:\n    brokers: [127.0.0.1:9092]\n    topics: [trips]\n    group: g\n", "  kinesis: {stream: trips}\n", 1) + "dlq:\n  kinesis: {stream: trips}\n", 19, "dlq.kinesis.stream", `"trips" is the stream the source reads`},
		{"registry tls key without cert", strings.Replace(crossYAML, "  fields:\n", "  format: avro\n  registry:\n    url: http://127.0.0.1:8081\n    subject: trips-value\n    tls: {enabled: true, key_file: /k.pem}\n  fields:\n", 1), 13, "schema.registry.tls", "cert_file and key_file go together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateEnv(t)
			src := crossYAML + tt.add
			if strings.HasPrefix(tt.add, "pipeline:") {
				src = tt.add
			}
			if tt.name == "registry tls key without cert" {
				// avro takes its fields from the registry, and the
				// opensearch route stays valid.
				src = src[:strings.Index(src, "  fields:\n")] + src[strings.Index(src, "routes:"):]
			}
			_, err := Parse("test.yaml", []byte(src))
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("want no problem, got:\n%v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no problem reported; want %s on line %d", tt.path, tt.line)
			}
			var got []string
			for _, p := range problemsOf(t, err) {
				if p.Line == tt.line && p.Path == tt.path && strings.Contains(p.Msg, tt.msg) {
					return
				}
				got = append(got, fmt.Sprintf("%d %s: %s", p.Line, p.Path, p.Msg))
			}
			t.Errorf("want line %d %s: %q; got:\n%s", tt.line, tt.path, tt.msg, strings.Join(got, "\n"))
		})
	}
}

// TestPluginProblemsKeepTheirLines: a problem found by a plugin's own
// Validate (which knows only paths inside its block) is reported with the
// file's line of that key.
func TestPluginProblemsKeepTheirLines(t *testing.T) {
	isolateEnv(t)
	src := `pipeline: test
source:
  kafka:
    brokers: [127.0.0.1:9092, nohost]
    topics: [trips]
    group: g
    start: timestamp
schema:
  fields: [{name: id, type: int64}]
routes:
  - name: all
    parquet:
      destination: s3://bucket/prefix
      path: x
      event_time: {source: broker, field: id}
s3:
  kms_key_id: k
dlq:
  kafka:
    topic: dead
    partitions: 2
    replication_factor: -2
`
	want := []struct {
		line int
		path string
		msg  string
	}{
		{3, "source.kafka.start_timestamp", "is required with start: timestamp"},
		{4, "source.kafka.brokers[1]", `"nohost" is not host:port`},
		{15, "routes[0].parquet.event_time.field", "is only used with source: field"},
		{17, "s3.kms_key_id", "is only used with sse: aws:kms"},
		{19, "dlq.kafka.brokers[1]", `"nohost" is not host:port`}, // the source's, by default
		{22, "dlq.kafka.replication_factor", "must be at least 1, or -1"},
	}
	_, err := Parse("test.yaml", []byte(src))
	ps := problemsOf(t, err)
	for _, w := range want {
		found := false
		for _, p := range ps {
			if p.Line == w.line && p.Path == w.path && strings.Contains(p.Msg, w.msg) {
				found = true
			}
		}
		if !found {
			t.Errorf("want %d %s: %q; got:\n%v", w.line, w.path, w.msg, err)
		}
	}
	if len(ps) != len(want) {
		t.Errorf("got %d problems, want %d:\n%v", len(ps), len(want), err)
	}
}
