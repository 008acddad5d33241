package kinesis

import (
	"context"
	"log/slog"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"

	"github.com/sinkd/sinkd/checkpoint"
	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/source"
	"github.com/sinkd/sinkd/source/kinesis/kpl"
)

func testSource() *Source {
	return &Source{cfg: &Config{Stream: "s"}, log: slog.New(slog.DiscardHandler), m: newMetrics(nil, "s"), queue: newByteGate(sourceBytes)}
}

func TestConvert(t *testing.T) {
	agg, err := kpl.Aggregate([]kpl.UserRecord{{PartitionKey: "a", Data: []byte("one")}, {PartitionKey: "b", Data: []byte("two")}})
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), agg...)
	bad[len(bad)-1] ^= 1
	type out struct {
		pos   record.Position
		key   string
		value string
		class string
	}
	tests := []struct {
		name string
		data []byte
		want []out
	}{
		{"plain record passes through with sub 0", []byte("plain"), []out{{record.Position{Seq: "7"}, "pk", "plain", ""}}},
		{"aggregate unpacks with sub-sequence positions", agg, []out{{record.Position{Seq: "7"}, "a", "one", ""}, {record.Position{Seq: "7", Sub: 1}, "b", "two", ""}}},
		{"corrupt aggregate travels whole as a failure", bad, []out{{record.Position{Seq: "7"}, "pk", string(bad), kpl.ClassChecksum}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &reader{s: testSource(), shard: "shardId-1"}
			recs := r.convert([]types.Record{{SequenceNumber: aws.String("7"), PartitionKey: aws.String("pk"), Data: tt.data, ApproximateArrivalTimestamp: aws.Time(time.Unix(5, 0))}})
			var got []out
			for _, rec := range recs {
				o := out{rec.Position, string(rec.Key), string(rec.Value), ""}
				if rec.Failure != nil {
					o.class = rec.Failure.Class
					if rec.Failure.Stage != "kpl" {
						t.Errorf("failure stage %q, want kpl", rec.Failure.Stage)
					}
				}
				if rec.Partition != (record.PartitionID{Stream: "s", Shard: "shardId-1"}) || rec.Source != record.Kinesis || !rec.Timestamp.Equal(time.Unix(5, 0)) {
					t.Errorf("record coordinates %+v", rec)
				}
				got = append(got, o)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestComplete(t *testing.T) {
	last := record.Position{Seq: "10", Sub: 2}
	tests := []struct {
		name    string
		ended   bool
		hasLast bool
		start   *source.Start
		want    bool
	}{
		{"not ended", false, true, &source.Start{Position: last, After: true}, false},
		{"ended, nothing read", true, false, nil, true},
		{"ended, not committed", true, true, nil, false},
		{"committed at the last record, not after", true, true, &source.Start{Position: last}, false},
		{"committed after the last record", true, true, &source.Start{Position: last, After: true}, true},
		{"committed before the last sub-record", true, true, &source.Start{Position: record.Position{Seq: "10", Sub: 1}, After: true}, false},
		{"committed past it", true, true, &source.Start{Position: record.Position{Seq: "11"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &reader{ended: tt.ended, hasLast: tt.hasLast, last: last}
			if got := r.complete(tt.start); got != tt.want {
				t.Errorf("complete = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	for n := 1; n < 40; n++ {
		d := failureWait(n)
		ceiling := min(10*time.Second, 200*time.Millisecond<<min(n-1, 10))
		if d < ceiling/2 || d > ceiling {
			t.Fatalf("failureWait(%d) = %s, want within [%s, %s]", n, d, ceiling/2, ceiling)
		}
	}
}

func TestIsThrottle(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&types.ProvisionedThroughputExceededException{}, true},
		{&types.LimitExceededException{}, true},
		{&smithy.GenericAPIError{Code: "ThrottlingException"}, true},
		{&types.ExpiredIteratorException{}, false},
		{context.DeadlineExceeded, false},
	}
	for _, tt := range tests {
		if got := isThrottle(tt.err); got != tt.want {
			t.Errorf("isThrottle(%T) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestLocalLeasesChildrenWaitForParents(t *testing.T) {
	ctx := context.Background()
	l := newLocalLeases("inst")
	shards := []shard{
		{id: "p1", closed: true}, {id: "p2", closed: true},
		{id: "split-a", parents: []string{"p1"}}, {id: "merged", parents: []string{"p2", "gone"}},
	}
	ids := func(gs []grant) []string {
		var out []string
		for _, g := range gs {
			out = append(out, g.shard)
			if g.Ref != checkpoint.Ref("inst", 0) || g.Start != nil {
				t.Errorf("grant %+v: want no checkpoint and the instance's ref", g)
			}
		}
		sort.Strings(out)
		return out
	}
	taken, _, _ := l.sync(ctx, shards)
	if got := ids(taken); !reflect.DeepEqual(got, []string{"p1", "p2"}) {
		t.Fatalf("first sync took %v, want the parents only", got)
	}
	if taken, _, _ := l.sync(ctx, shards); len(taken) != 0 {
		t.Fatalf("held shards taken again: %v", ids(taken))
	}
	if _, err := l.checkpoint(ctx, map[string]progress{"p2": {End: true}}); err != nil {
		t.Fatal(err)
	}
	_ = l.release(ctx, []string{"p2"})
	taken, _, _ = l.sync(ctx, shards)
	if got := ids(taken); !reflect.DeepEqual(got, []string{"merged"}) {
		t.Fatalf("after p2 finished, took %v, want [merged] (its other parent is no longer listed)", got)
	}
}

func TestDecodeLease(t *testing.T) {
	tests := []struct {
		name string
		av   map[string]ddbtypes.AttributeValue
		want item
	}{
		{"free, never committed", map[string]ddbtypes.AttributeValue{attrKey: str("s1"), attrCounter: num(3)}, item{key: "s1", counter: 3}},
		{"held with a checkpoint", map[string]ddbtypes.AttributeValue{
			attrKey: str("s2"), attrOwner: str("a"), attrCounter: num(9), attrSeq: str("123"), attrSub: num(4),
			attrAfter: &ddbtypes.AttributeValueMemberBOOL{Value: true}, attrRef: str("r"),
			attrParents: &ddbtypes.AttributeValueMemberSS{Value: []string{"s0"}},
		}, item{key: "s2", owner: "a", counter: 9, start: &source.Start{Position: record.Position{Seq: "123", Sub: 4}, After: true}, ref: "r", parents: []string{"s0"}}},
		{"finished", map[string]ddbtypes.AttributeValue{attrKey: str("s3"), attrSeq: str(shardEnd)}, item{key: "s3", end: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := decode(tt.av); !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("got %+v, want %+v", *got, tt.want)
			}
		})
	}
}

func TestIteratorInput(t *testing.T) {
	ts := "2024-05-01T10:00:00Z"
	tests := []struct {
		name     string
		start    string
		last     *record.Position
		from     *source.Start
		wantType types.ShardIteratorType
		wantSeq  string
		wantTime bool
	}{
		{"never committed: trim horizon", "trim_horizon", nil, nil, types.ShardIteratorTypeTrimHorizon, "", false},
		{"never committed: latest", "latest", nil, nil, types.ShardIteratorTypeLatest, "", false},
		{"never committed: at timestamp", "at_timestamp", nil, nil, types.ShardIteratorTypeAtTimestamp, "", true},
		{"committed inside an aggregate: at its record", "latest", nil, &source.Start{Position: record.Position{Seq: "5", Sub: 3}, After: true}, types.ShardIteratorTypeAtSequenceNumber, "5", false},
		{"re-acquired after the last record read", "trim_horizon", &record.Position{Seq: "9", Sub: 2}, &source.Start{Position: record.Position{Seq: "5"}}, types.ShardIteratorTypeAfterSequenceNumber, "9", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := iteratorInput(&Config{Stream: "s", Start: tt.start, StartTime: ts}, "sh", tt.last, tt.from, false)
			if err != nil {
				t.Fatal(err)
			}
			if in.ShardIteratorType != tt.wantType || aws.ToString(in.StartingSequenceNumber) != tt.wantSeq || (in.Timestamp != nil) != tt.wantTime {
				t.Errorf("got %s seq %q timestamp %v", in.ShardIteratorType, aws.ToString(in.StartingSequenceNumber), in.Timestamp)
			}
			if aws.ToString(in.ShardId) != "sh" || aws.ToString(in.StreamName) != "s" {
				t.Errorf("shard %q stream %q", aws.ToString(in.ShardId), aws.ToString(in.StreamName))
			}
		})
	}
	if _, err := iteratorInput(&Config{Start: "at_timestamp", StartTime: "yesterday"}, "sh", nil, nil, false); err == nil {
		t.Error("a bad start_timestamp must fail")
	}
}

// lostRecorder is the pipeline side of a loss: it records what it was told.
type lostRecorder struct {
	source.Handler
	lost chan []record.PartitionID
}

func (l *lostRecorder) Lost(ps []record.PartitionID) { l.lost <- ps }

// TestLoseResetsEveryShard: a lost lease makes the pipeline drop all it has
// not committed, so every shard is given up and read again: records queued
// before the loss must never reach the pipeline afterwards.
func TestLoseResetsEveryShard(t *testing.T) {
	h := &lostRecorder{lost: make(chan []record.PartitionID, 1)}
	s := testSource()
	s.h, s.leases = h, newLocalLeases("inst")
	s.cfg.RequestTimeout = conf.Duration(time.Second)
	s.life, s.stop = context.WithCancel(context.Background())
	defer s.stop()
	s.out, s.wakeup, s.done = make(chan batch, 4), make(chan struct{}, 1), make(chan struct{})
	s.startOnce.Do(func() {}) // no coordinator: the test drives the source
	ctx := context.Background()
	taken, _, _ := s.leases.sync(ctx, []shard{{id: "a"}, {id: "b"}})
	if len(taken) != 2 {
		t.Fatalf("took %d shards", len(taken))
	}
	s.readers = map[string]*reader{}
	for _, id := range []string{"a", "b"} {
		done := make(chan struct{})
		close(done)
		s.readers[id] = &reader{s: s, shard: id, cancel: func() {}, done: done}
	}
	stale := record.Record{Partition: s.pid("a"), Position: record.Position{Seq: "1"}}
	s.out <- batch{generation: s.generation.Load(), recs: []record.Record{stale}}

	s.lose([]string{"a"})
	select {
	case ps := <-h.lost:
		if len(ps) != 2 {
			t.Fatalf("Lost(%v), want both shards", ps)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the pipeline was not told")
	}
	s.resets.Wait()
	if len(s.readers) != 0 {
		t.Fatalf("%d readers still running", len(s.readers))
	}
	// Both shards are free again, to be taken from their last commit.
	if taken, _, _ := s.leases.sync(ctx, []shard{{id: "a"}, {id: "b"}}); len(taken) != 1 {
		t.Fatalf("after the loss, %d shards could be taken again, want b (a is another's)", len(taken))
	}
	fresh := record.Record{Partition: s.pid("b"), Position: record.Position{Seq: "2"}}
	s.out <- batch{generation: s.generation.Load(), recs: []record.Record{fresh}}
	got, err := s.Poll(ctx, 10)
	if err != nil || len(got) != 1 || got[0].Position.Seq != "2" {
		t.Fatalf("Poll = %v, %v; want only the record read after the loss", got, err)
	}
}
