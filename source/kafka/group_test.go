package kafka

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/source"
)

// handler records what the group gives it and starts every partition at its
// committed offset.
type handler struct {
	mu    sync.Mutex
	owned map[record.PartitionID]bool
}

func (h *handler) Assigned(_ context.Context, as []source.Assignment) (map[record.PartitionID]source.Start, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range as {
		h.owned[a.ID] = true
	}
	return nil, nil
}

func (h *handler) Revoked(_ context.Context, ps []record.PartitionID) (map[record.PartitionID]source.Start, string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range ps {
		delete(h.owned, p)
	}
	return nil, "", nil
}

func (h *handler) Lost(ps []record.PartitionID) { _, _, _ = h.Revoked(context.Background(), ps) }

func (h *handler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.owned)
}

type member struct {
	*Source
	h    *handler
	stop context.CancelFunc
	done chan struct{}
}

// join starts a static member that polls (and so takes part in the group)
// until it is closed.
func join(t *testing.T, brokers []string, group, instance string) *member {
	t.Helper()
	cfg := &Config{
		Brokers: brokers, Topics: []string{"t"}, Group: group, Start: "earliest",
		FetchMaxBytes: 1 << 20, PartitionBytes: 1 << 20, StaticMembership: true,
		SessionTimeout: conf.Duration(6 * time.Second), RequestTimeout: conf.Duration(5 * time.Second),
	}
	h := &handler{owned: map[record.PartitionID]bool{}}
	s, err := New(context.Background(), cfg, instance, h, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	m := &member{Source: s, h: h, stop: stop, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			if _, err := s.Poll(ctx, 100); err == source.ErrClosed {
				return
			}
		}
	}()
	return m
}

// die stops the member the way SIGKILL would as far as the group can tell:
// a static member's client does not leave on close, and the LeaveGroup that
// Source.Close adds is skipped.
func (m *member) die() {
	close(m.closed)
	<-m.refreshed
	m.stop()
	m.cl.Close()
	m.admin.Close()
	<-m.done
}

func (m *member) close() {
	m.stop()
	m.Close()
	<-m.done
}

func waitUntil(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func groupRecords(bs []source.Backlog) (total int64, pending int) {
	for _, b := range bs {
		total += max(b.GroupRecords, 0)
		if b.Pending {
			pending++
		}
	}
	return
}

// TestBacklogsThroughDeadMember: a member dies without leaving while its
// partitions have records after its commits. Another member, owning nothing
// yet, reports those records as group lag at once, reports the partitions
// pending once the dead member's commits are older than the session timeout,
// and reports 0 once the records are committed.
func TestBacklogsThroughDeadMember(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	produce(t, brokers, 4, 10)

	a := join(t, brokers, "g", "a")
	waitUntil(t, "a to own all partitions", 30*time.Second, func() bool { return a.h.count() == 4 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	starts := map[record.PartitionID]source.Start{}
	for p := int32(0); p < 4; p++ {
		starts[pid("t", p)] = source.Start{Position: record.Position{Offset: 2}}
	}
	if err := a.Commit(ctx, starts, "manifest-1"); err != nil {
		t.Fatal(err)
	}
	a.die()
	died := time.Now()

	b := join(t, brokers, "g", "b")
	defer b.close()
	waitUntil(t, "b's view of a's partitions", 10*time.Second, func() bool {
		total, _ := groupRecords(b.Backlogs())
		return total == 4*8
	})
	if n := b.h.count(); n != 0 {
		t.Fatalf("b owns %d partitions while the dead member's session lasts; the test needs it to own none", n)
	}
	if _, pending := groupRecords(b.Backlogs()); pending != 0 {
		t.Fatalf("%d partitions pending before the commits are a session timeout old", pending)
	}
	// b takes the partitions over when a's session expires but commits
	// nothing, like a member whose pipeline is stuck while its heartbeats
	// go on: once a's commits are older than the session timeout, the
	// partitions are pending although b holds them.
	waitUntil(t, "pending partitions", 20*time.Second, func() bool {
		_, pending := groupRecords(b.Backlogs())
		return pending == 4
	})
	t.Logf("pending %s after the death; b owns %d partitions", time.Since(died).Round(100*time.Millisecond), b.h.count())
	waitUntil(t, "b to own all partitions", 30*time.Second, func() bool { return b.h.count() == 4 })
	for id := range starts {
		starts[id] = source.Start{Position: record.Position{Offset: 10}}
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := b.Commit(ctx2, starts, "manifest-2"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "group lag 0", 10*time.Second, func() bool {
		total, pending := groupRecords(b.Backlogs())
		return total == 0 && pending == 0
	})
}

// TestStaticMemberLeavesOnClose: Close sends the LeaveGroup that franz-go
// omits for a static member, so its partitions are free at once.
func TestStaticMemberLeavesOnClose(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	a := join(t, brokers, "g", "a")
	waitUntil(t, "a to own its partitions", 30*time.Second, func() bool { return a.h.count() == 2 })
	a.close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	gs, err := kadm.NewClient(cl).DescribeGroups(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if g := gs["g"]; len(g.Members) != 0 {
		t.Fatalf("after Close the group still has %d members (state %s); a static member must leave", len(g.Members), g.State)
	}
}

func produce(t *testing.T, brokers []string, partitions int32, perPartition int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("t"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for p := int32(0); p < partitions; p++ {
		for i := 0; i < perPartition; i++ {
			r := &kgo.Record{Partition: p, Value: []byte(fmt.Sprint(i))}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
