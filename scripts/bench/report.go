// Over 500 lines on purpose: one concern, the benchmark report (targets,
// verdicts, the markdown page); most of its length is the page's text.

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
	budget       int64 // memory.budget as sinkd read the run's configuration, bytes
	committed    committed
	err          string
	notAvailable bool
	firstAttempt *result // the failed attempt this one repeats
}

func (r result) ok() bool { return r.err == "" && r.m.processed > 0 }

// eventsPerSecond counts from sinkd's start, startup and group join included.
func (r result) eventsPerSecond() float64 { return float64(r.input.events) / r.m.processed.Seconds() }

// steadyEventsPerSecond counts from the first record read; 0 when the
// first and the last were seen in the same scrape (a tiny input).
func (r result) steadyEventsPerSecond() float64 {
	if r.m.processed <= r.m.firstRecord {
		return 0
	}
	return float64(r.input.events) / (r.m.processed - r.m.firstRecord).Seconds()
}

func (r result) inputMBPerSecond() float64 {
	return float64(r.input.bytes) / 1e6 / r.m.processed.Seconds()
}

// cpuMicrosPerEvent is sinkd's CPU time up to "all durable" per event, which
// is also its CPU seconds per million events.
func (r result) cpuMicrosPerEvent() float64 { return r.m.cpuDurable / float64(r.input.events) * 1e6 }

// rate is events/s end to end; for a run that was too slow to finish, the
// rate it had reached when it was stopped, and for one whose drain failed
// after every record was read, its read rate (partial is then true).
func (r result) rate() (perSecond float64, partial, ok bool) {
	switch {
	case r.ok():
		return r.eventsPerSecond(), false, true
	case r.m.slow && r.m.partialTime > 0:
		return r.m.partialRead / r.m.partialTime.Seconds(), true, true
	case r.m.processed > 0:
		// Every record was read, then the drain failed: the read rate
		// stands, marked as from a run that did not finish.
		return r.eventsPerSecond(), true, true
	}
	return 0, false, false
}

// cpuPerEvent is cpuMicrosPerEvent, or for a run too slow to finish, its CPU
// per record read until it was stopped.
func (r result) cpuPerEvent() (micros float64, partial, ok bool) {
	switch {
	case r.ok():
		return r.cpuMicrosPerEvent(), false, true
	case r.m.slow && r.m.partialRead > 0:
		return r.m.partialCPU / r.m.partialRead * 1e6, true, true
	case r.m.processed > 0 && r.m.cpuProcessed > 0:
		return r.m.cpuProcessed / float64(r.input.events) * 1e6, true, true
	}
	return 0, false, false
}

// rssOverheadMiB is what peak RSS may add to memory.budget (DESIGN §4: peak
// RSS stays under the budget plus a fixed overhead, whatever the buckets).
const rssOverheadMiB = 100

func (r result) budgetMiB() float64 { return float64(r.budget) / (1 << 20) }

func (r result) rssBoundMiB() float64 { return r.budgetMiB() + rssOverheadMiB }

// measuredRSS is whether the run got as far as sampling sinkd's memory.
func (r result) measuredRSS() bool { return r.m.peakRSSMiB > 0 && r.budget > 0 }

// cpuPerFile is what one more committed file costs in sinkd CPU (µs),
// from two complete runs of the same input that differ in their buckets,
// with the rows per file of the run with more files.
func cpuPerFile(runs []result) (micros, rowsPerFile float64, ok bool) {
	if len(runs) != 2 || !runs[0].ok() || !runs[1].ok() || runs[0].input.events != runs[1].input.events {
		return 0, 0, false
	}
	few, many := runs[0], runs[1]
	extra := many.committed.files - few.committed.files
	if extra <= 0 {
		return 0, 0, false
	}
	return (many.m.cpuDurable - few.m.cpuDurable) / float64(extra) * 1e6, float64(many.input.events) / float64(many.committed.files), true
}

// filesPerBucket is committed files over the distinct buckets they are in: 1
// when every bucket became one file.
func (r result) filesPerBucket() float64 {
	if r.committed.buckets == 0 {
		return 0
	}
	return float64(r.committed.files) / float64(r.committed.buckets)
}

func (r result) averageFileBytes() float64 {
	if r.committed.files == 0 {
		return 0
	}
	return float64(r.committed.bytes) / float64(r.committed.files)
}

