package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	oklog "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sinkd/sinkd/checkpoint"
	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/internal/backoff"
	"github.com/sinkd/sinkd/internal/cli"
	"github.com/sinkd/sinkd/schema/registry"
)

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sinkd run", flag.ContinueOnError)
	flagPath := fs.String("config", "", "configuration file (default: the argument, else $SINKD_CONFIG)")
	cpuProfile := fs.String("cpu-profile", "", "write a CPU profile of the whole run, drain included, to this file (for go tool pprof)")
	acceptLost := fs.String("accept-lost", "", "resume past the files the store lost that this manifest lists (the reference the error gives, sinkd:v1:INSTANCE:SEQ): their records will not be in the archive; see docs/operations.md, \"A lost file\"")
	fs.Usage = cli.Usage(fs, `Usage: sinkd run [--config] FILE

Runs the pipeline until SIGTERM or SIGINT, then drains: stops reading, closes
every open file, takes a final checkpoint and exits 0 within shutdown.drain_timeout
(files it cannot close in time stay open and are read again at the next start).
A second signal exits at once; nothing partial is ever committed. SIGHUP
re-reads the configuration (see docs/operations.md).

Exit codes: 0 drained, 1 runtime failure, 2 bad command line, 78 configuration
problems (systemd does not restart on 2 or 78).`)
	if code, done := cli.Parse(fs, args, stdout, stderr); done {
		return code
	}
	path, code := configArg(fs, *flagPath, stderr)
	if path == "" {
		return code
	}
	if _, _, ok := checkpoint.ParseRef(*acceptLost); *acceptLost != "" && !ok {
		fmt.Fprintf(stderr, "sinkd run: --accept-lost %q is not a manifest reference: give the sinkd:v1:INSTANCE:SEQ the lost-file error names\n", *acceptLost)
		return cli.ExitUsage
	}
	cfg := loadConfig(path, stderr)
	if cfg == nil {
		return cli.ExitConfig
	}
	log := newLogger(cfg.Log, stderr)
	setMemoryLimit(cfg, log)
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "sinkd run: %v\n", err)
			return cli.ExitUsage
		}
		defer stop(log)
	}
	if err := lifecycle(ctx, path, cfg, log, stderr, *acceptLost); err != nil {
		log.Error("sinkd stopped", "err", err)
		return exitCode(err)
	}
	return cli.ExitOK
}

// startCPUProfile profiles the process from now until stop: the whole run,
// drain included, where /debug/pprof/profile covers a window chosen in
// advance and is lost when the process exits before it ends.
// go run ./scripts/bench -cpu-profile FILE merges those of its runs.
func startCPUProfile(path string) (stop func(*slog.Logger), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile %s: %w", path, err)
	}
	return func(log *slog.Logger) {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			log.Error("cpu profile not written", "file", path, "err", err)
		}
	}, nil
}

// drainOverrun is how long a drain may outlive shutdown.drain_timeout
// before sinkd stops without a final checkpoint (the drain itself gives up on
// the checkpoint at the timeout; this covers what comes after it, such as
// leaving the group). Supervisors must wait longer than drain timeout plus
// this before they SIGKILL (deploy/ is written for it).
const drainOverrun = 5 * time.Second

// errHardStop ends a process whose drain was cut short.
var errHardStop = errors.New("stopped without a final checkpoint")

