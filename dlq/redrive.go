package dlq

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/internal/progress"
)

// redriveTarget writes original records back to a source stream.
type redriveTarget interface {
	write(ctx context.Context, l *Letter) error
	// close waits for every write to be acknowledged.
	close(ctx context.Context) error
	// acked is how many writes the destination acknowledged.
	acked() int
}

// Redrive is `sinkd dlq redrive`: it writes the original records of the
// selected letters back to a source stream, rate-limited, without loops.
func Redrive(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var sel selection
	fs := newFlagSet("sinkd dlq redrive",
		"sinkd dlq redrive SOURCE [filters] (--to-kafka-brokers B --to-topic T | --to-kinesis-stream S [--to-kinesis-endpoint E]) [--rate N] [--dry-run] [--max-redrives N]",
		`Writes the original key, value and headers of the selected dead letters back to a
source stream. A Kafka record gets the header `+HeaderRedrive+` (its redrive count);
letters already redriven --max-redrives times, truncated letters and repeated ids
are skipped, and writing into the dead-letter stream itself is refused.`)
	sel.register(fs)
	var (
		toBrokers  = fs.String("to-kafka-brokers", "", "Kafka brokers to write to (default: --kafka-brokers)")
		toTopic    = fs.String("to-topic", "", "Kafka topic to write to")
		toStream   = fs.String("to-kinesis-stream", "", "Kinesis stream to write to")
		toEndpoint = fs.String("to-kinesis-endpoint", "", "Kinesis endpoint to write to (default: --kinesis-endpoint)")
		perSecond  = fs.Float64("rate", 100, "records written per second (0: unlimited)")
		dryRun     = fs.Bool("dry-run", false, "list what would be redriven, write nothing")
		maxRedrive = fs.Int("max-redrives", 3, "skip letters already redriven this many times (default: the pipeline's dlq.max_redrives stamped on each letter, else 3)")
	)
	if code := parseArgs(fs, args, &sel, stdout, stderr); code >= 0 {
		return code
	}
	// With --config the destination defaults to the pipeline's source, with
	// its security (TLS, SASL, MSK IAM).
	toTLS, toSASL, toRegion := sel.tls, sel.sasl, sel.region
	if c := sel.cfg; c != nil && *toTopic == "" && *toStream == "" {
		switch {
		case c.Kafka != nil && len(c.Kafka.Topics) == 1:
			*toTopic = c.Kafka.Topics[0]
			if *toBrokers == "" {
				*toBrokers = strings.Join(c.Kafka.Brokers, ",")
			}
			toTLS, toSASL = c.Kafka.TLS, c.Kafka.SASL
		case c.Kinesis != nil:
			*toStream = c.Kinesis.Stream
			if *toEndpoint == "" {
				*toEndpoint = c.Kinesis.Endpoint
			}
			toRegion = c.Kinesis.Region
		}
	}
	if *toBrokers == "" {
		*toBrokers = sel.kafkaBrokers
	}
	if *toEndpoint == "" {
		*toEndpoint = sel.kinesisEndpoint
	}
	if err := checkTarget(&sel, *toBrokers, *toTopic, *toStream, *toEndpoint, *perSecond, *maxRedrive); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	dest := "kafka:" + *toTopic
	if *toStream != "" {
		dest = "kinesis:" + *toStream
	}

	var target redriveTarget
	if !*dryRun {
		var err error
		if *toTopic != "" {
			target, err = newKafkaTarget(*toBrokers, *toTopic, toTLS, toSASL)
		} else {
			target, err = newKinesisTarget(*toStream, *toEndpoint, toRegion)
		}
		if err != nil {
			fmt.Fprintf(stderr, "redrive: %v\n", err)
			return 1
		}
	}
	limit := rate.Inf
	if *perSecond > 0 {
		limit = rate.Limit(*perSecond)
	}
	limiter := rate.NewLimiter(limit, max(1, int(*perSecond)))

	var st redriveStats
	var written atomic.Int64 // for the progress line, read from its goroutine
	stopProgress := progress.Start(stderr, "redrive", "records", 0, written.Load)
	seen := map[string]bool{}
	explicitLimit := false
	fs.Visit(func(f *flag.Flag) { explicitLimit = explicitLimit || f.Name == "max-redrives" })
	err := sel.each(ctx, stderr, func(l *Letter) error {
		id := l.ID()
		limit := *maxRedrive
		if n, err := strconv.Atoi(l.Details[DetailMaxRedrives]); err == nil && n > 0 && !explicitLimit {
			limit = n
		}
		switch {
		case seen[id]:
			st.duplicates++
			return nil
		case l.RedriveCount >= limit:
			st.exhausted++
			fmt.Fprintf(stderr, "skipping %s: redriven %d times already (limit %d)\n", id, l.RedriveCount, limit)
			return nil
		case l.Truncated():
			st.truncated++
			fmt.Fprintf(stderr, "skipping %s: value truncated to %d of %d bytes; replay it from %s\n", id, len(l.Record.Value), l.OriginalSize, l.Record.Coordinates())
			return nil
		}
		seen[id] = true
		if *dryRun {
			st.redriven++
			_, err := fmt.Fprintf(stdout, "would redrive %s %s (%s/%s) to %s\n", id, l.Record.Coordinates(), l.Stage, l.Class, dest)
			return err
		}
		if err := limiter.Wait(ctx); err != nil {
			return err
		}
		st.attempted++
		written.Add(1)
		if err := target.write(ctx, l); err != nil {
			return fmt.Errorf("redrive %s: %w", id, err)
		}
		return nil
	})
	stopProgress()
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "redrive: interrupted: the summary below counts only what was written before the signal")
	}
	if target != nil {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		err = errors.Join(err, target.close(closeCtx))
		cancel()
		// Only what the destination acknowledged counts as redriven.
		st.redriven = target.acked()
	}
	verb := "redriven"
	if *dryRun {
		verb = "would redrive"
	}
	failed := ""
	if n := st.attempted - st.redriven; !*dryRun && n > 0 {
		failed = fmt.Sprintf(", %d NOT written", n)
	}
	if !*dryRun {
		dest += " (acknowledged)"
	}
	fmt.Fprintf(stdout, "%s %d to %s%s; skipped %d at --max-redrives, %d duplicate ids, %d truncated\n",
		verb, st.redriven, dest, failed, st.exhausted, st.duplicates, st.truncated)
	if err == nil && !*dryRun && st.redriven != st.attempted {
		err = fmt.Errorf("%d of %d records were not acknowledged", st.attempted-st.redriven, st.attempted)
	}
	if err != nil {
		fmt.Fprintf(stderr, "redrive: %v\n", err)
		return 1
	}
	return 0
}

