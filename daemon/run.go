package daemon

import (
	"context"
	"crypto/subtle"
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
	"github.com/sinkd/sinkd/internal/cli"
	"github.com/sinkd/sinkd/schema/registry"
)

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sinkd run", flag.ContinueOnError)
	flagPath := fs.String("config", "", "configuration file (default: the argument, else $SINKD_CONFIG)")
	fs.Usage = cli.Usage(fs, `Usage: sinkd run [--config] FILE

Runs the pipeline until SIGTERM or SIGINT, then drains: stops reading, closes
every open file, takes a final checkpoint and exits 0 within shutdown.drain_timeout.
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
	cfg := loadConfig(path, stderr)
	if cfg == nil {
		return cli.ExitConfig
	}
	log := newLogger(cfg.Log, stderr)
	setMemoryLimit(cfg, log)
	ctx, stop := signalContext(ctx, log, cfg.Shutdown.DrainTimeout.D())
	defer stop()
	if err := runReloading(ctx, path, cfg, log, stderr); err != nil {
		log.Error("sinkd stopped", "err", err)
		return cli.ExitFailure
	}
	return cli.ExitOK
}

// runReloading runs the pipeline and re-reads the configuration on SIGHUP. A
// valid new configuration drains the running pipeline (final checkpoint, as
// on SIGTERM) and starts it again in this process with the new one; a
// configuration with problems is not used: every problem is logged and the
// pipeline keeps running as it was.
func runReloading(ctx context.Context, path string, cfg *config.Config, log *slog.Logger, stderr io.Writer) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var o options
	for {
		runCtx, drain := context.WithCancel(ctx)
		next := make(chan *config.Config, 1)
		watching := make(chan struct{})
		go func() {
			defer close(watching)
			for {
				select {
				case <-runCtx.Done():
					return
				case <-hup:
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
				next <- newCfg
				drain()
				return
			}
		}()
		err := run(runCtx, cfg, log, o, nil)
		drain()
		<-watching
		// A record's schema changed the file schema: the run has drained;
		// start again with the merged schema (docs/schema.md).
		var change *registry.SchemaChange
		if errors.As(err, &change) && ctx.Err() == nil && len(next) == 0 {
			log.Info("the schema changed: restarting the pipeline with the merged schema", "schema_id", change.ID)
			o.fields = change.Fields
			continue
		}
		select {
		case newCfg := <-next:
			if ctx.Err() != nil {
				return err // SIGTERM during the reload: stop
			}
			if err != nil && change == nil {
				return err
			}
			sdNotify("RELOADING=1")
			log.Info("configuration reloaded: restarting the pipeline", "file", path)
			if newCfg.Log != cfg.Log {
				log = newLogger(newCfg.Log, stderr)
			}
			setMemoryLimit(newCfg, log)
			cfg, o = newCfg, options{}
		default:
			return err
		}
	}
}

// run builds, serves and runs one pipeline; started, when set, receives the
// pipeline once it is ready (the demo watches it).
func run(ctx context.Context, cfg *config.Config, log *slog.Logger, o options, started func(*Pipeline)) error {
	reg := prometheus.NewRegistry()
	p, err := newPipeline(ctx, cfg, log, reg, o)
	if err != nil {
		return err
	}
	stopHTTP, err := serveHTTP(cfg, reg, p, log)
	if err != nil {
		p.src.Close()
		return err
	}
	defer stopHTTP()
	if started != nil {
		go func() {
			select {
			case <-p.ready:
				started(p)
			case <-p.loopDone:
			}
		}()
	}
	stopWatchdog := systemdWatchdog(ctx, log)
	defer stopWatchdog()
	go awaitSource(ctx, p, cfg, log)
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

// serveHTTP exposes /metrics, /healthz (fails when checkpoints have failed for
// longer than shutdown.unhealthy_after), /readyz (ready once recovery is done
// and the source answers), and the read-only status page (/ and /status).
// The actions (pause, resume, pprof) are on a separate admin listener, off
// unless http.admin.addr is set, behind http.admin.token when that is set.
// The returned function shuts both down.
func serveHTTP(cfg *config.Config, reg *prometheus.Registry, p *Pipeline, log *slog.Logger) (func(), error) {
	var servers []*http.Server
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for _, srv := range servers {
			_ = srv.Shutdown(sctx)
		}
	}
	listen := func(addr, key string, h http.Handler) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			stop()
			return fmt.Errorf("%s %s: %w", key, addr, err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		servers = append(servers, srv)
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("http server stopped", "addr", addr, "err", err)
			}
		}()
		return nil
	}
	if cfg.HTTP.Addr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
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
				where, _ := sourceWhere(cfg)
				http.Error(w, "waiting for the source "+where+": "+err.Error(), http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ready")
		})
		serveStatus(mux, p)
		if err := listen(cfg.HTTP.Addr, "http.addr", mux); err != nil {
			return nil, err
		}
	}
	if cfg.HTTP.Pprof && cfg.HTTP.Admin.Addr == "" {
		log.Warn("http.pprof is on but http.admin.addr is not set: profiles are served on the admin listener only, so they are off")
	}
	if a := cfg.HTTP.Admin; a.Addr != "" {
		admin := http.NewServeMux()
		if cfg.HTTP.Pprof {
			admin.HandleFunc("/debug/pprof/", pprof.Index)
			admin.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			admin.HandleFunc("/debug/pprof/profile", pprof.Profile)
			admin.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			admin.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		// Pausing stops reading while checkpoints, metrics and probes go on
		// (for maintenance downstream, or to watch lag build up).
		admin.HandleFunc("POST /admin/pause", func(w http.ResponseWriter, r *http.Request) {
			p.src.Pause()
			log.Info("consumption paused through /admin/pause", "from", r.RemoteAddr)
			fmt.Fprintln(w, "paused")
		})
		admin.HandleFunc("POST /admin/resume", func(w http.ResponseWriter, r *http.Request) {
			p.src.Resume()
			log.Info("consumption resumed through /admin/resume", "from", r.RemoteAddr)
			fmt.Fprintln(w, "resumed")
		})
		if err := listen(a.Addr, "http.admin.addr", requireToken(a.Token, admin)); err != nil {
			return nil, err
		}
	}
	return stop, nil
}

// requireToken passes requests that carry "Authorization: Bearer token"
// (compared in constant time); with no token configured it passes all.
func requireToken(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
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
	wait := time.Second
	for {
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
		case <-time.After(wait):
		case <-ctx.Done():
			return
		case <-p.loopDone:
			return
		}
		wait = min(2*wait, 15*time.Second)
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