// lifecycle runs sinkd as a group of actors (github.com/oklog/run): one that
// waits for SIGTERM or SIGINT (or for ctx to end), one that re-reads the
// configuration on SIGHUP, and the pipeline, which runs one generation of
// the pipeline and its HTTP servers after another (see run). When any actor
// ends, the others are stopped. The stop is soft first: the pipeline drains
// (final checkpoint) within shutdown.drain_timeout. It turns hard on a second
// signal, or when the drain outlives its timeout by drainOverrun: lifecycle
// then returns errHardStop at once, without waiting for the drain, and the
// process exits 1 from main, committing nothing more (the last manifest
// stays the truth; the next start recovers from it).
func lifecycle(ctx context.Context, path string, cfg *config.Config, log *slog.Logger, stderr io.Writer, acceptLost string) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var drain atomic.Int64 // the running configuration's drain timeout
	drain.Store(int64(cfg.Shutdown.DrainTimeout.D()))
	var g oklog.Group

	// Signals: the first SIGTERM or SIGINT ends this actor, which stops the others.
	stopWaiting := make(chan struct{})
	g.Add(func() error {
		select {
		case s := <-sigs:
			log.Info("signal received: draining", "signal", s.String(), "timeout", time.Duration(drain.Load()))
		case <-ctx.Done():
		case <-stopWaiting:
		}
		return nil
	}, func(error) { close(stopWaiting) })

	// SIGHUP: a configuration without problems goes to the pipeline actor;
	// one with problems is logged and the pipeline keeps running as it was.
	reloads := make(chan *config.Config)
	stopReloading := make(chan struct{})
	g.Add(func() error {
		for {
			select {
			case <-hup:
			case <-stopReloading:
				return nil
			}
			log.Info("SIGHUP: re-reading the configuration", "file", path)
			var problems strings.Builder
			newCfg := loadConfig(path, &problems)
			if newCfg == nil {
				for _, line := range strings.Split(strings.TrimSpace(problems.String()), "\n") {
					log.Error("configuration not reloaded", "problem", line)
				}
				log.Warn("SIGHUP: the new configuration has problems; still running the previous one", "file", path)
				continue
			}
			select {
			case reloads <- newCfg:
			case <-stopReloading:
				return nil
			}
		}
	}, func(error) { close(stopReloading) })

	// The pipeline. Its context ends the soft stop; hard ends its wait.
	soft, stopSoft := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSoft()
	hard := make(chan struct{})
	ended := make(chan struct{})
	var pipelineErr error
	g.Add(func() error {
		defer close(ended)
		done := make(chan error, 1)
		go func() { done <- runReloading(soft, cfg, log, stderr, reloads, &drain, acceptLost) }()
		select {
		case pipelineErr = <-done:
		case <-hard:
			pipelineErr = errHardStop
		}
		return pipelineErr
	}, func(error) {
		// Not on a reload: systemd would take the unit for stopping.
		sdNotify("STOPPING=1")
		stopSoft()
		go func() {
			timer := time.NewTimer(time.Duration(drain.Load()) + drainOverrun)
			defer timer.Stop()
			select {
			case s := <-sigs:
				log.Warn("second signal: exiting now without a final checkpoint", "signal", s.String())
			case <-timer.C:
				log.Error("drain timed out: exiting without a final checkpoint")
			case <-ended:
				return
			}
			close(hard)
		}()
	})
	// The signal and SIGHUP actors end without an error of their own: what
	// the process reports is how the pipeline ended.
	_ = g.Run()
	return pipelineErr
}

// runReloading runs one generation of the pipeline after another: a new
// configuration from reloads drains the running one (final checkpoint, as on
// SIGTERM) and starts the next in this process. It returns when a generation
// ends on its own (an error), or when ctx ends (the drain's result).
func runReloading(ctx context.Context, cfg *config.Config, log *slog.Logger, stderr io.Writer, reloads <-chan *config.Config, drain *atomic.Int64, acceptLost string) error {
	o := options{schemaChanges: registry.NewChanges(), acceptLost: acceptLost}
	for {
		genCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func(o options) { done <- run(genCtx, cfg, log, o, nil) }(o)
		var next *config.Config
		var err error
		select {
		case err = <-done:
		case next = <-reloads:
			stop()
			err = <-done
		}
		stop()
		// A record's schema changed the file schema: the run has drained;
		// start again with the merged schema (docs/schema.md).
		var change *registry.SchemaChange
		if errors.As(err, &change) && ctx.Err() == nil && next == nil {
			log.Info("the schema changed: restarting the pipeline with the merged schema", "schema_id", change.ID)
			o.fields = change.Fields
			continue
		}
		if next == nil || ctx.Err() != nil || (err != nil && change == nil) {
			return err // a SIGTERM during the reload stops here
		}
		sdNotify("RELOADING=1")
		log.Info("configuration reloaded: restarting the pipeline")
		if next.Log != cfg.Log {
			log = newLogger(next.Log, stderr)
		}
		setMemoryLimit(next, log)
		drain.Store(int64(next.Shutdown.DrainTimeout.D()))
		cfg, o = next, options{schemaChanges: registry.NewChanges(), acceptLost: acceptLost}
	}
}

