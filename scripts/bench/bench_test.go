package main

import (
	"reflect"
	"strings"
	"testing"
	"time"
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
		{"all", []string{"a", "b", "c", "d", "sweep"}, false},
		{"a", []string{"a"}, false},
		{"d, sweep", []string{"d", "sweep"}, false},
		{"e", nil, true},
	}
	for _, tt := range tests {
		got, err := parseScenarios(tt.in)
		if (err != nil) != tt.wantErr || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseScenarios(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestTargets(t *testing.T) {
	r := result{input: input{events: 2_000_000}, m: measurement{processed: 10 * time.Second, cpuDurable: 12, peakRSSMiB: 300}}
	tests := []struct {
		target target
		want   string
	}{
		{minRate(200_000), "met"},           // exactly 200,000 events/s
		{minRate(250_000), "missed by 20%"}, // 200,000 of 250,000
		{maxCPUPerEvent(5), "missed by 20%"},
		{maxCPUPerEvent(6), "met"},
		{maxRSS(256 + 100), "met"},
		{maxRSS(200), "missed by 50%"},
	}
	for _, tt := range tests {
		if got := tt.target.verdict(r); got != tt.want {
			t.Errorf("%s: verdict %q, want %q", tt.target.label, got, tt.want)
		}
	}
}

func TestRatio(t *testing.T) {
	run := func(cpu float64) result {
		return result{input: input{events: 1_000_000}, m: measurement{processed: time.Second, cpuDurable: cpu}}
	}
	if got := ratio([]result{run(4), run(5), run(6)}); got != 1.5 {
		t.Errorf("ratio = %v, want 1.5", got)
	}
	failed := result{err: "boom"}
	if got := ratio([]result{run(4), failed}); got != 0 {
		t.Errorf("ratio with a failed run = %v, want 0", got)
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
