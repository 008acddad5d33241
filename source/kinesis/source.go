// Package kinesis is sinkd's Kinesis Data Streams source: one reader per
// owned shard polls GetRecords within the shard's read budget, unpacks KPL
// aggregates, and hands shards over through the checkpoint protocol. Shards
// are owned through leases: in a DynamoDB table when one is configured
// (several instances share the stream), else all by this one instance.
package kinesis

// Over 500 lines on purpose: one concern, the source's shard lifecycle (poll,
// commit, hand-over, drain); leases (table.go), reading a shard (reader.go)
// and KPL are apart.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sinkd/sinkd/internal/awsconf"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/source"
)

var _ source.Source = (*Source)(nil)

// Option adjusts a Source.
type Option func(*options)

type options struct {
	reg prometheus.Registerer
}

// WithRegisterer registers the source's metrics (throttles, reads) on reg.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(o *options) { o.reg = reg }
}

// batch is one GetRecords result, of the reader generation that read it; or,
// with end set, the mark that a shard's reader queued its last record.
type batch struct {
	generation uint64
	recs       []record.Record
	end        string
}

// queuedBatches bounds the GetRecords results waiting for Poll: readers block
// (and so stop reading) while the pipeline is behind.
const queuedBatches = 8

// Source reads the shards this instance holds leases on.
type Source struct {
	cfg      *Config
	api      *kinesis.Client
	h        source.Handler
	log      *slog.Logger
	instance string
	leases   leaser
	m        *metrics

	out        chan batch
	queue      *byteGate // bytes of the records in out and pending
	pollMu     sync.Mutex
	pending    batch
	generation atomic.Uint64 // bumped when the pipeline resets: older batches are stale
	resets     sync.WaitGroup

	startOnce  sync.Once
	runStarted bool // set once, inside startOnce
	closeOnce  sync.Once
	life       context.Context // readers and lease renewal
	stop       context.CancelFunc
	// coord bounds taking and giving up shards, which ends as soon as the
	// pipeline stops polling (it is draining).
	coord     context.Context
	stopCoord context.CancelFunc
	runDone   chan struct{}
	aliveDone chan struct{} // lease renewal ended
	wakeup    chan struct{}
	done      chan struct{}

	paused atomic.Bool

	mu      sync.Mutex
	readers map[string]*reader // held shards being read, by shard id

	backlog *backlogState
}

// New builds the source; it lists shards and takes leases once Poll is first
// called. instance is the pipeline's (sanitised) instance id.
func New(ctx context.Context, cfg *Config, instance string, h source.Handler, log *slog.Logger, opts ...Option) (*Source, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	awsCfg, err := loadAWS(ctx, cfg.Region, cfg.Endpoint != "" || cfg.DynamoDBEndpoint != "", cfg.RequestTimeout.D(), log)
	if err != nil {
		return nil, err
	}
	api := kinesis.NewFromConfig(awsCfg, func(ko *kinesis.Options) {
		if cfg.Endpoint != "" {
			ko.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	life, stop := context.WithCancel(context.WithoutCancel(ctx))
	coord, stopCoord := context.WithCancel(life)
	s := &Source{
		cfg: cfg, api: api, h: h, log: log.With("source", "kinesis", "stream", cfg.Stream), instance: instance,
		m:   newMetrics(o.reg, cfg.Stream),
		out: make(chan batch, queuedBatches), queue: newByteGate(sourceBytes), life: life, stop: stop, coord: coord, stopCoord: stopCoord,
		runDone: make(chan struct{}), aliveDone: make(chan struct{}), wakeup: make(chan struct{}, 1), done: make(chan struct{}),
		readers: map[string]*reader{}, backlog: newBacklogState(),
	}
	if cfg.LeaseTable == "" {
		s.leases = newLocalLeases(instance)
	} else {
		s.leases, err = newTableLeases(ctx, awsCfg, cfg, instance, s.log)
		if err != nil {
			stopCoord()
			stop()
			return nil, err
		}
	}
	return s, nil
}

// loadAWS loads credentials and region; an emulator (local endpoint) accepts
// any region.
func loadAWS(ctx context.Context, region string, local bool, timeout time.Duration, log *slog.Logger) (aws.Config, error) {
	o := awsconf.Options{Region: region, Timeout: timeout, Logger: log}
	if local {
		o.DefaultRegion = awsconf.EmulatorRegion
	}
	c, err := awsconf.Load(ctx, o)
	if errors.Is(err, awsconf.ErrNoRegion) {
		return c, errors.New("kinesis: no AWS region (set source.kinesis.region or AWS_REGION)")
	}
	if err != nil {
		return c, fmt.Errorf("kinesis: %w", err)
	}
	return c, nil
}

func (s *Source) pid(shard string) record.PartitionID {
	return record.PartitionID{Stream: s.cfg.Stream, Shard: shard}
}

func (s *Source) Kind() record.Kind { return record.Kinesis }

// Pause stops reading new records; Resume starts again. Leases, checkpoints
// and metrics go on.
func (s *Source) Pause() { s.paused.Store(true) }

func (s *Source) Resume() { s.paused.Store(false) }

// Ping checks that the stream answers, for readiness.
func (s *Source) Ping(ctx context.Context) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	_, err := s.api.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(s.cfg.Stream)})
	return err
}

