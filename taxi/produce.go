package taxi

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/sinkd/sinkd/internal/progress"
)

// Stats counts what a run sent.
type Stats struct {
	Events  int64 // all events, good and bad
	Bad     int64
	Bytes   int64 // values only
	Elapsed time.Duration
}

// counters are the live totals of a run; the progress line reads them from
// another goroutine.
type counters struct {
	events, bad, bytes atomic.Int64
}

// PerSecond is the mean event rate of the run.
func (s Stats) PerSecond() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Events) / s.Elapsed.Seconds()
}

func (c *counters) stats(elapsed time.Duration) Stats {
	return Stats{Events: c.events.Load(), Bad: c.bad.Load(), Bytes: c.bytes.Load(), Elapsed: elapsed}
}

// pace decides when each event leaves. The zero value sends as fast as the
// sink accepts.
type pace struct {
	limiter *rate.Limiter // events per second of wall clock
	speedup float64       // event time per wall time, when > 0
}

// WriteTopic sends n events from g to sink as fast as it accepts them, keyed
// by trip_id, with badRatio of them bad, and flushes. Tests and the demo use it
// to preload a stream.
func WriteTopic(ctx context.Context, sink Sink, g *Generator, n int, badRatio float64) (Stats, error) {
	var c counters
	begin := time.Now()
	err := send(ctx, sink, g, int64(n), badRatio, pace{}, &c)
	if err == nil {
		err = sink.Flush(ctx)
	}
	return c.stats(time.Since(begin)), err
}

// send generates and sends count events (0: until ctx ends).
func send(ctx context.Context, sink Sink, g *Generator, count int64, badRatio float64, p pace, c *counters) error {
	begin := time.Now()
	var first time.Time
	for i := int64(0); count == 0 || i < count; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		value, kind := g.Event(badRatio)
		id, at := g.Last()
		if i == 0 {
			first = at
		}
		switch {
		case p.limiter != nil:
			// Reserve rather than Wait: Wait gives up early when the delay
			// would pass ctx's deadline, which is not an interrupt yet.
			r := p.limiter.Reserve()
			if err := sleepUntil(ctx, time.Now().Add(r.Delay())); err != nil {
				r.Cancel()
				return err
			}
		case p.speedup > 0:
			// Replay: an event Δ of event time after the first leaves Δ/speedup
			// of wall time after the start, however long sending took so far.
			due := begin.Add(time.Duration(float64(at.Sub(first)) / p.speedup))
			if err := sleepUntil(ctx, due); err != nil {
				return err
			}
		}
		if err := sink.Send(ctx, strconv.AppendInt(nil, id, 10), value); err != nil {
			return err
		}
		c.events.Add(1)
		c.bytes.Add(int64(len(value)))
		if kind != Good {
			c.bad.Add(1)
		}
	}
	return nil
}

