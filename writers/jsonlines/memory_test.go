package jsonlines

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sinkd/sinkd/checkpoint"
	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/store"
	"github.com/sinkd/sinkd/writers"
	"github.com/sinkd/sinkd/writers/parquetsink"
)

// TestFloodAtMemoryBound writes records of many buckets, in random order,
// through a writer at its defaults sharing a budget (the pipeline's
// memory.budget type) far smaller than what arrives. What the open files
// hold (their buffers' capacity, read from the files themselves, not from
// what the writer charges) must stay under the budget after every write,
// every record must be committed exactly once, and files must be as large as
// the budget allows: on average at least half the budget's low mark shared
// by the buckets. A count cap rolling the least recently written file (the
// former max_open_files: 256) makes files of one or two records here; a
// writer that ignores the budget holds a part per bucket.
func TestFloodAtMemoryBound(t *testing.T) {
	for _, tt := range []struct {
		name    string
		budget  int64
		buckets int
		records int
		// early: files reach S3's least part size before memory is full,
		// so relief uploads parts early rather than rolling.
		early bool
	}{
		{name: "1,000 buckets", budget: 16 << 20, buckets: 1000, records: 60_000},
		{name: "40 buckets", budget: 16 << 20, buckets: 40, records: 100_000},
		{name: "3 buckets", budget: 16 << 20, buckets: 3, records: 100_000, early: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			budget := parquetsink.NewBudget(tt.budget)
			reg := prometheus.NewRegistry()
			fields := []config.Field{{Name: "id", Type: "int64"}, {Name: "b", Type: "int32"}}
			ww, st, dest := newWriterOn(t, "{destination: %q, path: \"b={b}\"}", testRoute{
				fields: fields, budget: budget, reg: reg, partSize: 8 << 20,
			})
			w := ww.(*Writer)
			s, err := schema.New(fields)
			if err != nil {
				t.Fatal(err)
			}
			dec := s.NewDecoder()
			rng := rand.New(rand.NewPCG(uint64(tt.buckets), 7))
			pad := strings.Repeat("x", 360) // about the size of a taxi trip
			pid := record.PartitionID{Stream: "flood", Partition: 0}
			now := time.Now()
			var written int64
			for i := 0; i < tt.records; i++ {
				v := []byte(fmt.Sprintf(`{"id":%d,"b":%d,"pad":%q}`, i, rng.IntN(tt.buckets), pad))
				row, err := dec.Decode(v, nil)
				if err != nil {
					t.Fatal(err)
				}
				rec := &record.Record{Partition: pid, Position: record.Position{Offset: int64(i)}, Value: v}
				if err := w.Write(ctx, row, rec, now); err != nil {
					t.Fatal(err)
				}
				written += int64(len(v)) + 1
				if used := budget.Used(); used > tt.budget {
					t.Fatalf("after %d records (%d MiB), the budget counts %d bytes, over its %d", i+1, written>>20, used, tt.budget)
				}
				if i%64 != 0 {
					continue // summing thousands of files at every record is slow
				}
				var held int64
				for _, f := range w.files {
					held += int64(cap(f.buf)) + fileOverhead
				}
				if held > tt.budget {
					t.Fatalf("after %d records (%d MiB), open files hold %d bytes, over the %d budget", i+1, written>>20, held, tt.budget)
				}
				if used := budget.Used(); used != held {
					t.Fatalf("after %d records the budget counts %d bytes, the files hold %d", i+1, used, held)
				}
			}
			prep, err := w.Prepare(ctx, writers.Roll{All: true, Reason: "drain"})
			if err != nil {
				t.Fatal(err)
			}
			if budget.Used() != 0 {
				t.Errorf("after every file rolled the budget still counts %d bytes", budget.Used())
			}
			cm := checkpoint.Committers{checkpoint.KindMultipart: checkpoint.Multipart{Stores: map[string]store.Store{dest: st}}}
			seen := make([]bool, tt.records)
			var lines int
			for _, e := range prep.Entries {
				for i, p := range e.Parts {
					if i < len(e.Parts)-1 && p.Size < minPartSize {
						t.Errorf("%s: part %d of %d is %d bytes, under S3's least part size", e.Key, i+1, len(e.Parts), p.Size)
					}
				}
				if err := cm.Apply(ctx, e); err != nil {
					t.Fatal(err)
				}
				body, err := st.Get(ctx, e.Key)
				if err != nil {
					t.Fatal(err)
				}
				for _, line := range bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n")) {
					var id int
					if _, err := fmt.Sscanf(string(line), `{"id":%d,`, &id); err != nil || id >= tt.records || seen[id] {
						t.Fatalf("%s: line %.40q is not a new record (%v)", e.Key, line, err)
					}
					seen[id] = true
					lines++
				}
			}
			if lines != tt.records {
				t.Fatalf("%d lines committed, want %d", lines, tt.records)
			}
			files := len(prep.Entries)
			avg := written / int64(files)
			least := (tt.budget - tt.budget/8) / int64(tt.buckets) / 2
			full := metricValue(t, reg, "sinkd_jsonlines_memory_full_total", "")
			rolled := metricValue(t, reg, "sinkd_jsonlines_files_rolled_total", "memory")
			early := metricValue(t, reg, "sinkd_jsonlines_early_parts_total", "")
			t.Logf("%d MiB in %d buckets: %d files, %d KiB (%d records) on average; memory full %v times, %v files rolled, %v parts uploaded early",
				written>>20, tt.buckets, files, avg>>10, int64(tt.records)/int64(files), full, rolled, early)
			if full == 0 {
				t.Fatalf("the budget was never full: the test did not reach the bound")
			}
			if avg < least {
				t.Errorf("committed files average %d bytes, want at least %d (half the budget's low mark per bucket)", avg, least)
			}
			if tt.early && early == 0 {
				t.Errorf("no part uploaded early, although files held a part's least size when memory was full")
			}
		})
	}
}

