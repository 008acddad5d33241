package kinesis

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sinkd/sinkd/record"
)

func TestBehindLatest(t *testing.T) {
	now := time.Unix(1000, 0)
	recs := func(n int, age time.Duration) []types.Record {
		out := make([]types.Record, n)
		for i := range out {
			out[i].ApproximateArrivalTimestamp = aws.Time(now.Add(-age))
		}
		return out
	}
	next := aws.String("it")
	tests := []struct {
		name  string
		resp  kinesis.GetRecordsOutput
		limit int
		want  int64
	}{
		{"the server's figure when the result is not full", kinesis.GetRecordsOutput{Records: recs(3, time.Minute), MillisBehindLatest: aws.Int64(0), NextShardIterator: next}, 10, 0},
		{"a full result is behind by its last record's age", kinesis.GetRecordsOutput{Records: recs(10, time.Minute), MillisBehindLatest: aws.Int64(0), NextShardIterator: next}, 10, 60000},
		{"a full result of fresh records is still behind", kinesis.GetRecordsOutput{Records: recs(10, 0), MillisBehindLatest: aws.Int64(0), NextShardIterator: next}, 10, 1},
		{"the server's figure when larger", kinesis.GetRecordsOutput{Records: recs(10, time.Second), MillisBehindLatest: aws.Int64(90000), NextShardIterator: next}, 10, 90000},
		{"the shard's end is caught up", kinesis.GetRecordsOutput{Records: recs(10, time.Minute), MillisBehindLatest: aws.Int64(0)}, 10, 0},
		{"no figure, empty result", kinesis.GetRecordsOutput{NextShardIterator: next}, 10, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := behindLatest(&tt.resp, tt.limit, now); got != tt.want {
				t.Errorf("behindLatest = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestPollMarksShardDrainedAfterItsRecords: a shard is drained (its children
// may start) only once Poll has handed out every record queued before its
// end mark; a mark of a reader generation that was reset is ignored.
func TestPollMarksShardDrainedAfterItsRecords(t *testing.T) {
	s := testSource()
	s.leases = newLocalLeases("inst")
	s.out, s.wakeup, s.done = make(chan batch, 8), make(chan struct{}, 1), make(chan struct{})
	s.startOnce.Do(func() {})
	s.stopCoord = func() {} // Poll stops the coordinator when its ctx ends
	gen := s.generation.Load()
	s.readers = map[string]*reader{"p": {s: s, shard: "p", generation: gen}, "old": {s: s, shard: "old", generation: gen + 1}}
	recs := []record.Record{{Partition: s.pid("p"), Position: record.Position{Seq: "1"}}, {Partition: s.pid("p"), Position: record.Position{Seq: "2"}}}
	s.out <- batch{generation: gen, recs: recs}
	s.out <- batch{generation: gen, end: "p"}
	s.out <- batch{generation: gen, end: "old"}
	drained := func(id string) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.readers[id].drained
	}
	ctx := context.Background()
	got, err := s.Poll(ctx, 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("Poll = %v, %v", got, err)
	}
	if drained("p") {
		t.Fatal("p drained while one of its records is still queued")
	}
	if got, _ := s.Poll(ctx, 10); len(got) != 1 || got[0].Position.Seq != "2" {
		t.Fatalf("second Poll = %v", got)
	}
	if drained("p") {
		t.Fatal("p drained before Poll took its end mark")
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if got, _ := s.Poll(short, 10); len(got) != 0 {
		t.Fatalf("third Poll = %v, want nothing (only marks queued)", got)
	}
	if !drained("p") {
		t.Fatal("p not drained after every record and its end mark were taken")
	}
	if drained("old") {
		t.Fatal("a mark from before a reset drained a shard")
	}
	select {
	case <-s.wakeup:
	default:
		t.Fatal("the coordinator was not woken to start the children")
	}
}

// TestLagsCountRecordsNotYetProcessed: a shard whose last read reached the
// tip is still behind while the pipeline has not processed its records.
func TestLagsCountRecordsNotYetProcessed(t *testing.T) {
	s := testSource()
	r := &reader{s: s, shard: "a", last: record.Position{Seq: "5", Sub: 1}, hasLast: true}
	r.behind.Store(0)
	r.lastArrival.Store(time.Now().Add(-time.Minute).UnixMilli())
	s.readers = map[string]*reader{"a": r}
	for _, tt := range []struct {
		name   string
		done   record.Position
		behind bool
	}{
		{"nothing processed yet", record.Position{}, true},
		{"an earlier record processed", record.Position{Seq: "5"}, true},
		{"the last record read processed", record.Position{Seq: "5", Sub: 1}, false},
	} {
		got := s.Lags(map[record.PartitionID]record.Position{s.pid("a"): tt.done})[s.pid("a")].MillisBehind
		if (got > 0) != tt.behind {
			t.Errorf("%s: MillisBehind %d, want behind %v", tt.name, got, tt.behind)
		}
		if tt.behind && got < 59_000 {
			t.Errorf("%s: MillisBehind %d, want at least the age of the last record read (1 min)", tt.name, got)
		}
	}
}
