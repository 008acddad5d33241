//go:build integration

package taxi

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sinkd/sinkd/scripts/stack/stackenv"
	"github.com/sinkd/sinkd/source/kinesis/kpl"
)

func kinesisClient(t *testing.T, env stackenv.Env) *kinesis.Client {
	t.Helper()
	cfg, err := awsconfig.LoadDefaultConfig(context.Background(), awsconfig.WithRegion(env.Region))
	if err != nil {
		t.Fatal(err)
	}
	return kinesis.NewFromConfig(cfg, func(o *kinesis.Options) { o.BaseEndpoint = aws.String(env.KinesisEndpoint) })
}

// readStream reads every record of every shard from the start, until the
// shards are drained.
func readStream(t *testing.T, client *kinesis.Client, stream string) []types.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	desc, err := client.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: &stream})
	if err != nil {
		t.Fatal(err)
	}
	var out []types.Record
	for _, shard := range desc.StreamDescription.Shards {
		it, err := client.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{
			StreamName: &stream, ShardId: shard.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon,
		})
		if err != nil {
			t.Fatal(err)
		}
		iter := it.ShardIterator
		for iter != nil {
			res, err := client.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(1000)})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, res.Records...)
			if len(res.Records) == 0 && aws.ToInt64(res.MillisBehindLatest) == 0 {
				break
			}
			iter = res.NextShardIterator
		}
	}
	return out
}

func TestKinesisSinkRoundTrip(t *testing.T) {
	env := stackenv.Load(t)
	env.Setenv(t)
	client := kinesisClient(t, env)

	for _, aggregate := range []bool{false, true} {
		t.Run(fmt.Sprintf("kpl=%v", aggregate), func(t *testing.T) {
			stream := fmt.Sprintf("taxi-sink-test-%v-%d", aggregate, time.Now().UnixNano())
			ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
			defer cancel()
			t.Cleanup(func() {
				client.DeleteStream(context.Background(), &kinesis.DeleteStreamInput{StreamName: &stream})
			})

			sink, err := NewKinesisSink(ctx, stream, env.KinesisEndpoint, env.Region, 2, aggregate)
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close()
			const n = 3000
			newGen := func() *Generator { return NewGenerator(21, time.Time{}, WithFirstID(1), WithOversize(300_000)) }
			st, err := WriteTopic(ctx, sink, newGen(), n, 0.05)
			if err != nil {
				t.Fatal(err)
			}
			if st.Events != n {
				t.Fatalf("stats %+v", st)
			}
			want := map[string][]byte{}
			g := newGen()
			for range n {
				v, _ := g.Event(0.05)
				id, _ := g.Last()
				want[strconv.FormatInt(id, 10)] = v
			}

			records := readStream(t, client, stream)
			seen := map[string]bool{}
			for _, r := range records {
				if len(r.Data)+len(aws.ToString(r.PartitionKey)) > 1<<20 {
					t.Errorf("record of %d bytes", len(r.Data))
				}
				if got := kpl.IsAggregated(r.Data); got != aggregate {
					t.Fatalf("record aggregated=%v, want %v", got, aggregate)
				}
				users, err := kpl.Deaggregate(r.Data, aws.ToString(r.PartitionKey))
				if err != nil {
					t.Fatal(err)
				}
				if aggregate && users[0].PartitionKey != aws.ToString(r.PartitionKey) {
					t.Errorf("aggregate keyed %s, first record %s", aws.ToString(r.PartitionKey), users[0].PartitionKey)
				}
				for _, u := range users {
					if seen[u.PartitionKey] {
						t.Fatalf("trip %s delivered twice", u.PartitionKey)
					}
					seen[u.PartitionKey] = true
					if !bytes.Equal(u.Data, want[u.PartitionKey]) {
						t.Fatalf("trip %s: value differs from what was generated", u.PartitionKey)
					}
				}
			}
			if len(seen) != n {
				t.Fatalf("read %d trips, want %d", len(seen), n)
			}
			if !aggregate && len(records) != n {
				t.Errorf("%d Kinesis records for %d events", len(records), n)
			}
			// About 100 user records an aggregate; oversized events make some
			// aggregates close early on the size limit.
			if aggregate && (len(records) < n/maxAggregateRecs || len(records) > n/20) {
				t.Errorf("%d aggregates for %d events", len(records), n)
			}
		})
	}
}

func TestKinesisSinkRejectsRecordsOverLimit(t *testing.T) {
	env := stackenv.Load(t)
	env.Setenv(t)
	stream := fmt.Sprintf("taxi-sink-limit-%d", time.Now().UnixNano())
	client := kinesisClient(t, env)
	t.Cleanup(func() {
		client.DeleteStream(context.Background(), &kinesis.DeleteStreamInput{StreamName: &stream})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, aggregate := range []bool{false, true} {
		sink, err := NewKinesisSink(ctx, stream, env.KinesisEndpoint, env.Region, 1, aggregate)
		if err != nil {
			t.Fatal(err)
		}
		if err := sink.Send(ctx, []byte("1"), make([]byte, 1<<20)); err == nil {
			t.Errorf("aggregate=%v: a 1 MiB value plus its key was accepted", aggregate)
		}
	}
}

func TestProduceToKinesis(t *testing.T) {
	env := stackenv.Load(t)
	env.Setenv(t)
	t.Setenv("SINKD_KAFKA_BROKERS", "")
	stream := fmt.Sprintf("taxi-produce-%d", time.Now().UnixNano())
	client := kinesisClient(t, env)
	t.Cleanup(func() {
		client.DeleteStream(context.Background(), &kinesis.DeleteStreamInput{StreamName: &stream})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	code := Produce(ctx, []string{"--kinesis-stream", stream, "--shards", "1", "--kpl", "--count", "1000", "--rate", "5000", "--first-id", "500"}, &bytes.Buffer{}, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	ids := map[string]bool{}
	for _, r := range readStream(t, client, stream) {
		users, err := kpl.Deaggregate(r.Data, aws.ToString(r.PartitionKey))
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range users {
			ids[u.PartitionKey] = true
		}
	}
	if len(ids) != 1000 || !ids["500"] || !ids["1499"] {
		t.Errorf("read %d distinct trips", len(ids))
	}
}