// Targets of issue 12, and of the earlier performance issue for (a).
const (
	minRateA        = 200_000 // (a) events/s
	maxCPUA         = 5       // (a) µs of CPU per event
	minShareD       = 0.50    // (d)'s events/s over (a)'s
	minShareE       = 0.25    // (e)'s events/s over (a)'s
	maxPartitionsX  = 1.3     // CPU per event, 1 to 64 partitions
	maxBucketsRatio = 1.5     // CPU per event, ≈10 to ≈2,000 buckets
)

// targetRow is one line of the targets table: a figure measured in this run
// against a bound, and a verdict computed from the two.
type targetRow struct {
	scope, label, measured, verdict string
}

// verdict is "met" or how far got is from want.
func verdict(got, want float64, higherIsBetter bool) string {
	if higherIsBetter && got >= want || !higherIsBetter && got <= want {
		return "met"
	}
	return fmt.Sprintf("missed by %.0f%%", 100*math.Abs(got-want)/want)
}

// notMeasured is the verdict of a target whose run did not give its figure.
func notMeasured(r result) string {
	if r.err != "" {
		return "not measured: " + r.err
	}
	return "not measured"
}

// targets computes the targets table from the run's results.
func (rep report) targets() []targetRow {
	var rows []targetRow
	byName := map[string]result{}
	for _, r := range rep.results {
		byName[r.spec.name] = r
	}
	if a, ok := byName["a"]; ok {
		label := fmt.Sprintf("≥ %s events/s end to end", thousands(minRateA))
		if got, partial, ok := a.rate(); ok {
			rows = append(rows, targetRow{"(a)", label, rateText(got, partial) + " events/s", verdict(got, minRateA, true)})
		} else {
			rows = append(rows, targetRow{"(a)", label, "—", notMeasured(a)})
		}
		label = fmt.Sprintf("≤ %d µs of sinkd CPU per event", maxCPUA)
		if got, partial, ok := a.cpuPerEvent(); ok {
			rows = append(rows, targetRow{"(a)", label, cpuText(got, partial) + " µs", verdict(got, maxCPUA, false)})
		} else {
			rows = append(rows, targetRow{"(a)", label, "—", notMeasured(a)})
		}
	}
	for _, share := range []struct {
		name string
		min  float64
	}{{"d", minShareD}, {"e", minShareE}} {
		r, ok := byName[share.name]
		if !ok {
			continue
		}
		rows = append(rows, shareTarget(r, byName["a"], share.min))
	}
	// The bucket ratio is taken twice: between (a) and (d), on the same
	// input with files of about a thousand rows, and in the sweep, whose
	// shorter input makes files of about a hundred and fifty, so that what
	// a file costs whatever its rows (its footer, its three requests) weighs
	// several times more.
	if a, ok := byName["a"]; ok {
		if d, ok := byName["d"]; ok {
			row := ratioTarget(fmt.Sprintf("CPU per event within %g× from ≈10 to ≈2,000 buckets (%s events)", maxBucketsRatio, thousands(float64(d.input.events))), []result{a, d}, maxBucketsRatio)
			row.scope = "(a) to (d)"
			rows = append(rows, row)
		}
	}
	if sw := rep.sweep; sw != nil {
		rows = append(rows,
			ratioTarget(fmt.Sprintf("CPU per event within %g× from 1 to 64 partitions", maxPartitionsX), sw.partitions, maxPartitionsX),
			ratioTarget(fmt.Sprintf("CPU per event within %g× from ≈10 to ≈2,000 buckets (%s events)", maxBucketsRatio, thousands(float64(sw.events))), sw.buckets, maxBucketsRatio))
	}
	for _, r := range rep.rows() {
		rows = append(rows, rssTarget(r), spoolTarget(r))
	}
	return rows
}

// shareTarget is r's events/s against min times (a)'s in the same run.
func shareTarget(r, a result, min float64) targetRow {
	row := targetRow{scope: scopeName(r), label: fmt.Sprintf("events/s ≥ %.0f%% of (a)'s", 100*min)}
	aRate, aPartial, aOK := a.rate()
	got, partial, ok := r.rate()
	switch {
	case a.spec.name == "":
		row.measured, row.verdict = "—", "not measured: (a) was not run"
	case !aOK || aPartial:
		row.measured, row.verdict = "—", "not measured: (a) did not finish"
	case !ok:
		row.measured, row.verdict = "—", notMeasured(r)
	default:
		row.measured = fmt.Sprintf("%s of %s events/s = %s", rateText(got, partial), thousands(aRate), percent(got/aRate))
		row.verdict = verdict(got/aRate, min, true)
		if !r.ok() && row.verdict == "met" {
			row.verdict = "met until the run stopped: " + r.err
		}
	}
	return row
}

