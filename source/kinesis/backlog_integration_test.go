//go:build integration

package kinesis

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/scripts/stack/stackenv"
	"github.com/sinkd/sinkd/source"
)

// viewLeases is a lease holder whose view the test sets: what other
// instances hold cannot be arranged otherwise without running them.
type viewLeases struct {
	*localLeases
	v map[string]leaseView
}

func (l *viewLeases) view() map[string]leaseView { return l.v }

// TestBacklogsProbeShardsWithoutLiveReader runs against kinesalite: a stream
// of seven shards in as many states; Backlogs reports pending exactly the
// shards with unread records and no live reader, aged by their first unread
// record, without I/O on the call.
func TestBacklogsProbeShardsWithoutLiveReader(t *testing.T) {
	env := stackenv.Load(t)
	env.Setenv(t)
	stream := "sinkd-backlog-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := &Config{
		Stream: stream, Endpoint: env.KinesisEndpoint, Region: env.Region, Start: "latest",
		ListInterval: conf.Duration(30 * time.Second), RequestTimeout: conf.Duration(5 * time.Second), PollInterval: conf.Duration(time.Second),
	}
	s, err := New(ctx, cfg, "inst", nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	if _, err := s.api.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(stream), ShardCount: aws.Int32(7)}); err != nil {
		t.Fatal(err)
	}
	w := kinesis.NewStreamExistsWaiter(s.api, func(o *kinesis.StreamExistsWaiterOptions) { o.MinDelay, o.MaxDelay = 100*time.Millisecond, time.Second })
	if err := w.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(stream)}, time.Minute); err != nil {
		t.Fatal(err)
	}
	shards, err := s.listShards(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id := func(i int) string { return shards[i].id }
	// One record in each of shards 0..5 (by explicit hash key); shard 6 stays empty.
	seqs := map[string]string{}
	for i := 0; i < 6; i++ {
		resp, err := s.api.PutRecord(ctx, &kinesis.PutRecordInput{
			StreamName: aws.String(stream), PartitionKey: aws.String("k"), Data: []byte("x"),
			ExplicitHashKey: aws.String(hashStart(ctx, t, s, id(i))),
		})
		if err != nil {
			t.Fatal(err)
		}
		if *resp.ShardId != id(i) {
			t.Fatalf("record for %s went to %s", id(i), *resp.ShardId)
		}
		seqs[id(i)] = *resp.SequenceNumber
	}
	time.Sleep(1100 * time.Millisecond) // so that pending records are at least a second old

	shards[5].parents = []string{"gone-parent"} // a child: read from its first record whatever start says
	past := &source.Start{Position: record.Position{Seq: seqs[id(4)]}, After: true}
	l := &viewLeases{localLeases: newLocalLeases("inst"), v: map[string]leaseView{
		id(0): {},                                                                              // nobody's, never committed: start latest, nothing to read
		id(1): {start: &source.Start{Position: record.Position{Seq: seqs[id(1)]}}},             // free, its record unread
		id(2): {live: true, start: &source.Start{Position: record.Position{Seq: seqs[id(2)]}}}, // another instance reads it
		id(3): {end: true},                                                                     // finished
		id(4): {start: past},                                                                   // owner stopped renewing; its record already committed
		id(5): {},                                                                              // a child waiting for its parent
		id(6): {start: &source.Start{Position: record.Position{Seq: "0"}}},                     // free, empty
	}}
	s.leases = l
	want := map[string]bool{id(1): true, id(5): true}
	deadline := time.Now().Add(20 * time.Second)
	for {
		s.refreshBacklog(ctx, shards)
		got := map[string]source.Backlog{}
		for _, b := range s.Backlogs() {
			got[b.ID.Shard] = b
			if b.GroupRecords != -1 {
				t.Fatalf("%s: GroupRecords %d, want -1 (Kinesis cannot count)", b.ID.Shard, b.GroupRecords)
			}
		}
		if len(got) != len(shards) {
			t.Fatalf("Backlogs lists %d shards, want %d", len(got), len(shards))
		}
		ok := true
		for sh, b := range got {
			if b.Pending != want[sh] {
				ok = false
			}
		}
		if ok {
			for sh := range want {
				if ms := got[sh].PendingMillis; ms < 1000 {
					t.Errorf("%s: PendingMillis %d, want the age of its record (over 1 s)", sh, ms)
				}
			}
			for sh, b := range got {
				if !want[sh] && b.PendingMillis != -1 {
					t.Errorf("%s: not pending, PendingMillis %d, want -1", sh, b.PendingMillis)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Backlogs = %+v; want pending exactly %v", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Taken by this instance: still pending until its reader answers.
	l.v[id(1)] = leaseView{live: true, held: true, start: l.v[id(1)].start}
	s.refreshBacklog(ctx, shards)
	for _, b := range s.Backlogs() {
		if b.ID.Shard == id(1) && !b.Pending {
			t.Fatal("a shard taken but not read yet dropped out of the backlog")
		}
	}
}

// hashStart returns the starting hash key of shard.
func hashStart(ctx context.Context, t *testing.T, s *Source, shard string) string {
	t.Helper()
	resp, err := s.api.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(s.cfg.Stream)})
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range resp.Shards {
		if *sh.ShardId == shard {
			return *sh.HashKeyRange.StartingHashKey
		}
	}
	t.Fatalf("no shard %s", shard)
	return ""
}