// call bounds one request by request_timeout.
func (s *Source) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.RequestTimeout.D())
}

// Poll returns the next records of owned shards, at most max. The pipeline
// stops polling only to drain: from then on, until Close hands everything
// over, no shard is taken or given up, as both need the pipeline's loop.
func (s *Source) Poll(ctx context.Context, max int) ([]record.Record, error) {
	s.startOnce.Do(func() {
		s.runStarted = true
		go s.run()
		go func() {
			defer close(s.aliveDone)
			s.leases.keepAlive(s.life, s.lose)
		}()
	})
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	for len(s.pending.recs) == 0 || s.pending.generation != s.generation.Load() {
		s.queue.release(queuedSize(s.pending.recs)) // a stale batch is dropped
		s.pending.recs = nil
		select {
		case b := <-s.out:
			if b.end != "" {
				s.drainedShard(b)
				continue
			}
			s.pending = b
		case <-s.done:
			return nil, source.ErrClosed
		case <-ctx.Done():
			s.stopCoord()
			return nil, nil
		}
	}
	n := min(max, len(s.pending.recs))
	b := s.pending.recs[:n:n]
	s.pending.recs = s.pending.recs[n:]
	s.queue.release(queuedSize(b))
	return b, nil
}

// drainedShard: every record of the shard has been handed to the pipeline
// (batches leave out in order, and Poll returns one only when the one before
// is fully returned), so its children may start now; the pipeline processes
// their records after the parent's. Its SHARD_END is committed later, with
// the checkpoint that makes its last records durable.
func (s *Source) drainedShard(b batch) {
	s.mu.Lock()
	if r := s.readers[b.end]; r != nil && r.generation == b.generation {
		r.drained = true
	}
	s.mu.Unlock()
	s.wake()
}

// Lags reports MillisBehindLatest of each held shard from its last read;
// idle shards are polled too, so it stays fresh. next is the last record the
// pipeline processed (none when its Seq is empty): while records read from a
// shard wait for the pipeline, in the source's queue or in the pipeline's,
// the shard is behind by at least the age of the newest of them, however
// close to the tip the read was.
func (s *Source) Lags(next map[record.PartitionID]record.Position) map[record.PartitionID]source.Lag {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[record.PartitionID]source.Lag, len(next))
	for id, done := range next {
		if r := s.readers[id.Shard]; r != nil && id.Stream == s.cfg.Stream {
			if ms := r.behind.Load(); ms >= 0 {
				if r.unprocessed(done) {
					ms = max(ms, time.Since(time.UnixMilli(r.lastArrival.Load())).Milliseconds(), 1)
				}
				out[id] = source.Lag{Records: -1, MillisBehind: ms}
			}
		}
	}
	return out
}

// Commit stores restart points in the leases (fenced by owner and counter).
// A shard read to its end and committed past its last record is marked
// finished instead, which lets its children start.
func (s *Source) Commit(ctx context.Context, starts map[record.PartitionID]source.Start, ref string) error {
	ps := map[string]progress{}
	var done []string
	s.mu.Lock()
	for shard, r := range s.readers {
		var st *source.Start
		if x, ok := starts[s.pid(shard)]; ok {
			st = &x
		}
		switch {
		case r.complete(st):
			ps[shard] = progress{End: true, Ref: ref}
			done = append(done, shard)
		case st != nil:
			ps[shard] = progress{Start: st, Ref: ref}
		}
	}
	s.mu.Unlock()
	if len(ps) == 0 {
		return nil
	}
	lost, err := s.leases.checkpoint(ctx, ps)
	if len(lost) > 0 {
		s.lose(lost)
	}
	if err != nil {
		return err
	}
	if len(done) > 0 {
		s.mu.Lock()
		for _, shard := range done {
			if r := s.readers[shard]; r != nil {
				r.finished = true
			}
		}
		s.mu.Unlock()
		s.wake()
	}
	return nil
}

