package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
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
	"github.com/sinkd/sinkd/writers"
	"github.com/sinkd/sinkd/writers/parquetsink"
	"github.com/sinkd/sinkd/writers/plugin"
)

// route is one configured route, compiled.
type route struct {
	name string
	cond *buckets.Condition
	// Parquet destination's path (nil when the route has none).
	path     *buckets.Template
	storeURL string
	// OpenSearch destination's templates (none when off).
	indexes []*buckets.Template
	id      *buckets.Template
	version int // column of the external version field, -1 when none
	// plugins are the registered writers the route configures, by name.
	plugins []plugin.Kind
	// dests are the route's writers: Parquet, plugins, OpenSearch.
	dests []writers.Writer
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
	dests    []writers.Writer // every route's writers, in order
	dlq      dlq.Sink
	budget   *parquetsink.Budget
	spool    *parquetsink.Spool
	stores   map[string]store.Store // destination URL → store
	prefixes map[string]string
	coord    *checkpoint.Coordinator
	instance string
	epoch    string
	src      source.Source
	// backlogStreams are the configured streams: their pending gauge exists
	// from the start, at 0.
	backlogStreams []string

	stopWriters context.CancelFunc

	lastStarts map[record.PartitionID]source.Start
	owned      map[record.PartitionID]*partState
	// leftOpen counts the files the final checkpoint left open: the drain's
	// time ran short (drainRollPercent). They stay uncommitted; the manifest
	// replays their records at the next start.
	leftOpen int

	control chan func()
	batches chan batch
	// gen counts resets: a batch polled before a reset (lost partitions) is
	// stale and must not be processed after the partitions come back.
	gen      atomic.Uint64
	loopDone chan struct{}
	// afterLoop serialises the state between the final checkpoint, which
	// runs after the loop has ended, and source callbacks run by do then.
	afterLoop chan struct{}
	fatal     chan error
	ready     chan struct{}
	// neverRan is closed when a pipeline is closed without its loop having
	// run: group callbacks then refuse instead of waiting for a loop that
	// will never come (see closeBuilt).
	neverRan chan struct{}

	row parquet.Row
	now time.Time

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
// it runs fn directly, never while the final checkpoint runs.
func (p *Pipeline) do(ctx context.Context, fn func()) error {
	done := make(chan struct{})
	select {
	case p.control <- func() { fn(); close(done) }:
	case <-p.loopDone:
		select {
		case p.afterLoop <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		defer func() { <-p.afterLoop }()
		fn()
		return nil
	case <-p.neverRan:
		return errNeverRan
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
		for _, w := range p.dests {
			if err := w.Close(context.WithoutCancel(ctx)); err != nil {
				p.log.Warn("closing a writer failed", "writer", w.Name(), "err", err)
			}
		}
		if err := p.spool.Close(); err != nil {
			p.log.Warn("removing the spool directory failed", "err", err)
		}
	}()
	// Group callbacks wait on the loop, so partitions assigned during
	// recovery are taken over once it is done.
	if err := p.recoverWithRetry(ctx); err != nil {
		close(p.neverRan)
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
					if errors.Is(err, checkpoint.ErrFenced) || errors.Is(err, writers.ErrLost) {
						return err
					}
					p.log.Warn("checkpoint failed; retrying at the next interval", "err", err)
				}
			case now := <-tick.C:
				p.now = now
				for _, w := range p.dests {
					if err := w.Tick(now); err != nil {
						return err
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
	timeout := p.cfg.Shutdown.DrainTimeout.D()
	drainCtx, cancel := context.WithTimeout(work, timeout)
	defer cancel()
	p.log.Info("draining: final checkpoint")
	// Held for the checkpoint only: closing the source below runs the
	// revoke callback, which goes through do.
	p.afterLoop <- struct{}{}
	err = p.checkpoint(drainCtx, cpOptions{rollAll: true, commit: true, rollUntil: time.Now().Add(timeout * drainRollPercent / 100)})
	<-p.afterLoop
	if err != nil {
		p.src.Close()
		fetchWG.Wait()
		return fmt.Errorf("final checkpoint: %w", err)
	}
	if p.leftOpen > 0 {
		p.log.Warn("drain: files left open, to be read again at the next start: closing them all would outlast shutdown.drain_timeout; raise it, or s3.complete_concurrency, to commit every file",
			"left_open", p.leftOpen, "drain_timeout", timeout.String())
	}
	// Leaving the group runs the revoke callback, which now finds nothing
	// open, or only what a drain short of time left open on purpose.
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

func (p *Pipeline) process(ctx context.Context, b []record.Record) error {
	started := time.Now()
	p.now = started
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
		for _, w := range r.dests {
			if err := w.Write(ctx, row, rec, p.now); err != nil {
				return err
			}
		}
	}
	return nil
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

// writerDeadLetter is the dead-letter sink as writers see it.
func (p *Pipeline) writerDeadLetter(ctx context.Context, rec *record.Record, stage, class, msg string, details map[string]string) error {
	return p.deadLetter(ctx, rec, dlq.Stage(stage), class, msg, details)
}

// copyRecord detaches a record from the fetch buffers it points into.
func copyRecord(r *record.Record) *record.Record {
	c := *r
	c.Key = append([]byte(nil), r.Key...)
	c.Value = append([]byte(nil), r.Value...)
	c.Headers = append([]record.Header(nil), r.Headers...)
	return &c
}
