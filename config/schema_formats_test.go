package config_test

import (
	"strings"
	"testing"

	"github.com/sinkd/sinkd/config"
)

// TestSchemaFormats checks the registry formats, their keys and CDC: what is
// accepted, the defaults, and each refusal at its key.
func TestSchemaFormats(t *testing.T) {
	const head = "pipeline: x\nsource: {kafka: {brokers: \"127.0.0.1:9\", topics: [x], group: x}}\nroutes: [{name: r, parquet: {destination: \"file:///tmp/x\", path: \"a\"}}]\n"
	cases := []struct {
		name, schema, problem string
	}{
		{"protobuf", "schema: {format: protobuf, registry: {url: \"http://r:8081\", subject: s, message: taxi.Trip}}", ""},
		{"jsonschema", "schema: {format: jsonschema, registry: {url: \"http://r:8081\", subject: s, on_incompatible: stop}}", ""},
		{"cdc", "schema: {cdc: {envelope: debezium, deletes: drop}, fields: [{name: id, type: int64}]}", ""},
		{"message with avro", "schema: {format: avro, registry: {url: \"http://r:8081\", subject: s, message: m}}", "schema.registry.message"},
		{"bad on_incompatible", "schema: {format: avro, registry: {url: \"http://r:8081\", subject: s, on_incompatible: ignore}}", "schema.registry.on_incompatible"},
		{"cdc with avro", "schema: {format: avro, cdc: {envelope: debezium}, registry: {url: \"http://r:8081\", subject: s}}", ""},
		{"cdc with protobuf", "schema: {format: protobuf, cdc: {envelope: debezium}, registry: {url: \"http://r:8081\", subject: s}}", ""},
		{"cdc with jsonschema", "schema: {format: jsonschema, cdc: {envelope: debezium, deletes: drop}, registry: {url: \"http://r:8081\", subject: s}}", ""},
		{"bad envelope", "schema: {cdc: {envelope: maxwell}, fields: [{name: id, type: int64}]}", "schema.cdc.envelope"},
		{"bad deletes", "schema: {cdc: {envelope: debezium, deletes: hide}, fields: [{name: id, type: int64}]}", "schema.cdc.deletes"},
	}
	for _, c := range cases {
		cfg, err := config.Parse("c.yaml", []byte(head+c.schema+"\n"))
		if c.problem == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			if r := cfg.Schema.Registry; r != nil && r.OnIncompatible == "" {
				t.Errorf("%s: on_incompatible has no default", c.name)
			}
			if cdc := cfg.Schema.CDC; cdc != nil && cdc.Deletes == "" {
				t.Errorf("%s: cdc.deletes has no default", c.name)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.problem) {
			t.Errorf("%s: %v, want a problem at %s", c.name, err, c.problem)
		}
	}
	cfg, err := config.Parse("c.yaml", []byte(head+"schema: {format: avro, registry: {url: \"http://r:8081\", subject: s}}\n"))
	if err != nil || cfg.Schema.Registry.OnIncompatible != "dead_letter" {
		t.Errorf("on_incompatible default: %v %v", err, cfg)
	}
}
