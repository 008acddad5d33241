package daemon

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sinkd/sinkd/buckets"
	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/dlq"
	"github.com/sinkd/sinkd/internal/cli"
	"github.com/sinkd/sinkd/internal/kafkaclient"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/schema"
)

// cmdTap is a dry run: it reads records and shows what the pipeline would do
// with each (route, bucket path, object key, index and id, or the dead
// letter), writing nothing and committing nothing.
func cmdTap(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sinkd tap", flag.ContinueOnError)
	flagPath := fs.String("config", "", "configuration file (default: the argument, else $SINKD_CONFIG)")
	n := fs.Int("n", 10, "records to read")
	file := fs.String("file", "", "read record values from this file, one per line, instead of the source")
	from := fs.String("from", "end", "Kafka: read the last --n records of each partition (end) or the first (start)")
	fs.Usage = cli.Usage(fs, `Usage: sinkd tap [--config] FILE [--n N] [--file VALUES] [--from start|end]

A dry run: reads N records from the configured source (Kafka, without joining
its consumer group: no offsets are committed) or from a file of values, and
prints for each what the pipeline would do: the route, the bucket path, the
object key prefix, the OpenSearch index and id, or the dead-letter stage and
reason. Nothing is written anywhere.`)
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
	s, err := schema.New(cfg.Schema.Fields)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return cli.ExitConfig
	}
	routes, err := compileRoutes(cfg, s)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return cli.ExitConfig
	}
	var recs []record.Record
	switch {
	case *file != "":
		recs, err = tapFile(*file, *n)
	case cfg.Source.Kafka != nil:
		recs, err = tapKafka(ctx, cfg.Source.Kafka.Brokers, cfg.Source.Kafka.Topics, cfg.Source.Kafka, *n, *from == "start")
	default:
		err = errors.New("tap reads Kafka sources or --file; for Kinesis, save values to a file and pass --file")
	}
	if err != nil {
		fmt.Fprintf(stderr, "sinkd tap: %v\n", err)
		return cli.ExitFailure
	}
	dec := s.NewDecoder()
	now := time.Now()
	for i := range recs {
		tapOne(stdout, cfg.MaxRecordSize.Bytes(), dec, routes, cfg.Routes, &recs[i], now)
	}
	fmt.Fprintf(stdout, "%d records; nothing written, nothing committed\n", len(recs))
	return cli.ExitOK
}

func tapOne(w io.Writer, maxSize int64, dec *schema.Decoder, routes []*route, rcfg []config.Route, rec *record.Record, now time.Time) {
	where := rec.Partition.Stream + "/" + partitionName(rec.Partition.Shard, rec.Partition.Partition) + "@" + rec.Position.String()
	if maxSize > 0 && int64(len(rec.Value)) > maxSize {
		fmt.Fprintf(w, "%s  dead letter %s/%s: %d bytes > max_record_size\n", where, dlq.StageOversize, "oversize", len(rec.Value))
		return
	}
	row, err := dec.Decode(rec.Value, make(parquet.Row, 0, 32))
	if err != nil {
		stage, class := dlq.StageSchema, "other"
		var se *schema.Error
		if errors.As(err, &se) {
			class = se.Class
			switch se.Class {
			case schema.ClassMalformedJSON, schema.ClassNotUTF8, schema.ClassEmpty, schema.ClassNotObject, schema.ClassTooDeep:
				stage = dlq.StageDecode
			}
		}
		fmt.Fprintf(w, "%s  dead letter %s/%s: %v\n", where, stage, class, err)
		return
	}
	matched := false
	for i, r := range routes {
		if r.cond != nil && !r.cond.Match(row) {
			continue
		}
		matched = true
		var parts []string
		if r.path != nil {
			p, err := r.path.Append(nil, row, rec, now)
			if err != nil {
				fmt.Fprintf(w, "%s  route %s: dead letter %s/%s: %v\n", where, r.name, dlq.StageBucket, bucketClass(err), err)
				continue
			}
			parts = append(parts, "path "+string(p), "key "+strings.TrimSuffix(r.storeURL, "/")+"/"+string(p)+"/"+rcfg[i].Parquet.FilePrefix+".*.parquet")
		}
		if r.id != nil {
			id, err := r.id.Append(nil, row, rec, now)
			if err != nil {
				fmt.Fprintf(w, "%s  route %s: dead letter %s/%s (id): %v\n", where, r.name, dlq.StageBucket, bucketClass(err), err)
				continue
			}
			for _, t := range r.indexes {
				ix, err := t.Append(nil, row, rec, now)
				if err != nil {
					parts = append(parts, fmt.Sprintf("index: dead letter %s/%s: %v", dlq.StageBucket, bucketClass(err), err))
					continue
				}
				parts = append(parts, "index "+string(ix)+" id "+string(id))
			}
		}
		fmt.Fprintf(w, "%s  route %s: %s\n", where, r.name, strings.Join(parts, "  "))
	}
	if !matched {
		fmt.Fprintf(w, "%s  no route matches (the record is not written)\n", where)
	}
}

func bucketClass(err error) string {
	var be *buckets.Error
	if errors.As(err, &be) {
		return be.Class
	}
	return "other"
}

func tapFile(path string, n int) ([]record.Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var recs []record.Record
	for line := int64(1); sc.Scan() && len(recs) < n; line++ {
		recs = append(recs, record.Record{Partition: record.PartitionID{Stream: path}, Position: record.Position{Offset: line},
			Value: append([]byte(nil), sc.Bytes()...), Timestamp: time.Now()})
	}
	return recs, sc.Err()
}

// tapKafka reads up to n records without a consumer group (nothing is
// committed): the last n of each partition, or the first n, until n are read
// or nothing more arrives for 5 s.
func tapKafka(ctx context.Context, brokers, topics []string, k *config.Kafka, n int, fromStart bool) ([]record.Record, error) {
	opts, err := kafkaclient.Opts(ctx, kafkaclient.Options{Brokers: brokers, TLS: k.TLS, SASL: k.SASL, DialTimeout: toolDialTimeout})
	if err != nil {
		return nil, err
	}
	start := kgo.NewOffset().AtEnd().Relative(-int64(n))
	if fromStart {
		start = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(start))...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	err = cl.Ping(pctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("kafka %s does not answer: %w", strings.Join(brokers, ","), err)
	}
	var recs []record.Record
	for len(recs) < n {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		fetches := cl.PollFetches(fctx)
		cancel()
		if fetches.IsClientClosed() || ctx.Err() != nil {
			break
		}
		got := 0
		fetches.EachRecord(func(r *kgo.Record) {
			got++
			if len(recs) >= n {
				return
			}
			rec := record.Record{Source: record.Kafka, Partition: record.PartitionID{Stream: r.Topic, Partition: r.Partition},
				Position: record.Position{Offset: r.Offset}, Key: r.Key, Value: r.Value, Timestamp: r.Timestamp}
			for _, h := range r.Headers {
				rec.Headers = append(rec.Headers, record.Header{Key: h.Key, Value: h.Value})
			}
			recs = append(recs, rec)
		})
		for _, fe := range fetches.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				return recs, fmt.Errorf("fetching %s/%d: %w", fe.Topic, fe.Partition, fe.Err)
			}
		}
		if got == 0 {
			break // nothing more within 5 s
		}
	}
	return recs, nil
}
