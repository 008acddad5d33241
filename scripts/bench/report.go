package main

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// result is one scenario or sweep point.
type result struct {
	spec         spec
	id           string
	input        input
	m            measurement
	files        int // committed Parquet files
	buckets      int // distinct bucket paths among them
	err          string
	notAvailable bool
	firstAttempt *result // the failed attempt this one repeats
}

func (r result) ok() bool { return r.err == "" && r.m.processed > 0 }

// eventsPerSecond counts from sinkd's start, startup and group join included.
func (r result) eventsPerSecond() float64 { return float64(r.input.events) / r.m.processed.Seconds() }

// steadyEventsPerSecond counts from the first record read.
func (r result) steadyEventsPerSecond() float64 {
	return float64(r.input.events) / (r.m.processed - r.m.firstRecord).Seconds()
}

func (r result) inputMBPerSecond() float64 {
	return float64(r.input.bytes) / 1e6 / r.m.processed.Seconds()
}

// cpuMicrosPerEvent is sinkd's CPU time up to "all durable" per event, which
// is also its CPU seconds per million events.
func (r result) cpuMicrosPerEvent() float64 { return r.m.cpuDurable / float64(r.input.events) * 1e6 }

// target is one goal of the performance issue: a measured figure against a
// bound.
type target struct {
	label          string
	unit           string
	want           float64
	higherIsBetter bool
	got            func(result) float64
}

func (t target) measured(r result) string {
	return fmt.Sprintf("%s %s", thousands2(t.got(r)), t.unit)
}

// verdict is "met" or how far the figure is from the bound.
func (t target) verdict(r result) string {
	got := t.got(r)
	if t.higherIsBetter && got >= t.want || !t.higherIsBetter && got <= t.want {
		return "met"
	}
	return fmt.Sprintf("missed by %.0f%%", 100*math.Abs(got-t.want)/t.want)
}

func minRate(perSecond float64) target {
	return target{fmt.Sprintf("≥ %s events/s end to end", thousands(perSecond)), "events/s", perSecond, true, result.eventsPerSecond}
}

func maxCPUPerEvent(micros float64) target {
	return target{fmt.Sprintf("≤ %g µs of sinkd CPU per event", micros), "µs", micros, false, result.cpuMicrosPerEvent}
}

func maxRSS(mib float64) target {
	return target{fmt.Sprintf("peak RSS ≤ %g MiB", mib), "MiB", mib, false, func(r result) float64 { return r.m.peakRSSMiB }}
}

// maxRatio is the 1.3× scaling target.
const maxRatio = 1.3

type sweepResult struct {
	events     int
	partitions []result // 1, 8, 64 partitions, ≈10 buckets
	buckets    []result // ≈10 and ≈2,000 buckets, 8 partitions
}

// ratio is the largest CPU per event over the smallest; 0 when a run failed.
func ratio(rs []result) float64 {
	if len(rs) < 2 {
		return 0
	}
	lo, hi := 0.0, 0.0
	for _, r := range rs {
		if !r.ok() {
			return 0
		}
		c := r.cpuMicrosPerEvent()
		if lo == 0 || c < lo {
			lo = c
		}
		hi = max(hi, c)
	}
	return hi / lo
}

