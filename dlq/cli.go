package dlq

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/internal/cli"
)

// selection is where the CLI reads letters from and which ones it keeps.
type selection struct {
	kafkaBrokers, topic                    string
	kinesisStream, kinesisEndpoint, region string
	file                                   string
	stage, class, id, since, until         string
	limit                                  int
	sinceT, untilT                         time.Time
	// From --config: the pipeline's configuration and the security of its
	// dead-letter topic, which the flags alone cannot express.
	configPath string
	cfg        *Pipeline
	tls        conf.TLS
	sasl       conf.SASL
}

// Pipeline is what the dead-letter tools take from a pipeline's
// configuration file (--config): its dead-letter destination, and its
// source, the default target of a redrive. Both have their defaults applied.
type Pipeline struct {
	DLQ Config
	// Kafka is the source when it is Kafka, else nil.
	Kafka *SourceKafka
	// Kinesis is the source when it is Kinesis, else nil.
	Kinesis *SourceKinesis
}

// SourceKafka is what a redrive needs of a Kafka source.
type SourceKafka struct {
	Brokers []string
	Topics  []string
	TLS     conf.TLS
	SASL    conf.SASL
}

// SourceKinesis is what a redrive needs of a Kinesis source.
type SourceKinesis struct {
	Stream, Endpoint, Region string
}

// LoadConfig loads, defaults and validates a pipeline's configuration file
// for --config. The config package sets it when it is linked in (sinkd
// always links it): config imports this package for its dlq block, so this
// package cannot import config.
var LoadConfig func(path string) (*Pipeline, error)

func (s *selection) register(fs *flag.FlagSet) {
	fs.StringVar(&s.kafkaBrokers, "kafka-brokers", "", "dead-letter Kafka brokers, comma-separated (with --topic)")
	fs.StringVar(&s.topic, "topic", "", "dead-letter Kafka topic")
	fs.StringVar(&s.kinesisStream, "kinesis-stream", "", "dead-letter Kinesis stream")
	fs.StringVar(&s.kinesisEndpoint, "kinesis-endpoint", "", "Kinesis endpoint URL (empty: AWS)")
	fs.StringVar(&s.region, "region", "", "AWS region (default: from the environment)")
	fs.StringVar(&s.file, "file", "", "dead-letter JSON-lines file")
	fs.StringVar(&s.stage, "stage", "", "keep letters of this stage (decode, schema, route, bucket, parquet, opensearch, oversize, kpl)")
	fs.StringVar(&s.class, "class", "", "keep letters of this error class (e.g. type_mismatch)")
	fs.StringVar(&s.id, "id", "", "keep the letter with this id")
	fs.StringVar(&s.since, "since", "", "keep letters whose last failure is at or after this time (RFC 3339, or a duration ago such as 2h)")
	fs.StringVar(&s.until, "until", "", "keep letters whose last failure is before this time (RFC 3339, or a duration ago)")
	fs.IntVar(&s.limit, "limit", 0, "stop after this many matching letters (0: no limit)")
	fs.StringVar(&s.configPath, "config", "", "the pipeline's configuration: its dead-letter topic, stream or file is the default source, with its TLS, SASL or IAM settings (flags override)")
}

// fromConfig loads --config and fills in what the flags left out: the
// dead-letter destination and its security.
func (s *selection) fromConfig() error {
	if s.configPath == "" {
		return nil
	}
	if LoadConfig == nil {
		return errors.New("--config: this build has no configuration loader")
	}
	cfg, err := LoadConfig(s.configPath)
	if err != nil {
		return err
	}
	s.cfg = cfg
	if s.topic != "" || s.kafkaBrokers != "" || s.kinesisStream != "" || s.file != "" {
		// An explicit source: take only the security that goes with it.
		if k := cfg.DLQ.Kafka; k != nil && s.topic != "" {
			s.tls, s.sasl = k.TLS, k.SASL
		}
		return nil
	}
	switch d := cfg.DLQ; {
	case d.Kafka != nil:
		s.kafkaBrokers, s.topic = strings.Join(d.Kafka.Brokers, ","), d.Kafka.Topic
		s.tls, s.sasl = d.Kafka.TLS, d.Kafka.SASL
	case d.Kinesis != nil:
		s.kinesisStream, s.kinesisEndpoint = d.Kinesis.Stream, d.Kinesis.Endpoint
		if s.region == "" {
			s.region = d.Kinesis.Region
		}
	case d.File != "":
		s.file = d.File
	default:
		return fmt.Errorf("%s has no dead-letter destination (dlq)", s.configPath)
	}
	return nil
}

// check validates the flags once parsed; now anchors relative times.
func (s *selection) check(now time.Time) error {
	n := 0
	for _, set := range []bool{s.topic != "" || s.kafkaBrokers != "", s.kinesisStream != "", s.file != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("give exactly one source: --kafka-brokers with --topic, --kinesis-stream, or --file")
	}
	if (s.topic == "") != (s.kafkaBrokers == "") {
		return errors.New("--kafka-brokers and --topic go together")
	}
	if s.stage != "" && stageLabel(Stage(s.stage)) == ReasonOther {
		return fmt.Errorf("--stage %q: not a stage", s.stage)
	}
	if s.limit < 0 {
		return errors.New("--limit must not be negative")
	}
	var err error
	if s.sinceT, err = parseWhen(s.since, now); err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	if s.untilT, err = parseWhen(s.until, now); err != nil {
		return fmt.Errorf("--until: %w", err)
	}
	return nil
}

