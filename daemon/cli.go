// Package daemon is sinkd's process: the command line, the lifecycle (signals,
// systemd notify, HTTP /metrics /healthz /readyz), the pipeline and its
// checkpoint coordinator.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/dlq"
	"github.com/sinkd/sinkd/taxi"
)

const usage = `sinkd archives event streams: Kafka / MSK and Kinesis into Parquet on S3
(exactly-once) and OpenSearch (idempotent), with a dead-letter stream.

Usage:
  sinkd run      --config FILE   run a pipeline until SIGTERM (drains, then exits 0)
  sinkd validate --config FILE   check a configuration; list every problem with its line
  sinkd demo     [flags]         run the taxi pipeline on an embedded Kafka into local Parquet files
  sinkd produce  [flags]         generate or replay taxi trips into Kafka or Kinesis
  sinkd dlq inspect|redrive      read dead letters; write repaired records back
  sinkd version                  print the version

--config defaults to $SINKD_CONFIG. Run "sinkd COMMAND --help" for a command's flags.
`

// Main runs the command line and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if args[0] == "run" {
		// run drains on the first signal and exits on the second.
		return cmdRun(ctx, args[1:], stdout, stderr)
	}
	// The other commands stop what they do on a signal and flush.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "demo":
		return cmdDemo(ctx, args[1:], stdout, stderr)
	case "produce":
		return taxi.Produce(ctx, args[1:], stdout, stderr)
	case "dlq":
		if len(args) < 2 {
			fmt.Fprintln(stderr, "usage: sinkd dlq inspect|redrive [flags]")
			return 2
		}
		switch args[1] {
		case "inspect":
			return dlq.Inspect(ctx, args[2:], stdout, stderr)
		case "redrive":
			return dlq.Redrive(ctx, args[2:], stdout, stderr)
		}
		fmt.Fprintf(stderr, "sinkd dlq: unknown command %q (inspect, redrive)\n", args[1])
		return 2
	case "version", "--version":
		fmt.Fprintln(stdout, "sinkd", Version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "sinkd: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// loadConfig parses --config (or $SINKD_CONFIG) and checks everything that can
// be checked offline. On failure it prints every problem and returns nil.
func loadConfig(fs *flag.FlagSet, path string, stderr io.Writer) *config.Config {
	if path == "" {
		path = os.Getenv("SINKD_CONFIG")
	}
	if path == "" {
		fmt.Fprintf(stderr, "sinkd %s: no configuration: pass --config FILE or set SINKD_CONFIG\n", fs.Name())
		return nil
	}
	cfg, err := config.LoadPartial(path)
	var problems []config.Problem
	if ps, ok := err.(*config.Problems); ok {
		problems = ps.List
	} else if err != nil {
		fmt.Fprintln(stderr, err)
		return nil
	}
	// Compile the schema and the templates even when the file has other
	// problems, so that one run lists everything, sorted by line. Their
	// problems are left out where the file's own already cover the key (the
	// templates wait for a schema that compiles).
	if cfg != nil {
		fileProblems := problems
		var cps *config.Problems
		if err := Check(cfg); errors.As(err, &cps) {
			for _, p := range cps.List {
				if !covered(fileProblems, p.Path) {
					problems = append(problems, p)
				}
			}
		} else if err != nil {
			problems = append(problems, cfg.Problem("", "%v", err))
		}
	}
	if err := config.NewProblems(problems...); err != nil {
		fmt.Fprintln(stderr, err)
		return nil
	}
	return cfg
}

// covered says whether a problem already concerns path or a key around or inside it.
func covered(problems []config.Problem, path string) bool {
	for _, p := range problems {
		if p.Path == "" {
			continue
		}
		if p.Path == path || strings.HasPrefix(path, p.Path+".") || strings.HasPrefix(path, p.Path+"[") ||
			strings.HasPrefix(p.Path, path+".") || strings.HasPrefix(p.Path, path+"[") {
			return true
		}
	}
	return false
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default $SINKD_CONFIG)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sinkd validate --config FILE\n\nChecks a configuration without connecting anywhere: syntax, unknown keys,\nvalues, required settings, the schema and every template. Prints each problem\nas FILE:LINE: PATH: MESSAGE and exits 1, or prints a summary and exits 0.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg := loadConfig(fs, *path, stderr)
	if cfg == nil {
		return 1
	}
	cfg.Summary(stdout)
	return 0
}
