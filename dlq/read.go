package dlq

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/sinkd/sinkd/config/conf"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// errStop ends a read early without an error (the --limit was reached).
var errStop = errors.New("stop reading")

// visit receives each letter read; returning errStop ends the read.
type visit func(*Letter) error

// readKafka calls fn for every letter in topic, from the start of each
// partition to its end at the time of the call. Records that are not
// letters are reported to warn and skipped.
func readKafka(ctx context.Context, brokers []string, topic string, tls conf.TLS, sasl conf.SASL, warn io.Writer, fn visit) error {
	opts, err := kafkaClientOpts(brokers, tls, sasl, nil)
	if err != nil {
		return err
	}
	admin, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	listCtx, cancel := context.WithTimeout(ctx, kafkaRetryTimeout)
	adm := kadm.NewClient(admin)
	starts, err := adm.ListStartOffsets(listCtx, topic)
	if err == nil {
		err = starts.Error()
	}
	var ends kadm.ListedOffsets
	if err == nil {
		ends, err = adm.ListEndOffsets(listCtx, topic)
	}
	if err == nil {
		err = ends.Error()
	}
	cancel()
	admin.Close()
	if err != nil {
		return fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	remaining := map[int32]int64{} // partition -> end offset still to reach
	from := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		start, _ := starts.Lookup(topic, o.Partition)
		if o.Offset > start.Offset {
			remaining[o.Partition] = o.Offset
			from[o.Partition] = kgo.NewOffset().At(start.Offset)
		}
	})
	if len(remaining) == 0 {
		return nil
	}
	client, err := kgo.NewClient(append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}))...)
	if err != nil {
		return err
	}
	defer client.Close()
	for len(remaining) > 0 {
		pollCtx, cancel := context.WithTimeout(ctx, kafkaRetryTimeout)
		fetches := client.PollFetches(pollCtx)
		stalled := pollCtx.Err() != nil
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if stalled {
			return fmt.Errorf("read %s: no progress for %s", topic, kafkaRetryTimeout)
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			ferr = errors.Join(ferr, fmt.Errorf("fetch %s/%d: %w", t, p, err))
		})
		if ferr != nil {
			return ferr
		}
		var stop error
		fetches.EachRecord(func(r *kgo.Record) {
			end, ok := remaining[r.Partition]
			if stop != nil || !ok {
				return
			}
			if r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
			if r.Offset >= end {
				return
			}
			l, err := FromKafka(r)
			if err != nil {
				fmt.Fprintf(warn, "skipping %s/%d@%d: %v\n", r.Topic, r.Partition, r.Offset, err)
				return
			}
			stop = fn(l)
		})
		if stop != nil {
			return stop
		}
	}
	return nil
}

// kinesisPollInterval keeps a reader under the 5 GetRecords per second and
// shard that all consumers of a stream share.
const kinesisPollInterval = 250 * time.Millisecond

// readKinesis calls fn for every letter in stream, shard by shard, from
// TRIM_HORIZON until the shard is caught up.
func readKinesis(ctx context.Context, api *kinesis.Client, stream string, warn io.Writer, fn visit) error {
	call, cancel := context.WithTimeout(ctx, kinesisCallTimeout)
	shards, err := api.ListShards(call, &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	cancel()
	if err != nil {
		return fmt.Errorf("list shards of %s: %w", stream, err)
	}
	for _, sh := range shards.Shards {
		if err := readShard(ctx, api, stream, aws.ToString(sh.ShardId), warn, fn); err != nil {
			return err
		}
	}
	return nil
}

func readShard(ctx context.Context, api *kinesis.Client, stream, shard string, warn io.Writer, fn visit) error {
	call, cancel := context.WithTimeout(ctx, kinesisCallTimeout)
	it, err := api.GetShardIterator(call, &kinesis.GetShardIteratorInput{
		StreamName: aws.String(stream), ShardId: aws.String(shard),
		ShardIteratorType: types.ShardIteratorTypeTrimHorizon,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("shard iterator %s/%s: %w", stream, shard, err)
	}
	iter := it.ShardIterator
	for iter != nil {
		call, cancel := context.WithTimeout(ctx, kinesisCallTimeout)
		out, err := api.GetRecords(call, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(1000)})
		cancel()
		if err != nil {
			return fmt.Errorf("get records %s/%s: %w", stream, shard, err)
		}
		for _, r := range out.Records {
			l, err := FromJSON(r.Data)
			if err != nil {
				fmt.Fprintf(warn, "skipping %s/%s@%s: %v\n", stream, shard, aws.ToString(r.SequenceNumber), err)
				continue
			}
			if err := fn(l); err != nil {
				return err
			}
		}
		if len(out.Records) == 0 && aws.ToInt64(out.MillisBehindLatest) == 0 {
			return nil // caught up
		}
		iter = out.NextShardIterator
		if err := sleep(ctx, kinesisPollInterval); err != nil {
			return err
		}
	}
	return nil // closed shard read to its end
}

// maxLine bounds one line of a dead-letter file: a letter near the 1 MiB
// Kinesis limit, base64-encoded, fits with room to spare.
const maxLine = 16 << 20

// readFile calls fn for every letter in a JSON-lines file.
func readFile(path string, warn io.Writer, fn visit) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		l, err := FromJSON(sc.Bytes())
		if err != nil {
			fmt.Fprintf(warn, "skipping %s:%d: %v\n", path, line, err)
			continue
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	return sc.Err()
}
