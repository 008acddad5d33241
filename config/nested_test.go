package config

import (
	"strings"
	"testing"
	"time"
)

const nestedYAML = `pipeline: test
source:
  kafka:
    brokers: [127.0.0.1:9092]
    topics: [trips]
    group: g
schema:
  fields:
    - {name: id, type: int64, required: true}
    - name: payment
      type: struct
      fields:
        - {name: type, type: string}
        - name: card
          type: struct
          fields: [{name: last4, type: string}, {name: at, type: timestamp}]
    - name: stops
      type: list
      items:
        type: struct
        fields: [{name: zone, type: int32}]
    - {name: attrs, type: map, values: {type: string}}
routes:
  - name: all
    when: {field: payment.type, in: [card]}
    parquet:
      destination: s3://bucket/prefix
      path: t={payment.type}
      event_time: {field: payment.card.at}
`

func TestNestedSchema(t *testing.T) {
	isolateEnv(t)
	c := mustParse(t, nestedYAML)
	card := c.Schema.Fields[1].Fields[1]
	if card.Fields[1].Unit != "millis" || card.Fields[1].From != "at" {
		t.Errorf("nested timestamp defaults not applied: %+v", card.Fields[1])
	}
	wide := mustParse(t, strings.Replace(nestedYAML, "{name: attrs, type: map, values: {type: string}}",
		"{name: attrs, type: map, values: {type: decimal, precision: 38, scale: 4}}\n    - {name: t, type: time}\n    - {name: u, type: uuid}\n    - {name: j, type: json}", 1))
	if wide.Schema.Fields[4].Unit != "micros" {
		t.Errorf("time unit default %q, want micros", wide.Schema.Fields[4].Unit)
	}
	if c.Schema.Fields[2].Items.Fields[0].From != "zone" {
		t.Errorf("list item defaults not applied: %+v", c.Schema.Fields[2].Items)
	}

	tests := []struct{ from, to, path, msg string }{
		{"{field: payment.type, in", "{field: stops.zone, in", "routes[0].when.field", "not a schema field"},
		{"event_time: {field: payment.card.at}", "event_time: {field: payment.card.last4}", "routes[0].parquet.event_time.field", "timestamp or date"},
		{"      type: list\n      items:\n", "      type: list\n      values:\n", "schema.fields[2].items", "a list needs items"},
		{"{name: attrs, type: map, values: {type: string}}", "{name: attrs, type: string, values: {type: string}}", "schema.fields[3].values", "map fields only"},
		{"fields: [{name: zone, type: int32}]", "fields: [{name: zone, type: int33}]", "schema.fields[2].items.fields[0].type", "not one of"},
		{"fields: [{name: last4, type: string}, {name: at, type: timestamp}]", "fields: []", "schema.fields[1].fields[1].fields", "at least one field"},
		{"{name: last4, type: string}", "{name: at, type: string}", "schema.fields[1].fields[1].fields[1].name", "twice"},
		{"{name: attrs, type: map, values: {type: string}}", "{name: attrs, type: time, input: millis}", "schema.fields[3].input", "timestamp fields only"},
		{"{name: attrs, type: map, values: {type: string}}", "{name: attrs, type: time, unit: seconds}", "schema.fields[3].unit", "not one of"},
		{"{name: attrs, type: map, values: {type: string}}", "{name: attrs, type: decimal, precision: 39}", "schema.fields[3].precision", "between 1 and 38"},
	}
	for _, tt := range tests {
		src := strings.Replace(nestedYAML, tt.from, tt.to, 1)
		if src == nestedYAML {
			t.Fatalf("%q not in the YAML", tt.from)
		}
		_, err := Parse("test.yaml", []byte(src))
		if err == nil {
			t.Errorf("%s: accepted", tt.to)
			continue
		}
		found := false
		for _, p := range problemsOf(t, err) {
			if p.Path == tt.path && strings.Contains(p.Msg, tt.msg) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: want %s: %s; got\n%v", tt.to, tt.path, tt.msg, err)
		}
	}
}

func TestNestedSummary(t *testing.T) {
	isolateEnv(t)
	c := mustParse(t, nestedYAML)
	got := fieldText(c.Schema.Fields[1]) + "; " + fieldText(c.Schema.Fields[2]) + "; " + fieldText(c.Schema.Fields[3])
	want := "payment struct<type string, card struct<last4 string, at timestamp(millis)>>; stops list<struct<zone int32>>; attrs map<string, string>"
	if got != want {
		t.Errorf("summary\n got %s\nwant %s", got, want)
	}
}

func TestAvroSchemaConfig(t *testing.T) {
	isolateEnv(t)
	avro := strings.Replace(baseYAML, `schema:
  fields:
    - {name: id, type: int64, required: true}
    - {name: kind, type: string}
    - {name: at, type: timestamp}
    - {name: day, type: date}
    - {name: amount, type: decimal, precision: 9, scale: 2}
`, `schema:
  format: avro
  registry: {url: "http://127.0.0.1:8081", subject: trips-value}
`, 1)
	c := mustParse(t, avro)
	if c.Schema.Registry.Timeout.D() != 10*time.Second {
		t.Errorf("registry timeout default %v", c.Schema.Registry.Timeout)
	}
	for _, tt := range []struct{ from, to, path, msg string }{
		{`subject: trips-value`, `subject: ""`, "schema.registry.subject", "required"},
		{`url: "http://127.0.0.1:8081"`, `url: "ftp://x"`, "schema.registry.url", "URL"},
		{"  format: avro\n", "  format: json\n", "schema.registry", "formats avro, protobuf and jsonschema only"},
		{"  registry: {url: \"http://127.0.0.1:8081\", subject: trips-value}\n", "  fields: [{name: a, type: int32}]\n", "schema.fields", "derived from the registry"},
	} {
		src := strings.Replace(avro, tt.from, tt.to, 1)
		if src == avro {
			t.Fatalf("%q not in the YAML", tt.from)
		}
		_, err := Parse("test.yaml", []byte(src))
		found := false
		if err != nil {
			for _, p := range problemsOf(t, err) {
				if p.Path == tt.path && strings.Contains(p.Msg, tt.msg) {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("%s: want %s: %s; got %v", tt.to, tt.path, tt.msg, err)
		}
	}
}