// run builds, serves and runs one pipeline; started, when set, receives the
// pipeline once it is ready (the demo watches it). The pipeline and what
// serves it are a group of actors: the pipeline (which drains when ctx ends),
// the HTTP listener, the admin listener, readiness (READY=1 once the source
// answers) and the systemd watchdog. When one ends, the others stop; the
// listeners go last, so that probes and metrics answer through the drain.
// Everything started is closed on every path.
func run(ctx context.Context, cfg *config.Config, log *slog.Logger, o options, started func(*Pipeline)) error {
	// S3, OpenSearch and the lease table must answer before the pipeline is
	// built (see startup.go); a SIGTERM meanwhile leaves nothing to drain.
	if err := awaitDependencies(ctx, cfg, log); err != nil || ctx.Err() != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	p, err := newPipeline(ctx, cfg, log, reg, o)
	if err != nil {
		return err
	}
	servers, err := listenHTTP(cfg, reg, p, log)
	if err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		p.closeBuilt(cctx)
		return err
	}
	var g oklog.Group

	// The pipeline: another actor's end stops it softly (a drain).
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	var runErr error
	pipelineDone := make(chan struct{})
	g.Add(func() error {
		defer close(pipelineDone)
		runErr = p.Run(runCtx)
		return runErr
	}, func(error) { stopRun() })

	// A listener stops only once the pipeline has: /metrics, /healthz and
	// /readyz ("stopping") answer through the drain. Interrupts run in
	// order, so the pipeline's soft stop has begun by then.
	for _, srv := range servers {
		g.Add(srv.serve, func(err error) {
			<-pipelineDone
			srv.shutdown(err)
		})
	}

	// Readiness: the demo's callback, then READY=1 once the source answers.
	readyCtx, stopReady := context.WithCancel(ctx)
	g.Add(func() error {
		select {
		case <-p.ready:
			if started != nil {
				started(p)
			}
			if err := o.step("ready"); err != nil {
				return err
			}
		case <-p.loopDone:
		case <-readyCtx.Done():
		}
		awaitSource(readyCtx, p, cfg, log)
		<-readyCtx.Done()
		return nil
	}, func(error) { stopReady() })

	if execute, interrupt := systemdWatchdog(log); execute != nil {
		g.Add(execute, interrupt)
	}

	err = g.Run()
	if runErr != nil && !errors.Is(err, runErr) {
		err = errors.Join(err, runErr) // another actor failed first, and the drain too
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	if cerr := p.closeSinks(cctx); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// setMemoryLimit tells the Go runtime how much memory sinkd may use, so that
// garbage collection tightens near the limit instead of letting the heap
// double: the budget (files, the source's fetch buffers and room for garbage,
// config.GarbageRoom) plus 40 MiB for the runtime itself. An explicit
// GOMEMLIMIT wins.
func setMemoryLimit(cfg *config.Config, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := cfg.Memory.Budget.Bytes() + 40<<20
	debug.SetMemoryLimit(limit)
	log.Debug("memory limit set", "bytes", limit)
}

// durationText logs durations as text ("30s", "1.5ms"): slog's JSON
// handler would write nanoseconds.
func durationText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationText}
	if strings.EqualFold(c.Format, "text") {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// awaitSource tells systemd READY=1 only once recovery is done and the source
// answers. Until then it retries with backoff, logs each failure clearly at a
// bounded rate (what, where, what to do), and keeps the systemd status line
// and /readyz saying what sinkd waits for.
func awaitSource(ctx context.Context, p *Pipeline, cfg *config.Config, log *slog.Logger) {
	select {
	case <-p.ready:
	case <-p.loopDone:
		return
	case <-ctx.Done():
		return
	}
	where, hint := sourceWhere(cfg)
	var since, logged time.Time
	// Exponential from 1s, capped at 15s, equal jitter (internal/backoff).
	wait := backoff.Policy{Base: time.Second, Max: 15 * time.Second}
	for attempt := 0; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := p.src.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			if !since.IsZero() {
				log.Info("the source answers", "source", where, "waited", time.Since(since).Round(time.Second))
			}
			sdNotify("READY=1\nSTATUS=running: reading " + where)
			return
		}
		now := time.Now()
		if since.IsZero() {
			since = now
		}
		if now.Sub(logged) >= 30*time.Second {
			log.Warn("waiting for the source: it does not answer; retrying", "source", where, "err", err,
				"waiting", now.Sub(since).Round(time.Second), "hint", hint)
			logged = now
		}
		sdNotify("STATUS=waiting for the source " + where + ": " + err.Error())
		select {
		case <-time.After(wait.Delay(attempt)):
		case <-ctx.Done():
			return
		case <-p.loopDone:
			return
		}
	}
}

// sourceWhere names the source for operators, with what to check.
func sourceWhere(cfg *config.Config) (where, hint string) {
	if k := cfg.Source.Kafka; k != nil {
		return "kafka " + strings.Join(k.Brokers, ",") + " topics " + strings.Join(k.Topics, ","),
			"check that the brokers are reachable from this host (address, port, firewall, DNS) and that source.kafka.tls and source.kafka.sasl match the listener"
	}
	if k := cfg.Source.Kinesis; k != nil {
		return "kinesis stream " + k.Stream, "check the endpoint, region and credentials (source.kinesis), and that the stream exists"
	}
	return "the source", ""
}