// lose handles leases another instance took (or that could not be renewed
// in time). The pipeline then drops everything it has not committed, for
// every partition, and forgets them all: so every reader stops, what they
// queued is discarded, and the shards still held are released, to be taken
// again (by this instance or another) from their last commit.
func (s *Source) lose(lost []string) {
	s.mu.Lock()
	var ps []record.PartitionID
	var kept []string
	for shard, r := range s.readers {
		r.stop()
		ps = append(ps, s.pid(shard))
		if !slices.Contains(lost, shard) {
			kept = append(kept, shard)
		}
	}
	s.readers = map[string]*reader{}
	s.generation.Add(1)
	s.mu.Unlock()
	if len(ps) == 0 {
		return
	}
	s.log.Warn("kinesis: shard leases lost; every shard is read again from its last commit", "lost", lost)
	// Lost waits for the pipeline's loop, and Commit, which may get here,
	// runs on that loop.
	s.resets.Add(1)
	go func() {
		defer s.resets.Done()
		s.h.Lost(ps)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.life), s.cfg.RequestTimeout.D())
		defer cancel()
		if err := s.leases.release(ctx, kept); err != nil {
			s.log.Warn("kinesis: releasing leases after a loss failed; they expire after failover_time", "err", err)
		}
		s.wake()
	}()
}

// Close stops reading; it checkpoints and releases every held lease so that
// other instances take the shards at once.
func (s *Source) Close() {
	s.closeOnce.Do(func() {
		s.stopCoord()
		s.startOnce.Do(func() {}) // a source never polled holds nothing
		if s.runStarted {
			<-s.runDone
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*s.cfg.RequestTimeout.D())
		defer cancel()
		// Readers stop in handOver; renewal goes on until the leases are
		// committed and released.
		s.resets.Wait()
		s.handOver(ctx, s.ownedShards())
		s.stop()
		if s.runStarted {
			<-s.aliveDone
		}
		s.leases.leave(ctx)
		close(s.done)
	})
}

func (s *Source) ownedShards() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.readers))
	for shard := range s.readers {
		out = append(out, shard)
	}
	sort.Strings(out)
	return out
}

// handOver gives shards up cleanly: reading stops, the pipeline makes what it
// read durable, the restart points are committed and the leases released.
func (s *Source) handOver(ctx context.Context, shards []string) {
	if len(shards) == 0 {
		return
	}
	var ps []record.PartitionID
	s.mu.Lock()
	for _, shard := range shards {
		if r := s.readers[shard]; r != nil {
			r.stop()
			ps = append(ps, s.pid(shard))
		}
	}
	s.mu.Unlock()
	starts, ref, err := s.h.Revoked(ctx, ps)
	if err != nil {
		s.log.Error("could not checkpoint shards given up; their next owner replays from the last commit", "err", err)
	} else if err := s.Commit(ctx, starts, ref); err != nil {
		s.log.Error("commit of shards given up failed; their next owner recovers from the manifest", "err", err)
	}
	s.mu.Lock()
	for _, shard := range shards {
		delete(s.readers, shard)
	}
	s.mu.Unlock()
	if err := s.leases.release(ctx, shards); err != nil {
		s.log.Warn("releasing leases failed; they expire after failover_time", "err", err)
	}
}

// shard is one shard as listed.
type shard struct {
	id      string
	parents []string
	closed  bool
}

// listShards lists every shard of the stream, following pages.
func (s *Source) listShards(ctx context.Context) ([]shard, error) {
	var out []shard
	in := &kinesis.ListShardsInput{StreamName: aws.String(s.cfg.Stream)}
	for {
		cctx, cancel := s.call(ctx)
		resp, err := s.api.ListShards(cctx, in)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("kinesis list shards of %s: %w", s.cfg.Stream, err)
		}
		for _, sh := range resp.Shards {
			out = append(out, toShard(sh))
		}
		if resp.NextToken == nil {
			return out, nil
		}
		in = &kinesis.ListShardsInput{NextToken: resp.NextToken}
	}
}

