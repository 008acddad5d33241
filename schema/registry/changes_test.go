package registry_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	hamba "github.com/hamba/avro/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/schema/registry"
)

// TestSchemaChangesCounted: sinkd_schema_changes_total counts each writer
// schema met in records once, by outcome, across the restart a schema
// change makes; the subject's latest schema at the start is not a change.
func TestSchemaChangesCounted(t *testing.T) {
	_, srv, cl, _ := setup(t)
	ctx := context.Background()
	admin, _ := sr.NewClient(sr.URLs(srv.URL), sr.BasicAuth("u", "p"))
	const subject = "changes-value"
	versions := []string{
		`{"type":"record","name":"T","fields":[{"name":"k","type":{"type":"enum","name":"K","symbols":["A","B"]}},{"name":"n","type":"int"}]}`,
		// A new enum symbol: the same Parquet schema.
		`{"type":"record","name":"T","fields":[{"name":"k","type":{"type":"enum","name":"K","symbols":["A","B","C"]}},{"name":"n","type":"int"}]}`,
		// A field added: the Parquet schema changes.
		`{"type":"record","name":"T","fields":[{"name":"k","type":{"type":"enum","name":"K","symbols":["A","B","C"]}},{"name":"n","type":"int"},{"name":"x","type":["null","string"],"default":null}]}`,
		// n changes type: incompatible.
		`{"type":"record","name":"T","fields":[{"name":"k","type":{"type":"enum","name":"K","symbols":["A","B","C"]}},{"name":"n","type":"string"}]}`,
	}
	values := []map[string]any{{"k": "A", "n": 1}, {"k": "C", "n": 2}, {"k": "B", "n": 3, "x": "x"}, {"k": "A", "n": "4"}}
	ids := make([]int, len(versions))
	record := func(v int) []byte {
		payload, err := hamba.Marshal(hamba.MustParse(versions[v]), values[v])
		if err != nil {
			t.Fatal(err)
		}
		return wire(ids[v], payload)
	}
	register := func(v int) {
		ss, err := admin.CreateSchema(ctx, subject, sr.Schema{Schema: versions[v]})
		if err != nil {
			t.Fatal(err)
		}
		ids[v] = ss.ID
	}
	changes := registry.NewChanges()
	reg := prometheus.NewRegistry()
	reg.MustRegister(changes.Collector())
	want := func(same, merged, incompatible int) {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil || len(mfs) != 1 || mfs[0].GetName() != "sinkd_schema_changes_total" {
			t.Fatalf("gathered %v, %v", mfs, err)
		}
		got := map[string]int{}
		for _, m := range mfs[0].GetMetric() {
			got[m.GetLabel()[0].GetValue()] = int(m.GetCounter().GetValue())
		}
		exp := map[string]int{registry.OutcomeSameParquet: same, registry.OutcomeMerged: merged, registry.OutcomeIncompatible: incompatible}
		if !reflect.DeepEqual(got, exp) {
			t.Errorf("sinkd_schema_changes_total by outcome: %v, want %v", got, exp)
		}
	}
	decode := func(in *registry.Input, v int) error {
		_, err := in.Decode(ctx, record(v), nil)
		return err
	}

	register(0)
	opts := registry.InputOptions{Format: sr.TypeAvro, Subject: subject, Changes: changes}
	in, err := registry.NewInput(ctx, cl, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := decode(in, 0); err != nil {
		t.Fatal(err)
	}
	want(0, 0, 0) // the latest schema at the start is no change

	register(1)
	for range 2 {
		if err := decode(in, 1); err != nil {
			t.Fatal(err)
		}
	}
	want(1, 0, 0)

	register(2)
	var change *registry.SchemaChange
	if err := decode(in, 2); !errors.As(err, &change) {
		t.Fatalf("a field added: %v, want a SchemaChange", err)
	}
	want(1, 1, 0)

	// The restart with the merged schema meets the same ids again.
	opts.Fields = change.Fields
	if in, err = registry.NewInput(ctx, cl, opts); err != nil {
		t.Fatal(err)
	}
	for _, v := range []int{2, 1, 0} {
		if err := decode(in, v); err != nil {
			t.Fatalf("version %d after the restart: %v", v+1, err)
		}
	}
	want(1, 1, 0)

	admin.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatNone}, subject)
	register(3)
	for range 2 {
		var se *schema.Error
		if err := decode(in, 3); !errors.As(err, &se) || se.Class != schema.ClassIncompatibleSchema {
			t.Fatalf("a changed type: %v, want an incompatible_schema record", err)
		}
	}
	want(1, 1, 1)
}
