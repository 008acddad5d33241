// The HTTP listeners: /metrics, probes, the status page, and the admin
// actions behind a token. The lifecycle that runs them is in run.go.

package daemon

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sinkd/sinkd/config"
)

// httpServer is one bound listener and what serves it, run as an actor.
type httpServer struct {
	key, addr string // the configuration key and address, for errors
	ln        net.Listener
	srv       *http.Server
}

// serve answers until shutdown; a listener that fails otherwise is an
// error, which stops the pipeline.
func (s *httpServer) serve() error {
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s %s: %w", s.key, s.addr, err)
	}
	return nil
}

// shutdown lets requests in flight finish for a moment, then closes the rest.
func (s *httpServer) shutdown(error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
	}
	_ = s.ln.Close() // in case Serve never ran
}

// listenHTTP binds the listeners of /metrics, /healthz (fails when
// checkpoints have failed for longer than shutdown.unhealthy_after), /readyz
// (ready once recovery is done and the source answers), and the read-only
// status page (/ and /status). The actions (pause, resume, pprof) are on a
// separate admin listener, off unless http.admin.addr is set, behind
// http.admin.token when that is set. If one cannot bind, none stays bound.
func listenHTTP(cfg *config.Config, reg *prometheus.Registry, p *Pipeline, log *slog.Logger) (_ []*httpServer, err error) {
	var servers []*httpServer
	defer func() {
		if err != nil {
			for _, s := range servers {
				_ = s.ln.Close()
			}
		}
	}()
	listen := func(addr, key string, h http.Handler) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s %s: %w", key, addr, err)
		}
		servers = append(servers, &httpServer{key: key, addr: addr, ln: ln,
			srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}})
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
	return servers, nil
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
