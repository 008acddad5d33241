package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sinkd/sinkd/buckets"
	"github.com/sinkd/sinkd/checkpoint"
	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/dlq"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/schema/registry"
	"github.com/sinkd/sinkd/source"
	"github.com/sinkd/sinkd/store"
	"github.com/sinkd/sinkd/writers/opensearch"
	"github.com/sinkd/sinkd/writers/parquetsink"
)

// route is one configured route, compiled.
type route struct {
	name string
	cond *buckets.Condition
	// Parquet destination (nil when the route has none).
	path     *buckets.Template
	pq       *parquetsink.Writer
	storeURL string
	// OpenSearch destination (nil when off).
	os      *opensearch.Writer
	osBuf   []byte // index and id of the document being written
	indexes []*buckets.Template
	id      *buckets.Template
	version int // column of the external version field, -1 when none
}

// partState is what the pipeline knows of one owned source partition.
type partState struct {
	// floor: records at or before it (before it, when !floorAfter) are
	// duplicates fetched again around a rebalance; unknown when !hasFloor.
	floor      record.Position
	floorAfter bool
	hasFloor   bool
	lastTime   time.Time
	committed  *source.Start // last committed restart point, for durable lag
}

// accepts tells whether a record is new to the partition.
func (st *partState) accepts(pos record.Position) bool {
	if !st.hasFloor {
		return true
	}
	c := pos.Compare(st.floor)
	return c > 0 || (c == 0 && !st.floorAfter)
}

// next is the Kafka offset to process next (for lag); for Kinesis, whose
// sequence numbers cannot be counted on, the last processed record itself.
func (st *partState) next() record.Position {
	if st.floorAfter && st.floor.Seq == "" {
		return record.Position{Offset: st.floor.Offset + 1}
	}
	return st.floor
}

// batch is one poll's records, tagged with the reset generation it was
// polled in.
type batch struct {
	gen     uint64
	records []record.Record
}

// Stats are the pipeline's running totals (the demo prints them).
type Stats struct {
	Records, Bytes, DeadLetters, Checkpoints, Files, FileBytes, FileRows int64
	Buckets                                                              map[string]bool
}

// Pipeline reads, decodes, routes and writes; its loop is the only goroutine
// that touches writer and partition state. Group callbacks reach it through
// the control channel.
type Pipeline struct {
	cfg      *config.Config
	log      *slog.Logger
	reg      *prometheus.Registry
	m        *metrics
	dec      decoder
	routes   []*route
	dlq      dlq.Sink
	budget   *parquetsink.Budget
	spool    *parquetsink.Spool
	stores   map[string]store.Store // destination URL → store
	prefixes map[string]string
	mstore   checkpoint.Store
	instance string
	epoch    string
	src      source.Source
	// backlogStreams are the configured streams: their pending gauge exists
	// from the start, at 0.
	backlogStreams []string

	stopWriters context.CancelFunc

	seq uint64
	// recoveredSeq is the first manifest seq this process writes: every
	// manifest of this instance below it existed when recovery ran.
	recoveredSeq uint64
	lastRef      string
	// uncompleted: uploads a written manifest commits but that could not be
	// completed yet. Every later manifest lists them again, so that recovery
	// from any newer manifest still completes them.
	uncompleted []checkpoint.Upload
	lastStarts  map[record.PartitionID]source.Start
	owned       map[record.PartitionID]*partState
	applied     map[string]bool // manifests re-applied in this process

	control chan func()
	batches chan batch
	// gen counts resets: a batch polled before a reset (lost partitions) is
	// stale and must not be processed after the partitions come back.
	gen      atomic.Uint64
	loopDone chan struct{}
	fatal    chan error
	ready    chan struct{}

	row  parquet.Row
	path []byte
	now  time.Time

	statsMu sync.Mutex
	stats   Stats

	healthMu      sync.Mutex
	lastCPSuccess time.Time
	firstFailure  time.Time
}

func (p *Pipeline) Stats() Stats {
	p.statsMu.Lock()
	defer p.statsMu.Unlock()
	s := p.stats
	s.Buckets = make(map[string]bool, len(p.stats.Buckets))
	for k := range p.stats.Buckets {
		s.Buckets[k] = true
	}
	return s
}

