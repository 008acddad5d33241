//go:build integration

package kinesis

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/scripts/stack/stackenv"
	"github.com/sinkd/sinkd/source"
)

func newTestLeases(t *testing.T, table, instance string, failover time.Duration) *tableLeases {
	t.Helper()
	env := stackenv.Load(t)
	env.Setenv(t)
	cfg := &Config{
		Region: env.Region, DynamoDBEndpoint: env.DynamoDBEndpoint, LeaseTable: table,
		FailoverTime: conf.Duration(failover), RequestTimeout: conf.Duration(5 * time.Second),
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	awsCfg, err := loadAWS(ctx, cfg.Region, true, time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := newTableLeases(ctx, awsCfg, cfg, instance, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func held(l *tableLeases) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.held)
}

// TestTableLeases runs two lease holders against dynalite: they balance
// 4 shards 2/2, a child waits for its parent's SHARD_END, and a holder that
// stops renewing loses its leases to the other and is fenced: its checkpoints
// fail and report the leases lost.
func TestTableLeases(t *testing.T) {
	table := "sinkd-leases-unit-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	const failover = 2 * time.Second
	a := newTestLeases(t, table, "a", failover)
	b := newTestLeases(t, table, "b", failover)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	aAlive, stopA := context.WithCancel(ctx)
	defer stopA()
	go a.keepAlive(aAlive, func([]string) {})
	go b.keepAlive(ctx, func([]string) { t.Error("b lost leases") })

	shards := []shard{{id: "s0"}, {id: "s1"}, {id: "s2"}, {id: "parent", closed: true}, {id: "child", parents: []string{"parent"}}}
	starts := map[string]*source.Start{}
	round := func(l *tableLeases) {
		taken, giveUp, err := l.sync(ctx, shards)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range taken {
			if g.shard == "child" && starts["parent"] == nil {
				t.Fatalf("%s took the child before its parent ended", l.instance)
			}
		}
		if err := l.release(ctx, giveUp); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for held(a) != 2 || held(b) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("not balanced: a holds %d, b holds %d (4 shards can be taken)", held(a), held(b))
		}
		round(a)
		round(b)
		time.Sleep(failover / 10)
	}

	// The parent ends; whoever holds it stores SHARD_END, then the child may go.
	holder := a
	if b.held["parent"] != nil {
		holder = b
	}
	if lost, err := holder.checkpoint(ctx, map[string]progress{"parent": {End: true, Ref: "r"}}); err != nil || len(lost) > 0 {
		t.Fatalf("checkpoint: lost %v, err %v", lost, err)
	}
	starts["parent"] = &source.Start{}
	if err := holder.release(ctx, []string{"parent"}); err != nil {
		t.Fatal(err)
	}
	for held(a)+held(b) != 4 || (a.held["child"] == nil && b.held["child"] == nil) {
		if time.Now().After(deadline) {
			t.Fatalf("child not taken after its parent ended: a %d, b %d", held(a), held(b))
		}
		round(a)
		round(b)
		time.Sleep(failover / 10)
	}

	// a stalls: it stops renewing. b takes its leases once they expire; a
	// gives them up as lost before that, and its checkpoints are refused.
	var aShards []string
	for k := range a.held {
		aShards = append(aShards, k)
	}
	stopA()
	stalled := time.Now()
	for held(b) != 4 {
		if time.Since(stalled) > 2*failover {
			t.Fatalf("b holds %d leases %s after a stalled", held(b), time.Since(stalled))
		}
		round(b)
		time.Sleep(failover / 10)
	}
	t.Logf("b took a's leases %s after a stopped renewing (failover_time %s)", time.Since(stalled).Round(time.Millisecond), failover)
	ps := map[string]progress{}
	for _, k := range aShards {
		ps[k] = progress{Start: &source.Start{Position: record.Position{Seq: "1"}}, Ref: "stale"}
	}
	a.mu.Lock()
	for _, k := range aShards {
		if a.held[k] == nil { // given up by the fence already: put it back to prove the table refuses it
			a.held[k] = &heldLease{counter: 1}
		}
	}
	a.mu.Unlock()
	lost, err := a.checkpoint(ctx, ps)
	if err != nil {
		t.Fatal(err)
	}
	if len(lost) != len(aShards) {
		t.Fatalf("stale owner's checkpoint: lost %v, want all of %v", lost, aShards)
	}
	items, err := b.scan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if it.ref == "stale" {
			t.Fatalf("a stale owner's checkpoint reached lease %s", it.key)
		}
	}
}
