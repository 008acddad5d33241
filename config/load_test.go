package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const baseYAML = `pipeline: test
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
    - {name: day, type: date}
    - {name: amount, type: decimal, precision: 9, scale: 2}
routes:
  - name: all
    parquet:
      destination: s3://bucket/prefix
      path: kind={kind}
`

// isolateEnv unsets the variables that Parse and the defaults read, so that a
// test sees exactly the environment it sets itself.
func isolateEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "SINKD_") || k == "AWS_REGION" || k == "HOSTNAME" {
			t.Setenv(k, "") // restores the old value after the test
			os.Unsetenv(k)
		}
	}
	t.Setenv("HOSTNAME", "host-1")
}

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return c
}

func problemsOf(t *testing.T, err error) []Problem {
	t.Helper()
	var ps *Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v (%T) is not a *Problems", err, err)
	}
	return ps.List
}

func TestDefaults(t *testing.T) {
	isolateEnv(t)
	c := mustParse(t, baseYAML+`
  - name: search
    opensearch: {url: "http://127.0.0.1:9200", index: i, id: "{id}", sigv4: {}}
dlq:
  kafka: {topic: dead}
`)
	k := c.Source.Kafka
	p := c.Routes[0].Parquet
	o := c.Routes[1].OpenSearch
	for _, tt := range []struct {
		name      string
		got, want any
	}{
		{"http.addr", c.HTTP.Addr, "127.0.0.1:9464"},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "json"},
		{"max_record_size", c.MaxRecordSize, Size(1 << 20)},
		{"instance_id", c.InstanceID, "host-1"},
		{"kafka.start", k.Start, "earliest"},
		{"kafka.fetch_max_bytes", k.FetchMaxBytes, Size(4 << 20)},
		{"kafka.fetch_max_partition_bytes", k.PartitionBytes, Size(1 << 20)},
		{"kafka.session_timeout", k.SessionTimeout, Duration(45 * time.Second)},
		{"kafka.request_timeout", k.RequestTimeout, Duration(30 * time.Second)},
		{"kafka.static_membership", k.StaticMembership, true},
		{"schema.format", c.Schema.Format, "json"},
		{"field.from", c.Schema.Fields[0].From, "id"},
		{"timestamp unit", c.Schema.Fields[2].Unit, "millis"},
		{"timestamp input", c.Schema.Fields[2].Input, "millis"},
		{"non-timestamp unit", c.Schema.Fields[1].Unit, ""},
		{"parquet.compression", p.Compression, "snappy"},
		{"parquet.row_group_size", p.RowGroupSize, Size(16 << 20)},
		{"parquet.page_size", p.PageSize, Size(64 << 10)},
		{"parquet.target_file_size", p.TargetFileSize, Size(128 << 20)},
		{"parquet.max_file_age", p.MaxFileAge, Duration(15 * time.Minute)},
		{"parquet.inactivity", p.Inactivity, Duration(5 * time.Minute)},
		{"parquet.timezone", p.TimeZone, "UTC"},
		{"parquet.file_prefix", p.FilePrefix, "all"},
		{"parquet.event_time.source", p.EventTime.Source, "broker"},
		{"opensearch.action", o.Action, "index"},
		{"opensearch.flush_bytes", o.FlushBytes, Size(5 << 20)},
		{"opensearch.flush_docs", o.FlushDocs, 5000},
		{"opensearch.flush_interval", o.FlushInterval, Duration(time.Second)},
		{"opensearch.concurrency", o.Concurrency, 2},
		{"opensearch.max_retries", o.MaxRetries, 8},
		{"opensearch.timeout", o.Timeout, Duration(30 * time.Second)},
		{"opensearch.sigv4.service", o.SigV4.Service, "es"},
		{"opensearch.sigv4.region", o.SigV4.Region, "us-east-1"},
		{"s3.region", c.S3.Region, "us-east-1"},
		{"s3.part_size", c.S3.PartSize, Size(8 << 20)},
		{"s3.upload_concurrency", c.S3.UploadConcurrency, 4},
		{"s3.request_timeout", c.S3.RequestTimeout, Duration(30 * time.Second)},
		{"checkpoint.interval", c.Checkpoint.Interval, Duration(10 * time.Second)},
		{"checkpoint.timeout", c.Checkpoint.Timeout, Duration(60 * time.Second)},
		{"checkpoint.store", c.Checkpoint.Store, "s3://bucket/prefix/_sinkd"},
		{"memory.budget", c.Memory.Budget, Size(256 << 20)},
		{"memory.max_open_files", c.Memory.MaxOpenFiles, 100_000},
		{"memory.max_encoders", c.Memory.MaxEncoders, 64},
		{"memory.spool_budget", c.Memory.SpoolBudget, Size(2 << 30)},
		{"memory.spool_dir", c.Memory.SpoolDir, filepath.Join(os.TempDir(), "sinkd-spool")},
		{"dlq.max_redrives", c.DLQ.MaxRedrives, 3},
		{"dlq.kafka.brokers", strings.Join(c.DLQ.Kafka.Brokers, ","), "127.0.0.1:9092"},
		{"shutdown.drain_timeout", c.Shutdown.DrainTimeout, Duration(30 * time.Second)},
		{"shutdown.unhealthy_after", c.Shutdown.UnhealthyAfter, Duration(5 * time.Minute)},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestKinesisDefaults(t *testing.T) {
	isolateEnv(t)
	t.Setenv("AWS_REGION", "eu-west-1")
	c := mustParse(t, strings.Replace(baseYAML, `  kafka:
    brokers: [127.0.0.1:9092]
    topics: [trips]
    group: g`, `  kinesis: {stream: s, endpoint: "http://127.0.0.1:4567"}`, 1)+`dlq: {kinesis: {stream: dead}}`)
	k := c.Source.Kinesis
	for _, tt := range []struct {
		name      string
		got, want any
	}{
		{"start", k.Start, "trim_horizon"},
		{"region", k.Region, "eu-west-1"},
		{"poll_interval", k.PollInterval, Duration(time.Second)},
		{"max_records", k.MaxRecords, 10000},
		{"shard_sync_interval", k.ListInterval, Duration(30 * time.Second)},
		{"failover_time", k.FailoverTime, Duration(30 * time.Second)},
		{"request_timeout", k.RequestTimeout, Duration(30 * time.Second)},
		{"s3.region", c.S3.Region, "eu-west-1"},
		{"dlq.kinesis.endpoint", c.DLQ.Kinesis.Endpoint, "http://127.0.0.1:4567"},
		{"dlq.kinesis.region", c.DLQ.Kinesis.Region, "eu-west-1"},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestExplicitValuesBeatDefaults(t *testing.T) {
	isolateEnv(t)
	c := mustParse(t, baseYAML+`    opensearch: {url: "http://os:9200", index: i, id: "{id}", max_retries: 0}
  - name: timed
    parquet: {destination: "file:///data/lake", path: x, event_time: {field: at}}
http: {addr: ""}
instance_id: pod-7
dlq: {max_redrives: 0, file: /var/dead.jsonl}
checkpoint: {store: "file:///data/manifests", interval: 2s}
`)
	for _, tt := range []struct {
		name      string
		got, want any
	}{
		{"http.addr", c.HTTP.Addr, ""},
		{"instance_id", c.InstanceID, "pod-7"},
		{"opensearch.max_retries", c.Routes[0].OpenSearch.MaxRetries, 0},
		{"dlq.max_redrives", c.DLQ.MaxRedrives, 0},
		{"event_time.source", c.Routes[1].Parquet.EventTime.Source, "field"},
		{"checkpoint.store", c.Checkpoint.Store, "file:///data/manifests"},
		{"checkpoint.interval", c.Checkpoint.Interval, Duration(2 * time.Second)},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

// TestStaticMembershipOff: static membership is on unless the file turns it
// off, so an explicit false must survive the defaults.
func TestStaticMembershipOff(t *testing.T) {
	isolateEnv(t)
	for _, tt := range []struct {
		line string
		want bool
	}{
		{"", true},
		{"\n    static_membership: false", false},
		{"\n    static_membership: true", true},
	} {
		c := mustParse(t, strings.Replace(baseYAML, "    group: g", "    group: g"+tt.line, 1))
		if got := c.Source.Kafka.StaticMembership; got != tt.want {
			t.Errorf("with %q: static_membership = %v, want %v", tt.line, got, tt.want)
		}
	}
}

func TestInstanceIDFromHostName(t *testing.T) {
	isolateEnv(t)
	os.Unsetenv("HOSTNAME")
	want, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	if got := mustParse(t, baseYAML).InstanceID; got != want {
		t.Errorf("instance_id = %q, want os.Hostname() %q", got, want)
	}
}

func TestExpansionInDocument(t *testing.T) {
	isolateEnv(t)
	t.Setenv("SINKD_RECORDS", "500")
	t.Setenv("SINKD_INJECT", "x\nlog: {level: debug}")
	t.Setenv("SINKD_BROKERS", "b1:9092, b2:9092")
	t.Setenv("SINKD_TLS", "true")
	t.Setenv("SINKD_NULL", "null")
	src := `pipeline: test
source:
  kafka:
    brokers: ${SINKD_BROKERS}
    topics: ["${SINKD_INJECT}"]
    group: ${SINKD_NULL}
    tls:
      enabled: ${SINKD_TLS}
    fetch_max_bytes: ${SINKD_FETCH:-16MiB}
schema:
  fields: [{name: id, type: int64}]
routes:
  - name: r
    parquet:
      destination: s3://bucket
      path: "price=$${{id}"
      file_prefix: ${SINKD_UNSET:-}
`
	c := mustParse(t, src)
	k := c.Source.Kafka
	if got := strings.Join(k.Brokers, "|"); got != "b1:9092|b2:9092" {
		t.Errorf("brokers = %q", got)
	}
	if len(k.Topics) != 1 || k.Topics[0] != "x\nlog: {level: debug}" || c.Log.Level != "info" {
		t.Errorf("a variable's value became YAML: topics %q, log level %q", k.Topics, c.Log.Level)
	}
	if k.Group != "null" {
		t.Errorf("group = %q, want the text null", k.Group)
	}
	if !k.TLS.Enabled {
		t.Error("tls.enabled: a plain ${VAR} holding true did not decode as a bool")
	}
	if k.FetchMaxBytes != 16<<20 {
		t.Errorf("fetch_max_bytes = %v", k.FetchMaxBytes)
	}
	if p := c.Routes[0].Parquet; p.Path != "price=${{id}" || p.FilePrefix != "r" {
		t.Errorf("path %q, file_prefix %q (an empty expansion must count as unset)", p.Path, p.FilePrefix)
	}

	t.Setenv("SINKD_RECORDS", "many")
	_, err := Parse("test.yaml", []byte(strings.Replace(src, "fetch_max_bytes: ${SINKD_FETCH:-16MiB}", "fetch_max_bytes: ${SINKD_FETCH", 1)))
	ps := problemsOf(t, err)
	if len(ps) != 1 || ps[0].Line != 9 || !strings.Contains(ps[0].Msg, "unterminated") {
		t.Errorf("problems = %v, want one about the unterminated ${ on line 9", ps)
	}
}

func TestThreeMistakes(t *testing.T) {
	isolateEnv(t)
	_, err := Load("testdata/three-mistakes.yaml")
	ps := problemsOf(t, err)
	want := []struct {
		line int
		path string
		msg  string
	}{
		{4, "source.kafka", "group: is required"},
		{9, "log.levle", `unknown key "levle", did you mean "level"?`},
		{22, "checkpoint.interval", "not a duration"},
	}
	if len(ps) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(ps), len(want), err)
	}
	for i, w := range want {
		p := ps[i]
		if p.File != "testdata/three-mistakes.yaml" || p.Line != w.line || !strings.HasPrefix(p.Path, w.path) ||
			!strings.Contains(p.String(), w.msg) {
			t.Errorf("problem %d = %q, want line %d, path %s, message with %q", i, p, w.line, w.path, w.msg)
		}
	}
	if !strings.Contains(ps[1].Msg, "allowed here: level, format") {
		t.Errorf("unknown key message does not list the allowed keys: %q", ps[1].Msg)
	}
	if got := strings.Count(err.Error(), "\n"); got != 2 {
		t.Errorf("error text has %d newlines, want one problem per line:\n%s", got, err)
	}
}

func TestLoadingProblems(t *testing.T) {
	isolateEnv(t)
	tests := []struct {
		name string
		src  string
		line int
		msg  string
	}{
		{"syntax", "pipeline: x\nsource:\n  kafka: [\n", 3, "YAML syntax"},
		{"tab", "pipeline: x\n\tsource: {}\n", 2, "YAML syntax"},
		{"empty", "", 0, "empty"},
		{"not a mapping", "- a\n- b\n", 1, "expected a mapping with keys pipeline, instance_id"},
		{"duplicate", baseYAML + "pipeline: again\n", 19, `duplicate key "pipeline" (first given on line 1)`},
		{"bad int", strings.Replace(baseYAML, "group: g", "group: g\n    tls: {enabled: maybe}", 1), 7, `expected true or false, got "maybe"`},
		{"bad size", baseYAML + "max_record_size: lots\n", 19, `"lots" is not a size`},
		{"list for scalar", baseYAML + "pipeline2: x\n", 19, `unknown key "pipeline2"`},
		{"scalar for list", strings.Replace(baseYAML, "routes:\n", "routes: oops\nx:\n", 1), 14, "expected a list"},
		{"mapping for scalar", baseYAML + "instance_id: {a: 1}\n", 19, "expected a single value, got a mapping"},
		{"negative duration", baseYAML + "shutdown: {drain_timeout: -1s}\n", 19, "not a duration"},
		{"mapping as key", baseYAML + "{a: 1}: x\n", 19, "a key must be a plain name"},
		{"nested unknown", strings.Replace(baseYAML, "path: kind={kind}", "path: kind={kind}\n      compresion: zstd", 1), 19, `did you mean "compression"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tt.src))
			ps := problemsOf(t, err)
			for _, p := range ps {
				if p.Line == tt.line && strings.Contains(p.Msg, tt.msg) {
					return
				}
			}
			t.Errorf("no problem on line %d containing %q; got:\n%v", tt.line, tt.msg, err)
		})
	}
}

func TestProblemFormatAndOrder(t *testing.T) {
	err := NewProblems(
		Problem{File: "f.yaml", Line: 9, Path: "b", Msg: "second"},
		Problem{File: "f.yaml", Line: 2, Path: "a", Msg: "first"},
		Problem{File: "f.yaml", Msg: "no line"},
	)
	want := "f.yaml: no line\nf.yaml:2: a: first\nf.yaml:9: b: second"
	if err.Error() != want {
		t.Errorf("got\n%s\nwant\n%s", err, want)
	}
	if NewProblems() != nil {
		t.Error("NewProblems() with no problems must be nil")
	}
}

func TestPos(t *testing.T) {
	isolateEnv(t)
	c := mustParse(t, baseYAML)
	for path, want := range map[string]string{
		"pipeline":                   "test.yaml:1",
		"source.kafka.group":         "test.yaml:6",
		"schema.fields[2]":           "test.yaml:11",
		"schema.fields[2].type":      "test.yaml:11",
		"routes[0].parquet.path":     "test.yaml:18",
		"routes[0].parquet.compress": "test.yaml:16", // not in the file: its parent
		"routes[0].opensearch.index": "test.yaml:15",
		"memory.budget":              "test.yaml:1", // nothing of it: the document
	} {
		if got := c.Pos(path); got != want {
			t.Errorf("Pos(%q) = %q, want %q", path, got, want)
		}
	}
	p := c.Problem("routes[0].parquet.path", "bad template %q", "{x")
	if p.String() != `test.yaml:18: routes[0].parquet.path: bad template "{x"` {
		t.Errorf("Problem = %q", p)
	}
	if got := (&Config{}).Pos("pipeline"); got != "" {
		t.Errorf("Pos on a Config built in code = %q, want empty", got)
	}
}

// TestValidation checks each rule: the base configuration is valid, and each
// case changes one thing and expects one problem at a path.
func TestValidation(t *testing.T) {
	isolateEnv(t)
	mustParse(t, baseYAML)
	kinesis := map[string]any{"stream": "s"}
	search := map[string]any{"url": "http://127.0.0.1:9200", "index": "i", "id": "{id}"}
	tests := []struct {
		name string
		set  map[string]any // path → value; nil deletes
		path string
		msg  string
	}{
		{"pipeline missing", map[string]any{"pipeline": nil}, "pipeline", "is required"},
		{"pipeline charset", map[string]any{"pipeline": "My Pipe"}, "pipeline", "lowercase"},
		{"instance charset", map[string]any{"instance_id": "a/b"}, "instance_id", "letters"},
		{"http addr", map[string]any{"http": map[string]any{"addr": "nope"}}, "http.addr", "[host]:port"},
		{"log level", map[string]any{"log": map[string]any{"level": "loud"}}, "log.level", "not one of"},
		{"no source", map[string]any{"source": map[string]any{}}, "source", "exactly one"},
		{"two sources", map[string]any{"source.kinesis": kinesis}, "source", "not both"},
		{"brokers", map[string]any{"source.kafka.brokers": nil}, "source.kafka.brokers", "required"},
		{"broker port", map[string]any{"source.kafka.brokers": "host"}, "source.kafka.brokers[0]", "host:port"},
		{"topics", map[string]any{"source.kafka.topics": nil}, "source.kafka.topics", "required"},
		{"group", map[string]any{"source.kafka.group": nil}, "source.kafka.group", "required"},
		{"kafka start", map[string]any{"source.kafka.start": "newest"}, "source.kafka.start", "not one of"},
		{"timestamp start", map[string]any{"source.kafka.start": "timestamp"}, "source.kafka.start_timestamp", "required"},
		{"timestamp format", map[string]any{"source.kafka.start": "timestamp", "source.kafka.start_timestamp": "yesterday"}, "source.kafka.start_timestamp", "RFC 3339"},
		{"sasl mechanism", map[string]any{"source.kafka.sasl": map[string]any{"mechanism": "gssapi"}}, "source.kafka.sasl.mechanism", "not one of"},
		{"sasl password", map[string]any{"source.kafka.sasl": map[string]any{"mechanism": "scram-sha-512", "username": "u"}}, "source.kafka.sasl.password", "required"},
		{"sasl plain user", map[string]any{"source.kafka.sasl": map[string]any{"mechanism": "plain", "password": "p"}}, "source.kafka.sasl.username", "required"},
		{"tls pair", map[string]any{"source.kafka.tls": map[string]any{"enabled": true, "cert_file": "c"}}, "source.kafka.tls", "together"},
		{"partition bytes", map[string]any{"source.kafka.fetch_max_partition_bytes": "100MiB"}, "source.kafka.fetch_max_partition_bytes", "larger"},
		{"kinesis stream", map[string]any{"source.kafka": nil, "source.kinesis": map[string]any{"endpoint": "http://k:1"}}, "source.kinesis.stream", "required"},
		{"kinesis start", map[string]any{"source.kafka": nil, "source.kinesis": map[string]any{"stream": "s", "start": "oldest"}}, "source.kinesis.start", "not one of"},
		{"kinesis at_timestamp", map[string]any{"source.kafka": nil, "source.kinesis": map[string]any{"stream": "s", "start": "at_timestamp"}}, "source.kinesis.start_timestamp", "required"},
		{"max_records", map[string]any{"source.kafka": nil, "source.kinesis": map[string]any{"stream": "s", "max_records": 10001}}, "source.kinesis.max_records", "between 1 and 10000"},
		{"poll_interval", map[string]any{"source.kafka": nil, "source.kinesis": map[string]any{"stream": "s", "poll_interval": "100ms"}}, "source.kinesis.poll_interval", "200ms"},
		{"kinesis endpoint", map[string]any{"source.kafka": nil, "source.kinesis": map[string]any{"stream": "s", "endpoint": "localhost"}}, "source.kinesis.endpoint", "URL"},
		{"schema format", map[string]any{"schema.format": "thrift"}, "schema.format", "not one of"},
		{"no fields", map[string]any{"schema.fields": []any{}}, "schema.fields", "at least one"},
		{"duplicate field", map[string]any{"schema.fields[1].name": "id"}, "schema.fields[1].name", "twice"},
		{"field type", map[string]any{"schema.fields[1].type": "varchar"}, "schema.fields[1].type", "not one of"},
		{"field name", map[string]any{"schema.fields[1].name": "9lives"}, "schema.fields[1].name", "letters"},
		{"timestamp unit", map[string]any{"schema.fields[2].unit": "seconds"}, "schema.fields[2].unit", "not one of"},
		{"timestamp input", map[string]any{"schema.fields[2].input": "nanos"}, "schema.fields[2].input", "not one of"},
		{"unit on string", map[string]any{"schema.fields[1].unit": "millis"}, "schema.fields[1]", "timestamp fields only"},
		{"precision", map[string]any{"schema.fields[4].precision": 39}, "schema.fields[4].precision", "between 1 and 38"},
		{"scale", map[string]any{"schema.fields[4].scale": 10}, "schema.fields[4].scale", "between 0 and precision"},
		{"precision on int", map[string]any{"schema.fields[0].precision": 3}, "schema.fields[0]", "decimal fields only"},
		{"no routes", map[string]any{"routes": []any{}}, "routes", "at least one"},
		{"route name", map[string]any{"routes[0].name": nil}, "routes[0].name", "required"},
		{"duplicate route", map[string]any{"routes[1]": map[string]any{"name": "all", "opensearch": search}}, "routes[1].name", "twice"},
		{"when field", map[string]any{"routes[0].when": map[string]any{"field": "colour", "in": "red"}}, "routes[0].when.field", "not a schema field"},
		{"when in", map[string]any{"routes[0].when": map[string]any{"field": "kind"}}, "routes[0].when.in", "at least one"},
		{"destination scheme", map[string]any{"routes[0].parquet.destination": "hdfs://x/y"}, "routes[0].parquet.destination", "neither"},
		{"destination relative", map[string]any{"routes[0].parquet.destination": "file://lake"}, "routes[0].parquet.destination", "absolute"},
		{"destination bucket", map[string]any{"routes[0].parquet.destination": "s3://B_ucket"}, "routes[0].parquet.destination", "bucket name"},
		{"parquet path", map[string]any{"routes[0].parquet.path": nil}, "routes[0].parquet.path", "required"},
		{"compression", map[string]any{"routes[0].parquet.compression": "lz4"}, "routes[0].parquet.compression", "not one of"},
		{"row group vs file", map[string]any{"routes[0].parquet.row_group_size": "64MiB", "routes[0].parquet.target_file_size": "32MiB"}, "routes[0].parquet.row_group_size", "larger than target_file_size"},
		{"timezone", map[string]any{"routes[0].parquet.timezone": "Mars/Olympus"}, "routes[0].parquet.timezone", "time zone"},
		{"event time source", map[string]any{"routes[0].parquet.event_time": map[string]any{"source": "wall"}}, "routes[0].parquet.event_time.source", "not one of"},
		{"event time unknown field", map[string]any{"routes[0].parquet.event_time": map[string]any{"field": "when"}}, "routes[0].parquet.event_time.field", "not a schema field"},
		{"event time wrong type", map[string]any{"routes[0].parquet.event_time": map[string]any{"field": "kind"}}, "routes[0].parquet.event_time.field", "timestamp or date"},
		{"event time field missing", map[string]any{"routes[0].parquet.event_time": map[string]any{"source": "field"}}, "routes[0].parquet.event_time.field", "required"},
		{"event time field with broker", map[string]any{"routes[0].parquet.event_time": map[string]any{"source": "broker", "field": "at"}}, "routes[0].parquet.event_time.field", "only used"},
		{"opensearch index", map[string]any{"routes[0].opensearch": map[string]any{"url": "http://os:9200", "id": "x"}}, "routes[0].opensearch.index", "required"},
		{"opensearch id", map[string]any{"routes[0].opensearch": map[string]any{"url": "http://os:9200", "index": "x"}}, "routes[0].opensearch.id", "required"},
		{"opensearch url", map[string]any{"routes[0].opensearch": map[string]any{"url": "os:9200", "index": "i", "id": "x"}}, "routes[0].opensearch.url", "URL"},
		{"opensearch action", map[string]any{"routes[0].opensearch": map[string]any{"url": "http://os", "index": "i", "id": "x", "action": "upsert"}}, "routes[0].opensearch.action", "not one of"},
		{"sigv4 service", map[string]any{"routes[0].opensearch": map[string]any{"url": "http://os", "index": "i", "id": "x", "sigv4": map[string]any{"service": "s3"}}}, "routes[0].opensearch.sigv4.service", "not one of"},
		{"opensearch concurrency", map[string]any{"routes[0].opensearch": map[string]any{"url": "http://os", "index": "i", "id": "x", "concurrency": -1}}, "routes[0].opensearch.concurrency", "at least 1"},
		{"opensearch off only", map[string]any{"checkpoint.store": "file:///m", "routes[0].parquet": nil, "routes[0].opensearch": map[string]any{"url": "", "index": "i", "id": "x"}}, "routes[0]", "writes nowhere"},
		{"part size", map[string]any{"s3": map[string]any{"part_size": "4MiB"}}, "s3.part_size", "between 5MiB and 5GiB"},
		{"upload concurrency", map[string]any{"s3": map[string]any{"upload_concurrency": -2}}, "s3.upload_concurrency", "at least 1"},
		{"sse", map[string]any{"s3": map[string]any{"sse": "rot13"}}, "s3.sse", "not one of"},
		{"store", map[string]any{"checkpoint": map[string]any{"store": "/tmp/x"}}, "checkpoint.store", "neither"},
		{"store needed", map[string]any{"routes[0].parquet": nil, "routes[0].opensearch": search}, "checkpoint.store", "required"},
		{"budget", map[string]any{"memory": map[string]any{"budget": "8MiB"}, "routes[0].parquet.row_group_size": "4MiB"}, "memory.budget", "at least 16MiB"},
		{"open files", map[string]any{"memory": map[string]any{"max_open_files": -1}}, "memory.max_open_files", "at least 1"},
		{"encoders", map[string]any{"memory": map[string]any{"max_encoders": -1}}, "memory.max_encoders", "at least 1"},
		{"fetch buffers", map[string]any{"memory": map[string]any{"budget": "64MiB"}, "source.kafka.fetch_max_bytes": "16MiB"}, "memory.budget", "lower kafka.fetch_max_bytes"},
		{"dlq two", map[string]any{"dlq": map[string]any{"file": "/tmp/d", "kinesis": map[string]any{"stream": "d"}}}, "dlq", "at most one"},
		{"dlq topic", map[string]any{"dlq": map[string]any{"kafka": map[string]any{"brokers": "b:1"}}}, "dlq.kafka.topic", "required"},
		{"dlq file", map[string]any{"dlq": map[string]any{"file": "dead.jsonl"}}, "dlq.file", "absolute"},
		{"dlq redrives", map[string]any{"dlq": map[string]any{"max_redrives": -1}}, "dlq.max_redrives", "at least 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var doc map[string]any
			if err := yaml.Unmarshal([]byte(baseYAML), &doc); err != nil {
				t.Fatal(err)
			}
			for path, val := range tt.set {
				setPath(t, doc, path, val)
			}
			src, err := yaml.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse("v.yaml", src)
			if err == nil {
				t.Fatalf("no problem reported; want %s: %s", tt.path, tt.msg)
			}
			ps := problemsOf(t, err)
			if len(ps) != 1 || ps[0].Path != tt.path || !strings.Contains(ps[0].Msg, tt.msg) {
				t.Fatalf("got\n%v\nwant exactly one problem at %s containing %q", err, tt.path, tt.msg)
			}
			if ps[0].Line < 1 {
				t.Errorf("problem has no line: %v", ps[0])
			}
		})
	}
}

var pathPart = regexp.MustCompile(`([a-z_0-9]+)|\[(\d+)\]`)

// setPath sets (or with nil, deletes) a value in a decoded YAML document,
// creating mappings on the way.
func setPath(t *testing.T, doc map[string]any, path string, val any) {
	t.Helper()
	parts := pathPart.FindAllStringSubmatch(path, -1)
	var cur any = doc
	for i, p := range parts {
		last := i == len(parts)-1
		switch c := cur.(type) {
		case map[string]any:
			if last {
				if val == nil {
					delete(c, p[1])
				} else {
					c[p[1]] = val
				}
				return
			}
			if c[p[1]] == nil {
				c[p[1]] = map[string]any{}
			}
			cur = c[p[1]]
		case []any:
			n, _ := strconv.Atoi(p[2])
			if n == len(c) {
				c = append(c, map[string]any{})
				// Lists are values in their parent: write the longer one back.
				setPath(t, doc, path[:strings.LastIndex(path, "[")], c)
			}
			if last {
				c[n] = val
				return
			}
			cur = c[n]
		default:
			t.Fatalf("setPath %s: cannot descend into %T", path, cur)
		}
	}
}

func TestExamples(t *testing.T) {
	all := map[string]string{
		"SINKD_KAFKA_BROKERS":     "k1:9092,k2:9092",
		"SINKD_KAFKA_TOPIC":       "trips-x",
		"SINKD_KINESIS_STREAM":    "stream-x",
		"SINKD_KINESIS_ENDPOINT":  "http://kinesis.test:4567",
		"SINKD_DYNAMODB_ENDPOINT": "http://dynamo.test:4568",
		"SINKD_S3_ENDPOINT":       "http://s3.test:9000",
		"SINKD_S3_BUCKET":         "bucket-x",
		"SINKD_OPENSEARCH_URL":    "http://os.test:9200",
		"SINKD_DLQ_TOPIC":         "dead-x",
		"SINKD_DLQ_STREAM":        "dead-stream-x",
		"SINKD_HTTP_ADDR":         "0.0.0.0:9999",
		"SINKD_DEMO_DIR":          "/var/demo",
	}
	for _, file := range []string{"taxi-kafka", "taxi-kinesis", "demo"} {
		for _, withEnv := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/env=%v", file, withEnv), func(t *testing.T) {
				isolateEnv(t)
				if withEnv {
					for k, v := range all {
						t.Setenv(k, v)
					}
				}
				c, err := Load("examples/" + file + ".yaml")
				if err != nil {
					t.Fatalf("Load:\n%v", err)
				}
				checkExample(t, file, withEnv, c)
			})
		}
	}
}

func checkExample(t *testing.T, file string, withEnv bool, c *Config) {
	t.Helper()
	pick := func(local, set string) string {
		if withEnv {
			return set
		}
		return local
	}
	want := map[string]string{"http.addr": pick("127.0.0.1:9464", "0.0.0.0:9999")}
	got := map[string]string{"http.addr": c.HTTP.Addr}
	if len(c.Schema.Fields) != 19 {
		t.Errorf("schema has %d fields, want the 19 of the taxi trip", len(c.Schema.Fields))
	}
	switch file {
	case "taxi-kafka", "taxi-kinesis":
		want["s3.endpoint"] = pick("http://127.0.0.1:19000", "http://s3.test:9000")
		got["s3.endpoint"] = c.S3.Endpoint
		want["destination"] = pick("s3://sinkd-test/", "s3://bucket-x/") + file + "/trips"
		got["destination"] = c.Routes[0].Parquet.Destination
		want["opensearch"] = pick("false ", "true http://os.test:9200")
		got["opensearch"] = strconv.FormatBool(c.Routes[0].OpenSearch.Enabled()) + " " + c.Routes[0].OpenSearch.URL
		want["path_style"], got["path_style"] = "true", strconv.FormatBool(c.S3.PathStyle)
	}
	switch file {
	case "taxi-kafka", "demo":
		k := c.Source.Kafka
		want["brokers"] = pick("127.0.0.1:19092", "k1:9092,k2:9092")
		got["brokers"] = strings.Join(k.Brokers, ",")
		want["topics"], got["topics"] = pick("taxi-trips", "trips-x"), strings.Join(k.Topics, ",")
	}
	switch file {
	case "taxi-kafka":
		want["dlq"] = pick("sinkd-dlq", "dead-x") + " " + pick("127.0.0.1:19092", "k1:9092,k2:9092")
		got["dlq"] = c.DLQ.Kafka.Topic + " " + strings.Join(c.DLQ.Kafka.Brokers, ",")
	case "taxi-kinesis":
		k := c.Source.Kinesis
		want["stream"], got["stream"] = pick("taxi-trips", "stream-x"), k.Stream
		want["endpoint"], got["endpoint"] = pick("http://127.0.0.1:14567", "http://kinesis.test:4567"), k.Endpoint
		want["dynamodb"], got["dynamodb"] = pick("http://127.0.0.1:14568", "http://dynamo.test:4568"), k.DynamoDBEndpoint
		want["dlq"] = pick("sinkd-dlq http://127.0.0.1:14567", "dead-stream-x http://kinesis.test:4567")
		got["dlq"] = c.DLQ.Kinesis.Stream + " " + c.DLQ.Kinesis.Endpoint
	case "demo":
		dir := pick("/tmp/sinkd-demo", "/var/demo")
		want["destination"], got["destination"] = "file://"+dir+"/lake/by-location", c.Routes[0].Parquet.Destination
		want["dlq"], got["dlq"] = dir+"/dead-letters.jsonl", c.DLQ.File
		want["checkpoint"], got["checkpoint"] = "1s", c.Checkpoint.Interval.String()
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %q, want %q", k, got[k], w)
		}
	}
}

func TestAWSEndpointByEmptyVariable(t *testing.T) {
	isolateEnv(t)
	t.Setenv("SINKD_S3_ENDPOINT", "")
	t.Setenv("SINKD_KINESIS_ENDPOINT", "")
	c, err := Load("examples/taxi-kinesis.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.S3.Endpoint != "" || c.Source.Kinesis.Endpoint != "" || c.DLQ.Kinesis.Endpoint != "" {
		t.Errorf("endpoints %q %q %q: a variable set to empty must select AWS", c.S3.Endpoint, c.Source.Kinesis.Endpoint, c.DLQ.Kinesis.Endpoint)
	}
}

func TestAnchorsAndMerges(t *testing.T) {
	isolateEnv(t)
	c := mustParse(t, strings.Replace(baseYAML, "    parquet:\n", "    parquet: &lake\n", 1)+`      compression: zstd
  - name: copy
    parquet:
      <<: *lake
      path: id={id}
  - name: same
    parquet: *lake
`)
	if got := c.Routes[1].Parquet; got.Compression != "zstd" || got.Path != "id={id}" || got.Destination != "s3://bucket/prefix" {
		t.Errorf("merged parquet = %+v", got)
	}
	if got := c.Routes[2].Parquet; got.Compression != "zstd" || got.Path != "kind={kind}" {
		t.Errorf("aliased parquet = %+v", got)
	}
}

func TestValidateConfigBuiltInCode(t *testing.T) {
	c := &Config{Pipeline: "Bad Name"}
	err := c.Validate()
	ps := problemsOf(t, err)
	if ps[0].String() != `pipeline: "Bad Name": use lowercase letters, digits, _ and - (it is part of object keys and metric labels)` {
		t.Errorf("first problem = %q", ps[0])
	}
}

func TestHTTPListenAddresses(t *testing.T) {
	isolateEnv(t)
	for _, addr := range []string{":9464", "127.0.0.1:0", "[::1]:9464", "0.0.0.0:80"} {
		if c := mustParse(t, baseYAML+"http: {addr: \""+addr+"\"}\n"); c.HTTP.Addr != addr {
			t.Errorf("http.addr = %q, want %q", c.HTTP.Addr, addr)
		}
	}
}
