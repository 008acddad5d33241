package dlq

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// metricValue reads one sample from reg; labels select the series.
func metricValue(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue series
				}
			}
			return sampleValue(m)
		}
	}
	return 0
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	}
	return 0
}

// sampleLetters is a mix of stages, classes and failure times.
func sampleLetters() []*Letter {
	var out []*Letter
	for i := range 6 {
		l := kafkaLetter(int64(100+i), StageDecode)
		l.LastFailure = t0.Add(time.Duration(i) * time.Hour)
		if i%2 == 1 {
			l.Stage, l.Class = StageOpenSearch, "mapper_parsing_exception"
			l.Details = map[string]string{DetailIndex: "trips-yellow", "status": "400"}
		}
		out = append(out, l)
	}
	odd := kinesisLetter("4959033827149025660855969253836157109592157598913658889", 3)
	odd.Stage, odd.Class = StageDecode, "a class nobody registered"
	odd.LastFailure = t0.Add(10 * time.Hour)
	return append(out, odd)
}

func TestFileSinkFlushAndMetrics(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dlq.jsonl")
	reg := prometheus.NewRegistry()
	sink, err := NewFile(path, Options{Pipeline: "taxi", Version: "test", Registerer: reg, MaxBuffered: 100})
	if err != nil {
		t.Fatal(err)
	}
	letters := sampleLetters()
	for _, l := range letters {
		if err := sink.Send(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	if got := metricValue(t, reg, "sinkd_dlq_buffered_letters", nil); got != float64(len(letters)) {
		t.Errorf("buffered gauge %v before flush, want %d", got, len(letters))
	}
	if got := readAll(t, path); len(got) != 0 {
		t.Fatalf("%d letters visible before Flush", len(got))
	}
	if err := sink.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := metricValue(t, reg, "sinkd_dlq_buffered_letters", nil); got != 0 {
		t.Errorf("buffered gauge %v after flush", got)
	}
	for labels, want := range map[[2]string]float64{
		{"decode", "type_mismatch"}:                3,
		{"opensearch", "mapper_parsing_exception"}: 3,
		{"decode", "other"}:                        1,
	} {
		got := metricValue(t, reg, "sinkd_dlq_records_total", map[string]string{"stage": labels[0], "reason": labels[1]})
		if got != want {
			t.Errorf("sinkd_dlq_records_total%v = %v, want %v", labels, got, want)
		}
	}

	got := readAll(t, path)
	if len(got) != len(letters) {
		t.Fatalf("read %d letters, want %d", len(got), len(letters))
	}
	for i, l := range got {
		assertSameLetter(t, l, stamped(letters[i], Options{Pipeline: "taxi", Version: "test"}))
	}
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sink.Send(ctx, letters[0]); err == nil {
		t.Error("Send after Close succeeded")
	}
}

func readAll(t *testing.T, path string) []*Letter {
	t.Helper()
	var out []*Letter
	var warn bytes.Buffer
	if err := readFile(path, &warn, func(l *Letter) error { out = append(out, l); return nil }); err != nil {
		t.Fatal(err)
	}
	if warn.Len() > 0 {
		t.Errorf("warnings reading %s: %s", path, warn.String())
	}
	return out
}

// writeFile puts letters into a fresh dead-letter file.
func writeFile(t *testing.T, letters ...*Letter) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dlq.jsonl")
	sink, err := NewFile(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range letters {
		if err := sink.Send(context.Background(), l); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestInspectFilters(t *testing.T) {
	letters := sampleLetters()
	path := writeFile(t, letters...)
	cases := []struct {
		name string
		args []string
		want []*Letter
	}{
		{"all", nil, letters},
		{"stage", []string{"--stage", "opensearch"}, []*Letter{letters[1], letters[3], letters[5]}},
		{"class", []string{"--class", "type_mismatch"}, []*Letter{letters[0], letters[2], letters[4]}},
		{"id", []string{"--id", letters[4].ID()}, []*Letter{letters[4]}},
		{"limit", []string{"--limit", "2"}, letters[:2]},
		{"since until", []string{"--since", t0.Add(2 * time.Hour).Format(time.RFC3339), "--until", t0.Add(4 * time.Hour).Format(time.RFC3339)}, letters[2:4]},
		{"stage and since", []string{"--stage", "decode", "--since", t0.Add(3 * time.Hour).Format(time.RFC3339)}, []*Letter{letters[4], letters[6]}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append([]string{"--file", path, "--json"}, c.args...)
			if code := Inspect(context.Background(), args, &out, &errOut); code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if out.Len() == 0 {
				lines = nil
			}
			if len(lines) != len(c.want) {
				t.Fatalf("%d letters, want %d:\n%s", len(lines), len(c.want), out.String())
			}
			for i, line := range lines {
				l, err := FromJSON([]byte(line))
				if err != nil {
					t.Fatal(err)
				}
				if l.ID() != c.want[i].ID() {
					t.Errorf("letter %d is %s, want %s", i, l.ID(), c.want[i].ID())
				}
			}
		})
	}
}

func TestInspectReadable(t *testing.T) {
	l := kinesisLetter("4959033827149025660855969253836157109592157598913658889", 3)
	l.Record.Value = []byte(strings.Repeat("ab\x01", 100))
	path := writeFile(t, l)
	var out, errOut bytes.Buffer
	if code := Inspect(context.Background(), []string{"--file", path}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	text := out.String()
	for _, want := range []string{
		l.ID(), "opensearch", "mapper_parsing_exception", l.Message,
		"kinesis:trips/shardId-000000000001@4959033827149025660855969253836157109592157598913658889.3",
		"redrives  2", "detail    index=trips-yellow", strings.Repeat("ab.", 40) + "…", "(300 bytes)", "1 letters",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}

func TestCLIUsage(t *testing.T) {
	path := writeFile(t, kafkaLetter(1, StageDecode))
	cases := []struct {
		name string
		cmd  func(context.Context, []string, *bytes.Buffer, *bytes.Buffer) int
		args []string
		code int
		err  string
	}{
		{"inspect help", inspectCmd, []string{"-h"}, 0, "Usage: sinkd dlq inspect"},
		{"inspect long help", inspectCmd, []string{"--help"}, 0, "--kinesis-stream"},
		{"redrive help", redriveCmd, []string{"--help"}, 0, "--max-redrives"},
		{"no source", inspectCmd, nil, 2, "exactly one source"},
		{"two sources", inspectCmd, []string{"--file", path, "--kinesis-stream", "s"}, 2, "exactly one source"},
		{"bad stage", inspectCmd, []string{"--file", path, "--stage", "nope"}, 2, "not a stage"},
		{"bad since", inspectCmd, []string{"--file", path, "--since", "yesterday"}, 2, "--since"},
		{"unknown flag", inspectCmd, []string{"--file", path, "--frobnicate"}, 2, "frobnicate"},
		{"no destination", redriveCmd, []string{"--file", path}, 2, "exactly one destination"},
		{"loop kafka", redriveCmd, []string{"--kafka-brokers", "a:9092,b:9092", "--topic", "dlq", "--to-kafka-brokers", "b:9092", "--to-topic", "dlq"}, 2, "refusing"},
		{"loop kinesis", redriveCmd, []string{"--kinesis-stream", "dlq", "--to-kinesis-stream", "dlq"}, 2, "refusing"},
		{"missing file", inspectCmd, []string{"--file", filepath.Join(t.TempDir(), "none")}, 1, "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := c.cmd(context.Background(), c.args, &out, &errOut); code != c.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, c.code, errOut.String())
			}
			got := errOut.String()
			if c.code == 0 { // help goes to stdout
				got = out.String()
			}
			if !strings.Contains(got, c.err) {
				t.Errorf("output lacks %q:\n%s", c.err, got)
			}
		})
	}
}

func inspectCmd(ctx context.Context, args []string, out, errOut *bytes.Buffer) int {
	return Inspect(ctx, args, out, errOut)
}

func redriveCmd(ctx context.Context, args []string, out, errOut *bytes.Buffer) int {
	return Redrive(ctx, args, out, errOut)
}

func TestRedriveDryRunFromFile(t *testing.T) {
	fresh := kafkaLetter(1, StageDecode)
	again := kafkaLetter(2, StageDecode)
	again.RedriveCount = 2
	exhausted := kafkaLetter(3, StageDecode)
	exhausted.RedriveCount = 3
	truncated := kafkaLetter(4, StageOversize)
	truncated.OriginalSize = 10 << 20
	path := writeFile(t, fresh, again, exhausted, truncated, fresh) // fresh twice: a replayed duplicate

	var out, errOut bytes.Buffer
	args := []string{"--file", path, "--to-kafka-brokers", "127.0.0.1:1", "--to-topic", "trips", "--dry-run"}
	if code := Redrive(context.Background(), args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	text := out.String()
	for _, l := range []*Letter{fresh, again} {
		if strings.Count(text, "would redrive "+l.ID()) != 1 {
			t.Errorf("dry run does not list %s once:\n%s", l.ID(), text)
		}
	}
	for _, l := range []*Letter{exhausted, truncated} {
		if strings.Contains(text, "would redrive "+l.ID()) {
			t.Errorf("dry run lists skipped letter %s", l.ID())
		}
	}
	want := "would redrive 2 to kafka:trips; skipped 1 at --max-redrives, 1 duplicate ids, 1 truncated"
	if !strings.Contains(text, want) {
		t.Errorf("summary missing %q:\n%s", want, text)
	}
}