// thousands2 is thousands for large figures and two decimals for small ones.
func thousands2(v float64) string {
	if v >= 1000 {
		return thousands(v)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func printResult(w io.Writer, r result) {
	if !r.ok() {
		fmt.Fprintf(w, "%-8s %s\n", r.spec.name, r.err)
		for _, line := range r.m.logTail {
			fmt.Fprintf(w, "         | %s\n", line)
		}
		return
	}
	fmt.Fprintf(w, "%-8s %9s events/s (steady %s)  %6.1f MB/s  %5.2f CPU s/M events  peak RSS %5.0f MiB  durable after %5.1fs  files %d  buckets %d  exit %s  (other CPUs busy %.2f, load %s)\n",
		r.spec.name, thousands(r.eventsPerSecond()), thousands(r.steadyEventsPerSecond()), r.inputMBPerSecond(),
		r.cpuMicrosPerEvent(), r.m.peakRSSMiB, r.m.durable.Seconds(), r.files, r.buckets, r.m.exit, r.m.otherCores, r.m.loadBefore)
	if r.m.fakeCPU > 0 {
		fmt.Fprintf(w, "         OpenSearch fake (its own process, not in sinkd's figure): %.2f CPU s/M events\n", r.fakeMicrosPerEvent())
	}
	for _, t := range r.spec.targets {
		fmt.Fprintf(w, "         target %s: %s (%s)\n", t.label, t.verdict(r), t.measured(r))
	}
}

// fakeMicrosPerEvent is the OpenSearch fake's CPU per event.
func (r result) fakeMicrosPerEvent() float64 { return r.m.fakeCPU / float64(r.input.events) * 1e6 }

func printSweep(w io.Writer, sw sweepResult) {
	fmt.Fprintf(w, "sweep    CPU per event, max/min: partitions 1-8-64 %s, buckets %s (target ≤ %g)\n",
		ratioText(ratio(sw.partitions)), ratioText(ratio(sw.buckets)), maxRatio)
}

func ratioText(x float64) string {
	if x == 0 {
		return "n/a (a run failed)"
	}
	verdict := "met"
	if x > maxRatio {
		verdict = fmt.Sprintf("missed by %.0f%%", 100*(x-maxRatio)/maxRatio)
	}
	return fmt.Sprintf("%.2f× (%s)", x, verdict)
}

// report is docs/benchmarks.md.
type report struct {
	started time.Time
	elapsed time.Duration
	command string
	commit  string
	machine string
	results []result
	sweep   *sweepResult
	micro   string
}

func (rep report) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Benchmarks\n\n")
	p("Written by `make bench` (`scripts/bench/run.sh`); rerun it to replace this page. ")
	p("Benchmarks never gate CI: nothing here runs from `make test`.\n\n")
	p("- Date: %s\n", rep.started.UTC().Format("2006-01-02 15:04 UTC"))
	p("- Commit: %s\n", rep.commit)
	p("- Machine: %s\n", rep.machine)
	p("- Command: `%s`\n", rep.command)
	p("- End-to-end run time: %s\n\n", rep.elapsed.Round(time.Second))

	p("## End to end\n\n")
	p("sinkd runs as a child process (`sinkd run`) against the local stack of real servers ")
	p("(`scripts/stack`: the kfake broker, MinIO, kinesalite, dynalite; the project's OpenSearch fake for (b)), ")
	p("on the same machine and the same CPUs as sinkd: the servers' work competes with sinkd's, so ")
	p("wall-clock rates are lower bounds. CPU time and RSS are sinkd's alone.\n\n")
	p("| scenario | events | partitions | events/s | steady events/s | input MB/s | sinkd CPU s per M events (= µs/event) | peak RSS MiB | durable after s | files | buckets | max open files | exit after SIGTERM | other CPUs busy | load before |\n")
	p("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|\n")
	rows := append([]result(nil), rep.results...)
	if rep.sweep != nil {
		rows = append(rows, rep.sweep.partitions...)
		if len(rep.sweep.buckets) == 2 {
			rows = append(rows, rep.sweep.buckets[1])
		}
	}
	for _, r := range rows {
		name := fmt.Sprintf("(%s) %s", r.spec.name, r.spec.title)
		if r.spec.name == r.spec.title {
			name = "sweep " + r.spec.name
		}
		if !r.ok() {
			p("| %s | %s | %d | %s | | | | | | | | | | | |\n", name, thousands(float64(r.spec.events)), r.spec.partitions, mdCell(r.err))
			continue
		}
		p("| %s | %s | %d | %s | %s | %.1f | %.2f | %.0f | %.1f | %d | %d | %.0f | %s | %.2f | %s |\n",
			name, thousands(float64(r.input.events)), r.spec.partitions, thousands(r.eventsPerSecond()),
			thousands(r.steadyEventsPerSecond()), r.inputMBPerSecond(), r.cpuMicrosPerEvent(), r.m.peakRSSMiB,
			r.m.durable.Seconds(), r.files, r.buckets, r.m.maxOpenFiles, mdCell(r.m.exit), r.m.otherCores, r.m.loadBefore)
	}
	p("\n")
	for _, r := range rows {
		if r.ok() && r.m.fakeCPU > 0 {
			p("(%s): the OpenSearch fake runs as its own process (started by the benchmark, not by sinkd) and used %.2f CPU s per M events, ", r.spec.name, r.fakeMicrosPerEvent())
			p("counted in other CPUs busy, not in sinkd's CPU.\n\n")
		}
	}

	p("## Targets\n\n")
	p("| scenario | target | measured | verdict |\n|---|---|--:|---|\n")
	for _, r := range rep.results {
		for _, t := range r.spec.targets {
			if !r.ok() {
				p("| (%s) | %s | — | not measured: %s |\n", r.spec.name, t.label, mdCell(r.err))
				continue
			}
			p("| (%s) | %s | %s | %s |\n", r.spec.name, t.label, t.measured(r), t.verdict(r))
		}
	}
	if sw := rep.sweep; sw != nil {
		p("| sweep | CPU per event within %g× from 1 to 64 partitions | %s | |\n", maxRatio, ratioText(ratio(sw.partitions)))
		p("| sweep | CPU per event within %g× from ≈10 to ≈2,000 buckets | %s | |\n", maxRatio, ratioText(ratio(sw.buckets)))
	}
	p("\n")

	if sw := rep.sweep; sw != nil {
		p("## Scaling sweep\n\n")
		p("%s events per run. Partitions: 1, 8 and 64 with `%s` (≈10 buckets). ", thousands(float64(sw.events)), fewBuckets)
		p("Buckets: 8 partitions with `%s` against `%s` (≈2,000 buckets, `max_open_files: 2500`).\n\n", fewBuckets, manyBuckets)
		p("| run | partitions | buckets | sinkd CPU µs/event | peak RSS MiB |\n|---|--:|--:|--:|--:|\n")
		seen := map[string]bool{}
		for _, r := range append(append([]result(nil), sw.partitions...), sw.buckets...) {
			if seen[r.id] {
				continue
			}
			seen[r.id] = true
			if !r.ok() {
				p("| %s | %d | | %s | |\n", r.spec.name, r.spec.partitions, mdCell(r.err))
				continue
			}
			p("| %s | %d | %d | %.2f | %.0f |\n", r.spec.name, r.spec.partitions, r.buckets, r.cpuMicrosPerEvent(), r.m.peakRSSMiB)
		}
		p("\n")
	}

	var failed []result
	for _, r := range rows {
		if r.firstAttempt != nil {
			failed = append(failed, *r.firstAttempt)
		}
		if !r.ok() || r.m.exit != "0" {
			failed = append(failed, r)
		}
	}
	if len(failed) > 0 {
		p("## Failures and unavailable scenarios\n\n")
		p("A failed run is tried once more; the tables show the second attempt. The stack is shared with the ")
		p("integration tests, whose fault tests stop MinIO and the broker, so a failure here is not always sinkd's.\n\n")
		for _, r := range failed {
			msg := r.err
			if msg == "" {
				msg = r.m.exit
			}
			attempt := ""
			if !r.notAvailable {
				attempt = fmt.Sprintf(", attempt %s", r.id)
			}
			p("- (%s%s) %s", r.spec.name, attempt, msg)
			if r.m.peakRSSMiB > 0 {
				p(" (peak RSS until then: %.0f MiB)", r.m.peakRSSMiB)
			}
			p("\n")
			if len(r.m.logTail) > 0 {
				p("\n  sinkd's log, last lines:\n\n  ```\n")
				for _, line := range r.m.logTail {
					p("  %s\n", line)
				}
				p("  ```\n")
			}
		}
		p("\n")
	}

	p("## How it measures\n\n")
	p("- Input: taxi trips from `taxi.NewGenerator` (seed %d, no bad events), preloaded with `taxi.WriteTopic` ", seed)
	p("into a new topic per partition count (scenarios with the same input share the topic, each with its own consumer group) ")
	p("or, for (c), a new Kinesis stream (KPL-aggregated, 100 trips a record). ")
	p("Preloading is not timed as part of any scenario; its rate is listed below.\n")
	p("- sinkd: `bin/sinkd` built once per run; one route into Parquet (snappy, default row group, part and file sizes), ")
	p("files roll after 5 s without records, checkpoints every 5 s, `memory.budget: 256MiB`, dead letters to a local file, log level warn.\n")
	p("- events/s: events ÷ time from process start until `sinkd_source_records_total` (scraped every 200 ms) reaches the count; ")
	p("steady events/s counts from the first record read instead, leaving out startup and the group join. Input MB/s: JSON value bytes on the same clock (MB = 10⁶ bytes).\n")
	p("- durable after: from start until the consumer group's committed lag (kadm) is 0 on every partition (Kinesis: no open file and a checkpoint committed since); ")
	p("it includes the 5 s inactivity roll and the checkpoint that follows.\n")
	p("- CPU: utime + stime from `/proc/PID/stat` at \"durable\", so it includes encoding, uploads and the final checkpoints; ")
	p("CPU seconds per million events equals µs per event. Peak RSS: `VmHWM` from `/proc/PID/status`, sampled every 100 ms until exit, the drain after SIGTERM included.\n")
	p("- other CPUs busy: CPU time of the whole machine (`/proc/stat`) minus sinkd's, per second of the run: the stack's servers ")
	p("(kfake broker, MinIO, the OpenSearch fake) and anything else running, such as other test suites on a shared machine. ")
	p("Figures taken while it is well above what the servers need (about 0.5–1 CPU) are disturbed; load before is the 1-minute load average at sinkd's start.\n")
	p("- files and buckets: committed `.parquet` objects and their distinct bucket paths in MinIO, counted before the run's prefix is deleted.\n\n")
	var preloads []string
	seenInput := map[string]bool{}
	for _, r := range rows {
		if r.input.name == "" || r.input.reused || seenInput[r.input.name] {
			continue
		}
		seenInput[r.input.name] = true
		preloads = append(preloads, fmt.Sprintf("%s events into %d partitions in %.1f s (%s events/s)",
			thousands(float64(r.input.events)), r.spec.partitions, r.input.preload.Seconds(),
			thousands(float64(r.input.events)/r.input.preload.Seconds())))
	}
	if len(preloads) > 0 {
		p("Preloading: %s.\n\n", strings.Join(preloads, "; "))
	}

	if rep.micro != "" {
		p("## Micro-benchmarks\n\n")
		p("`go test -run '^$' -bench . -benchmem ./schema/ ./buckets/ ./writers/... ./daemon/...`\n\n")
		if missing := withoutBenchmarks(rep.micro); len(missing) > 0 {
			p("Packages without a benchmark yet: %s.\n\n", strings.Join(missing, ", "))
		}
		p("```\n%s\n```\n", strings.TrimRight(rep.micro, "\n"))
	}
	return b.String()
}

// withoutBenchmarks lists the packages that `go test -bench` output shows
// passing without running any benchmark: those print no "pkg:" header.
func withoutBenchmarks(out string) []string {
	benched := map[string]bool{}
	var missing []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "pkg:":
			benched[f[1]] = true
		case len(f) >= 2 && (f[0] == "ok" || f[0] == "?") && !benched[f[1]]:
			missing = append(missing, "`"+f[1]+"`")
		}
	}
	return missing
}

// mdCell keeps a message on one table row.
func mdCell(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "|", "\\|")
}
