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
	if err != nil {
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
	if err != nil {
		var se *schema.Error
		if !errors.As(err, &se) {
			return err // not the record's fault (the run is ending)
		}
		stage := dlq.StageSchema
		switch se.Class {
		case schema.ClassMalformedJSON, schema.ClassNotUTF8, schema.ClassEmpty, schema.ClassNotObject, schema.ClassTooDeep,
			schema.ClassMalformedAvro, registry.ClassBadMagic, registry.ClassTruncatedHeader, registry.ClassUnknownSchemaID, registry.ClassSchemaMismatch:
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