// do runs fn on the loop goroutine and waits for it; once the loop has ended
// it runs fn directly, as nothing else touches the state then.
func (p *Pipeline) do(ctx context.Context, fn func()) error {
	done := make(chan struct{})
	select {
	case p.control <- func() { fn(); close(done) }:
	case <-p.loopDone:
		fn()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-p.loopDone:
		<-done
		return nil
	}
}

// Run processes records until ctx ends, then drains: it stops reading, rolls
// every open file, takes a final checkpoint and leaves the group.
func (p *Pipeline) Run(ctx context.Context) error {
	defer func() {
		p.stopWriters()
		for _, r := range p.routes {
			if r.pq != nil {
				r.pq.Close()
			}
		}
		if err := p.spool.Close(); err != nil {
			p.log.Warn("removing the spool directory failed", "err", err)
		}
	}()
	// Group callbacks wait on the loop, so partitions assigned during
	// recovery are taken over once it is done.
	if err := p.recoverWithRetry(ctx); err != nil {
		p.src.Close()
		return err
	}
	p.log.Info("sinkd running", "pipeline", p.cfg.Pipeline, "instance", p.instance, "version", Version)
	fetchCtx, stopFetch := context.WithCancel(context.WithoutCancel(ctx))
	defer stopFetch()
	var fetchWG sync.WaitGroup
	fetchWG.Add(1)
	go func() {
		defer fetchWG.Done()
		p.fetch(fetchCtx)
	}()

	cpTicker := time.NewTicker(p.cfg.Checkpoint.Interval.D())
	defer cpTicker.Stop()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	close(p.ready)

	// Work outlives ctx during the drain, bounded by the drain timeout.
	work := context.WithoutCancel(ctx)
	err := func() error {
		defer close(p.loopDone)
		for {
			select {
			case <-ctx.Done():
				return nil
			case err := <-p.fatal:
				return err
			case fn := <-p.control:
				fn()
			case b := <-p.batches:
				if b.gen != p.gen.Load() {
					continue // polled before a reset: read again from the manifest
				}
				if err := p.process(work, b.records); err != nil {
					return err
				}
			case <-cpTicker.C:
				if err := p.checkpoint(work, cpOptions{commit: true}); err != nil {
					if errors.Is(err, checkpoint.ErrFenced) || errors.Is(err, parquetsink.ErrUploadLost) {
						return err
					}
					p.log.Warn("checkpoint failed; retrying at the next interval", "err", err)
				}
			case now := <-tick.C:
				p.setNow(now)
				for _, r := range p.routes {
					if r.pq != nil {
						if err := r.pq.Tick(); err != nil {
							return err
						}
					}
				}
				p.updateLag()
				p.updateBacklog()
			}
		}
	}()
	stopFetch()
	// A schema change drains like a stop: the files in progress close, and
	// the record that changed the schema is read again by the next run.
	var change *registry.SchemaChange
	if err != nil && !errors.As(err, &change) {
		p.src.Close()
		fetchWG.Wait()
		return err
	}
	drainCtx, cancel := context.WithTimeout(work, p.cfg.Shutdown.DrainTimeout.D())
	defer cancel()
	p.log.Info("draining: final checkpoint")
	if err := p.checkpoint(drainCtx, cpOptions{rollAll: true, commit: true}); err != nil {
		p.src.Close()
		fetchWG.Wait()
		return fmt.Errorf("final checkpoint: %w", err)
	}
	// Leaving the group runs the revoke callback, which now finds nothing open.
	p.src.Close()
	fetchWG.Wait()
	if change != nil {
		return change
	}
	return nil
}

func (p *Pipeline) fetch(ctx context.Context) {
	for ctx.Err() == nil {
		gen := p.gen.Load()
		b, err := p.src.Poll(ctx, 4096)
		if err != nil {
			if errors.Is(err, source.ErrClosed) || ctx.Err() != nil {
				return
			}
			p.log.Warn("poll failed", "err", err)
			continue
		}
		if len(b) == 0 {
			continue
		}
		select {
		case p.batches <- batch{gen: gen, records: b}:
		case <-ctx.Done():
			return
		}
	}
}

