// Command bench runs sinkd's end-to-end benchmarks on the local stack of real
// servers (scripts/stack) with the taxi data, and writes docs/benchmarks.md:
//
//	go run ./scripts/bench [-scenario a|b|c|d|e|sweep|all] [-events N] [-out docs/benchmarks.md]
//
// Each scenario preloads taxi trips, runs `sinkd run` as a child process and
// measures it from the outside: wall time from start until every record is
// read (sinkd_source_records_total) and until every record is durable (the
// consumer group's committed lag is 0), sinkd's CPU time from /proc/PID/stat,
// its peak RSS (VmHWM) and spool (sinkd_spool_bytes), and what it committed.
// Every run uses sinkd's default memory settings. It measures; it never gates
// CI. To profile the runs whole, drain included, pass -cpu-profile FILE: each
// run writes its profile (sinkd run --cpu-profile) and FILE gets their merge.
// To look at a run while it runs, set SINKD_BENCH_PPROF_ADDR=127.0.0.1:6060:
// sinkd then serves /debug/pprof on that admin address.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sinkd/sinkd/scripts/stack/stackenv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// Event counts of `make bench`. With every target met the scenarios take a
// few minutes on two cores; a build that reads too slowly is stopped after
// 60 s + 1 s per 10,000 events (measure), about 5 minutes for each of (d) and
// (e) at two million, and the whole of `make bench` stays under 25 minutes
// even then. At two million events (e) has all 21,600 of its buckets, 55
// records each on median.
const (
	defaultEvents      = 2_000_000
	defaultSweepEvents = 300_000
)

type flags struct {
	scenario    string
	events      int
	sweepEvents int
	out         string
	micro       string
	command     string
	keepLogs    bool
	cpuProfile  string
}

func run() error {
	var f flags
	flag.StringVar(&f.scenario, "scenario", "all", "a | b | c | d | e | sweep | all (comma-separated list allowed)")
	flag.IntVar(&f.events, "events", defaultEvents, "events per scenario a to e")
	flag.IntVar(&f.sweepEvents, "sweep-events", defaultSweepEvents, "events per run of the scaling sweep")
	flag.StringVar(&f.out, "out", "", "write the results as a Markdown document to this file (docs/benchmarks.md)")
	flag.StringVar(&f.micro, "micro", "", "file holding `go test -bench` output to include in -out")
	flag.StringVar(&f.command, "command", "", "the command line to record in -out (default: this one)")
	flag.BoolVar(&f.keepLogs, "keep-logs", false, "keep sinkd's configs and logs (their directory is printed)")
	flag.StringVar(&f.cpuProfile, "cpu-profile", "", "profile every run, drain included (sinkd run --cpu-profile), and merge the profiles into this file")
	flag.Parse()
	if f.command == "" {
		f.command = "go run ./scripts/bench " + strings.Join(os.Args[1:], " ")
	}
	want, err := parseScenarios(f.scenario)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	env, err := stackenv.Read()
	if err != nil || env.KafkaBrokers == "" || env.S3Endpoint == "" {
		return fmt.Errorf("local stack not available (%v): run scripts/stack/stack.sh up", err)
	}
	// sinkd (a child) and this program's own clients take credentials and
	// endpoints from the environment, as they would in production.
	for k, v := range env.Vars {
		if err := os.Setenv(k, v); err != nil {
			return err
		}
	}
	work, err := os.MkdirTemp("", "sinkd-bench-")
	if err != nil {
		return err
	}
	if f.keepLogs {
		log.Info("configs and logs are kept", "dir", work)
	} else {
		defer os.RemoveAll(work)
	}
	profileRuns = f.cpuProfile != ""
	bins, err := buildBinaries(ctx, work)
	if err != nil {
		return err
	}
	b, err := newBench(ctx, env, bins, work, log)
	if err != nil {
		return err
	}
	defer b.close()

	started := time.Now()
	report := report{started: started, events: f.events, sweepEvents: f.sweepEvents}
	for _, s := range want {
		if ctx.Err() != nil {
			break
		}
		switch s {
		case "a", "b", "c", "d", "e":
			r := b.scenario(ctx, s, f.events)
			printResult(os.Stdout, r)
			report.results = append(report.results, r)
		case "sweep":
			sw := b.sweep(ctx, f.sweepEvents)
			report.sweep = &sw
		}
	}
	report.elapsed = time.Since(started)
	printTargets(os.Stdout, report.targets())
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}
	if f.cpuProfile != "" {
		if err := mergeProfiles(work, f.cpuProfile); err != nil {
			return err
		}
		log.Info("wrote the merged CPU profile", "file", f.cpuProfile)
	}
	if f.out == "" {
		return nil
	}
	var micro []byte
	if f.micro != "" {
		if micro, err = os.ReadFile(f.micro); err != nil {
			return fmt.Errorf("reading micro-benchmark output: %w", err)
		}
	}
	report.micro = string(micro)
	report.command = f.command
	report.machine = describeMachine()
	report.commit = gitCommit()
	if err := os.WriteFile(f.out, []byte(report.markdown()), 0o644); err != nil {
		return err
	}
	log.Info("wrote results", "file", f.out)
	return nil
}

