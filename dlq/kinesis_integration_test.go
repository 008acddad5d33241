//go:build integration

package dlq

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sinkd/sinkd/scripts/stack/stackenv"
)

// createStream makes a uniquely named stream on the stack's Kinesis and
// deletes it when the test ends.
func createStream(t *testing.T, api *kinesis.Client, prefix string, shards int32) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
	if _, err := api.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(name), ShardCount: aws.Int32(shards)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		api.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String(name)})
	})
	for {
		out, err := api.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		if out.StreamDescription.StreamStatus == types.StreamStatusActive {
			return name
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			t.Fatalf("stream %s not active: %v", name, err)
		}
	}
}

// streamRecords reads every record of every shard of a stream.
func streamRecords(t *testing.T, api *kinesis.Client, stream string) []types.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	shards, err := api.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	if err != nil {
		t.Fatal(err)
	}
	var out []types.Record
	for _, sh := range shards.Shards {
		it, err := api.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{
			StreamName: aws.String(stream), ShardId: sh.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon,
		})
		if err != nil {
			t.Fatal(err)
		}
		iter := it.ShardIterator
		for iter != nil {
			res, err := api.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, res.Records...)
			if len(res.Records) == 0 {
				break
			}
			iter = res.NextShardIterator
		}
	}
	return out
}

func TestKinesisSinkAndRedrive(t *testing.T) {
	env := stackenv.Load(t)
	env.Setenv(t)
	api, err := kinesisClient(env.KinesisEndpoint, env.Region, nil)
	if err != nil {
		t.Fatal(err)
	}
	dlqStream := createStream(t, api, "dlq", 2)
	tripStream := createStream(t, api, "trips", 1)

	sink, err := NewKinesis(t.Context(), KinesisConfig{Stream: dlqStream, Endpoint: env.KinesisEndpoint, Region: env.Region},
		Options{Pipeline: "taxi", Version: "test", MaxBuffered: 16})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	var sent []*Letter
	for i := range 40 {
		l := kafkaLetter(int64(i), StageDecode)
		if i%4 == 0 {
			l = kinesisLetter(fmt.Sprintf("4959033827149025660855969253836157109592157598913658%04d", i), int64(i%3))
		}
		sent = append(sent, l)
	}
	big := kafkaLetter(1000, StageOversize)
	big.Class = "record_too_large"
	big.Record.Value = bytes.Repeat([]byte(`{"x":1}`), 300_000) // 2.1 MB: more than a Kinesis record holds
	sent = append(sent, big)
	for _, l := range sent {
		if err := sink.Send(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// Every letter is in the stream once, as a JSON envelope keyed by its id.
	raw := streamRecords(t, api, dlqStream)
	byID := map[string]*Letter{}
	for _, r := range raw {
		l, err := FromJSON(r.Data)
		if err != nil {
			t.Fatal(err)
		}
		if aws.ToString(r.PartitionKey) != l.ID() {
			t.Errorf("partition key %s, want the letter id %s", aws.ToString(r.PartitionKey), l.ID())
		}
		if byID[l.ID()] != nil {
			t.Errorf("letter %s twice", l.ID())
		}
		byID[l.ID()] = l
	}
	if len(byID) != len(sent) {
		t.Fatalf("%d letters in the stream, want %d", len(byID), len(sent))
	}
	for _, want := range sent[:len(sent)-1] {
		got := byID[want.ID()]
		if got == nil {
			t.Fatalf("letter %s missing", want.ID())
		}
		assertSameLetter(t, got, stamped(want, Options{Pipeline: "taxi", Version: "test"}))
	}
	cut := byID[big.ID()]
	if !cut.Truncated() || cut.OriginalSize != len(big.Record.Value) || !bytes.HasPrefix(big.Record.Value, cut.Record.Value) || len(cut.Record.Value) < 500_000 {
		t.Errorf("oversize letter: kept %d bytes, original size %d", len(cut.Record.Value), cut.OriginalSize)
	}

	var out, errOut bytes.Buffer
	if code := Inspect(ctx, []string{"--kinesis-stream", dlqStream, "--kinesis-endpoint", env.KinesisEndpoint, "--stage", "opensearch", "--json"}, &out, &errOut); code != 0 {
		t.Fatalf("inspect exit %d: %s", code, errOut.String())
	}
	if n := strings.Count(out.String(), "\n"); n != 10 {
		t.Errorf("inspect printed %d opensearch letters, want 10", n)
	}

	source := []string{"--kinesis-stream", dlqStream, "--kinesis-endpoint", env.KinesisEndpoint}
	code, _, stderr := runRedrive(t, append(source, "--to-kinesis-stream", dlqStream)...)
	if code != 2 || !strings.Contains(stderr, "refusing") {
		t.Fatalf("redrive into the dead-letter stream: exit %d, %s", code, stderr)
	}
	redrive := append(source, "--stage", "opensearch", "--to-kinesis-stream", tripStream, "--rate", "1000")
	code, stdout, stderr := runRedrive(t, append(redrive, "--dry-run")...)
	if code != 0 || !strings.Contains(stdout, "would redrive 10 to kinesis:"+tripStream) {
		t.Fatalf("dry run: exit %d\n%s%s", code, stdout, stderr)
	}
	if recs := streamRecords(t, api, tripStream); len(recs) != 0 {
		t.Fatalf("dry run wrote %d records", len(recs))
	}
	code, stdout, stderr = runRedrive(t, redrive...)
	if code != 0 || !strings.Contains(stdout, "redriven 10 to kinesis:"+tripStream) {
		t.Fatalf("redrive: exit %d\n%s%s", code, stdout, stderr)
	}
	recs := streamRecords(t, api, tripStream)
	if len(recs) != 10 {
		t.Fatalf("%d records redriven, want 10", len(recs))
	}
	for _, r := range recs {
		want := sent[0].Record // every opensearch letter carries the same original
		if !bytes.Equal(r.Data, want.Value) || aws.ToString(r.PartitionKey) != string(want.Key) {
			t.Errorf("redriven %q key %q, want the original %q key %q", r.Data, aws.ToString(r.PartitionKey), want.Value, want.Key)
		}
	}
}

// TestKinesisDeadLetterStreamCreated: a missing dead-letter stream is created
// (and letters land in it); with create: false it is a start-up error.
func TestKinesisDeadLetterStreamCreated(t *testing.T) {
	env := stackenv.Load(t)
	env.Setenv(t) // the sink finds its credentials the way sinkd does: in the environment
	api, err := kinesisClient(env.KinesisEndpoint, env.Region, nil)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("dlq-created-%d", time.Now().UnixNano())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		api.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String(name)})
	})
	no := false
	if _, err := NewKinesis(t.Context(), KinesisConfig{Stream: name, Endpoint: env.KinesisEndpoint, Region: env.Region, Create: &no}, Options{}); err == nil || !strings.Contains(err.Error(), "dlq.kinesis.create is false") {
		t.Fatalf("create: false: err = %v", err)
	}
	sink, err := NewKinesis(t.Context(), KinesisConfig{Stream: name, Endpoint: env.KinesisEndpoint, Region: env.Region}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := sink.Send(ctx, kafkaLetter(1, StageDecode)); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(streamRecords(t, api, name)); n != 1 {
		t.Errorf("%d records in the created stream, want 1", n)
	}
}
