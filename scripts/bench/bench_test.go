package main

import (
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"gopkg.in/yaml.v3"

	"github.com/sinkd/sinkd/buckets"
	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/scripts/stack/stackenv"
	"github.com/sinkd/sinkd/taxi"
)

func TestCPUTicks(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    float64
		wantErr bool
	}{
		{"plain", "4242 (sinkd) S 1 4242 4242 0 -1 4194560 1200 0 0 0 731 95 0 0 20 0 9 0 123 0 0", 826, false},
		{"name with spaces and parens", "7 (a) b) (c) R 1 7 7 0 -1 0 0 0 0 0 10 5 0 0 20 0", 15, false},
		{"no name", "7 R 1 7", 0, true},
		{"short", "7 (x) R 1 2", 0, true},
		{"not a number", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 ten 5", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cpuTicks([]byte(tt.stat))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("cpuTicks = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestVmHWM(t *testing.T) {
	status := "Name:\tsinkd\nVmPeak:\t 2000000 kB\nVmHWM:\t  123456 kB\nVmRSS:\t 100000 kB\n"
	if got := vmHWM([]byte(status)); got != 123456 {
		t.Errorf("vmHWM = %d, want 123456", got)
	}
	if got := vmHWM([]byte("Name:\tx\n")); got != 0 {
		t.Errorf("vmHWM without the line = %d, want 0", got)
	}
}

func TestBusyTicks(t *testing.T) {
	tests := []struct {
		line string
		want float64
	}{
		// user nice system idle iowait irq softirq steal guest guest_nice
		{"cpu  100 2 30 5000 40 5 6 7 0 0", 150},
		{"cpu0 100 2 30 5000 40 5 6 7 0 0", 0}, // a single CPU's line is not the total
		{"cpu 1 2", 0},
		{"cpu  1 x 3 4 5 6 7 8", 0},
	}
	for _, tt := range tests {
		if got := busyTicks(tt.line); got != tt.want {
			t.Errorf("busyTicks(%q) = %v, want %v", tt.line, got, tt.want)
		}
	}
	// What waitQuiet counts: busy and waiting for the disk.
	if got := activeTicks(tests[0].line); got != 190 {
		t.Errorf("activeTicks(%q) = %v, want 190", tests[0].line, got)
	}
	if got := activeTicks(tests[2].line); got != 0 {
		t.Errorf("activeTicks(%q) = %v, want 0", tests[2].line, got)
	}
}

func TestParseMetrics(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    map[string]float64
		wantErr bool
	}{
		{
			name: "labels summed, comments skipped",
			text: `# HELP sinkd_source_records_total Records read.
# TYPE sinkd_source_records_total counter
sinkd_source_records_total{source="kafka",stream="a"} 1500
sinkd_source_records_total{source="kafka",stream="b"} 500
sinkd_parquet_open_files 3
sinkd_checkpoint_last_success_timestamp_seconds 1.7e+09
`,
			want: map[string]float64{
				"sinkd_source_records_total":                      2000,
				"sinkd_parquet_open_files":                        3,
				"sinkd_checkpoint_last_success_timestamp_seconds": 1.7e9,
			},
		},
		{
			name: "label value with braces and a timestamp",
			text: `x{reason="a}b"} 2 1700000000000` + "\n",
			want: map[string]float64{"x": 2},
		},
		{name: "no value", text: "x{a=\"b\"}\n", wantErr: true},
		{name: "bad value", text: "x abc\n", wantErr: true},
		{name: "bare name", text: "x\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMetrics(strings.NewReader(tt.text))
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseScenarios(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"all", []string{"a", "b", "c", "d", "sweep", "e"}, false},
		{"a", []string{"a"}, false},
		{"d, e, sweep", []string{"d", "e", "sweep"}, false},
		{"f", nil, true},
	}
	for _, tt := range tests {
		got, err := parseScenarios(tt.in)
		if (err != nil) != tt.wantErr || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseScenarios(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestVerdict(t *testing.T) {
	tests := []struct {
		got, want      float64
		higherIsBetter bool
		verdict        string
	}{
		{200_000, 200_000, true, "met"},
		{200_000, 250_000, true, "missed by 20%"},
		{6, 5, false, "missed by 20%"},
		{5, 5, false, "met"},
	}
	for _, tt := range tests {
		if got := verdict(tt.got, tt.want, tt.higherIsBetter); got != tt.verdict {
			t.Errorf("verdict(%v, %v, %v) = %q, want %q", tt.got, tt.want, tt.higherIsBetter, got, tt.verdict)
		}
	}
}

// run is a finished run of events events read in processed, using cpu
// seconds, at peak RSS rss MiB under a 256 MiB budget.
func finished(name string, events int64, processed time.Duration, cpu, rss float64) result {
	return result{
		spec:   spec{name: name, title: "title " + name},
		input:  input{events: events},
		budget: 256 << 20,
		m:      measurement{processed: processed, durable: processed, cpuDurable: cpu, peakRSSMiB: rss, scraped: true},
	}
}

// find returns the targets of scope whose label starts with prefix.
func find(rows []targetRow, scope, prefix string) []targetRow {
	var out []targetRow
	for _, r := range rows {
		if r.scope == scope && strings.HasPrefix(r.label, prefix) {
			out = append(out, r)
		}
	}
	return out
}

func TestTargets(t *testing.T) {
	a := finished("a", 2_000_000, 10*time.Second, 8, 300)  // 200,000 events/s, 4 µs
	d := finished("d", 2_000_000, 20*time.Second, 12, 357) // 100,000 events/s: 50%, RSS over 356
	e := result{spec: spec{name: "e", title: "title e"}, input: input{events: 2_000_000}, budget: 256 << 20,
		err: "too slow", m: measurement{slow: true, partialRead: 38_000, partialTime: 100 * time.Second, partialCPU: 50, peakRSSMiB: 200}}
	e.m.spool = gauge{peak: 2 << 30, reported: true}
	e.m.spoolBudget = gauge{peak: 1 << 30, reported: true}
	rep := report{results: []result{a, d, e}}
	rows := rep.targets()

	tests := []struct {
		scope, label, verdict string
	}{
		{"(a)", "≥ 200,000 events/s", "met"},
		{"(a)", "≤ 5 µs", "met"},
		{"(d)", "events/s ≥ 50% of (a)'s", "met"},
		// 6 of 4 µs: 1.5×.
		{"(a) to (d)", "CPU per event within 1.5× from ≈10 to ≈2,000 buckets (2,000,000 events)", "met"},
		{"(e)", "events/s ≥ 25% of (a)'s", "missed by 99%"}, // 380 of 200,000 events/s: 0.19%
		{"(a)", "peak RSS", "met"},
		{"(d)", "peak RSS", "missed by 0%"}, // 357 of 356 MiB
		{"(e)", "peak RSS", "met until the run stopped: too slow"},
		{"(a)", "peak sinkd_spool_bytes", "not measured: sinkd does not export sinkd_spool_bytes"},
		{"(e)", "peak sinkd_spool_bytes", "missed by 100%"},
	}
	for _, tt := range tests {
		got := find(rows, tt.scope, tt.label)
		if len(got) != 1 {
			t.Errorf("%s %q: %d rows, want 1 (all: %+v)", tt.scope, tt.label, len(got), rows)
			continue
		}
		if got[0].verdict != tt.verdict {
			t.Errorf("%s %s: verdict %q (measured %q), want %q", tt.scope, got[0].label, got[0].verdict, got[0].measured, tt.verdict)
		}
	}
	if got := find(rows, "(e)", "events/s")[0].measured; !strings.Contains(got, "380 until stopped of 200,000 events/s = 0.2%") {
		t.Errorf("(e)'s rate %q does not say it is the rate of a stopped run", got)
	}
	if got := find(rows, "(a)", "peak RSS")[0].label; !strings.Contains(got, "(256 MiB) + 100 MiB") {
		t.Errorf("RSS target %q does not name the budget the run read", got)
	}

	// Without (a), (d)'s share cannot be computed: not measured, never met.
	rows = report{results: []result{d}}.targets()
	if got := find(rows, "(d)", "events/s")[0].verdict; got != "not measured: (a) was not run" {
		t.Errorf("(d) without (a): verdict %q", got)
	}
}

func TestSpoolTarget(t *testing.T) {
	r := finished("a", 1000, time.Second, 1, 100)
	tests := []struct {
		name         string
		spool, limit gauge
		verdict      string
	}{
		{"not exported", gauge{}, gauge{}, "not measured: sinkd does not export sinkd_spool_bytes"},
		{"budget not exported", gauge{peak: 5, reported: true}, gauge{}, "not measured: sinkd does not export sinkd_spool_budget_bytes"},
		{"within", gauge{peak: 5 << 20, reported: true}, gauge{peak: 1 << 30, reported: true}, "met"},
		{"unused, no budget", gauge{peak: 0, reported: true}, gauge{peak: 0, reported: true}, "met"},
		{"over", gauge{peak: 3 << 30, reported: true}, gauge{peak: 2 << 30, reported: true}, "missed by 50%"},
	}
	for _, tt := range tests {
		r.m.spool, r.m.spoolBudget = tt.spool, tt.limit
		if got := spoolTarget(r).verdict; got != tt.verdict {
			t.Errorf("%s: verdict %q, want %q", tt.name, got, tt.verdict)
		}
	}
}

// A metric absent from a scrape is not reported, not 0; the peak is the
// largest reported value.
func TestGauge(t *testing.T) {
	var g gauge
	g.observe(map[string]float64{"other": 1}, metricSpoolBytes)
	if g.reported {
		t.Fatalf("gauge reported from a scrape without the metric: %+v", g)
	}
	for _, v := range []float64{0, 300, 100} {
		g.observe(map[string]float64{metricSpoolBytes: v}, metricSpoolBytes)
	}
	if !g.reported || g.peak != 300 {
		t.Errorf("gauge = %+v, want peak 300, reported", g)
	}
}

func TestRatio(t *testing.T) {
	run := func(cpu float64) result {
		return result{input: input{events: 1_000_000}, m: measurement{processed: time.Second, cpuDurable: cpu}}
	}
	if got, partial, failed := ratio([]result{run(4), run(5), run(6)}); got != 1.5 || partial || failed != nil {
		t.Errorf("ratio = %v, %v, %v; want 1.5, false, nil", got, partial, failed)
	}
	bad := result{spec: spec{name: "p8-many"}, err: "boom"}
	if got, _, failed := ratio([]result{run(4), bad}); got != 0 || failed == nil || failed.spec.name != "p8-many" {
		t.Errorf("ratio with a failed run = %v, %v; want 0 and the failed run", got, failed)
	}
	slow := result{err: "too slow", m: measurement{slow: true, partialRead: 1000, partialCPU: 0.02}} // 20 µs
	if got, partial, failed := ratio([]result{run(4), slow}); got != 5 || !partial || failed != nil {
		t.Errorf("ratio with a slow run = %v, %v, %v; want 5, partial", got, partial, failed)
	}
}

func TestThousands(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.4: "1,234,567"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestWithoutBenchmarks(t *testing.T) {
	out := `goos: linux
pkg: example.com/m/schema
BenchmarkDecode-2   	  321093	      3188 ns/op
PASS
ok  	example.com/m/schema	1.039s
PASS
ok  	example.com/m/writers/store	0.010s
?   	example.com/m/daemon/checkpoint	[no test files]
`
	want := []string{"`example.com/m/writers/store`", "`example.com/m/daemon/checkpoint`"}
	if got := withoutBenchmarks(out); !reflect.DeepEqual(got, want) {
		t.Errorf("withoutBenchmarks = %v, want %v", got, want)
	}
}

// The generated configurations set nothing under memory (issue 12: raised
// caps hid the default's behaviour), and sinkd accepts them as they are.
func TestConfigsKeepMemoryDefaults(t *testing.T) {
	env := stackenv.Env{KafkaBrokers: "127.0.0.1:9092", S3Endpoint: "http://127.0.0.1:9000", S3Bucket: "bench",
		KinesisEndpoint: "http://127.0.0.1:4567", DynamoDBEndpoint: "http://127.0.0.1:4568"}
	specs := []spec{{name: "p8-many", title: "p8-many", partitions: 8, events: 300_000, path: manyBuckets}}
	for _, name := range scenarioNames {
		specs = append(specs, scenarioSpec(name, 2_000_000))
	}
	for _, s := range specs {
		t.Run(s.name, func(t *testing.T) {
			dir := t.TempDir()
			src := kafkaSource(env, "topic", "group")
			if s.kinesis {
				src = kinesisSource(env, "stream", "leases")
			}
			osURL := ""
			if s.opensearch {
				osURL = "http://127.0.0.1:9200"
			}
			path, _, err := writeConfig(dir, "run", s, env, src, "bench/x/", osURL)
			if err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			if err := yaml.Unmarshal(data, &doc); err != nil {
				t.Fatal(err)
			}
			if m, ok := doc["memory"]; ok {
				t.Errorf("config sets memory: %v", m)
			}
			budget, err := memoryBudget(path)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if budget <= 0 || budget != int64(cfg.Memory.Budget) {
				t.Errorf("memoryBudget = %d, config's budget %d", budget, cfg.Memory.Budget)
			}
			if got := cfg.Routes[0].Parquet.Path; got != s.path {
				t.Errorf("route path %q, want %q", got, s.path)
			}
		})
	}
}

// bucketCounts is how many distinct bucket paths each template makes from
// the first events trips of the benchmarks' input, computed with sinkd's own
// decoder and template compiler in one pass.
func bucketCounts(t *testing.T, templates []string, events int) []int {
	t.Helper()
	var fields []config.Field
	if err := yaml.Unmarshal([]byte(taxi.FieldsYAML), &fields); err != nil {
		t.Fatal(err)
	}
	for i := range fields {
		fields[i].From = fields[i].Name
		if fields[i].Type == "timestamp" {
			fields[i].Unit, fields[i].Input = "millis", "millis"
		}
	}
	sch, err := schema.New(fields)
	if err != nil {
		t.Fatal(err)
	}
	tmpls := make([]*buckets.Template, len(templates))
	seen := make([]map[string]struct{}, len(templates))
	for i, src := range templates {
		if tmpls[i], err = buckets.Compile(src, sch, config.EventTime{Source: "field", Field: "pickup_datetime"}, "UTC"); err != nil {
			t.Fatal(err)
		}
		seen[i] = map[string]struct{}{}
	}
	gen := taxi.NewGenerator(seed, taxi.DefaultStart())
	dec := sch.NewDecoder()
	var js, key []byte
	var row parquet.Row
	for range events {
		trip := gen.Next()
		js = trip.AppendJSON(js[:0])
		if row, err = dec.Decode(js, row[:0]); err != nil {
			t.Fatal(err)
		}
		for i, tmpl := range tmpls {
			if key, err = tmpl.Append(key[:0], row, nil, time.Time{}); err != nil {
				t.Fatal(err)
			}
			seen[i][string(key)] = struct{}{}
		}
	}
	counts := make([]int, len(templates))
	for i := range seen {
		counts[i] = len(seen[i])
	}
	return counts
}

// The scenarios' titles promise ≈10, ≈2,000 and ≈20,000 buckets at the
// default event count; this holds them to it.
func TestBucketCounts(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes two million trips")
	}
	const events = 2_000_000 // the -events default
	tests := []struct {
		scenario string
		lo, hi   int
	}{
		{"a", 3, 12},
		{"d", 1_800, 2_500},
		{"e", 18_000, 25_000},
	}
	var templates []string
	for _, tt := range tests {
		templates = append(templates, scenarioSpec(tt.scenario, events).path)
	}
	counts := bucketCounts(t, templates, events)
	for i, tt := range tests {
		if got := counts[i]; got < tt.lo || got > tt.hi {
			t.Errorf("(%s) %s: %d buckets in %d events, want %d to %d", tt.scenario, templates[i], got, events, tt.lo, tt.hi)
		} else {
			t.Logf("(%s) %s: %d buckets", tt.scenario, templates[i], got)
		}
	}
}

func TestCPUPerFile(t *testing.T) {
	run := func(cpu float64, files int) result {
		r := finished("p8", 300_000, time.Second, cpu, 100)
		r.committed = committed{files: files, buckets: files}
		return r
	}
	for _, tt := range []struct {
		name        string
		runs        []result
		micros, row float64
		ok          bool
	}{
		// 2.1 s more CPU for 2,100 more files: 1 ms a file, 300,000 / 2,112.
		{"sweep", []result{run(1.5, 12), run(3.6, 2112)}, 1000, 300_000.0 / 2112, true},
		{"no more files", []result{run(1.5, 12), run(3.6, 12)}, 0, 0, false},
		{"one run", []result{run(1.5, 12)}, 0, 0, false},
		{"failed run", []result{run(1.5, 12), {err: "boom"}}, 0, 0, false},
		{"different inputs", []result{run(1.5, 12), {input: input{events: 1}, committed: committed{files: 2112}}}, 0, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			micros, rows, ok := cpuPerFile(tt.runs)
			if ok != tt.ok || math.Abs(micros-tt.micros) > 1e-6 || math.Abs(rows-tt.row) > 1e-9 {
				t.Errorf("cpuPerFile = %.3f µs, %.3f rows, %v; want %.3f, %.3f, %v", micros, rows, ok, tt.micros, tt.row, tt.ok)
			}
		})
	}
}
