package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/config/examples"
	"github.com/sinkd/sinkd/internal/cli"
	"github.com/sinkd/sinkd/internal/progress"
	"github.com/sinkd/sinkd/taxi"
)

// cmdDemo runs the real pipeline (the code of `sinkd run`) against an
// in-process Kafka broker, on the embedded demo configuration, into local
// Parquet files committed through the same checkpoint protocol as S3.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sinkd demo", flag.ContinueOnError)
	events := fs.Int("events", 50000, "taxi trips to produce")
	partitions := fs.Int("partitions", 4, "partitions of the embedded topic")
	badRatio := fs.Float64("bad-ratio", 0.01, "share of deliberately broken events (they become dead letters)")
	dir := fs.String("dir", "demo-out", "output directory (Parquet lake, manifests, dead letters)")
	seed := fs.Int64("seed", 1, "generator seed")
	verbose := fs.Bool("v", false, "log what the pipeline does")
	fs.Usage = cli.Usage(fs, "Usage: sinkd demo [flags]\n\nStarts an embedded Kafka broker, produces taxi trips into it, runs the pipeline\nof config/examples/demo.yaml until every event is processed, drains, and prints\nwhat it wrote. Nothing to install. --dir must be new, empty, or made by an\nearlier demo: the demo never deletes what it did not create.")
	if code, done := cli.Parse(fs, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sinkd demo: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return cli.ExitUsage
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return 1
	}
	if err := prepareDemoDir(abs); err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return cli.ExitUsage
	}
	if err := demo(ctx, abs, *events, int32(*partitions), *badRatio, *seed, *verbose, stdout, stderr); err != nil {
		if errors.Is(err, errInterrupted) {
			fmt.Fprintln(stdout, "demo", err)
			return 130 // 128 + SIGINT, as a shell reports it
		}
		fmt.Fprintln(stderr, "demo failed:", err)
		return 1
	}
	return 0
}

func demo(ctx context.Context, dir string, events int, partitions int32, badRatio float64, seed int64, verbose bool, stdout, stderr io.Writer) error {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "taxi-trips"))
	if err != nil {
		return fmt.Errorf("starting the embedded broker: %w", err)
	}
	defer cluster.Close()
	brokers := strings.Join(cluster.ListenAddrs(), ",")
	for k, v := range map[string]string{"SINKD_KAFKA_BROKERS": brokers, "SINKD_KAFKA_TOPIC": "taxi-trips", "SINKD_DEMO_DIR": dir, "SINKD_HTTP_ADDR": "127.0.0.1:0"} {
		os.Setenv(k, v)
	}
	cfg, err := config.Parse("config/examples/demo.yaml", examples.Demo)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sinkd demo: embedded Kafka at %s, topic taxi-trips (%d partitions)\n", brokers, partitions)

	started := time.Now()
	sink, err := taxi.NewKafkaSink(ctx, cluster.ListenAddrs(), "taxi-trips", partitions)
	if err != nil {
		return err
	}
	gen := taxi.NewGenerator(seed, taxi.DefaultStart())
	counted := &countingSink{Sink: sink}
	stopProgress := progress.Start(stderr, "demo: producing", "events", int64(events), counted.n.Load)
	ps, err := taxi.WriteTopic(ctx, counted, gen, events, badRatio)
	stopProgress()
	sink.Close()
	if ctx.Err() != nil {
		return fmt.Errorf("%w while producing: %d of %d events produced, nothing processed", errInterrupted, counted.n.Load(), events)
	}
	if err != nil {
		return fmt.Errorf("producing: %w", err)
	}
	fmt.Fprintf(stdout, "produced %d taxi trips (%d deliberately broken) in %s\n", ps.Events, ps.Bad, time.Since(started).Round(time.Millisecond))

	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	runStart := time.Now()
	var running atomic.Pointer[Pipeline]
	stopProgress = progress.Start(stderr, "demo: processing", "events", int64(events), func() int64 {
		if p := running.Load(); p != nil {
			return p.Stats().Records
		}
		return 0
	})
	p, err := runUntilCaughtWatch(ctx, cfg, log, int64(events), 200*time.Millisecond, func(p *Pipeline) { running.Store(p) })
	stopProgress()
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		// Drained, so what is committed is consistent, but it is not all.
		n := int64(0)
		if p != nil {
			n = p.Stats().Records
		}
		return fmt.Errorf("%w: %d of %d events processed; the output in %s is partial (committed files are consistent)", errInterrupted, n, events, dir)
	}
	elapsed := time.Since(runStart)
	st := p.Stats()
	fmt.Fprintf(stdout, "processed %d events (%.1f MB) in %s: %.0f events/s\n", st.Records, float64(st.Bytes)/1e6, elapsed.Round(time.Millisecond), float64(st.Records)/elapsed.Seconds())
	fmt.Fprintf(stdout, "committed %d Parquet files, %d rows, %.1f MB, in %d buckets, over %d checkpoints\n", st.Files, st.FileRows, float64(st.FileBytes)/1e6, len(st.Buckets), st.Checkpoints)
	fmt.Fprintf(stdout, "dead letters: %d (see %s)\n", st.DeadLetters, filepath.Join(dir, "dead-letters.jsonl"))
	fmt.Fprintf(stdout, "files: %s  (two routes, rows counted once per route)\n", filepath.Join(dir, "lake"))
	fmt.Fprintf(stdout, "read them with any Parquet engine, e.g. DuckDB (if installed): SELECT type, count(*) FROM read_parquet('%s/lake/by-type/**/*.parquet', hive_partitioning=true) GROUP BY ALL\n", dir)
	return nil
}

