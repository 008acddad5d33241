package kinesis

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/sinkd/sinkd/source"
	"github.com/sinkd/sinkd/source/kinesis/kpl"
)

// Backlogs of shards without a live reader: a child waiting for its parents,
// a shard no instance leases yet, a lease whose owner stopped renewing. Their
// unread records are found by probing: one GetRecords of two records from the
// lease's checkpoint, at most once per shard_sync_interval per shard (and at
// once when a shard starts waiting), which costs two of the shard's five
// reads per second once in a while. Between probes the age of the first
// unread record grows with the clock.
const (
	// probesInFlight bounds concurrent probes (each has request_timeout).
	probesInFlight = 4
	// probeMinInterval bounds how often one shard is probed, whatever
	// changes.
	probeMinInterval = time.Second
)

// probe is what one shard's last probe found.
type probe struct {
	from     string    // the start it probed from (its lease checkpoint)
	asked    time.Time // when it was sent
	at       time.Time // when it answered; zero before
	inFlight bool
	unread   bool
	millis   int64 // age of the first unread record at `at`
}

// backlogState is the cached view Backlogs returns.
type backlogState struct {
	mu     sync.Mutex
	list   []source.Backlog
	probes map[string]*probe
	sem    chan struct{}
	// refresh asks the coordinator to recompute the view.
	refresh chan struct{}
}

func newBacklogState() *backlogState {
	return &backlogState{probes: map[string]*probe{}, sem: make(chan struct{}, probesInFlight), refresh: make(chan struct{}, 1)}
}

// Backlogs reports every listed shard of the stream, from the view the
// coordinator refreshes after each lease sync (no I/O here). Records cannot
// be counted on Kinesis: GroupRecords is -1.
func (s *Source) Backlogs() []source.Backlog {
	s.backlog.mu.Lock()
	defer s.backlog.mu.Unlock()
	return append([]source.Backlog(nil), s.backlog.list...)
}

// startKey names a probe's starting point, so that a moved checkpoint is
// probed again.
func startKey(st *source.Start, child bool) string {
	if st == nil {
		return fmt.Sprintf("-/%v", child)
	}
	return fmt.Sprintf("%s/%d/%v/%v", st.Position.Seq, st.Position.Sub, st.After, child)
}

// refreshBacklog recomputes the view from the listed shards, the leases as
// last synced and this instance's readers, and starts the probes it needs.
func (s *Source) refreshBacklog(ctx context.Context, shards []shard) {
	view := s.leases.view()
	reading := map[string]bool{} // held here; true once the reader answered
	s.mu.Lock()
	for shard, r := range s.readers {
		reading[shard] = r.behind.Load() >= 0 || r.drained
	}
	s.mu.Unlock()

	now := time.Now()
	b := s.backlog
	b.mu.Lock()
	defer b.mu.Unlock()
	list := make([]source.Backlog, 0, len(shards))
	listed := make(map[string]bool, len(shards))
	for _, sh := range shards {
		listed[sh.id] = true
		bl := source.Backlog{ID: s.pid(sh.id), GroupRecords: -1, PendingMillis: -1}
		v := view[sh.id]
		answered, mine := reading[sh.id]
		mine = mine || v.held // taken, and the pipeline not told yet
		p := b.probes[sh.id]
		switch {
		case v.end, mine && answered:
			delete(b.probes, sh.id)
		case mine:
			// Taken but not read yet: still waiting, as far as its last
			// probe knows, until the reader's first answer.
			if p != nil && p.unread {
				bl.Pending, bl.PendingMillis = true, p.age(now)
			}
		case v.live:
			delete(b.probes, sh.id) // another instance reads it
		default:
			child := len(sh.parents) > 0
			if v.start == nil && s.cfg.Start == "latest" && !child {
				delete(b.probes, sh.id) // would start at the newest record: nothing to read before
				break
			}
			from := startKey(v.start, child)
			if p != nil && p.from == from && p.unread {
				bl.Pending, bl.PendingMillis = true, p.age(now)
			}
			if p == nil || p.from != from {
				p = &probe{from: from}
				b.probes[sh.id] = p
			}
			due := p.at.IsZero() || now.Sub(p.at) >= s.cfg.ListInterval.D()
			if due && !p.inFlight && now.Sub(p.asked) >= probeMinInterval {
				select {
				case b.sem <- struct{}{}:
					p.inFlight, p.asked = true, now
					go s.probe(ctx, sh.id, v.start, child, p)
				default: // the next refresh tries again
				}
			}
		}
		list = append(list, bl)
	}
	for id := range b.probes {
		if !listed[id] {
			delete(b.probes, id)
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID.Shard < list[j].ID.Shard })
	b.list = list
}

// age is the first unread record's age now, at least 1 ms, so that a
// pending shard never adds 0 to a sum of lag.
func (p *probe) age(now time.Time) int64 {
	return max(1, p.millis+now.Sub(p.at).Milliseconds())
}

// probe reads one record of shard from start and records what it found; a
// failed probe keeps the previous answer and is tried again later.
func (s *Source) probe(ctx context.Context, shard string, start *source.Start, child bool, p *probe) {
	defer func() { <-s.backlog.sem }()
	unread, millis, err := s.firstUnread(ctx, shard, start, child)
	b := s.backlog
	b.mu.Lock()
	defer b.mu.Unlock()
	p.inFlight = false
	if err != nil {
		if ctx.Err() == nil {
			s.log.Debug("kinesis: probing a waiting shard failed; retrying", "shard", shard, "err", err)
		}
		return
	}
	p.unread, p.millis, p.at = unread, millis, time.Now()
	if unread {
		// Report it now, not at the next sync (without re-listing).
		select {
		case s.backlog.refresh <- struct{}{}:
		default:
		}
	}
}

// firstUnread tells whether shard has a record at start (after it, when
// start.After), and how old the first one is. An empty answer that is behind the tip (AWS may return
// empty results in a sparse shard) counts as unread, aged by
// MillisBehindLatest.
func (s *Source) firstUnread(ctx context.Context, shard string, start *source.Start, child bool) (bool, int64, error) {
	in, err := iteratorInput(s.cfg, shard, nil, start, child)
	if err != nil {
		return false, 0, err
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	it, err := s.api.GetShardIterator(cctx, in)
	if err != nil {
		if isThrottle(err) {
			s.m.throttles.Inc()
		}
		return false, 0, err
	}
	// The iterator starts at the checkpoint's record, which a checkpoint
	// "after" it has read unless user records of its aggregate remain: two
	// records tell.
	resp, err := s.api.GetRecords(cctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator, Limit: aws.Int32(2)},
		func(o *kinesis.Options) { o.RetryMaxAttempts = 1 })
	if err != nil {
		if isThrottle(err) {
			s.m.throttles.Inc()
		}
		return false, 0, err
	}
	for _, rec := range resp.Records {
		if start != nil && start.After && aws.ToString(rec.SequenceNumber) == start.Position.Seq {
			users, err := kpl.Deaggregate(rec.Data, aws.ToString(rec.PartitionKey))
			if err != nil || int64(len(users)) <= start.Position.Sub+1 {
				continue // read whole
			}
		}
		return true, max(0, time.Since(aws.ToTime(rec.ApproximateArrivalTimestamp)).Milliseconds()), nil
	}
	if ms := aws.ToInt64(resp.MillisBehindLatest); ms > 0 && resp.NextShardIterator != nil {
		return true, ms, nil
	}
	return false, 0, nil
}