func (p *Pipeline) setNow(t time.Time) {
	p.now = t
	for _, r := range p.routes {
		if r.pq != nil {
			r.pq.SetNow(t)
		}
	}
}

func (p *Pipeline) process(ctx context.Context, b []record.Record) error {
	started := time.Now()
	p.setNow(started)
	var n, bytes int64
	for i := range b {
		rec := &b[i]
		st := p.owned[rec.Partition]
		if st == nil {
			continue // revoked while in flight: its next owner reads it
		}
		if !st.accepts(rec.Position) {
			continue // fetched twice around a rebalance
		}
		if err := p.handle(ctx, rec); err != nil {
			return err
		}
		st.floor, st.floorAfter, st.hasFloor = rec.Position, true, true
		st.lastTime = rec.Timestamp
		n++
		bytes += int64(len(rec.Value))
	}
	if len(b) > 0 {
		stream := b[0].Partition.Stream
		p.m.recordsIn.WithLabelValues(p.src.Kind().String(), stream).Add(float64(n))
		p.m.bytesIn.WithLabelValues(p.src.Kind().String(), stream).Add(float64(bytes))
	}
	p.statsMu.Lock()
	p.stats.Records += n
	p.stats.Bytes += bytes
	p.statsMu.Unlock()
	p.m.busy.Add(time.Since(started).Seconds())
	return nil
}

// decoder turns a record value into a row: JSON by the configured fields, or
// Avro through a schema registry. A record at fault is a *schema.Error.
type decoder interface {
	Decode(ctx context.Context, value []byte, row parquet.Row) (parquet.Row, error)
}

