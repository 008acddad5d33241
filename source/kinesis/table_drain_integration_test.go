//go:build integration

package kinesis

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func newStreamLeases(t *testing.T, table, stream, instance string, failover time.Duration) *tableLeases {
	t.Helper()
	l := newTestLeases(t, table, instance, failover)
	l.stream = stream
	return l
}

func takenShards(gs []grant) []string {
	var out []string
	for _, g := range gs {
		out = append(out, g.shard)
	}
	slices.Sort(out)
	return out
}

// TestTableLeasesDrainedParentFreesChildren: a child may be taken (by any
// instance) as soon as its parent's holder records the parent drained, while
// the parent's lease stays held and its checkpoint is not SHARD_END; a child
// whose parent is neither drained nor ended waits.
func TestTableLeasesDrainedParentFreesChildren(t *testing.T) {
	table := "sinkd-leases-drain-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	const failover = 3 * time.Second
	a := newStreamLeases(t, table, "st", "a", failover)
	b := newStreamLeases(t, table, "st", "b", failover)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	shards := []shard{{id: "parent", closed: true}, {id: "child", parents: []string{"parent"}}}

	taken, _, err := a.sync(ctx, shards)
	if err != nil {
		t.Fatal(err)
	}
	if got := takenShards(taken); !slices.Equal(got, []string{"parent"}) {
		t.Fatalf("a took %v, want [parent] (the child waits)", got)
	}
	if taken, _, _ := b.sync(ctx, shards); len(taken) != 0 {
		t.Fatalf("b took %v while the parent is still read", takenShards(taken))
	}
	if lost, err := a.drained(ctx, []string{"parent"}); err != nil || len(lost) > 0 {
		t.Fatalf("drained: lost %v, err %v", lost, err)
	}
	taken, _, err = b.sync(ctx, shards)
	if err != nil {
		t.Fatal(err)
	}
	if got := takenShards(taken); !slices.Equal(got, []string{"child"}) || !taken[0].child {
		t.Fatalf("b took %+v after the parent drained, want the child, flagged as one", taken)
	}
	// The parent is still a's, not finished: its files are not committed.
	items, err := a.scan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if it.key == "parent" && (it.owner != "a" || it.end || !it.drained) {
			t.Fatalf("parent lease %+v: want a's, drained, not SHARD_END", *it)
		}
	}
	// Its SHARD_END comes with the commit, fenced like any checkpoint.
	if lost, err := a.checkpoint(ctx, map[string]progress{"parent": {End: true, Ref: "r"}}); err != nil || len(lost) > 0 {
		t.Fatalf("checkpoint: lost %v, err %v", lost, err)
	}
}

// TestTableLeasesScopedByStream: two streams share one table, with the same
// shard ids; each instance sees only its stream's leases and instances (a
// shard finished in one stream is not finished in the other), and an item
// keyed by the bare shard id (as earlier builds wrote them) is ignored.
func TestTableLeasesScopedByStream(t *testing.T) {
	table := "sinkd-leases-scope-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	const failover = 3 * time.Second
	one := newStreamLeases(t, table, "one", "x", failover)
	two := newStreamLeases(t, table, "two", "y", failover)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// An earlier build's lease of shard s1, finished.
	if _, err := two.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: map[string]types.AttributeValue{
		attrKey: str("s1"), attrCounter: num(7), attrOwner: str("old"), attrSeq: str(shardEnd), attrRef: str("sinkd:v1:old:3"),
	}}); err != nil {
		t.Fatal(err)
	}
	shards := []shard{{id: "s0"}, {id: "s1"}}
	if err := one.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	taken, _, err := one.sync(ctx, shards)
	if err != nil {
		t.Fatal(err)
	}
	if got := takenShards(taken); !slices.Equal(got, []string{"s0", "s1"}) {
		t.Fatalf("stream one: took %v, want both shards", got)
	}
	if lost, err := one.checkpoint(ctx, map[string]progress{"s0": {End: true, Ref: "r"}}); err != nil || len(lost) > 0 {
		t.Fatalf("checkpoint: lost %v, err %v", lost, err)
	}
	// Stream two's instance is alone on its stream (x's heartbeat is
	// another stream's) and its s0 is not finished.
	taken, _, err = two.sync(ctx, shards)
	if err != nil {
		t.Fatal(err)
	}
	if got := takenShards(taken); !slices.Equal(got, []string{"s0", "s1"}) {
		t.Fatalf("stream two: took %v, want both shards", got)
	}
	for _, g := range taken {
		if g.Start != nil || g.Ref != "" {
			t.Errorf("%s starts at %+v (ref %q), want a fresh lease", g.shard, g.Start, g.Ref)
		}
	}
}

// TestTableLeasesRestartTakesOwnAtOnce: an instance restarted with the same
// id takes the leases its previous process held in its first sync, without
// waiting for them to expire, and leaves a live instance's leases alone; the
// previous process, were it still alive, is fenced: its renewals fail.
func TestTableLeasesRestartTakesOwnAtOnce(t *testing.T) {
	table := "sinkd-leases-restart-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	const failover = 30 * time.Second // the default: nothing may wait for it
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	shards := []shard{{id: "s0"}, {id: "s1"}, {id: "s2"}, {id: "s3"}}
	a := newStreamLeases(t, table, "st", "a", failover)
	b := newStreamLeases(t, table, "st", "b", failover)
	for _, l := range []*tableLeases{a, b} {
		if err := l.heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		for _, l := range []*tableLeases{a, b} {
			_, giveUp, err := l.sync(ctx, shards)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.release(ctx, giveUp); err != nil {
				t.Fatal(err)
			}
		}
	}
	if held(a) != 2 || held(b) != 2 {
		t.Fatalf("not balanced: a %d, b %d", held(a), held(b))
	}
	aShards, bShards := a.sortedHeld(), b.sortedHeld()

	a2 := newStreamLeases(t, table, "st", "a", failover) // a's next process
	started := time.Now()
	taken, _, err := a2.sync(ctx, shards)
	if err != nil {
		t.Fatal(err)
	}
	if got := takenShards(taken); !slices.Equal(got, aShards) {
		t.Fatalf("restarted a took %v in its first sync, want its own %v", got, aShards)
	}
	t.Logf("restarted instance took its %d leases %s after start (failover_time %s)", len(taken), time.Since(started).Round(time.Millisecond), failover)
	if !slices.Equal(b.sortedHeld(), bShards) {
		t.Fatalf("b's leases changed: %v", b.sortedHeld())
	}
	if gone := a.renew(ctx, time.Now()); !slices.Equal(gone, aShards) {
		t.Fatalf("the previous process's renewals: lost %v, want %v (fenced)", gone, aShards)
	}
	if gone := b.renew(ctx, time.Now()); len(gone) != 0 {
		t.Fatalf("b lost %v", gone)
	}
}