type redriveStats struct {
	attempted, redriven, exhausted, duplicates, truncated int
}

// checkTarget validates the destination flags and refuses a destination
// that is the dead-letter stream being read, which would loop forever.
func checkTarget(sel *selection, toBrokers, toTopic, toStream, toEndpoint string, perSecond float64, maxRedrive int) error {
	switch {
	case (toTopic == "") == (toStream == ""):
		return errors.New("give exactly one destination: --to-topic (with --to-kafka-brokers) or --to-kinesis-stream")
	case toTopic != "" && toBrokers == "":
		return errors.New("--to-topic needs --to-kafka-brokers")
	case perSecond < 0:
		return errors.New("--rate must not be negative")
	case maxRedrive < 1:
		return errors.New("--max-redrives must be at least 1")
	case toTopic != "" && toTopic == sel.topic && sameBrokers(toBrokers, sel.kafkaBrokers):
		return fmt.Errorf("refusing to redrive topic %s into itself", toTopic)
	case toStream != "" && toStream == sel.kinesisStream && toEndpoint == sel.kinesisEndpoint:
		return fmt.Errorf("refusing to redrive stream %s into itself", toStream)
	}
	return nil
}

// sameBrokers reports whether two broker lists share a broker, in which
// case they are taken to be the same cluster.
func sameBrokers(a, b string) bool {
	norm := func(s string) []string {
		var out []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, strings.ToLower(p))
			}
		}
		return out
	}
	bs := norm(b)
	for _, x := range norm(a) {
		if slices.Contains(bs, x) {
			return true
		}
	}
	return false
}