func sleepUntil(ctx context.Context, due time.Time) error {
	d := time.Until(due)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

const produceUsage = `Usage: sinkd produce [flags]

Replays synthetic New York City taxi trips, one JSON event per trip, into a
Kafka topic or a Kinesis stream. Events are deterministic for a seed; each is
keyed by its trip_id. --bad-ratio mixes in broken events (malformed or
truncated JSON, invalid UTF-8, wrong types, missing or null fields, values out
of range, duplicate keys, deep nesting, empty and oversized values) to exercise
the dead-letter path.

Pacing: --rate sends a fixed number of events per second; --speedup replays in
event time (an event whose pickup is Δ after the first one leaves Δ/F after the
start); neither sends as fast as the destination accepts.

Progress: a line every few seconds (events sent, rate, and with --count the
ETA) when stderr is a terminal (SINKD_PROGRESS=always or never overrides the
detection), and always with --progress. An interrupted run says so after its summary.

Exit status: 0 done (or interrupted after a clean flush), 1 failure, 2 usage.

Flags:
`

// Produce is the `sinkd produce` command. args exclude the command name.
func Produce(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sinkd produce", flag.ContinueOnError)
	var flagErrs bytes.Buffer
	fs.SetOutput(&flagErrs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), produceUsage)
		fs.PrintDefaults()
	}
	var (
		brokers    = fs.String("kafka-brokers", os.Getenv("SINKD_KAFKA_BROKERS"), "Kafka bootstrap brokers, comma-separated (default $SINKD_KAFKA_BROKERS)")
		topic      = fs.String("topic", envOr("SINKD_KAFKA_TOPIC", "taxi-trips"), "Kafka topic (default $SINKD_KAFKA_TOPIC, else taxi-trips)")
		partitions = fs.Int("partitions", 4, "create the Kafka topic with this many partitions if it is missing; 0 creates nothing")
		stream     = fs.String("kinesis-stream", os.Getenv("SINKD_KINESIS_STREAM"), "Kinesis stream (default $SINKD_KINESIS_STREAM)")
		endpoint   = fs.String("kinesis-endpoint", os.Getenv("SINKD_KINESIS_ENDPOINT"), "Kinesis endpoint URL, for kinesalite or a VPC endpoint (default $SINKD_KINESIS_ENDPOINT, else AWS)")
		region     = fs.String("region", envOr("AWS_REGION", "us-east-1"), "AWS region (default $AWS_REGION, else us-east-1)")
		shards     = fs.Int("shards", 2, "create the Kinesis stream with this many shards if it is missing; 0 creates nothing")
		aggregate  = fs.Bool("kpl", false, "pack Kinesis records into KPL aggregates")
		count      = fs.Int64("count", 0, "events to send; 0 sends until interrupted")
		perSecond  = fs.Float64("rate", 0, "events per second; 0 is as fast as possible (excludes --speedup)")
		speedup    = fs.Float64("speedup", 0, "replay in event time, this many times faster than real time (excludes --rate)")
		seed       = fs.Int64("seed", 1, "random seed; the same seed gives the same events")
		firstID    = fs.Int64("first-id", 1, "trip_id of the first event")
		badRatio   = fs.Float64("bad-ratio", 0, "fraction of bad events, 0..1")
		startText  = fs.String("start", DefaultStart().Format(time.RFC3339), "event time of the first pickup (RFC 3339)")
		oversize   = fs.Int("oversize-bytes", DefaultOversize, "size of oversized bad events")
		showLines  = fs.Bool("progress", false, "print a progress line (count, rate, ETA with --count) every few seconds even when stderr is not a terminal; on a terminal it is on anyway")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0
		}
		io.Copy(stderr, &flagErrs)
		return 2
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "sinkd produce: "+format+"\nRun 'sinkd produce --help' for usage.\n", a...)
		return 2
	}

	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	toKafka, toKinesis := *brokers != "", *stream != ""
	switch {
	case set["kafka-brokers"] && set["kinesis-stream"] && toKafka && toKinesis:
		return usageErr("--kafka-brokers and --kinesis-stream are exclusive")
	case toKafka && toKinesis && set["kinesis-stream"]:
		toKafka = false
	case toKafka && toKinesis && set["kafka-brokers"]:
		toKinesis = false
	case toKafka && toKinesis:
		return usageErr("both SINKD_KAFKA_BROKERS and SINKD_KINESIS_STREAM are set: choose with --kafka-brokers or --kinesis-stream")
	case !toKafka && !toKinesis:
		return usageErr("no destination: give --kafka-brokers or --kinesis-stream")
	}
	kafkaOnly, kinesisOnly := []string{"topic", "partitions"}, []string{"kinesis-endpoint", "region", "shards", "kpl"}
	for _, name := range kafkaOnly {
		if set[name] && toKinesis {
			return usageErr("--%s applies to Kafka, not to a Kinesis stream", name)
		}
	}
	for _, name := range kinesisOnly {
		if set[name] && toKafka {
			return usageErr("--%s applies to Kinesis, not to a Kafka topic", name)
		}
	}

	start, err := time.Parse(time.RFC3339, *startText)
	switch {
	case fs.NArg() > 0:
		return usageErr("unexpected argument %q", fs.Arg(0))
	case err != nil:
		return usageErr("--start: %v", err)
	case *perSecond > 0 && *speedup > 0:
		return usageErr("--rate and --speedup are exclusive: pace by wall clock or by event time")
	case *perSecond < 0 || *speedup < 0:
		return usageErr("--rate and --speedup must not be negative")
	case *count < 0:
		return usageErr("--count must not be negative")
	case *badRatio < 0 || *badRatio > 1:
		return usageErr("--bad-ratio must be between 0 and 1, got %v", *badRatio)
	case *partitions < 0 || *partitions > 1<<20:
		return usageErr("--partitions must be between 0 and %d", 1<<20)
	case *shards < 0 || *shards > 1<<20:
		return usageErr("--shards must be between 0 and %d", 1<<20)
	case *oversize < 1:
		return usageErr("--oversize-bytes must be positive")
	case toKafka && *topic == "":
		return usageErr("--topic must not be empty")
	}

	var (
		sink Sink
		dest string
	)
	if toKafka {
		dest = "kafka topic " + *topic
		sink, err = NewKafkaSink(ctx, strings.Split(*brokers, ","), *topic, int32(*partitions))
	} else {
		dest = "kinesis stream " + *stream
		sink, err = NewKinesisSink(ctx, *stream, *endpoint, *region, int32(*shards), *aggregate)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sinkd produce: %v\n", err)
		return 1
	}
	defer sink.Close()

	var p pace
	if *perSecond > 0 {
		p.limiter = rate.NewLimiter(rate.Limit(*perSecond), max(1, int(*perSecond/20)))
	}
	p.speedup = *speedup
	g := NewGenerator(*seed, start, WithFirstID(*firstID), WithOversize(*oversize))

	var c counters
	begin := time.Now()
	// Progress lines rather than one line rewritten with \r: the same on a
	// terminal as in a log (--progress), and like demo's and redrive's.
	startProgress := progress.Start
	if *showLines {
		startProgress = progress.Always
	}
	stopProgress := startProgress(stderr, "produce", "events", *count, c.events.Load)
	err = send(ctx, sink, g, *count, *badRatio, p, &c)
	interrupted := ctx.Err() != nil
	if err == nil || interrupted {
		// An interrupt stops generating, not delivering what was sent.
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
		err = sink.Flush(flushCtx)
		cancel()
	}
	stopProgress()
	st := c.stats(time.Since(begin))
	fmt.Fprintf(stderr, "sinkd produce: %d events (%d bad), %d bytes in %.2f s, %.0f events/s to %s\n",
		st.Events, st.Bad, st.Bytes, st.Elapsed.Seconds(), st.PerSecond(), dest)
	if interrupted && err == nil {
		// The summary alone would look like a finished run.
		if *count > 0 {
			fmt.Fprintf(stderr, "sinkd produce: interrupted after %d of %d events; every event sent was delivered\n", st.Events, *count)
		} else {
			fmt.Fprintf(stderr, "sinkd produce: interrupted; every event sent was delivered\n")
		}
	}
	if err != nil {
		if interrupted {
			fmt.Fprintf(stderr, "sinkd produce: interrupted, and some events may not have been delivered: %v\n", err)
		} else {
			fmt.Fprintf(stderr, "sinkd produce: %v\n", err)
		}
		return 1
	}
	return 0
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