// ratioTarget is the largest CPU per event of rs over the smallest.
func ratioTarget(label string, rs []result, max float64) targetRow {
	row := targetRow{scope: "sweep", label: label}
	x, partial, failed := ratio(rs)
	switch {
	case failed != nil:
		row.measured, row.verdict = "—", fmt.Sprintf("not measured: %s: %s", failed.spec.name, failed.err)
	case x == 0:
		row.measured, row.verdict = "—", "not measured"
	default:
		row.measured = fmt.Sprintf("%.2f×", x)
		if partial {
			row.measured += " (a run stopped for slowness: its CPU per record read until then)"
		}
		row.verdict = verdict(x, max, false)
	}
	return row
}

func rssTarget(r result) targetRow {
	row := targetRow{scope: scopeName(r), label: "peak RSS ≤ memory.budget + 100 MiB"}
	if !r.measuredRSS() {
		row.measured, row.verdict = "—", notMeasured(r)
		return row
	}
	row.label = fmt.Sprintf("peak RSS ≤ memory.budget (%.0f MiB) + %d MiB", r.budgetMiB(), rssOverheadMiB)
	row.measured = fmt.Sprintf("%.0f MiB", r.m.peakRSSMiB)
	row.verdict = verdict(r.m.peakRSSMiB, r.rssBoundMiB(), false)
	if !r.ok() && row.verdict == "met" {
		row.verdict = "met until the run stopped: " + r.err
	}
	return row
}

func spoolTarget(r result) targetRow {
	row := targetRow{scope: scopeName(r), label: "peak " + metricSpoolBytes + " ≤ " + metricSpoolBudget}
	switch {
	case !r.m.spool.reported:
		row.measured, row.verdict = "not reported", "not measured: sinkd does not export "+metricSpoolBytes
		if !r.m.scraped {
			row.measured, row.verdict = "—", notMeasured(r)
		}
	case !r.m.spoolBudget.reported:
		row.measured, row.verdict = bytesText(r.m.spool.peak), "not measured: sinkd does not export "+metricSpoolBudget
	default:
		row.measured = bytesText(r.m.spool.peak) + " of " + bytesText(r.m.spoolBudget.peak)
		row.verdict = verdict(r.m.spool.peak, r.m.spoolBudget.peak, false)
		if r.m.spoolBudget.peak == 0 && r.m.spool.peak == 0 {
			row.verdict = "met"
		}
	}
	return row
}

// scopeName is "(a)" for a scenario, "sweep p8-many" for a sweep point.
func scopeName(r result) string {
	if r.spec.name == r.spec.title {
		return "sweep " + r.spec.name
	}
	return "(" + r.spec.name + ")"
}

// rateText is events/s, marked when from a run stopped for slowness.
func rateText(v float64, partial bool) string {
	if partial {
		return thousands(v) + " until stopped"
	}
	return thousands(v)
}

// cpuText is µs per event, marked when from a run stopped for slowness.
func cpuText(v float64, partial bool) string {
	s := strconv.FormatFloat(v, 'f', 2, 64)
	if partial {
		return s + " until stopped"
	}
	return s
}

// percent keeps a small share visible: 0.2%, not 0%.
func percent(x float64) string {
	if x < 0.1 {
		return fmt.Sprintf("%.1f%%", 100*x)
	}
	return fmt.Sprintf("%.0f%%", 100*x)
}

type sweepResult struct {
	events     int
	partitions []result // 1, 8, 64 partitions, ≈10 buckets
	buckets    []result // ≈10 and ≈2,000 buckets, 8 partitions
}

// ratio is the largest CPU per event over the smallest; partial when a run
// was too slow to finish (its CPU per record read stands in), failed the
// first run that gave no figure at all.
func ratio(rs []result) (x float64, partial bool, failed *result) {
	if len(rs) < 2 {
		return 0, false, nil
	}
	lo, hi := 0.0, 0.0
	for i, r := range rs {
		c, p, ok := r.cpuPerEvent()
		if !ok {
			return 0, false, &rs[i]
		}
		partial = partial || p
		if lo == 0 || c < lo {
			lo = c
		}
		hi = max(hi, c)
	}
	return hi / lo, partial, nil
}

