package jsonlines

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/sinkd/sinkd/checkpoint"
	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/store"
	"github.com/sinkd/sinkd/writers"
	"github.com/sinkd/sinkd/writers/parquetsink"
	"github.com/sinkd/sinkd/writers/plugin"
)

type letter struct{ stage, class string }

// newTestWriter builds the writer the way the pipeline does: through its Kind,
// from YAML settings, on a real local object store.
func newTestWriter(t *testing.T, settings string, letters *[]letter) (writers.Writer, store.Store, string) {
	t.Helper()
	w, st, dest := newWriterOn(t, settings, testRoute{letters: letters})
	return w, st, dest
}

// testRoute is what a test varies in the route a writer is built from.
type testRoute struct {
	letters  *[]letter
	fields   []config.Field
	budget   plugin.Budget
	reg      prometheus.Registerer
	partSize int64
}

func newWriterOn(t testing.TB, settings string, tr testRoute) (writers.Writer, store.Store, string) {
	t.Helper()
	ctx := context.Background()
	dest := "file://" + t.TempDir() + "/lines"
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(fmt.Sprintf(settings, dest)), &node); err != nil {
		t.Fatal(err)
	}
	fields := tr.fields
	if fields == nil {
		fields = []config.Field{{Name: "id", Type: "int64"}, {Name: "type", Type: "string"}}
	}
	s, err := schema.New(fields)
	if err != nil {
		t.Fatal(err)
	}
	st, prefix, err := store.Open(ctx, dest, config.S3{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{S3: config.S3{PartSize: config.Size(cmp.Or(tr.partSize, 5<<20))}}
	r := &plugin.Route{
		Config: cfg, Name: "trips", Settings: node.Content[0], Schema: s,
		Background: ctx, Instance: "i1", Epoch: "e1",
		OpenStore: func(string) (store.Store, string, error) { return st, prefix, nil },
		DeadLetter: func(_ context.Context, _ *record.Record, stage, class, _ string, _ map[string]string) error {
			if tr.letters != nil {
				*tr.letters = append(*tr.letters, letter{stage, class})
			}
			return nil
		},
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Budget:     cmp.Or[plugin.Budget](tr.budget, defaultBudget()),
		Registerer: tr.reg,
	}
	if problems := Kind.Check(r); len(problems) > 0 {
		t.Fatalf("check: %v", problems)
	}
	w, err := Kind.New(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	return w, st, dest
}

func TestCommitAndReplayFilter(t *testing.T) {
	ctx := context.Background()
	var letters []letter
	w, st, dest := newTestWriter(t, "{destination: %q, path: \"type={type}\"}", &letters)
	s, _ := schema.New([]config.Field{{Name: "id", Type: "int64"}, {Name: "type", Type: "string"}})
	dec := s.NewDecoder()
	pid := record.PartitionID{Stream: "t", Partition: 0}
	now := time.Now()
	write := func(off int64, v string) {
		t.Helper()
		row, err := dec.Decode([]byte(v), nil)
		if err != nil {
			t.Fatal(err)
		}
		rec := &record.Record{Partition: pid, Position: record.Position{Offset: off}, Value: []byte(v)}
		if err := w.Write(ctx, row, rec, now); err != nil {
			t.Fatal(err)
		}
	}
	for i := int64(0); i < 6; i++ {
		write(i, fmt.Sprintf(`{"id":%d,"type":"t%d"}`, i, i%2))
	}
	write(6, `{"id":6}`) // no type: the path cannot render it
	if len(letters) != 1 || letters[0].stage != "bucket" {
		t.Fatalf("dead letters %v, want one at stage bucket", letters)
	}
	prep, err := w.Prepare(ctx, writers.Roll{All: true, Reason: "handover"})
	if err != nil {
		t.Fatal(err)
	}
	if len(prep.Entries) != 2 || len(prep.OpenLow) != 0 {
		t.Fatalf("prepared %d entries, open low %v; want 2 files, none open", len(prep.Entries), prep.OpenLow)
	}
	cm := checkpoint.Committers{checkpoint.KindMultipart: checkpoint.Multipart{Stores: map[string]store.Store{dest: st}}}
	var lines int
	for _, e := range prep.Entries {
		if err := cm.Apply(ctx, e); err != nil {
			t.Fatal(err)
		}
		body, err := st.Get(ctx, e.Key)
		if err != nil {
			t.Fatal(err)
		}
		if inst, ok := checkpoint.InstanceOf(e.Key); !ok || inst != "i1" || !strings.HasSuffix(e.Key, ".jsonl") {
			t.Errorf("key %s: instance %q, %v", e.Key, inst, ok)
		}
		lines += bytes.Count(body, []byte("\n"))
	}
	if lines != 6 {
		t.Fatalf("%d lines committed, want 6", lines)
	}
	if f := prep.Filter[pid]; f["type=t0"].Offset != 4 || f["type=t1"].Offset != 5 {
		t.Fatalf("filter %v, want t0 at 4 and t1 at 5", f)
	}
	w.Committed(prep, map[record.PartitionID]checkpoint.Restart{pid: {Position: record.Position{Offset: 6}, After: true}})

	// A restart replays from offset 3 with the manifest's filter: records
	// already committed are skipped, new ones are written.
	w2, _, _ := newTestWriter(t, "{destination: %q, path: \"type={type}\"}", &letters)
	w2.Restore(pid, prep.Filter[pid])
	w = w2
	for i := int64(3); i < 9; i++ {
		write(i, fmt.Sprintf(`{"id":%d,"type":"t%d"}`, i, i%2))
	}
	prep2, err := w.Prepare(ctx, writers.Roll{All: true})
	if err != nil {
		t.Fatal(err)
	}
	var rows int64
	for _, e := range prep2.Entries {
		rows += e.Rows
	}
	if rows != 3 {
		t.Fatalf("after replay %d new lines, want 3 (offsets 6, 7, 8)", rows)
	}
}

func TestCheckReportsBadSettings(t *testing.T) {
	s, _ := schema.New([]config.Field{{Name: "type", Type: "string"}})
	for _, tt := range []struct{ yaml, want string }{
		{`{path: "x"}`, "destination"},
		{`{destination: "file:///tmp/x"}`, "path"},
		{`{destination: "file:///tmp/x", path: "{nope}"}`, "nope"},
		{`{destination: "file:///tmp/x", path: "x", colour: red}`, "colour"},
	} {
		var node yaml.Node
		if err := yaml.Unmarshal([]byte(tt.yaml), &node); err != nil {
			t.Fatal(err)
		}
		r := &plugin.Route{Config: &config.Config{}, Name: "r", Settings: node.Content[0], Schema: s}
		problems := Kind.Check(r)
		if len(problems) == 0 || !strings.Contains(fmt.Sprint(problems), tt.want) {
			t.Errorf("%s: problems %v, want one about %s", tt.yaml, problems, tt.want)
		}
	}
}

// defaultBudget is memory.budget at its default, as the pipeline builds it.
func defaultBudget() plugin.Budget {
	var mem config.Memory
	mem.SetDefaults(true)
	return parquetsink.NewBudget(mem.Budget.Bytes())
}
