// Package cli holds the conventions every sinkd command follows: help on
// stdout with exit 0, usage errors on stderr with exit 2, configuration errors
// with their own exit code so that a supervisor can stop restarting.
package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Exit codes. systemd's RestartPreventExitStatus lists ExitUsage and ExitConfig:
// restarting cannot fix a wrong command line or configuration.
const (
	ExitOK      = 0
	ExitFailure = 1  // a runtime failure: a dependency down, a drain that timed out
	ExitUsage   = 2  // unknown command, bad flags
	ExitConfig  = 78 // EX_CONFIG (sysexits.h): the configuration has problems
)

// Parse parses args into fs. On -h/--help it prints fs.Usage to stdout and
// returns ExitOK, done; on a bad flag it prints the error and a pointer to the
// help to stderr and returns ExitUsage, done. Usage functions must write to
// fs.Output().
func Parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, done bool) {
	var msgs bytes.Buffer
	fs.SetOutput(&msgs)
	err := parseInterspersed(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return ExitOK, true
	case err != nil:
		fmt.Fprintf(stderr, "%s: %v\nRun \"sinkd help %s\" for its flags.\n", fs.Name(), err, strings.TrimPrefix(fs.Name(), "sinkd "))
		return ExitUsage, true
	}
	fs.SetOutput(stderr)
	return ExitOK, false
}

// Usage returns a usage function that prints text and the flags to fs.Output().
func Usage(fs *flag.FlagSet, text string) func() {
	return func() {
		fmt.Fprintln(fs.Output(), strings.TrimRight(text, "\n"))
		fmt.Fprintln(fs.Output(), "\nFlags:")
		fs.PrintDefaults()
	}
}

// parseInterspersed lets flags follow positional arguments
// (`sinkd tap FILE --n 5`), which the flag package alone stops at.
func parseInterspersed(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return fs.Parse(append([]string{"--"}, positional...))
}
