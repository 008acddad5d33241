package kafka

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/source"
)

// refreshInterval is how often end offsets, the group's commits and its
// description are read: often enough that lag stays right while a partition
// is idle or paused (fetches only report the high watermark when they return
// records), rarely enough to cost the coordinator little per instance.
const refreshInterval = 2 * time.Second

// unownedGrace is how long a partition with unread records may go without an
// owner in a stable group before it is pending: a cooperative rebalance
// moves a partition within a few seconds and should not raise an alert.
const unownedGrace = 10 * time.Second

// refresh keeps the offsets behind Lags and Backlogs current. Every request
// has its own timeout; a failed round leaves the last view in place.
func (s *Source) refresh() {
	defer close(s.refreshed)
	adm := kadm.NewClient(s.admin)
	t := time.NewTicker(refreshInterval)
	defer t.Stop()
	for {
		select {
		case <-s.closed:
			return
		case <-t.C:
		}
		s.refreshOnce(adm)
	}
}

func (s *Source) refreshOnce(adm *kadm.Client) {
	call := func(f func(ctx context.Context) error) error {
		ctx, cancel := context.WithTimeout(context.Background(), s.reqTimeout)
		defer cancel()
		go func() {
			// Close must not wait a whole request timeout for a round.
			select {
			case <-s.closed:
				cancel()
			case <-ctx.Done():
			}
		}()
		return f(ctx)
	}
	obs := observation{at: time.Now()}
	// Commits are read before end offsets, so that an end offset is never
	// older than the commit it is compared with.
	var commits kadm.OffsetResponses
	commitsErr := call(func(ctx context.Context) (err error) {
		commits, err = adm.FetchOffsetsForTopics(ctx, s.group, s.topics...)
		return err
	})
	var ends, starts kadm.ListedOffsets
	if err := call(func(ctx context.Context) (err error) {
		ends, err = adm.ListEndOffsets(ctx, s.topics...)
		return err
	}); err != nil {
		return // no partition list: the next round retries; fetches keep Lags roughly right
	}
	_ = call(func(ctx context.Context) (err error) {
		starts, err = adm.ListStartOffsets(ctx, s.topics...)
		return err
	})
	var described kadm.DescribedGroups
	describeErr := call(func(ctx context.Context) (err error) {
		described, err = adm.DescribeGroups(ctx, s.group)
		return err
	})

	obs.ends = map[record.PartitionID]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			obs.ends[pid(o.Topic, o.Partition)] = o.Offset
		}
	})
	obs.starts = map[record.PartitionID]int64{}
	starts.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			obs.starts[pid(o.Topic, o.Partition)] = o.Offset
		}
	})
	if commitsErr == nil {
		obs.commits = map[record.PartitionID]commit{}
		commits.Each(func(o kadm.OffsetResponse) {
			if o.Err == nil {
				obs.commits[pid(o.Topic, o.Partition)] = commit{offset: o.At, meta: o.Metadata}
			}
		})
	}
	if g, ok := described[s.group]; describeErr == nil && ok && g.Err == nil {
		switch g.State {
		case "Stable", "Empty", "Dead":
			// Only a settled group's assignment says who reads what; Kafka
			// leaves it out while a rebalance is under way.
			obs.owned = map[record.PartitionID]bool{}
			for _, m := range g.Members {
				ca, ok := m.Assigned.AsConsumer()
				if !ok {
					continue
				}
				for _, t := range ca.Topics {
					for _, p := range t.Partitions {
						obs.owned[pid(t.Topic, p)] = true
					}
				}
			}
		}
	}

	s.mu.Lock()
	for id, end := range obs.ends {
		s.hwm[id] = end
	}
	s.mu.Unlock()
	s.backlog.observe(obs)
}

// Backlogs reports every partition of the configured topics from the last
// refresh, owned here or not.
func (s *Source) Backlogs() []source.Backlog { return s.backlog.get() }

type commit struct {
	offset int64 // -1: never committed
	meta   string
}

// observation is one round of reads; a nil map is a read that failed.
type observation struct {
	at      time.Time
	ends    map[record.PartitionID]int64
	starts  map[record.PartitionID]int64
	commits map[record.PartitionID]commit
	owned   map[record.PartitionID]bool // nil: unknown (rebalancing, or describe failed)
}

// partHistory is what one instance remembers of a partition across rounds.
type partHistory struct {
	commit       commit
	committed    bool      // commit holds a value read from the group
	changedAt    time.Time // when the commit last changed, or when first seen
	unownedSince time.Time // zero while owned (or unknown)
}

// backlogView turns rounds of observations into Backlogs.
//
// GroupRecords is the end offset minus the group's committed offset; for a
// partition never committed, minus its log start offset when the group starts
// at the earliest record (otherwise unknown, -1).
//
// Pending is: the partition has records after its committed offset, and
// either no member of the (stable) group has been assigned it for longer than
// unownedGrace, or its commit (offset and metadata) has not changed for longer
// than the session timeout. Every sinkd checkpoint commits each owned
// partition with a new manifest reference as metadata, even when the offset
// does not move (files still open), so an unchanged commit means that its
// owner, if any, is dead, hung, or failing every checkpoint: the records wait
// for a reader that does not come. The broker cannot say this sooner: a
// killed member keeps its assignment until its session expires.
type backlogView struct {
	sessionTimeout time.Duration
	fromEarliest   bool

	mu      sync.Mutex
	history map[record.PartitionID]*partHistory
	last    []source.Backlog
}

func newBacklogView(sessionTimeout time.Duration, fromEarliest bool) *backlogView {
	return &backlogView{sessionTimeout: sessionTimeout, fromEarliest: fromEarliest,
		history: map[record.PartitionID]*partHistory{}}
}

func (v *backlogView) get() []source.Backlog {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.last)
}

func (v *backlogView) observe(o observation) {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]source.Backlog, 0, len(o.ends))
	for id, end := range o.ends {
		h := v.history[id]
		if h == nil {
			h = &partHistory{changedAt: o.at}
			v.history[id] = h
		}
		if o.commits != nil {
			c, ok := o.commits[id]
			if !ok {
				c = commit{offset: -1}
			}
			if !h.committed || c != h.commit {
				if h.committed {
					h.changedAt = o.at
				}
				h.commit, h.committed = c, true
			}
		}
		if o.owned != nil {
			switch {
			case o.owned[id]:
				h.unownedSince = time.Time{}
			case h.unownedSince.IsZero():
				h.unownedSince = o.at
			}
		}
		b := source.Backlog{ID: id, GroupRecords: -1, PendingMillis: -1}
		switch start, ok := o.starts[id]; {
		case !h.committed:
		case h.commit.offset >= 0:
			b.GroupRecords = max(end-h.commit.offset, 0)
		case v.fromEarliest && ok:
			b.GroupRecords = max(end-start, 0)
		}
		if b.GroupRecords > 0 {
			unowned := !h.unownedSince.IsZero() && o.at.Sub(h.unownedSince) > unownedGrace
			stale := o.at.Sub(h.changedAt) > v.sessionTimeout
			b.Pending = unowned || stale
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b source.Backlog) int {
		return cmp.Or(cmp.Compare(a.ID.Stream, b.ID.Stream), cmp.Compare(a.ID.Partition, b.ID.Partition))
	})
	v.last = out
}