func toShard(sh types.Shard) shard {
	x := shard{id: aws.ToString(sh.ShardId)}
	for _, p := range []*string{sh.ParentShardId, sh.AdjacentParentShardId} {
		if p != nil && *p != "" {
			x.parents = append(x.parents, *p)
		}
	}
	x.closed = sh.SequenceNumberRange != nil && sh.SequenceNumberRange.EndingSequenceNumber != nil
	return x
}

// wake makes the coordinator re-list shards and look at leases now: a shard
// ended or finished, and its children may be ready.
func (s *Source) wake() {
	select {
	case s.wakeup <- struct{}{}:
	default:
	}
}

// run lists shards every shard_sync_interval (and whenever a shard ends) and
// keeps the leases in step: renewed, taken, balanced, given up when finished.
func (s *Source) run() {
	defer close(s.runDone)
	tick := time.NewTicker(s.leases.interval())
	defer tick.Stop()
	var shards []shard
	var listed time.Time
	relist := true
	for {
		if relist || time.Since(listed) >= s.cfg.ListInterval.D() {
			if sh, err := s.listShards(s.coord); err != nil {
				if s.coord.Err() == nil {
					s.log.Warn("kinesis: listing shards failed; retrying", "err", err)
				}
			} else {
				shards, listed, relist = sh, time.Now(), false
			}
		}
		if shards != nil {
			s.step(s.coord, shards)
			s.refreshBacklog(s.coord, shards)
		}
		select {
		case <-s.coord.Done():
			return
		case <-s.wakeup:
			relist = true
		case <-s.backlog.refresh:
		case <-tick.C:
		}
	}
}

func (s *Source) step(ctx context.Context, shards []shard) {
	s.markDrained(ctx)
	taken, giveUp, err := s.leases.sync(ctx, shards)
	if err != nil && ctx.Err() == nil {
		s.log.Warn("kinesis: lease table sync failed", "err", err)
	}
	s.mu.Lock()
	for shard, r := range s.readers {
		if r.finished {
			giveUp = append(giveUp, shard)
		}
	}
	s.mu.Unlock()
	if len(giveUp) > 0 {
		s.handOver(ctx, giveUp)
	}
	if len(taken) > 0 {
		s.take(ctx, taken)
	}
}

// markDrained tells the leases which held shards are drained, so that their
// children may be taken (by this instance or another).
func (s *Source) markDrained(ctx context.Context) {
	var shards []string
	s.mu.Lock()
	for shard, r := range s.readers {
		if r.drained && !r.marked {
			shards = append(shards, shard)
		}
	}
	s.mu.Unlock()
	if len(shards) == 0 {
		return
	}
	lost, err := s.leases.drained(ctx, shards)
	if len(lost) > 0 {
		s.lose(lost)
		return
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("kinesis: recording drained shards failed; retrying", "shards", shards, "err", err)
		}
		return
	}
	s.mu.Lock()
	for _, shard := range shards {
		if r := s.readers[shard]; r != nil {
			r.marked = true
		}
	}
	s.mu.Unlock()
	s.log.Info("kinesis: shards processed to their end; their children may start", "shards", shards)
}

// take starts reading newly leased shards where the pipeline says.
func (s *Source) take(ctx context.Context, gs []grant) {
	as := make([]source.Assignment, len(gs))
	for i, g := range gs {
		as[i] = source.Assignment{ID: s.pid(g.shard), Committed: g.Start, Ref: g.Ref}
	}
	starts, err := s.h.Assigned(ctx, as)
	if err != nil {
		shards := make([]string, len(gs))
		for i, g := range gs {
			shards[i] = g.shard
		}
		if ctx.Err() == nil {
			s.log.Error("kinesis: taking over shards failed; releasing them to retry", "shards", shards, "err", err)
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RequestTimeout.D())
		defer cancel()
		_ = s.leases.release(rctx, shards)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range gs {
		start := g.Start
		if st, ok := starts[s.pid(g.shard)]; ok {
			start = &st
		}
		s.readers[g.shard] = s.startReader(g.shard, start, g.child)
	}
}