// parseWhen reads an RFC 3339 time or a duration before now.
func parseWhen(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a positive duration", v)
	}
	return now.Add(-d), nil
}

func (s *selection) matches(l *Letter) bool {
	when := l.LastFailure
	if when.IsZero() {
		when = l.FirstFailure
	}
	switch {
	case s.stage != "" && string(l.Stage) != s.stage,
		s.class != "" && l.Class != s.class,
		s.id != "" && l.ID() != s.id,
		!s.sinceT.IsZero() && when.Before(s.sinceT),
		!s.untilT.IsZero() && !when.Before(s.untilT):
		return false
	}
	return true
}

// each calls fn for every matching letter, up to the limit.
func (s *selection) each(ctx context.Context, warn io.Writer, fn visit) error {
	n := 0
	keep := func(l *Letter) error {
		if !s.matches(l) {
			return nil
		}
		if err := fn(l); err != nil {
			return err
		}
		if n++; s.limit > 0 && n >= s.limit {
			return errStop
		}
		return nil
	}
	var err error
	switch {
	case s.file != "":
		err = readFile(s.file, warn, keep)
	case s.kinesisStream != "":
		api, cerr := kinesisClient(s.kinesisEndpoint, s.region, nil)
		if cerr != nil {
			return cerr
		}
		err = readKinesis(ctx, api, s.kinesisStream, warn, keep)
	default:
		err = readKafka(ctx, strings.Split(s.kafkaBrokers, ","), s.topic, s.tls, s.sasl, warn, keep)
	}
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// parseArgs parses args into fs following the command-line convention
// (internal/cli); it returns the exit code to end with, or -1 to go on.
func parseArgs(fs *flag.FlagSet, args []string, sel *selection, stdout, stderr io.Writer) int {
	if code, done := cli.Parse(fs, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments: %s\n", fs.Name(), strings.Join(fs.Args(), " "))
		return cli.ExitUsage
	}
	if err := sel.fromConfig(); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		return cli.ExitConfig
	}
	if err := sel.check(time.Now()); err != nil {
		fmt.Fprintf(stderr, "%s: %v\nRun \"sinkd help %s\" for its flags.\n", fs.Name(), err, strings.TrimPrefix(fs.Name(), "sinkd "))
		return cli.ExitUsage
	}
	return -1
}

func newFlagSet(name, synopsis, about string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = cli.Usage(fs, "Usage: "+synopsis+"\n\n"+about)
	return fs
}

// Inspect is `sinkd dlq inspect`: it prints the letters of a dead-letter
// stream, readably or as JSON lines.
func Inspect(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var sel selection
	fs := newFlagSet("sinkd dlq inspect",
		"sinkd dlq inspect (--kafka-brokers B --topic T | --kinesis-stream S [--kinesis-endpoint E] | --file F) [filters] [--json]",
		"Prints the dead letters of a stream from its beginning, optionally filtered.")
	sel.register(fs)
	asJSON := fs.Bool("json", false, "print one JSON envelope per line instead of a readable summary")
	if code := parseArgs(fs, args, &sel, stdout, stderr); code >= 0 {
		return code
	}
	n := 0
	err := sel.each(ctx, stderr, func(l *Letter) error {
		n++
		if *asJSON {
			b, err := ToJSON(l)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(stdout, "%s\n", b)
			return err
		}
		return describe(stdout, l)
	})
	if err != nil {
		fmt.Fprintf(stderr, "inspect: %v\n", err)
		return 1
	}
	if !*asJSON {
		fmt.Fprintf(stdout, "%d letters\n", n)
	}
	return 0
}

// describe prints one letter for a human.
func describe(w io.Writer, l *Letter) error {
	r := l.Record
	var b strings.Builder
	fmt.Fprintf(&b, "id        %s\n", l.ID())
	fmt.Fprintf(&b, "stage     %s  class %s\n", l.Stage, l.Class)
	fmt.Fprintf(&b, "message   %s\n", l.Message)
	fmt.Fprintf(&b, "source    %s  broker time %s\n", r.Coordinates(), formatTime(r.Timestamp))
	fmt.Fprintf(&b, "failures  %d attempts, first %s, last %s\n", l.Attempts, formatTime(l.FirstFailure), formatTime(l.LastFailure))
	fmt.Fprintf(&b, "redrives  %d\n", l.RedriveCount)
	if l.Pipeline != "" || l.Version != "" {
		fmt.Fprintf(&b, "pipeline  %s  version %s\n", l.Pipeline, l.Version)
	}
	for _, k := range sortedKeys(l.Details) {
		fmt.Fprintf(&b, "detail    %s=%s\n", k, l.Details[k])
	}
	if len(r.Key) > 0 {
		fmt.Fprintf(&b, "key       %s\n", preview(r.Key))
	}
	size := fmt.Sprintf("%d bytes", len(r.Value))
	if l.Truncated() {
		size = fmt.Sprintf("truncated to %d of %d bytes", len(r.Value), l.OriginalSize)
	}
	fmt.Fprintf(&b, "value     %s  (%s)\n\n", preview(r.Value), size)
	_, err := io.WriteString(w, b.String())
	return err
}

// previewRunes is how much of the original bytes inspect shows.
const previewRunes = 120

// preview renders bytes printably: invalid UTF-8 and control characters
// become '.', and the result is cut at previewRunes.
func preview(b []byte) string {
	var sb strings.Builder
	for n := 0; len(b) > 0; n++ {
		if n == previewRunes {
			sb.WriteString("…")
			break
		}
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			r = '.'
		}
		sb.WriteRune(r)
	}
	return sb.String()
}