// kafkaTarget produces asynchronously, counts acknowledged records and
// reports the first failure.
type kafkaTarget struct {
	client         *kgo.Client
	brokers, topic string
	checked        bool
	ok             atomic.Int64
	mu             sync.Mutex
	err            error
}

func newKafkaTarget(brokers, topic string, tls conf.TLS, sasl conf.SASL) (*kafkaTarget, error) {
	opts, err := kafkaClientOpts(strings.Split(brokers, ","), tls, sasl, nil)
	if err != nil {
		return nil, err
	}
	client, err := kgo.NewClient(append(opts,
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProduceRequestTimeout(kafkaProduceTimeout),
		kgo.RecordDeliveryTimeout(time.Minute),
	)...)
	if err != nil {
		return nil, err
	}
	return &kafkaTarget{client: client, brokers: brokers, topic: topic}, nil
}

// check fails the first write when the broker does not answer or the topic
// does not exist, instead of a delivery timeout per record.
func (t *kafkaTarget) check(ctx context.Context) error {
	lookup, cancel := context.WithTimeout(ctx, kafkaRetryTimeout)
	defer cancel()
	topics, err := kadm.NewClient(t.client).ListTopics(lookup, t.topic)
	if err != nil {
		return fmt.Errorf("looking up topic %s on %s: %w", t.topic, t.brokers, err)
	}
	if tp, ok := topics[t.topic]; !ok || tp.Err != nil {
		return fmt.Errorf("topic %s does not exist on %s (or cannot be described): %v", t.topic, t.brokers, tp.Err)
	}
	return nil
}

func (t *kafkaTarget) write(ctx context.Context, l *Letter) error {
	if !t.checked {
		if err := t.check(ctx); err != nil {
			return err
		}
		t.checked = true
	}
	t.mu.Lock()
	err := t.err
	t.mu.Unlock()
	if err != nil {
		return err
	}
	r := &kgo.Record{Key: l.Record.Key, Value: l.Record.Value}
	for _, h := range l.Record.Headers {
		if h.Key != HeaderRedrive {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
	}
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderRedrive, Value: []byte(strconv.Itoa(l.RedriveCount + 1))})
	t.client.Produce(ctx, r, func(_ *kgo.Record, err error) {
		if err == nil {
			t.ok.Add(1)
		} else {
			t.mu.Lock()
			t.err = errors.Join(t.err, err)
			t.mu.Unlock()
		}
	})
	return nil
}

func (t *kafkaTarget) acked() int { return int(t.ok.Load()) }

func (t *kafkaTarget) close(ctx context.Context) error {
	defer t.client.Close()
	if err := t.client.Flush(ctx); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// kinesisTarget writes one record per call, retrying a few times.
type kinesisTarget struct {
	api    *kinesis.Client
	stream string
	ok     int
}

func (t *kinesisTarget) acked() int { return t.ok }

// kinesisWriteAttempts bounds the retries of one redriven record.
const kinesisWriteAttempts = 5

func newKinesisTarget(stream, endpoint, region string) (*kinesisTarget, error) {
	api, err := kinesisClient(endpoint, region, nil)
	if err != nil {
		return nil, err
	}
	return &kinesisTarget{api: api, stream: stream}, nil
}

func (t *kinesisTarget) write(ctx context.Context, l *Letter) error {
	// A Kinesis source record's key is its partition key; keeping it keeps
	// the record on the shard its producer chose.
	key := string(l.Record.Key)
	if key == "" || len(key) > 256 {
		key = l.ID()
	}
	var err error
	for attempt := range kinesisWriteAttempts {
		call, cancel := context.WithTimeout(ctx, kinesisCallTimeout)
		_, err = t.api.PutRecord(call, &kinesis.PutRecordInput{
			StreamName: aws.String(t.stream), PartitionKey: aws.String(key), Data: l.Record.Value,
		})
		cancel()
		if err == nil {
			t.ok++
			return nil
		}
		if serr := sleep(ctx, retryDelay(attempt)); serr != nil {
			return errors.Join(err, serr)
		}
	}
	return err
}

func (*kinesisTarget) close(context.Context) error { return nil }
