package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sinkd/sinkd/config"
)

func cmdRun(ctx context.Context, args []string, _, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default $SINKD_CONFIG)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sinkd run --config FILE\n\nRuns the pipeline until SIGTERM or SIGINT, then drains: stops reading, closes\nevery open file, takes a final checkpoint and exits 0 within shutdown.drain_timeout.\nA second signal exits at once; nothing partial is ever committed.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg := loadConfig(fs, *path, stderr)
	if cfg == nil {
		return 1
	}
	log := newLogger(cfg.Log, stderr)
	setMemoryLimit(cfg, log)
	ctx, stop := signalContext(ctx, log, cfg.Shutdown.DrainTimeout.D())
	defer stop()
	if err := run(ctx, cfg, log, options{}, nil); err != nil {
		log.Error("sinkd stopped", "err", err)
		return 1
	}
	return 0
}

// run builds, serves and runs one pipeline; started, when set, receives the
// pipeline once it is ready (the demo watches it).
func run(ctx context.Context, cfg *config.Config, log *slog.Logger, o options, started func(*Pipeline)) error {
	reg := prometheus.NewRegistry()
	p, err := newPipeline(ctx, cfg, log, reg, o)
	if err != nil {
		return err
	}
	srv, err := serveHTTP(cfg, reg, p, log)
	if err != nil {
		p.src.Close()
		return err
	}
	if srv != nil {
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}
	if started != nil {
		go func() {
			select {
			case <-p.ready:
				started(p)
			case <-p.loopDone:
			}
		}()
	}
	stopWatchdog := systemdReady(ctx, log)
	defer stopWatchdog()
	err = p.Run(ctx)
	sdNotify("STOPPING=1")
	if cerr := p.dlq.Close(context.WithoutCancel(ctx)); cerr != nil && err == nil {
		err = cerr
	}
	for _, r := range p.routes {
		if r.os != nil {
			_ = r.os.Close(context.WithoutCancel(ctx))
		}
	}
	return err
}

// setMemoryLimit tells the Go runtime how much memory sinkd may use, so that
// garbage collection tightens near the limit instead of letting the heap
// double: the budget (files and the source's fetch buffers) plus room for the
// runtime and garbage. An explicit GOMEMLIMIT wins.
func setMemoryLimit(cfg *config.Config, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := cfg.Memory.Budget.Bytes() + 64<<20
	debug.SetMemoryLimit(limit)
	log.Debug("memory limit set", "bytes", limit)
}

// signalContext cancels on the first SIGTERM/SIGINT (graceful drain); a
// second signal, or the drain outliving its timeout, exits at once with code
// 1, committing nothing more (the last manifest stays the truth).
func signalContext(parent context.Context, log *slog.Logger, drain time.Duration) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	stopped := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			log.Info("signal received: draining", "signal", s.String(), "timeout", drain)
			cancel()
		case <-stopped:
			return
		}
		select {
		case s := <-sigs:
			log.Warn("second signal: exiting now without a final checkpoint", "signal", s.String())
		case <-time.After(drain + 5*time.Second):
			log.Error("drain timed out: exiting without a final checkpoint")
		case <-stopped:
			return
		}
		os.Exit(1)
	}()
	return ctx, func() { signal.Stop(sigs); close(stopped); cancel() }
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(c.Format, "text") {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// serveHTTP exposes /metrics, /healthz (fails when checkpoints have failed for
// longer than shutdown.unhealthy_after) and /readyz (ready once recovery is
// done and the source answers).
func serveHTTP(cfg *config.Config, reg *prometheus.Registry, p *Pipeline, log *slog.Logger) (*http.Server, error) {
	if cfg.HTTP.Addr == "" {
		return nil, nil
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if cfg.HTTP.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		p.healthMu.Lock()
		failing := p.firstFailure
		p.healthMu.Unlock()
		if !failing.IsZero() && time.Since(failing) > cfg.Shutdown.UnhealthyAfter.D() {
			http.Error(w, fmt.Sprintf("checkpoints failing since %s", failing.Format(time.RFC3339)), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-p.ready:
		default:
			http.Error(w, "recovering", http.StatusServiceUnavailable)
			return
		}
		select {
		case <-p.loopDone:
			http.Error(w, "stopping", http.StatusServiceUnavailable)
			return
		default:
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := p.src.Ping(ctx); err != nil {
			http.Error(w, "source unreachable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	// Pausing stops reading while checkpoints, metrics and probes go on
	// (for maintenance downstream, or to watch lag build up).
	mux.HandleFunc("POST /admin/pause", func(w http.ResponseWriter, r *http.Request) {
		p.src.Pause()
		log.Info("consumption paused through /admin/pause")
		fmt.Fprintln(w, "paused")
	})
	mux.HandleFunc("POST /admin/resume", func(w http.ResponseWriter, r *http.Request) {
		p.src.Resume()
		log.Info("consumption resumed through /admin/resume")
		fmt.Fprintln(w, "resumed")
	})
	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return nil, fmt.Errorf("http.addr %s: %w", cfg.HTTP.Addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	return srv, nil
}