// metricValue reads a counter of route trips (and reason, when given).
func metricValue(t *testing.T, g prometheus.Gatherer, name, reason string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			if labelsMatch(m, reason) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func labelsMatch(m *dto.Metric, reason string) bool {
	for _, l := range m.Label {
		if l.GetName() == "reason" && l.GetValue() != reason {
			return false
		}
	}
	return true
}

// TestInactivityRoll: a file that has had no record for the inactivity
// default rolls at the next tick, so that its partition's restart point
// moves on; a file still written stays open.
func TestInactivityRoll(t *testing.T) {
	ctx := context.Background()
	ww, _, _ := newWriterOn(t, "{destination: %q, path: \"type={type}\"}", testRoute{})
	w := ww.(*Writer)
	s, _ := schema.New([]config.Field{{Name: "id", Type: "int64"}, {Name: "type", Type: "string"}})
	dec := s.NewDecoder()
	quiet := record.PartitionID{Stream: "t", Partition: 0}
	busy := record.PartitionID{Stream: "t", Partition: 1}
	start := time.Now()
	write := func(pid record.PartitionID, off int64, typ string, at time.Duration) {
		t.Helper()
		v := []byte(fmt.Sprintf(`{"id":%d,"type":%q}`, off, typ))
		row, err := dec.Decode(v, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(ctx, row, &record.Record{Partition: pid, Position: record.Position{Offset: off}, Value: v}, start.Add(at)); err != nil {
			t.Fatal(err)
		}
	}
	inactivity := DefaultInactivity.D()
	write(quiet, 0, "quiet", 0)
	write(busy, 0, "busy", 0)
	for i := int64(1); i <= 4; i++ {
		at := time.Duration(i) * inactivity / 2
		write(busy, i, "busy", at)
		if err := w.Tick(start.Add(at)); err != nil {
			t.Fatal(err)
		}
		if open := len(w.files); i == 1 && open != 2 || i > 1 && open != 1 {
			t.Fatalf("%s after the start: %d files open, want %d", at, open, map[bool]int{true: 2, false: 1}[i == 1])
		}
	}
	prep, err := w.Prepare(ctx, writers.Roll{})
	if err != nil {
		t.Fatal(err)
	}
	if len(prep.Entries) != 1 || !strings.Contains(prep.Entries[0].Key, "type=quiet/") {
		t.Fatalf("prepared %v, want the quiet bucket's file", prep.Entries)
	}
	if _, ok := prep.OpenLow[quiet]; ok {
		t.Errorf("the quiet partition still has an open low %v: its restart point cannot move", prep.OpenLow[quiet])
	}
	if low, ok := prep.OpenLow[busy]; !ok || low.Offset != 0 {
		t.Errorf("the busy partition's open low is %v, want offset 0 (its file is still open)", prep.OpenLow)
	}
}