// bytesText is a size in B, KiB, MiB or GiB.
func bytesText(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
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
		if v, _, ok := r.rate(); ok {
			cpu, _, _ := r.cpuPerEvent()
			fmt.Fprintf(w, "         until stopped: %s events/s  %.2f CPU µs/event\n", thousands(v), cpu)
		}
		if r.committed.files > 0 {
			fmt.Fprintf(w, "         until stopped: files %d  buckets %d  files per bucket %.2f  average file %s  peak RSS %.0f MiB\n",
				r.committed.files, r.committed.buckets, r.filesPerBucket(), bytesText(r.averageFileBytes()), r.m.peakRSSMiB)
		}
		for _, line := range r.m.logTail {
			fmt.Fprintf(w, "         | %s\n", line)
		}
		return
	}
	fmt.Fprintf(w, "%-8s %9s events/s (steady %s)  %6.1f MB/s  %5.2f CPU µs/event  peak RSS %5.0f MiB (bound %.0f)  spool %s  durable after %5.1fs  files %d  buckets %d  files per bucket %.2f  average file %s  exit %s  (other CPUs busy %.2f, load %s)\n",
		r.spec.name, thousands(r.eventsPerSecond()), thousands(r.steadyEventsPerSecond()), r.inputMBPerSecond(),
		r.cpuMicrosPerEvent(), r.m.peakRSSMiB, r.rssBoundMiB(), spoolText(r), r.m.durable.Seconds(),
		r.committed.files, r.committed.buckets, r.filesPerBucket(), bytesText(r.averageFileBytes()),
		r.m.exit, r.m.otherCores, r.m.loadBefore)
	if r.m.fakeCPU > 0 {
		fmt.Fprintf(w, "         OpenSearch fake (its own process, not in sinkd's figure): %.2f CPU µs/event\n", r.fakeMicrosPerEvent())
	}
}

// fakeMicrosPerEvent is the OpenSearch fake's CPU per event.
func (r result) fakeMicrosPerEvent() float64 { return r.m.fakeCPU / float64(r.input.events) * 1e6 }

// spoolText is the peak spool against its budget, or why there is no figure.
func spoolText(r result) string {
	switch {
	case !r.m.spool.reported:
		return "not reported"
	case !r.m.spoolBudget.reported:
		return bytesText(r.m.spool.peak) + " (budget not reported)"
	}
	return bytesText(r.m.spool.peak) + " of " + bytesText(r.m.spoolBudget.peak)
}

func printTargets(w io.Writer, rows []targetRow) {
	for _, t := range rows {
		fmt.Fprintf(w, "target   %s %s: %s (%s)\n", t.scope, t.label, t.verdict, t.measured)
	}
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
	// events and sweepEvents are the event counts asked for.
	events, sweepEvents int
}

// rows are the scenarios, then the sweep's points, each run once.
func (rep report) rows() []result {
	rows := append([]result(nil), rep.results...)
	if rep.sweep != nil {
		rows = append(rows, rep.sweep.partitions...)
		if len(rep.sweep.buckets) == 2 {
			rows = append(rows, rep.sweep.buckets[1])
		}
	}
	return rows
}