// runUntilCaught runs the pipeline until it has read records records and
// caught up with the source, checked every interval, then drains it: the
// whole input is committed when it returns.
func runUntilCaught(ctx context.Context, cfg *config.Config, log *slog.Logger, records int64, every time.Duration) (*Pipeline, error) {
	return runUntilCaughtWatch(ctx, cfg, log, records, every, nil)
}

// runUntilCaughtWatch is runUntilCaught that also hands the pipeline to
// onStart once it is ready (the demo's progress line reads it).
func runUntilCaughtWatch(ctx context.Context, cfg *config.Config, log *slog.Logger, records int64, every time.Duration, onStart func(*Pipeline)) (*Pipeline, error) {
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var p *Pipeline
	ready := make(chan struct{})
	go func() {
		<-ready
		for runCtx.Err() == nil {
			time.Sleep(every)
			if p.Stats().Records >= records && p.Caught(runCtx) {
				stop()
			}
		}
	}()
	if err := run(runCtx, cfg, log, options{}, func(pl *Pipeline) {
		p = pl
		if onStart != nil {
			onStart(pl)
		}
		close(ready)
	}); err != nil {
		return p, err
	}
	return p, nil
}

// demoMarker is the file by which the demo recognises a directory it created.
const demoMarker = ".sinkd-demo"

// demoOutputs are the entries the demo writes into its directory (see
// config/examples/demo.yaml): the only ones it ever removes.
var demoOutputs = []string{"lake", "dead-letters.jsonl"}

// prepareDemoDir makes dir ready for a fresh demo run without ever deleting
// what the demo did not create: a missing or empty directory is claimed with
// a marker file; a directory with the marker has only the demo's own outputs
// removed; any other non-empty directory (".", "~", a project) is refused.
func prepareDemoDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	case err != nil:
		return err
	case len(entries) > 0:
		if _, err := os.Stat(filepath.Join(dir, demoMarker)); err != nil {
			return fmt.Errorf("%s is not empty and was not created by sinkd demo; refusing to write into it (choose an empty or new --dir)", dir)
		}
		for _, name := range demoOutputs {
			if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("cleaning the previous demo output: %w", err)
			}
		}
	}
	return os.WriteFile(filepath.Join(dir, demoMarker), []byte("created by sinkd demo; it removes only lake/ and dead-letters.jsonl here\n"), 0o644)
}

// errInterrupted marks a demo stopped by a signal before it finished.
var errInterrupted = errors.New("interrupted")

// countingSink counts what the demo's producer has sent, for its progress line.
type countingSink struct {
	taxi.Sink
	n atomic.Int64
}

func (c *countingSink) Send(ctx context.Context, key, value []byte) error {
	c.n.Add(1)
	return c.Sink.Send(ctx, key, value)
}