func parseScenarios(s string) ([]string, error) {
	if s == "all" {
		// The sweep before (e), whose 20,000 files and aborted uploads
		// leave the servers the most to delete.
		all := slices.Clone(scenarioNames)
		return slices.Insert(all, slices.Index(all, "e"), "sweep"), nil
	}
	var out []string
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name != "sweep" && !slices.Contains(scenarioNames, name) {
			return nil, fmt.Errorf("unknown scenario %q (%s, sweep, all)", name, strings.Join(scenarioNames, ", "))
		}
		out = append(out, name)
	}
	return out, nil
}

// binaries are built once per bench run, into its own directory, so that a
// concurrent `make build` in the same checkout cannot swap them mid-run.
type binaries struct {
	sinkd, osfake string
}

func buildBinaries(ctx context.Context, dir string) (binaries, error) {
	b := binaries{sinkd: filepath.Join(dir, "sinkd"), osfake: filepath.Join(dir, "osfake")}
	for pkg, out := range map[string]string{".": b.sinkd, "./scripts/osfake": b.osfake} {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		err := cmd.Run()
		cancel()
		if err != nil {
			return b, fmt.Errorf("go build %s: %w", pkg, err)
		}
	}
	return b, nil
}

// gitCommit is the short commit, marked dirty when tracked files differ from it.
func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	commit := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		commit += " (with uncommitted changes in the working tree)"
	}
	return commit
}

// describeMachine is the line recorded with the results: CPUs, model, memory.
func describeMachine() string {
	cpus := strings.TrimSpace(string(must(exec.Command("nproc").Output())))
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "unknown memory"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			var kb int64
			if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &kb); err == nil {
				mem = fmt.Sprintf("%.1f GiB RAM", float64(kb)/(1<<20))
				break
			}
		}
	}
	kernel := strings.TrimSpace(string(must(exec.Command("uname", "-sr").Output())))
	return fmt.Sprintf("%s CPUs (%s), %s, %s", cpus, model, mem, kernel)
}

// must keeps a best-effort description going: a failed command describes as "".
func must(b []byte, err error) []byte {
	if err != nil {
		return nil
	}
	return b
}

// mergeProfiles merges the CPU profiles of every measured run under work
// into out, with go tool pprof (-proto writes the merge as a profile).
func mergeProfiles(work, out string) error {
	runs, err := filepath.Glob(filepath.Join(work, "*", cpuProfileName))
	if err != nil || len(runs) == 0 {
		return fmt.Errorf("no CPU profiles to merge under %s (%v)", work, err)
	}
	merged, err := exec.Command("go", append([]string{"tool", "pprof", "-proto"}, runs...)...).Output()
	if err != nil {
		return fmt.Errorf("merging %d CPU profiles: %w", len(runs), err)
	}
	return os.WriteFile(out, merged, 0o644)
}
