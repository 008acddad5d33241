// Package daemon is sinkd's process: the command line, the lifecycle (signals,
// systemd notify, HTTP /metrics /healthz /readyz), the pipeline and its
// checkpoint coordinator.
package daemon

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/dlq"
	"github.com/sinkd/sinkd/internal/cli"
	"github.com/sinkd/sinkd/taxi"
)

const usage = `sinkd archives event streams: Kafka / MSK and Kinesis into Parquet on S3
(exactly-once) and OpenSearch (idempotent), with a dead-letter stream.

Usage:
  sinkd run      [--config] FILE  run a pipeline until SIGTERM (drains, then exits 0); SIGHUP reloads
  sinkd validate [--config] FILE  check a configuration; list every problem with its line
  sinkd demo     [flags]          run the taxi pipeline on an embedded Kafka into local Parquet files
  sinkd produce  [flags]          generate or replay taxi trips into Kafka or Kinesis
  sinkd tap      [--config] FILE  dry run: where N records would go (route, path, key, index, id) or why they fail
  sinkd dlq inspect|redrive       read dead letters; write repaired records back
  sinkd version                   print the version, commit and build date
  sinkd completion bash|zsh|fish  print a shell completion script
  sinkd help [COMMAND]            this text, or a command's flags

The configuration file defaults to $SINKD_CONFIG. Exit codes: 0 done, 1 runtime
failure, 2 bad command line, 78 configuration problems.
`

// commands are sinkd's subcommands, by name.
func commands() map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) int{
		"run":      cmdRun,
		"validate": cmdValidate,
		"demo":     cmdDemo,
		"produce":  taxi.Produce,
		"dlq":      cmdDLQ,
		"tap":      cmdTap,
		"version":  cmdVersion,
		"completion": func(_ context.Context, args []string, stdout, stderr io.Writer) int {
			return cmdCompletion(args, stdout, stderr)
		},
	}
}

// Main runs the command line and returns the exit code. Every command follows
// one convention (internal/cli): help on stdout with exit 0, usage errors on
// stderr with exit 2.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return cli.ExitUsage
	}
	switch args[0] {
	case "help", "-h", "--help", "-help":
		if len(args) > 1 && args[0] == "help" {
			// sinkd help dlq redrive = sinkd dlq redrive --help
			return Main(ctx, append(append([]string(nil), args[1:]...), "--help"), stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return cli.ExitOK
	case "--version", "-version":
		args[0] = "version"
	case "__complete":
		return complete(args[1:], stdout)
	}
	cmd, ok := commands()[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "sinkd: unknown command %q\n\n%s", args[0], usage)
		return cli.ExitUsage
	}
	if args[0] != "run" {
		// run drains on the first signal and exits on the second; the other
		// commands stop what they do on a signal and flush.
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
		defer stop()
	}
	return cmd(ctx, args[1:], stdout, stderr)
}

const dlqUsage = `Usage: sinkd dlq inspect|redrive [flags]

  inspect   print the dead letters of a stream or file, optionally filtered
  redrive   write selected originals back to a topic or stream, rate-limited, loop-safe

Run "sinkd help dlq inspect" or "sinkd help dlq redrive" for their flags.
`

func cmdDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, dlqUsage)
		return cli.ExitUsage
	}
	switch args[0] {
	case "inspect":
		return dlq.Inspect(ctx, args[1:], stdout, stderr)
	case "redrive":
		return dlq.Redrive(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "-help", "help":
		fmt.Fprint(stdout, dlqUsage)
		return cli.ExitOK
	}
	fmt.Fprintf(stderr, "sinkd dlq: unknown command %q\n\n%s", args[0], dlqUsage)
	return cli.ExitUsage
}

// Set at build time by make build and the container image:
// -ldflags "-X github.com/sinkd/sinkd/daemon.buildCommit=… -X …buildDate=…".
// Without them the version comes from the module's build information.
var (
	buildCommit = ""
	buildDate   = ""
)

// versionInfo returns the version, the commit and the build date, each from
// the link flags or else from the Go build information (go build in a Git
// checkout records vcs.revision and vcs.time).
func versionInfo() (version, commit, date string) {
	version, commit, date = Version, buildCommit, buildDate
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if commit == "" {
					commit = s.Value
				}
			case "vcs.time":
				if date == "" {
					date = s.Value
				}
			case "vcs.modified":
				if s.Value == "true" && commit != "" && !strings.HasSuffix(commit, "-dirty") {
					commit += "-dirty"
				}
			}
		}
	}
	return version, cmp.Or(commit, "unknown"), cmp.Or(date, "unknown")
}

func cmdVersion(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sinkd version", flag.ContinueOnError)
	fs.Usage = cli.Usage(fs, "Usage: sinkd version\n\nPrints the version, the commit and the build date.")
	if code, done := cli.Parse(fs, args, stdout, stderr); done {
		return code
	}
	v, c, d := versionInfo()
	fmt.Fprintf(stdout, "sinkd %s\ncommit %s\nbuilt %s\n%s %s/%s\n", v, c, d, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return cli.ExitOK
}

// configArg returns the configuration file: --config, else the one
// positional argument, else $SINKD_CONFIG.
func configArg(fs *flag.FlagSet, flagValue string, stderr io.Writer) (string, int) {
	switch {
	case fs.NArg() > 1 || fs.NArg() == 1 && flagValue != "":
		fmt.Fprintf(stderr, "%s: one configuration file, got %s\n", fs.Name(), strings.Join(append([]string{flagValue}, fs.Args()...), " "))
		return "", cli.ExitUsage
	case flagValue != "":
		return flagValue, cli.ExitOK
	case fs.NArg() == 1:
		return fs.Arg(0), cli.ExitOK
	case os.Getenv("SINKD_CONFIG") != "":
		return os.Getenv("SINKD_CONFIG"), cli.ExitOK
	}
	fmt.Fprintf(stderr, "%s: no configuration: pass FILE (or --config FILE) or set SINKD_CONFIG\n", fs.Name())
	return "", cli.ExitUsage
}

// loadConfig loads the configuration at path and checks everything that can
// be checked offline. On failure it prints every problem and returns nil.
func loadConfig(path string, stderr io.Writer) *config.Config {
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

func cmdValidate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sinkd validate", flag.ContinueOnError)
	flagPath := fs.String("config", "", "configuration file (default: the argument, else $SINKD_CONFIG)")
	connect := fs.Bool("connect", false, "also check that every endpoint answers and the credentials can do what the pipeline needs")
	fs.Usage = cli.Usage(fs, `Usage: sinkd validate [--config] FILE

Checks a configuration without connecting anywhere: syntax, unknown keys,
values, required settings, environment variables, the schema and every
template. Prints each problem as FILE:LINE: PATH: MESSAGE, sorted by line, and
exits 78, or prints a summary and exits 0.

With --connect it then checks every endpoint: the source's topics exist, the
dead-letter topic exists or may be created (validated with the broker), every
object store takes writes, multipart uploads and conditional writes
(If-None-Match, which manifests rely on), and OpenSearch answers. Any failed
check exits 1.`)
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
	cfg.Summary(stdout)
	if *connect {
		fmt.Fprintln(stdout, "\nconnecting:")
		if !checkConnect(ctx, cfg, stdout) {
			return cli.ExitFailure
		}
	}
	return cli.ExitOK
}
