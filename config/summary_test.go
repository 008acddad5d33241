package config

import (
	"strings"
	"testing"
)

func TestSummary(t *testing.T) {
	isolateEnv(t)
	c := mustParse(t, strings.Replace(baseYAML, "group: g", `group: g
    tls: {enabled: true}
    sasl: {mechanism: scram-sha-512, username: alice, password: s3cr3t-kafka}`, 1)+`
    when: {field: kind, in: [yellow, green]}
    opensearch:
      url: "https://bob:s3cr3t-url@search.test:9200"
      index: "trips-{kind}"
      id: "{id}"
      username: carol
      password: s3cr3t-basic
  - name: archive
    parquet: {destination: "file:///lake", path: "all", compression: zstd}
dlq:
  kafka: {topic: dead-letters}
`)
	var b strings.Builder
	c.Summary(&b)
	out := b.String()
	for _, want := range []string{
		"test (instance host-1)",
		"kafka 127.0.0.1:9092, topics trips, group g, start earliest",
		"tls on, sasl scram-sha-512 as alice (password set)",
		"id int64*", "kind string,", "amount decimal(9,2)", "at timestamp(millis)",
		"all: where kind in [yellow, green]",
		"s3://bucket/prefix/kind={kind}",
		"roll at 128MiB, after 15m or 5m idle; snappy; event time broker timestamp (UTC)",
		"https://bob:xxxxx@search.test:9200 index trips-{kind} id {id} (index), basic auth as carol (password set)",
		"archive: all records",
		"file:///lake/all",
		"opensearch off",
		"every 10s, store s3://bucket/prefix/_sinkd",
		"budget 256MiB (128MiB of it room for garbage), spool 2GiB in ",
		"kafka topic dead-letters on 127.0.0.1:9092",
		"http://127.0.0.1:9464",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "s3cr3t") {
		t.Errorf("summary shows a password:\n%s", out)
	}
	if n := strings.Count(out, "\n"); n > 40 {
		t.Errorf("summary is %d lines, more than a screen", n)
	}
}

func TestSummaryKinesis(t *testing.T) {
	isolateEnv(t)
	c, err := Load("examples/taxi-kinesis.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	c.Summary(&b)
	for _, want := range []string{
		"kinesis stream taxi-trips at http://127.0.0.1:14567 (region us-east-1), start trim_horizon",
		"leases in DynamoDB table sinkd-taxi-kinesis-leases at http://127.0.0.1:14568",
		"kinesis stream sinkd-dlq at http://127.0.0.1:14567",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
}