// defaultBudget is memory.budget as the runs read it, for the text; "" when
// no run got as far as reading its configuration.
func (rep report) defaultBudget() string {
	for _, r := range rep.rows() {
		if r.budget > 0 {
			return bytesText(float64(r.budget))
		}
	}
	return ""
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
	p("wall-clock rates are lower bounds. CPU time and RSS are sinkd's alone. ")
	p("Every run uses sinkd's default memory settings")
	if budget := rep.defaultBudget(); budget != "" {
		p(" (`memory.budget` %s)", budget)
	}
	p(". (a), (d) and (e) read the same topic and differ only in their bucket template.\n\n")
	p("| scenario | events | partitions | events/s | steady events/s | input MB/s | sinkd CPU µs/event | peak RSS MiB (bound) | peak spool | durable after s | files | buckets | files per bucket | average file | max open files | exit after SIGTERM | other CPUs busy | load before |\n")
	p("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|\n")
	rows := rep.rows()
	for _, r := range rows {
		name := fmt.Sprintf("(%s) %s", r.spec.name, r.spec.title)
		if r.spec.name == r.spec.title {
			name = "sweep " + r.spec.name
		}
		if !r.ok() {
			// What a stopped run measured until then still tells: its rate,
			// its memory and the files it had committed.
			var rate, cpu, rss, files, buckets, perBucket, avg string
			if v, _, ok := r.rate(); ok {
				rate = thousands(v) + " until stopped"
			}
			if v, _, ok := r.cpuPerEvent(); ok {
				cpu = fmt.Sprintf("%.2f until stopped", v)
			}
			if r.measuredRSS() {
				rss = fmt.Sprintf("%.0f (%.0f)", r.m.peakRSSMiB, r.rssBoundMiB())
			}
			if r.measuredRSS() { // sinkd ran: what it committed is a figure, 0 included
				files, buckets = strconv.Itoa(r.committed.files), strconv.Itoa(r.committed.buckets)
			}
			if r.committed.files > 0 {
				perBucket, avg = fmt.Sprintf("%.2f", r.filesPerBucket()), bytesText(r.averageFileBytes())
			}
			p("| %s | %s | %d | %s | | | %s | %s | %s | %s | %s | %s | %s | %s | %.0f | %s | | %s |\n",
				name, thousands(float64(r.spec.events)), r.spec.partitions, rate, cpu, rss, spoolText(r),
				mdCell(r.err), files, buckets, perBucket, avg, r.m.maxOpenFiles, mdCell(r.m.exit), r.m.loadBefore)
			continue
		}
		steady := "—"
		if v := r.steadyEventsPerSecond(); v > 0 {
			steady = thousands(v)
		}
		p("| %s | %s | %d | %s | %s | %.1f | %.2f | %.0f (%.0f) | %s | %.1f | %d | %d | %.2f | %s | %.0f | %s | %.2f | %s |\n",
			name, thousands(float64(r.input.events)), r.spec.partitions, thousands(r.eventsPerSecond()),
			steady, r.inputMBPerSecond(), r.cpuMicrosPerEvent(), r.m.peakRSSMiB, r.rssBoundMiB(),
			spoolText(r), r.m.durable.Seconds(), r.committed.files, r.committed.buckets, r.filesPerBucket(),
			bytesText(r.averageFileBytes()), r.m.maxOpenFiles, mdCell(r.m.exit), r.m.otherCores, r.m.loadBefore)
	}
	p("\n")
	for _, r := range rows {
		if r.ok() && r.m.fakeCPU > 0 {
			p("(%s): the OpenSearch fake runs as its own process (started by the benchmark, not by sinkd) and used %.2f CPU s per M events, ", r.spec.name, r.fakeMicrosPerEvent())
			p("counted in other CPUs busy, not in sinkd's CPU.\n\n")
		}
	}

	p("## Targets\n\n")
	p("Each verdict is computed from this run's figures. A ratio of CPU per event between two scenarios moves by up to ±20%% from one run to the next on a shared machine: ")
	p("docs/scaling.md gives its spread over many runs, which is what a verdict on it means.\n\n")
	p("| scope | target | measured | verdict |\n|---|---|--:|---|\n")
	for _, t := range rep.targets() {
		p("| %s | %s | %s | %s |\n", t.scope, t.label, mdCell(t.measured), mdCell(t.verdict))
	}
	p("\n")

	if sw := rep.sweep; sw != nil {
		p("## Scaling sweep\n\n")
		p("%s events per run, default memory settings. Partitions: 1, 8 and 64 with `%s` (≈10 buckets). ", thousands(float64(sw.events)), fewBuckets)
		p("Buckets: 8 partitions with `%s` against `%s` (≈2,000 buckets).\n\n", fewBuckets, manyBuckets)
		p("| run | partitions | buckets | sinkd CPU µs/event | peak RSS MiB | files per bucket |\n|---|--:|--:|--:|--:|--:|\n")
		seen := map[string]bool{}
		for _, r := range append(append([]result(nil), sw.partitions...), sw.buckets...) {
			if seen[r.id] {
				continue
			}
			seen[r.id] = true
			if !r.ok() {
				cpu := mdCell(r.err)
				if v, partial, ok := r.cpuPerEvent(); ok {
					cpu = cpuText(v, partial) + " (" + mdCell(r.err) + ")"
				}
				var rss string
				if r.measuredRSS() {
					rss = fmt.Sprintf("%.0f", r.m.peakRSSMiB)
				}
				p("| %s | %d | %d | %s | %s | |\n", r.spec.name, r.spec.partitions, r.committed.buckets, cpu, rss)
				continue
			}
			p("| %s | %d | %d | %.2f | %.0f | %.2f |\n", r.spec.name, r.spec.partitions, r.committed.buckets,
				r.cpuMicrosPerEvent(), r.m.peakRSSMiB, r.filesPerBucket())
		}
		p("\n")
		if perFile, rows, ok := cpuPerFile(sw.buckets); ok {
			p("The extra CPU of the ≈2,000-bucket run is per committed file: %s µs of sinkd CPU a file (the runs' CPU difference over their difference in files), at %.0f rows a file. ", thousands(perFile), rows)
			p("CPU per event rises by about that ÷ rows per file; `docs/scaling.md` (\"Small files also cost CPU\") says where it goes.\n\n")
		}
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
		p("A failed run is tried once more, unless it was only too slow; the tables show the second attempt. The stack is shared with the ")
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
	p("- Event counts: %s per scenario, %s per sweep run (`-events`, `-sweep-events`). ", thousands(float64(rep.events)), thousands(float64(rep.sweepEvents)))
	p("`make bench` uses %s and %s, chosen so that the whole of it (micro-benchmarks included) stays under about 25 minutes on two cores: ",
		thousands(defaultEvents), thousands(defaultSweepEvents))
	p("with every target met the scenarios take a few minutes; a run that has not read its input after 60 s plus 1 s per 10,000 events ")
	p("is stopped (and not tried again) and reported with the rate it had reached (records read, or rows written to Parquet when more: the records counter moves a fetch at a time), ")
	p("so a slow build costs at most about 5 minutes a scenario.\n")
	p("- Buckets: (a), (b), (c) `%s`; (d) `%s`; (e) `%s`, chosen because the generator draws zones uniformly ", typeDay, manyBuckets, hugeBuckets)
	p("(pickup × dropoff zone would be 70,225 buckets, zone × day 265 a day) and seconds of the minute keep every bucket receiving records.\n")
	p("- sinkd: `bin/sinkd` built once per run; one route into Parquet, every setting at its default ")
	p("(`memory.*` and `parquet.inactivity` included: no `memory` section in the configuration), ")
	p("except dead letters to a local file (there is no default destination). ")
	p("Configurations are kept with `-keep-logs`.\n")
	p("- events/s: events ÷ time from process start until `sinkd_source_records_total` (scraped every 200 ms) reaches the count; ")
	p("steady events/s counts from the first record read instead, leaving out startup and the group join. Input MB/s: JSON value bytes on the same clock (MB = 10⁶ bytes).\n")
	p("- durable after: once every record is read, SIGTERM; from start until sinkd has drained (every open file committed by the final checkpoint) and exited 0, ")
	p("and for Kafka the consumer group's committed lag (kadm) is 0 on every partition. Files stay open when the input ends, as in production: the drain commits them.\n")
	p("- CPU: utime + stime from `/proc/PID/stat` at \"durable\", so it includes encoding, uploads and the final checkpoints; ")
	p("CPU seconds per million events equals µs per event. Peak RSS: `VmHWM` from `/proc/PID/status`, sampled every 100 ms until exit, the drain after SIGTERM included; ")
	p("its bound is `memory.budget` as sinkd reads the run's configuration (the default) plus %d MiB.\n", rssOverheadMiB)
	p("- peak spool: the largest `%s` of the /metrics scrapes (every 200 ms, until durable) against `%s`; ", metricSpoolBytes, metricSpoolBudget)
	p("\"not reported\" when sinkd does not export the metric (a build without a spool), which is not the same as 0.\n")
	p("- other CPUs busy: CPU time of the whole machine (`/proc/stat`) minus sinkd's, per second of the run: the stack's servers ")
	p("(kfake broker, MinIO, the OpenSearch fake) and anything else running, such as other test suites on a shared machine. ")
	p("Figures taken while it is well above what the servers need (about 0.5–1 CPU) are disturbed; load before is the 1-minute load average at sinkd's start. ")
	p("Before each run the benchmark waits (at most 90 s) until the whole machine uses under 0.3 CPU, waiting for the disk included, so that MinIO deleting the previous run's objects does not run beside it.\n")
	p("- files, buckets, files per bucket, average file: committed `.parquet` objects in MinIO, their distinct bucket paths and their sizes, ")
	p("listed before the run's prefix is deleted. One file per bucket is what a run this short should make.\n\n")
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
		p("`go test -run '^$' -bench . -benchmem ./schema/ ./buckets/ ./writers/... ./store/ ./checkpoint/ ./source/... ./daemon/...`\n\n")
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