// handle sends one record through decode, route and write. Bad data goes to
// the dead-letter sink; only infrastructure errors are returned.
func (p *Pipeline) handle(ctx context.Context, rec *record.Record) error {
	if f := rec.Failure; f != nil {
		return p.deadLetter(ctx, rec, dlq.Stage(f.Stage), f.Class, f.Message, nil)
	}
	if max := p.cfg.MaxRecordSize.Bytes(); max > 0 && int64(len(rec.Value)) > max {
		return p.deadLetter(ctx, rec, dlq.StageOversize, "oversize",
			fmt.Sprintf("record of %d bytes exceeds max_record_size %s", len(rec.Value), p.cfg.MaxRecordSize), nil)
	}
	row, err := p.dec.Decode(ctx, rec.Value, p.row[:0])
	p.row = row
	if errors.Is(err, schema.ErrSkip) {
		return nil // a CDC delete dropped by configuration, a tombstone
	}
	if err != nil {
		var se *schema.Error
		if !errors.As(err, &se) {
			return err // not the record's fault (the run is ending)
		}
		stage := dlq.StageSchema
		switch se.Class {
		case schema.ClassMalformedJSON, schema.ClassNotUTF8, schema.ClassEmpty, schema.ClassNotObject, schema.ClassTooDeep,
			schema.ClassMalformedAvro, registry.ClassBadMagic, registry.ClassTruncatedHeader, registry.ClassUnknownSchemaID, registry.ClassSchemaMismatch,
			schema.ClassMalformedProtobuf, registry.ClassBadMessageIndex, schema.ClassIncompatibleSchema, schema.ClassBadEnvelope:
			stage = dlq.StageDecode
		}
		return p.deadLetter(ctx, rec, stage, se.Class, err.Error(), nil)
	}
	for _, r := range p.routes {
		if r.cond != nil && !r.cond.Match(row) {
			continue
		}
		if r.pq != nil {
			path, err := r.path.Append(p.path[:0], row, rec, p.now)
			p.path = path
			if err != nil {
				if err := p.templateFailure(ctx, rec, err, r.name, "path"); err != nil {
					return err
				}
				continue
			}
			if err := r.pq.Write(ctx, path, row, rec); err != nil {
				return err
			}
		}
		if r.os != nil {
			if err := p.writeDoc(ctx, r, row, rec); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *Pipeline) writeDoc(ctx context.Context, r *route, row parquet.Row, rec *record.Record) error {
	// Id and index are rendered into one buffer the route keeps (id first,
	// then each index after it): the writer copies them, so nothing is
	// allocated per document.
	buf, err := r.id.Append(r.osBuf[:0], row, rec, p.now)
	if err != nil {
		return p.templateFailure(ctx, rec, err, r.name, "id")
	}
	idLen := len(buf)
	var version int64
	if r.version >= 0 {
		if v, ok := schema.Value(row, r.version); ok && !v.IsNull() {
			version = v.Int64()
		}
	}
	for _, t := range r.indexes {
		buf, err = t.Append(buf[:idLen], row, rec, p.now)
		if err != nil {
			if err := p.templateFailure(ctx, rec, err, r.name, "index"); err != nil {
				return err
			}
			continue
		}
		if err := r.os.WriteBytes(ctx, buf[idLen:], buf[:idLen], version, rec.Value, rec); err != nil {
			return err
		}
	}
	r.osBuf = buf[:0]
	return nil
}

func (p *Pipeline) templateFailure(ctx context.Context, rec *record.Record, err error, routeName, what string) error {
	class := "other"
	var be *buckets.Error
	if errors.As(err, &be) {
		class = be.Class
	}
	return p.deadLetter(ctx, rec, dlq.StageBucket, class, err.Error(), map[string]string{"route": routeName, "template": what})
}

func (p *Pipeline) deadLetter(ctx context.Context, rec *record.Record, stage dlq.Stage, class, msg string, details map[string]string) error {
	now := time.Now()
	if details == nil {
		details = map[string]string{}
	}
	details[dlq.DetailMaxRedrives] = strconv.Itoa(p.cfg.DLQ.MaxRedrives)
	l := &dlq.Letter{
		Record: copyRecord(rec), Stage: stage, Class: class, Message: msg, Attempts: 1,
		FirstFailure: now, LastFailure: now, Details: details, RedriveCount: dlq.RedriveCount(rec),
	}
	p.statsMu.Lock()
	p.stats.DeadLetters++
	p.statsMu.Unlock()
	return p.dlq.Send(ctx, l)
}

// copyRecord detaches a record from the fetch buffers it points into.
func copyRecord(r *record.Record) *record.Record {
	c := *r
	c.Key = append([]byte(nil), r.Key...)
	c.Value = append([]byte(nil), r.Value...)
	c.Headers = append([]record.Header(nil), r.Headers...)
	return &c
}

// updateLag publishes fetched and durable lag, and how far behind the
// newest record the pipeline is.
func (p *Pipeline) updateLag() {
	next := make(map[record.PartitionID]record.Position, len(p.owned))
	durable := make(map[record.PartitionID]record.Position, len(p.owned))
	for id, st := range p.owned {
		next[id] = st.next()
		if st.committed != nil {
			durable[id] = (&partState{floor: st.committed.Position, floorAfter: st.committed.After}).next()
		}
	}
	lags, durableLags := p.src.Lags(next), p.src.Lags(durable)
	kind := p.src.Kind().String()
	for id, st := range p.owned {
		l, ok := lags[id]
		if !ok {
			continue
		}
		part := partitionLabel(id)
		if l.Records >= 0 {
			p.m.lagRecords.WithLabelValues(kind, id.Stream, part).Set(float64(l.Records))
		}
		if d, ok := durableLags[id]; ok && d.Records >= 0 {
			p.m.durableLagRecords.WithLabelValues(kind, id.Stream, part).Set(float64(d.Records))
		}
		behind := float64(l.MillisBehind)
		if l.MillisBehind < 0 {
			// Kafka: the age of the last processed record while behind.
			behind = 0
			if l.Records > 0 && !st.lastTime.IsZero() {
				behind = float64(time.Since(st.lastTime).Milliseconds())
			}
		}
		p.m.millisBehind.WithLabelValues(kind, id.Stream, part).Set(behind)
	}
}

// updateBacklog publishes the source's view of every partition, owned or
// not, so that a sum of lag is 0 only when nothing is unread.
func (p *Pipeline) updateBacklog() {
	kind := p.src.Kind().String()
	pending := map[string]int{}
	for _, s := range p.backlogStreams {
		pending[s] = 0
	}
	p.m.groupLagRecords.Reset()
	p.m.pendingMillis.Reset()
	for _, b := range p.src.Backlogs() {
		part := partitionLabel(b.ID)
		if b.GroupRecords >= 0 {
			p.m.groupLagRecords.WithLabelValues(kind, b.ID.Stream, part).Set(float64(b.GroupRecords))
		}
		if b.Pending {
			pending[b.ID.Stream]++
			if b.PendingMillis >= 0 {
				p.m.pendingMillis.WithLabelValues(kind, b.ID.Stream, part).Set(float64(b.PendingMillis))
			}
		}
	}
	for s, n := range pending {
		p.m.pendingParts.WithLabelValues(kind, s).Set(float64(n))
	}
}

func partitionLabel(id record.PartitionID) string {
	if id.Shard != "" {
		return id.Shard
	}
	return strconv.Itoa(int(id.Partition))
}

// Caught reports whether every owned partition has processed up to the end
// of its stream (the demo and tests wait for it).
func (p *Pipeline) Caught(ctx context.Context) bool {
	caught := false
	_ = p.do(ctx, func() {
		if len(p.owned) == 0 {
			return
		}
		next := make(map[record.PartitionID]record.Position, len(p.owned))
		for id, st := range p.owned {
			next[id] = st.next()
		}
		lags := p.src.Lags(next)
		for id := range p.owned {
			l, ok := lags[id]
			if !ok || l.Records > 0 || l.MillisBehind > 0 {
				return
			}
		}
		caught = true
	})
	return caught
}

// ---- group membership ----

// Assigned adopts new partitions: the manifest their last commit names (or a
// newer one of the same instance) says where replay starts and which replayed
// records committed files already hold.
func (p *Pipeline) Assigned(ctx context.Context, as []source.Assignment) (map[record.PartitionID]source.Start, error) {
	starts := map[record.PartitionID]source.Start{}
	var err error
	doErr := p.do(ctx, func() {
		for _, a := range as {
			st := &partState{committed: a.Committed}
			state, ferr := p.findState(ctx, a)
			if ferr != nil {
				err = ferr
				return
			}
			switch {
			case state != nil:
				start := source.Start{Position: state.Restart, After: state.After}
				starts[a.ID] = start
				st.floor, st.floorAfter, st.hasFloor = start.Position, start.After, true
				for _, r := range p.routes {
					if r.pq != nil {
						r.pq.Restore(a.ID, state.Committed[r.name])
					}
				}
			case a.Committed != nil:
				st.floor, st.floorAfter, st.hasFloor = a.Committed.Position, a.Committed.After, true
			}
			p.owned[a.ID] = st
			p.log.Info("partition assigned", "partition", a.ID.String(), "start", st.floor.String(), "after", st.floorAfter, "from_manifest", state != nil)
		}
		p.m.ownedPartitions.Set(float64(len(p.owned)))
	})
	if doErr != nil {
		return nil, doErr
	}
	return starts, err
}

func (p *Pipeline) findState(ctx context.Context, a source.Assignment) (*checkpoint.PartitionState, error) {
	inst, seq, ok := checkpoint.ParseRef(a.Ref)
	if !ok {
		if a.Committed != nil {
			return nil, nil // a position sinkd did not commit: it is the truth
		}
		// Never committed: a run of this instance may have written a
		// manifest naming the partition and died before its first commit.
		// Without that manifest's filter, replay from the start would
		// write again what its files hold.
		return p.ownState(ctx, a.ID)
	}
	m, err := p.mstore.Find(ctx, inst, seq, a.ID.String())
	if err != nil || m == nil {
		return nil, err
	}
	if err := p.apply(ctx, m); err != nil {
		return nil, err
	}
	return m.Partitions[a.ID.String()], nil
}

// ownState is the partition's state in the newest manifest of this
// instance that recovery saw. A manifest written later by a dead run (its
// write still in flight when this process started) is not trusted: recovery
// has already aborted the uploads it lists.
func (p *Pipeline) ownState(ctx context.Context, id record.PartitionID) (*checkpoint.PartitionState, error) {
	seqs, err := p.mstore.Seqs(ctx, p.instance)
	if err != nil {
		return nil, err
	}
	for i := len(seqs) - 1; i >= 0; i-- {
		if seqs[i] >= p.recoveredSeq {
			continue
		}
		m, err := p.mstore.Read(ctx, p.instance, seqs[i])
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if st, ok := m.Partitions[id.String()]; ok {
			if err := p.apply(ctx, m); err != nil {
				return nil, err
			}
			return st, nil
		}
	}
	return nil, nil
}

// Revoked checkpoints with every file that holds records of the revoked
// partitions rolled, so that they leave with an exact position.
func (p *Pipeline) Revoked(ctx context.Context, ps []record.PartitionID) (map[record.PartitionID]source.Start, string, error) {
	var starts map[record.PartitionID]source.Start
	var ref string
	var err error
	doErr := p.do(ctx, func() {
		set := map[record.PartitionID]bool{}
		for _, id := range ps {
			set[id] = true
		}
		if err = p.checkpoint(ctx, cpOptions{roll: set}); err != nil {
			// Keeping the partitions would commit their open files later,
			// beside what the next owner writes, and the partitions we keep
			// cannot be rewound here: stop; the restart recovers from the
			// last manifest. (Rare: a checkpoint failing during a rebalance.)
			select {
			case p.fatal <- fmt.Errorf("checkpoint at a partition handover failed: %w", err):
			default:
			}
			return
		}
		starts, ref = p.restartPoints(), p.lastRef
		for _, id := range ps {
			delete(p.owned, id)
			// A frozen series for a partition another instance now owns
			// would inflate the lag an autoscaler sums.
			p.forgetMetrics(p.src.Kind().String(), id)
			for _, r := range p.routes {
				if r.pq != nil {
					r.pq.Forget(id)
				}
			}
		}
		p.m.ownedPartitions.Set(float64(len(p.owned)))
	})
	if doErr != nil {
		return nil, "", doErr
	}
	return starts, ref, err
}

// Lost partitions cannot be committed any more (the group session expired,
// say during a broker outage). Everything not yet committed is dropped and
// the partitions are forgotten; when the group assigns them again, replay
// starts from the last manifest, exactly as after a crash, without one.
func (p *Pipeline) Lost(ps []record.PartitionID) {
	_ = p.do(context.Background(), p.reset)
	// Again after the callback: a poll that began while the reset ran may
	// still return records of the lost session.
	p.gen.Add(1)
}

// reset discards all uncommitted work: a lost session takes every partition.
func (p *Pipeline) reset() {
	p.gen.Add(1)
	p.log.Warn("partitions lost: dropping uncommitted files; they are read again from the last manifest", "partitions", len(p.owned))
	for _, r := range p.routes {
		if r.pq != nil {
			r.pq.Discard()
		}
	}
	kind := p.src.Kind().String()
	for id := range p.owned {
		p.forgetMetrics(kind, id)
	}
	p.owned = map[record.PartitionID]*partState{}
	p.lastStarts = nil
	p.m.ownedPartitions.Set(0)
}

func (p *Pipeline) forgetMetrics(kind string, id record.PartitionID) {
	part := partitionLabel(id)
	p.m.lagRecords.DeleteLabelValues(kind, id.Stream, part)
	p.m.durableLagRecords.DeleteLabelValues(kind, id.Stream, part)
	p.m.millisBehind.DeleteLabelValues(kind, id.Stream, part)
}

// ---- the checkpoint ----

// cpOptions say which files a checkpoint closes first and whether it commits
// the source positions itself (a revoke callback commits them instead).
type cpOptions struct {
	rollAll bool
	roll    map[record.PartitionID]bool
	commit  bool
}

// checkpoint runs the protocol of DESIGN §3.
func (p *Pipeline) checkpoint(ctx context.Context, o cpOptions) error {
	started := time.Now()
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Checkpoint.Timeout.D())
	defer cancel()
	err := p.checkpointOnce(ctx, o)
	p.m.cpDuration.Observe(time.Since(started).Seconds())
	p.healthMu.Lock()
	defer p.healthMu.Unlock()
	if err != nil {
		p.m.cpFailures.Inc()
		if p.firstFailure.IsZero() {
			p.firstFailure = time.Now()
		}
		return err
	}
	p.firstFailure = time.Time{}
	p.lastCPSuccess = time.Now()
	p.m.cpLastSuccess.SetToCurrentTime()
	return nil
}

func (p *Pipeline) checkpointOnce(ctx context.Context, o cpOptions) error {
	began := time.Now()
	if o.rollAll || len(o.roll) > 0 {
		for _, r := range p.routes {
			if r.pq != nil {
				if err := r.pq.RollPartitions(o.roll, "handover"); err != nil {
					return err
				}
			}
		}
	}
	m := &checkpoint.Manifest{
		Pipeline: p.cfg.Pipeline, Instance: p.instance, Epoch: p.epoch, Seq: p.seq, Created: time.Now().UTC(),
		Partitions: map[string]*checkpoint.PartitionState{},
		Uploads:    append([]checkpoint.Upload(nil), p.uncompleted...),
	}
	carried := len(m.Uploads)
	preps := make([]*parquetsink.Prepared, len(p.routes))
	openLow := map[record.PartitionID]record.Position{}
	for i, r := range p.routes {
		if r.pq == nil {
			continue
		}
		prep, err := r.pq.PreCommit(ctx)
		if err != nil {
			return err
		}
		preps[i] = prep
		for _, u := range prep.Uploads {
			u.Store = r.storeURL
			m.Uploads = append(m.Uploads, u)
		}
		for pid, low := range prep.OpenLow {
			if old, ok := openLow[pid]; !ok || low.Compare(old) < 0 {
				openLow[pid] = low
			}
		}
		// The filter may learn the new highs now: the records are processed
		// either way, and they only become replayable if this checkpoint fails
		// and the process dies, which loses the filter too.
		for pid, highs := range prep.Highs {
			r.pq.Restore(pid, highs)
		}
	}
	for _, r := range p.routes {
		if r.os != nil {
			if err := r.os.Flush(ctx); err != nil {
				return fmt.Errorf("opensearch flush (route %s): %w", r.name, err)
			}
		}
	}
	if err := p.dlq.Flush(ctx); err != nil {
		return fmt.Errorf("dead-letter flush: %w", err)
	}
	starts := make(map[record.PartitionID]source.Start, len(p.owned))
	for id, st := range p.owned {
		ps := &checkpoint.PartitionState{Kind: p.src.Kind()}
		switch low, open := openLow[id]; {
		case open:
			ps.Restart = low
		case st.hasFloor:
			ps.Restart, ps.After = st.floor, st.floorAfter
		default:
			continue // nothing read and nothing known: the source's own start applies
		}
		for _, r := range p.routes {
			if r.pq == nil {
				continue
			}
			if c := r.pq.CommittedState(id, ps.Restart, ps.After); len(c) > 0 {
				if ps.Committed == nil {
					ps.Committed = map[string]map[string]record.Position{}
				}
				ps.Committed[r.name] = c
			}
		}
		m.Partitions[id.String()] = ps
		starts[id] = source.Start{Position: ps.Restart, After: ps.After}
	}
	if err := p.mstore.Write(ctx, m); err != nil {
		return fmt.Errorf("writing manifest %d: %w", m.Seq, err)
	}
	// Committed: from here on the manifest is the truth, and everything below
	// is an idempotent re-application of it.
	written := time.Now()
	p.log.Debug("checkpoint: manifest written", "seq", m.Seq, "uploads", len(m.Uploads), "partitions", len(m.Partitions),
		"prepare", written.Sub(began).String())
	p.seq++
	p.lastRef = checkpoint.Ref(p.instance, m.Seq)
	p.lastStarts = starts
	for i, r := range p.routes {
		if preps[i] != nil {
			r.pq.Committed(preps[i])
		}
	}
	failed := p.complete(ctx, m.Uploads)
	p.uncompleted = failed
	if o.rollAll {
		p.log.Info("drain: files committed", "files", len(m.Uploads), "prepare", written.Sub(began).String(), "complete", time.Since(written).String())
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d uploads of manifest %d not completed yet (retried at the next checkpoint): %s", len(failed), m.Seq, failed[0].Key)
	}
	p.applied[p.lastRef] = true
	p.statsMu.Lock()
	p.stats.Checkpoints++
	for _, u := range m.Uploads[carried:] {
		p.stats.Files++
		p.stats.FileBytes += u.Bytes
		p.stats.FileRows += u.Rows
		if p.stats.Buckets == nil {
			p.stats.Buckets = map[string]bool{}
		}
		p.stats.Buckets[u.Store+"|"+u.Key[:strings.LastIndexByte(u.Key, '/')]] = true
	}
	p.statsMu.Unlock()
	if o.commit {
		if err := p.src.Commit(ctx, starts, p.lastRef); err != nil {
			// The manifest holds the truth; the next commit catches up.
			p.log.Warn("committing source positions failed", "err", err)
		} else {
			for id, start := range starts {
				if st := p.owned[id]; st != nil {
					st.committed = &start
				}
			}
		}
	}
	if m.Seq%50 == 0 {
		if err := p.mstore.Prune(ctx, p.instance, manifestsKept); err != nil {
			p.log.Warn("pruning old manifests failed", "err", err)
		}
	}
	return nil
}

// manifestsKept bounds the manifests kept per instance. A partition's next
// owner reads the newest manifest naming it, which is never older than the
// instance's last checkpoints while the partition is still unassigned.
const manifestsKept = 200

// restartPoints are the positions the last manifest recorded: the true
// restart points, which the source commits.
func (p *Pipeline) restartPoints() map[record.PartitionID]source.Start {
	out := make(map[record.PartitionID]source.Start, len(p.lastStarts))
	for id, st := range p.lastStarts {
		out[id] = st
	}
	return out
}

// complete finishes uploads in parallel, each retried a few times, and
// returns those that could not be completed.
func (p *Pipeline) complete(ctx context.Context, uploads []checkpoint.Upload) []checkpoint.Upload {
	// Completing is a small request per file: many at once keep a
	// checkpoint short even when memory pressure rolled many small files.
	sem := make(chan struct{}, p.cfg.S3.CompleteConcurrency)
	var mu sync.Mutex
	var failed []checkpoint.Upload
	var wg sync.WaitGroup
	for _, u := range uploads {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := p.completeOne(ctx, u)
			if err == nil {
				return
			}
			p.log.Warn("completing an upload failed", "key", u.Key, "err", err)
			mu.Lock()
			failed = append(failed, u)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return failed
}

func (p *Pipeline) completeOne(ctx context.Context, u checkpoint.Upload) error {
	s, ok := p.stores[u.Store]
	if !ok {
		return fmt.Errorf("the manifest names destination %s, which this configuration does not have", u.Store)
	}
	for attempt := 0; ; attempt++ {
		err := s.CompleteUpload(ctx, u.Key, u.UploadID, u.Parts)
		if err == nil {
			p.m.cpFiles.Inc()
			p.m.cpBytes.Add(float64(u.Bytes))
			return nil
		}
		if ctx.Err() != nil || attempt == 4 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(100<<attempt) * time.Millisecond):
		}
	}
}

// apply re-applies a manifest (once per process): it completes its uploads.
func (p *Pipeline) apply(ctx context.Context, m *checkpoint.Manifest) error {
	ref := checkpoint.Ref(m.Instance, m.Seq)
	if p.applied[ref] {
		return nil
	}
	if failed := p.complete(ctx, m.Uploads); len(failed) > 0 {
		return fmt.Errorf("re-applying manifest %s: %d uploads could not be completed (first %s)", ref, len(failed), failed[0].Key)
	}
	p.applied[ref] = true
	return nil
}
