// Package parquetsink writes routed rows into Parquet files, one per bucket, each
// streamed to the object store as a multipart upload. Files roll by size, age,
// inactivity and memory pressure; none becomes visible on its own: PreCommit
// hands the closed files to the checkpoint coordinator, whose manifest commits
// them (DESIGN §3).
package parquetsink

import (
	"cmp"
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sinkd/sinkd/checkpoint"
	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/store"
)

// Options configure one writer (one route's Parquet destination).
type Options struct {
	Route       string
	Config      config.Parquet
	PartSize    int64
	Concurrency int
	// SmallConcurrency bounds uploads of parts below smallPart in flight:
	// a file's last part is mostly small, and a drain rolls every file at
	// once, so their latency, not their bytes, sets how long a drain takes.
	SmallConcurrency int
	MaxOpenFiles     int
	MaxEncoders      int // parquet-go writers lent to the most written files
	Routes           int // Parquet writers sharing Budget
	Schema           *parquet.Schema
	Store            store.Store
	Prefix           string // key prefix inside the store ("" or "dir/")
	Instance         string // sanitized: [A-Za-z0-9_-]
	Epoch            string // unique per process start
	CreatedBy        string // the files' created_by, such as "sinkd version 1.2.0"
	Budget           *Budget
	// Spool holds encoded bytes of open files that do not make a part yet
	// when memory is short; nil or a zero limit spills nothing.
	Spool   *Spool
	Metrics *Metrics
	Logger  *slog.Logger
}

// Writer is not safe for concurrent use: the pipeline drives it from one goroutine.
// Part uploads run in the background, bounded by Concurrency.
type Writer struct {
	o     Options
	codec compress.Codec
	ctx   context.Context // lives as long as the writer; cancels background uploads

	files   map[string]*file
	lru     *list.List // of *file, least recently written at the front
	closing []*file    // rolled, waiting for the next checkpoint
	seq     uint64

	// The encoder pool (encoders.go): idle encoders, how many exist, and
	// the files holding one, least recently written at the front.
	idle        []*encoder
	oneShot     *encoder // builds the row groups of files without an encoder
	encoders    int
	maxEncoders int
	leases      *list.List

	tmpl       footerTemplate  // what every file's footer shares (rowgroup.go)
	feedRows   []parquet.Row   // reused by feed
	feedValues []parquet.Value // reused by feed
	recycled   stagingPool     // staging buffers given back by files that fed an encoder

	// committed: bucket → partition → highest position already in a committed file.
	committed map[string]map[record.PartitionID]record.Position

	bySize   []*file // reused by relieve
	spillBuf []byte  // reused to write staged rows to the spool
	held     int64   // what this writer's open files hold (the sum of their held)
	// quiet counts writes that skip relief after one that could not free
	// anything of this writer's: what is over the budget is held elsewhere.
	quiet int

	// When reaching MaxOpenFiles, and a failed spool write, were last logged.
	capWarned, spoolWarned time.Time

	sem      chan struct{} // part uploads in flight
	smallSem chan struct{} // small part uploads in flight
	createMu sync.Mutex
	createQ  []*file        // files whose upload is not created yet, oldest first
	creators int            // workers draining createQ
	uploaded chan struct{}  // a part upload finished (wakes a writer waiting for memory)
	bg       sync.WaitGroup // background creates and part uploads
	now      time.Time

	// overhead is what one encoder costs before its first row: parquet-go
	// keeps buffers per column. It is charged to the budget while the
	// encoder exists.
	overhead int64

	// Per-route series, resolved once: a label lookup per row costs more
	// than the rest of the bookkeeping.
	rowsWritten, rowsSkipped, rowGroups, steals prometheus.Counter
	encoderGauge                                prometheus.Gauge
}

type span struct{ first, last record.Position }

type file struct {
	bucket    string
	key       string
	out       *partBuffer // encoded bytes in memory, not yet handed to an upload
	spill     spill       // encoded bytes before out, in the spool
	rowSpill  spill       // staged rows older than staged, in the spool
	sent      int64       // bytes handed to part uploads
	rows      int64
	held      int64 // bytes this file charges to the budget
	sinceSize int   // rows since the size estimate was refreshed
	opened    time.Time
	lastWrite time.Time
	spans     map[record.PartitionID]*span
	elem      *list.Element
	up        *upload

	// A file without an encoder stages its rows compactly; one with an
	// encoder hands it rows in batches (encoder.batch).
	staged staging
	// enc, when the file holds one, is building the file's next row group
	// straight into out.
	enc       *encoder
	encRows   int64
	leaseElem *list.Element
	// groups holds what the footer needs of the file's finished row groups.
	groups    []rowGroup
	groupsMem int64
}

// encoderOverhead estimates the memory of one encoder before its first row:
// measured with parquet-go v0.32 at about 18 KiB per column (buffers,
// dictionaries, statistics).
func encoderOverhead(s *parquet.Schema) int64 {
	return int64(len(s.Columns()))*18<<10 + 16<<10
}

const (
	// feedBatch is how many rows a file holding an encoder stages before it
	// hands them over.
	feedBatch = 32
	// minStageLimit is the least a file without an encoder stages before it
	// borrows one, or else makes a row group of what it staged.
	minStageLimit = 128 << 10
	maxStageLimit = 1 << 20
	// maxSpooledStage is maxStageLimit when staged rows may wait in the
	// spool.
	maxSpooledStage = 4 << 20
	// smallPart is the size below which a part uploads under
	// SmallConcurrency.
	smallPart = 1 << 20
	// maxCreates is the least bound of the multipart upload creations in
	// flight.
	maxCreates = 16
	// stealAfter is how long a file holding an encoder may go unwritten
	// before a file that needs one takes it.
	stealAfter = time.Second
	// maxRowGroups bounds a file's footer (and its metadata held in memory);
	// a file that reaches it rolls.
	maxRowGroups = 4096
)

const (
	// minShrink is the least a file must stage for relief to turn its rows
	// into a row group: fewer make row groups of a few rows.
	minShrink = 8 << 10
	// quietWrites is how many writes skip relief after one that found
	// nothing of this writer's to free.
	quietWrites = 256
)

// fileOverhead is charged for every open file: its bookkeeping (structs,
// maps, key) is small but, with tens of thousands of buckets, not nothing.
const fileOverhead = 2 << 10

func (f *file) heldBytes() int64 {
	return fileOverhead + int64(cap(f.out.b)) + f.groupsMem + f.staged.mem + f.pendingEncoded()
}

// flushed is the file offset of out.b[0]: bytes uploaded or spooled.
func (f *file) flushed() int64 { return f.sent + f.spill.n }

// upload is the multipart upload behind one file. Parts upload in background
// goroutines; mu guards what they write.
type upload struct {
	mu      sync.Mutex
	id      string
	created chan struct{}
	parts   []store.Part
	bytes   int64
	err     error
	wg      sync.WaitGroup
}

// partBuffer collects encoded bytes until they make a part.
type partBuffer struct{ b []byte }

func (p *partBuffer) Write(b []byte) (int, error) {
	p.b = append(p.b, b...)
	return len(b), nil
}

var codecs = map[string]compress.Codec{
	"snappy": &parquet.Snappy, "zstd": &parquet.Zstd, "gzip": &parquet.Gzip, "none": &parquet.Uncompressed,
}

func New(ctx context.Context, o Options) (*Writer, error) {
	codec, ok := codecs[o.Config.Compression]
	if !ok {
		return nil, fmt.Errorf("parquet: unknown compression %q", o.Config.Compression)
	}
	for _, path := range o.Schema.Columns() {
		leaf, _ := o.Schema.Lookup(path...)
		if leaf.MaxRepetitionLevel > maxLevel || leaf.MaxDefinitionLevel > maxLevel {
			return nil, fmt.Errorf("parquet: column %s is nested deeper than %d levels", strings.Join(path, "."), maxLevel)
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Concurrency < 1 {
		o.Concurrency = 1
	}
	if o.MaxOpenFiles < 1 {
		o.MaxOpenFiles = 1
	}
	if o.Spool == nil {
		o.Spool = &Spool{}
	}
	overhead := encoderOverhead(o.Schema)
	// Encoders must leave most of the budget to data, or their fixed cost
	// alone would keep it under pressure.
	maxEncoders := max(1, min(o.MaxEncoders, int(o.Budget.Limit()/(4*overhead*int64(max(1, o.Routes))))))
	return &Writer{
		overhead:    overhead,
		tmpl:        footerTemplate{createdBy: cmp.Or(o.CreatedBy, "sinkd"), paths: o.Schema.Columns()},
		maxEncoders: maxEncoders,
		leases:      list.New(),
		recycled:    stagingPool{budget: o.Budget},
		rowsWritten: o.Metrics.rows.WithLabelValues(o.Route),
		rowsSkipped: o.Metrics.skipped.WithLabelValues(o.Route),
		// Resolved up front, which also makes series that stay at zero in
		// a healthy run exist for alerts and dashboards.
		rowGroups:    o.Metrics.rowGroups.WithLabelValues(o.Route),
		steals:       o.Metrics.steals.WithLabelValues(o.Route),
		encoderGauge: o.Metrics.encoders.WithLabelValues(o.Route),
		o:            o,
		codec:        codec,
		ctx:          ctx,
		files:        map[string]*file{},
		lru:          list.New(),
		committed:    map[string]map[record.PartitionID]record.Position{},
		sem:          make(chan struct{}, o.Concurrency),
		smallSem:     make(chan struct{}, max(o.SmallConcurrency, o.Concurrency)),
		uploaded:     make(chan struct{}, 1),
		now:          time.Now(),
	}, nil
}

// SetNow sets the clock used for file age and inactivity; the pipeline calls it
// once per batch so that the per-row path never reads the clock.
func (w *Writer) SetNow(t time.Time) { w.now = t }

// Restore installs the committed positions of a partition from a manifest.
func (w *Writer) Restore(p record.PartitionID, buckets map[string]record.Position) {
	for b, pos := range buckets {
		m := w.committed[b]
		if m == nil {
			m = map[record.PartitionID]record.Position{}
			w.committed[b] = m
		}
		m[p] = pos
	}
}

// Forget drops what the writer remembers of a partition it no longer owns.
func (w *Writer) Forget(p record.PartitionID) {
	for b, m := range w.committed {
		delete(m, p)
		if len(m) == 0 {
			delete(w.committed, b)
		}
	}
}

// Write appends one row to its bucket's file. A replayed record that a committed
// file already holds is skipped: that is what makes replay exactly-once.
func (w *Writer) Write(ctx context.Context, bucket []byte, row parquet.Row, rec *record.Record) error {
	if len(w.committed) > 0 {
		if m, ok := w.committed[string(bucket)]; ok {
			if c, ok := m[rec.Partition]; ok && rec.Position.Compare(c) <= 0 {
				w.rowsSkipped.Inc()
				return nil
			}
		}
	}
	f := w.files[string(bucket)]
	if f == nil {
		var err error
		if f, err = w.open(ctx, string(bucket)); err != nil {
			return err
		}
	} else {
		w.lru.MoveToBack(f.elem)
	}
	if f.enc != nil {
		w.leases.MoveToBack(f.leaseElem)
		f.enc.batch.add(row)
		if f.enc.batch.n >= feedBatch {
			if err := w.feed(f, f.enc); err != nil {
				return err
			}
		}
	} else if err := w.stage(f, row); err != nil {
		return err
	}
	f.rows++
	f.lastWrite = w.now
	if s := f.spans[rec.Partition]; s != nil {
		s.last = rec.Position
	} else {
		f.spans[rec.Partition] = &span{first: rec.Position, last: rec.Position}
	}
	w.rowsWritten.Inc()

	if f.enc == nil {
		// Staged rows are counted exactly, at no cost.
		w.charge(f, f.heldBytes())
	} else {
		// An encoder's size walks every column, so it is refreshed every
		// few rows; in between each row is charged its raw size, which
		// errs high.
		f.held += int64(len(rec.Value))
		w.held += int64(len(rec.Value))
		w.o.Budget.Add(int64(len(rec.Value)))
	}
	f.sinceSize++
	if f.sinceSize < 64 && !w.o.Budget.Over() {
		return nil
	}
	f.sinceSize = 0
	if err := w.account(f); err != nil {
		return err
	}
	if w.o.Budget.Over() {
		if w.quiet > 0 && w.o.Budget.Used() < w.o.Budget.Limit()+w.o.Budget.Limit()/16 {
			w.quiet--
			return nil
		}
		return w.relieve(ctx)
	}
	return nil
}

// stage keeps a row of a file without an encoder. Once the file has staged
// its share it borrows an encoder, or else makes a row group of what it
// staged.
func (w *Writer) stage(f *file, row parquet.Row) error {
	if f.staged.values == nil {
		f.staged = w.recycled.get()
	}
	f.staged.add(row)
	if f.staged.used()+f.rowSpill.n < w.stageLimit() {
		return nil
	}
	leased, err := w.lease(f)
	if err != nil {
		return err
	}
	if leased {
		return w.feed(f, f.enc)
	}
	return w.finishRowGroup(f)
}

// account refreshes a file's charge against the budget and applies the row
// group, part and file size thresholds.
func (w *Writer) account(f *file) error {
	if f.enc != nil {
		if err := w.feed(f, f.enc); err != nil {
			return err
		}
	}
	pending := f.staged.raw + f.pendingEncoded() // the next row group, as the encoder buffers it
	w.charge(f, f.heldBytes())
	if f.flushed()+int64(len(f.out.b))+pending >= w.o.Config.TargetFileSize.Bytes() || len(f.groups) >= maxRowGroups {
		return w.roll(f, "size")
	}
	if pending >= w.o.Config.RowGroupSize.Bytes() {
		if err := w.finishRowGroup(f); err != nil {
			return err
		}
	}
	if f.spill.n+int64(len(f.out.b)) >= w.o.PartSize {
		return w.sendPart(f)
	}
	return nil
}

// feed hands f's staged (and spooled) and batched rows to enc, which copies
// them.
func (w *Writer) feed(f *file, enc *encoder) error {
	if f.rowSpill.n > 0 {
		if err := w.loadRows(f); err != nil {
			return err
		}
	}
	n := f.staged.rows()
	if n > 0 {
		w.feedValues = w.feedValues[:0]
		for i := range n {
			w.feedValues = f.staged.appendRow(w.feedValues, i)
		}
		start := 0
		for i := range n {
			end := int(f.staged.ends[i])
			w.feedRows = append(w.feedRows, w.feedValues[start:end:end])
			start = end
		}
		_, err := enc.pw.WriteRows(w.feedRows)
		// Drop the references into the arena, which reset may release.
		clear(w.feedRows)
		clear(w.feedValues)
		w.feedRows = w.feedRows[:0]
		if !f.staged.reset() {
			w.recycled.put(&f.staged)
		}
		if err != nil {
			return fmt.Errorf("parquet encode into %s: %w", f.key, err)
		}
		f.encRows += int64(n)
	}
	if enc.batch.n > 0 {
		rows := enc.batch.take()
		if _, err := enc.pw.WriteRows(rows); err != nil {
			return fmt.Errorf("parquet encode into %s: %w", f.key, err)
		}
		f.encRows += int64(len(rows))
	}
	return nil
}

// finishRowGroup turns every row of f not yet in a row group into one. A
// file without an encoder uses the one-shot encoder.
func (w *Writer) finishRowGroup(f *file) error {
	enc := f.enc
	if enc == nil {
		if f.staged.rows() == 0 && f.rowSpill.n == 0 {
			return nil
		}
		enc = w.takeOneShot(f.out)
	}
	if err := w.feed(f, enc); err != nil {
		return err
	}
	if f.encRows == 0 {
		return nil
	}
	built := enc.pw.Size()
	start := len(f.out.b)
	if err := enc.pw.Close(); err != nil {
		return fmt.Errorf("parquet row group of %s: %w", f.key, err)
	}
	b, g, _, err := spliceRowGroup(f.out.b, start, f.flushed(), &w.tmpl, enc.pw.File().Metadata(), true)
	if err != nil {
		return fmt.Errorf("parquet row group of %s: %w", f.key, err)
	}
	f.out.b = b
	f.groups = append(f.groups, g)
	f.groupsMem += g.size()
	f.encRows = 0
	w.recycle(enc, f, built)
	w.rowGroups.Inc()
	w.charge(f, f.heldBytes())
	return nil
}

func (w *Writer) charge(f *file, held int64) {
	w.o.Budget.Add(held - f.held)
	w.held += held - f.held
	f.held = held
}

func (w *Writer) open(ctx context.Context, bucket string) (*file, error) {
	for len(w.files) >= w.o.MaxOpenFiles {
		// A safety net far above any working set the budget can hold:
		// reaching it means a file rolls early for every new bucket.
		if w.now.Sub(w.capWarned) >= time.Minute {
			w.capWarned = w.now
			w.o.Logger.Warn("memory.max_open_files reached: the least recently written file rolls early for each new bucket, which makes small files; raise memory.max_open_files (and memory.budget or memory.spool_budget if memory or spool are full too)",
				"route", w.o.Route, "max_open_files", w.o.MaxOpenFiles)
		}
		if err := w.roll(w.lru.Front().Value.(*file), "evicted"); err != nil {
			return nil, err
		}
	}
	w.seq++
	name := fmt.Sprintf("%s.%s.%s.%06d.parquet", w.o.Config.FilePrefix, w.o.Instance, w.o.Epoch, w.seq)
	f := &file{
		bucket:    bucket,
		key:       w.o.Prefix + bucket + "/" + name,
		out:       &partBuffer{b: append([]byte(nil), magic...)},
		opened:    w.now,
		lastWrite: w.now,
		spans:     map[record.PartitionID]*span{},
		up:        &upload{created: make(chan struct{})},
	}
	f.elem = w.lru.PushBack(f)
	w.files[bucket] = f
	w.o.Metrics.openFiles.WithLabelValues(w.o.Route).Inc()
	w.queueCreate(f)
	return f, nil
}

// queueCreate has the file's multipart upload created in the background, so
// that opening a file never waits for the store. Thousands of buckets can
// open within a second: at most maxCreates workers drain one queue, rather
// than a goroutine per file (20,000 parked goroutines cost 160 MB of stacks,
// which the garbage collector scans).
func (w *Writer) queueCreate(f *file) {
	w.createMu.Lock()
	w.createQ = append(w.createQ, f)
	// Creations are small, latency-bound requests like completions: as many
	// run at once (s3.complete_concurrency, at least maxCreates). A drain
	// of thousands of files just opened waits on them.
	start := w.creators < max(maxCreates, w.o.SmallConcurrency)
	if start {
		w.creators++
	}
	w.createMu.Unlock()
	if start {
		w.bg.Add(1)
		go w.createWorker()
	}
}

func (w *Writer) createWorker() {
	defer w.bg.Done()
	for {
		w.createMu.Lock()
		if len(w.createQ) == 0 {
			w.creators--
			w.createMu.Unlock()
			return
		}
		f := w.createQ[0]
		w.createQ[0] = nil
		w.createQ = w.createQ[1:]
		w.createMu.Unlock()
		w.create(f)
	}
}

// create starts the file's multipart upload.
func (w *Writer) create(f *file) {
	defer close(f.up.created)
	if err := w.ctx.Err(); err != nil {
		f.up.mu.Lock()
		f.up.err = err
		f.up.mu.Unlock()
		return
	}
	meta := map[string]string{"sinkd-instance": w.o.Instance, "sinkd-epoch": w.o.Epoch, "sinkd-route": w.o.Route}
	err := w.retry(func(ctx context.Context) error {
		id, err := w.o.Store.CreateUpload(ctx, f.key, meta)
		f.up.id = id
		return err
	})
	if err != nil {
		f.up.mu.Lock()
		f.up.err = err
		f.up.mu.Unlock()
	}
}

// sendPart hands the spooled and buffered bytes to a background upload. It
// blocks while Concurrency uploads are in flight: that is backpressure on the
// pipeline.
func (w *Writer) sendPart(f *file) error {
	mem := int64(cap(f.out.b))
	body := f.out.b
	if f.spill.n > 0 {
		front, err := w.o.Spool.take(&f.spill, len(f.out.b))
		if err != nil {
			return fmt.Errorf("parquet part of %s: %w", f.key, err)
		}
		body = append(front, f.out.b...)
	}
	f.out.b = nil
	f.sent += int64(len(body))
	// The bytes stay charged to the budget until their upload finishes;
	// spooled bytes are charged from now on.
	held := int64(cap(body))
	w.o.Budget.Add(held - mem)
	f.held -= mem
	w.held -= mem
	f.up.mu.Lock()
	f.up.parts = append(f.up.parts, store.Part{})
	number := int32(len(f.up.parts))
	f.up.mu.Unlock()
	f.up.wg.Add(1)
	w.bg.Add(1)
	sem := w.sem
	if len(body) < smallPart {
		sem = w.smallSem
	}
	sem <- struct{}{}
	w.o.Metrics.inflight.Inc()
	go func() {
		defer func() {
			<-sem
			w.o.Metrics.inflight.Dec()
			w.o.Budget.Add(-held)
			f.up.wg.Done()
			w.bg.Done()
			select {
			case w.uploaded <- struct{}{}:
			default:
			}
		}()
		<-f.up.created
		var part store.Part
		err := w.retry(func(ctx context.Context) error {
			if f.up.id == "" {
				return errors.New("multipart upload was not created")
			}
			var err error
			part, err = w.o.Store.UploadPart(ctx, f.key, f.up.id, number, body)
			return err
		})
		f.up.mu.Lock()
		defer f.up.mu.Unlock()
		if err != nil {
			f.up.err = err
			return
		}
		f.up.parts[number-1] = part
		f.up.bytes += int64(len(body))
		w.o.Metrics.parts.WithLabelValues(w.o.Route).Inc()
		w.o.Metrics.bytes.WithLabelValues(w.o.Route).Add(float64(len(body)))
	}()
	return nil
}

// retry runs op until it succeeds or the writer's context ends: a store outage
// stalls the pipeline (bounded memory) instead of losing or skipping data.
func (w *Writer) retry(op func(ctx context.Context) error) error {
	for attempt := 0; ; attempt++ {
		err := op(w.ctx)
		if err == nil || w.ctx.Err() != nil {
			return err
		}
		if errors.Is(err, store.ErrNotFound) {
			// The upload is gone (aborted by someone else, or a lifecycle
			// rule): retrying cannot bring it back.
			return fmt.Errorf("%w: %v", ErrUploadLost, err)
		}
		w.o.Metrics.partRetries.WithLabelValues(w.o.Route).Inc()
		if attempt == 0 || attempt%10 == 0 {
			w.o.Logger.Warn("object store request failed; retrying", "route", w.o.Route, "attempt", attempt+1, "err", err)
		}
		backoff := min(10*time.Second, 100*time.Millisecond<<min(attempt, 7))
		backoff = backoff/2 + rand.N(backoff/2+1)
		select {
		case <-w.ctx.Done():
			return w.ctx.Err()
		case <-time.After(backoff):
		}
	}
}

// roll closes a file: its footer and last bytes go up as the final part, and it
// waits for the next checkpoint to be committed.
func (w *Writer) roll(f *file, reason string) error {
	if err := w.finishRowGroup(f); err != nil {
		return err
	}
	if f.enc != nil {
		w.idle = append(w.idle, w.unlease(f))
	}
	if len(f.groups) == 0 {
		return fmt.Errorf("parquet close %s: no row group was written", f.key)
	}
	tail, err := footer(&w.tmpl, f.groups, nil, f.flushed()+int64(len(f.out.b)))
	if err != nil {
		return fmt.Errorf("parquet close %s: %w", f.key, err)
	}
	f.out.b = append(f.out.b, tail...)
	f.groups, f.groupsMem = nil, 0
	return w.rolled(f, reason)
}

// rolled sends the last part of f, whose footer is written, and moves it to
// the files waiting for a checkpoint.
func (w *Writer) rolled(f *file, reason string) error {
	f.staged = staging{}
	w.charge(f, f.heldBytes())
	if err := w.sendPart(f); err != nil {
		return err
	}
	w.charge(f, 0)
	delete(w.files, f.bucket)
	w.lru.Remove(f.elem)
	w.closing = append(w.closing, f)
	w.o.Metrics.openFiles.WithLabelValues(w.o.Route).Dec()
	w.o.Metrics.rolled.WithLabelValues(w.o.Route, reason).Inc()
	return nil
}

// relieve brings memory back under the budget, largest holders first. A
// file holding mostly rows turns them into a row group (compressed, several
// times smaller); encoded bytes go to the spool while it has room, so that
// files still grow to a part and to their target size. Only when memory and
// spool are both full do the files holding the most roll. As a last resort it
// waits for uploads to drain, which stops the pipeline from reading.
func (w *Writer) relieve(ctx context.Context) error {
	w.dropIdleEncoders()
	w.recycled.drop()
	// Files with an encoder are charged a raw estimate between refreshes.
	for e := w.leases.Front(); e != nil; e = e.Next() {
		f := e.Value.(*file)
		w.charge(f, f.heldBytes())
	}
	if !w.o.Budget.AboveLow() {
		return nil
	}
	// Sorted once: choosing the largest again for every file acted on would
	// cost files² with thousands of buckets open.
	w.sortBySize(0, func(f *file) int64 { return f.held })
	for _, f := range w.bySize {
		if !w.o.Budget.AboveLow() {
			return nil
		}
		if err := w.shrink(f); err != nil {
			return err
		}
	}
	// Memory and spool are both full: roll what holds the most in both, as
	// long as this writer holds its share (otherwise what is over is another
	// route's to relieve, and rolling here would only make small files).
	share := w.o.Budget.Limit() / int64(2*max(1, w.o.Routes))
	if w.o.Budget.AboveLow() && w.held > share {
		w.sortBySize(0, func(f *file) int64 { return f.held + f.spill.n + f.rowSpill.n })
		for _, f := range w.bySize {
			if !w.o.Budget.AboveLow() || w.held <= share {
				break
			}
			if w.files[f.bucket] == f {
				if err := w.roll(f, "memory"); err != nil {
					return err
				}
			}
		}
	}
	for w.o.Budget.AboveLow() {
		if len(w.sem)+len(w.smallSem) == 0 {
			w.quiet = quietWrites
			return nil // what is held belongs to other writers
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.uploaded:
		}
	}
	return nil
}

// sortBySize fills bySize with the open files holding more than least
// beyond their bookkeeping, largest first by key.
func (w *Writer) sortBySize(least int64, key func(*file) int64) {
	clear(w.bySize)
	w.bySize = w.bySize[:0]
	for _, f := range w.files {
		if f.held > fileOverhead+least || f.spill.n+f.rowSpill.n > 0 {
			w.bySize = append(w.bySize, f)
		}
	}
	slices.SortFunc(w.bySize, func(a, b *file) int { return cmp.Compare(key(b), key(a)) })
}

// shrink lowers what one file holds in memory without closing it.
func (w *Writer) shrink(f *file) error {
	if f.staged.mem+f.pendingEncoded() > f.held/2 {
		// Rows short of a row group wait in the spool, if it has room:
		// encoding them now would make a row group of a few rows.
		// Thousands of files each holding a little add up: spilling rows
		// costs one append whatever their number, while encoding fewer
		// than minShrink bytes of them is not worth a row group.
		spilled := false
		if f.enc == nil && f.staged.used()+f.rowSpill.n < w.stageLimit() && w.o.Spool.room(f.staged.used()) {
			spilled = w.spillRows(f) == nil
		}
		if !spilled && (f.enc != nil || f.staged.used()+f.rowSpill.n >= minShrink) {
			if err := w.finishRowGroup(f); err != nil {
				return err
			}
		}
	}
	n := int64(len(f.out.b))
	switch {
	case n == 0:
		return nil
	case f.spill.n+n >= w.o.PartSize:
		return w.sendPart(f)
	case w.o.Spool.room(n):
		if err := w.o.Spool.write(&f.spill, f.out.b); err != nil {
			if w.now.Sub(w.spoolWarned) >= time.Minute {
				w.spoolWarned = w.now
				w.o.Logger.Warn("spool write failed: files roll when memory is full until spool space frees", "dir", w.o.Spool.Dir(), "err", err)
			}
			return nil
		}
		f.out.b = nil
		w.charge(f, f.heldBytes())
	}
	return nil
}

// stageLimit is how much a file without an encoder stages before it borrows
// one: a fair share of the budget among the open files, within
// [minStageLimit, maxStageLimit].
//
// With a spool, staged rows may wait there: the share then counts half the
// spool too, up to maxSpooledStage, so that files with thousands of
// neighbours still make row groups of thousands of rows.
func (w *Writer) stageLimit() int64 {
	files := int64(4 * max(1, len(w.files)))
	if w.o.Spool.limit > 0 {
		return min(maxSpooledStage, max(minStageLimit, (w.o.Budget.Limit()+2*w.o.Spool.limit)/files))
	}
	return min(maxStageLimit, max(minStageLimit, w.o.Budget.Limit()/files))
}

// spillRows moves a file's staged rows to the spool.
func (w *Writer) spillRows(f *file) error {
	w.spillBuf = f.staged.marshal(w.spillBuf[:0])
	if err := w.o.Spool.write(&f.rowSpill, w.spillBuf); err != nil {
		return err
	}
	// The buffers go too, however small: thousands of files each keeping
	// a few KiB of empty staging add up to the budget.
	w.recycled.put(&f.staged)
	w.charge(f, f.heldBytes())
	return nil
}

// loadRows brings a file's spooled rows back in front of its staged ones.
func (w *Writer) loadRows(f *file) error {
	b, err := w.o.Spool.take(&f.rowSpill, 0)
	if err != nil {
		return fmt.Errorf("parquet rows of %s: %w", f.key, err)
	}
	var st staging
	if err := st.unmarshalAppend(b); err != nil {
		return fmt.Errorf("parquet rows of %s: %w", f.key, err)
	}
	if f.staged.rows() > 0 {
		w.spillBuf = f.staged.marshal(w.spillBuf[:0])
		if err := st.unmarshalAppend(w.spillBuf); err != nil {
			return err
		}
	}
	if !f.staged.reset() {
		w.recycled.put(&f.staged)
	}
	f.staged = st
	w.charge(f, f.heldBytes())
	return nil
}

func (f *file) pendingEncoded() int64 {
	if f.enc == nil {
		return 0
	}
	return f.enc.pw.Size()
}

// Tick rolls files by age and inactivity.
func (w *Writer) Tick() error {
	var aged, inactive []*file
	for _, f := range w.files {
		switch {
		case w.o.Config.MaxFileAge > 0 && w.now.Sub(f.opened) >= w.o.Config.MaxFileAge.D():
			aged = append(aged, f)
		case w.o.Config.Inactivity > 0 && w.now.Sub(f.lastWrite) >= w.o.Config.Inactivity.D():
			inactive = append(inactive, f)
		}
	}
	if err := w.rollMany(aged, "age"); err != nil {
		return err
	}
	return w.rollMany(inactive, "inactivity")
}

// RollPartitions closes every open file holding records of the given
// partitions, so that they can be handed over with an exact position.
func (w *Writer) RollPartitions(ps map[record.PartitionID]bool, reason string) error {
	var roll []*file
	for _, f := range w.files {
		for p := range f.spans {
			if ps == nil || ps[p] {
				roll = append(roll, f)
				break
			}
		}
	}
	return w.rollMany(roll, reason)
}

// ErrUploadLost means an open or closed file's multipart upload disappeared
// before it was committed. Its rows are not in any committed file, so the
// process must stop and replay from the last manifest.
var ErrUploadLost = errors.New("multipart upload lost before its commit")

// Prepared is what one writer contributes to a checkpoint.
type Prepared struct {
	Uploads []checkpoint.Upload
	// Highs: partition → bucket → highest position in the files being committed.
	Highs map[record.PartitionID]map[string]record.Position
	// OpenLow: partition → lowest position still only in open files.
	OpenLow map[record.PartitionID]record.Position
	closing int
}

// PreCommit waits until every closed file is fully uploaded (not completed)
// and reports the uploads and positions the manifest must record.
func (w *Writer) PreCommit(ctx context.Context) (*Prepared, error) {
	p := &Prepared{
		Highs:   map[record.PartitionID]map[string]record.Position{},
		OpenLow: map[record.PartitionID]record.Position{},
		closing: len(w.closing),
	}
	for _, f := range w.closing {
		if err := waitGroup(ctx, &f.up.wg); err != nil {
			return nil, fmt.Errorf("waiting for the parts of %s: %w", f.key, err)
		}
		f.up.mu.Lock()
		err, parts, n := f.up.err, append([]store.Part(nil), f.up.parts...), f.up.bytes
		f.up.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("upload of %s failed: %w", f.key, err)
		}
		p.Uploads = append(p.Uploads, checkpoint.Upload{Key: f.key, UploadID: f.up.id, Parts: parts, Rows: f.rows, Bytes: n})
		for pid, s := range f.spans {
			m := p.Highs[pid]
			if m == nil {
				m = map[string]record.Position{}
				p.Highs[pid] = m
			}
			if old, ok := m[f.bucket]; !ok || s.last.Compare(old) > 0 {
				m[f.bucket] = s.last
			}
		}
	}
	for _, f := range w.files {
		for pid, s := range f.spans {
			if old, ok := p.OpenLow[pid]; !ok || s.first.Compare(old) < 0 {
				p.OpenLow[pid] = s.first
			}
		}
	}
	return p, nil
}

// Committed is called once the manifest holding p is written: the files are the
// coordinator's to complete, and their positions become the replay filter.
func (w *Writer) Committed(p *Prepared) {
	w.closing = append(w.closing[:0], w.closing[p.closing:]...)
	for pid, buckets := range p.Highs {
		w.Restore(pid, buckets)
	}
}

// CommittedState returns the replay filter of a partition, without the
// entries that replay from restart can no longer reach.
func (w *Writer) CommittedState(pid record.PartitionID, restart record.Position, after bool) map[string]record.Position {
	var out map[string]record.Position
	for b, m := range w.committed {
		c, ok := m[pid]
		if !ok {
			continue
		}
		// Replay starts at restart (or just after it); a filter entry below
		// that can never match again.
		if cmp := c.Compare(restart); cmp < 0 || (after && cmp == 0) {
			delete(m, pid)
			if len(m) == 0 {
				delete(w.committed, b)
			}
			continue
		}
		if out == nil {
			out = map[string]record.Position{}
		}
		out[b] = c
	}
	return out
}

// Discard drops every file not yet committed, open or closed, and forgets
// the replay filter: the pipeline lost its partitions and will read them again
// from the last manifest. The uploads are aborted in the background once
// their parts are done (recovery at the next start catches any that fail).
func (w *Writer) Discard() {
	drop := append([]*file(nil), w.closing...)
	for _, f := range w.files {
		if f.enc != nil {
			f.enc.pw.Reset(io.Discard) // the row group being built is thrown away
			f.enc.batch.take()
			f.encRows = 0
			w.idle = append(w.idle, w.unlease(f))
		}
		// The abort below may outlive a store outage: it needs the file's
		// upload, not its bytes.
		f.out.b, f.staged, f.groups, f.groupsMem = nil, staging{}, nil, 0
		w.o.Spool.release(&f.spill)
		w.o.Spool.release(&f.rowSpill)
		w.charge(f, 0)
		drop = append(drop, f)
		w.o.Metrics.openFiles.WithLabelValues(w.o.Route).Dec()
	}
	w.files = map[string]*file{}
	w.lru.Init()
	w.closing = nil
	w.committed = map[string]map[record.PartitionID]record.Position{}
	for _, f := range drop {
		w.bg.Add(1)
		go func() {
			defer w.bg.Done()
			f.up.wg.Wait()
			<-f.up.created
			if f.up.id == "" {
				return
			}
			ctx, cancel := context.WithTimeout(w.ctx, time.Minute)
			defer cancel()
			if err := w.o.Store.AbortUpload(ctx, f.key, f.up.id); err != nil {
				w.o.Logger.Warn("aborting a discarded upload failed; the next start aborts it", "key", f.key, "err", err)
			}
		}()
	}
}

// Close waits for background uploads; cancel the writer's context first to
// abandon them (their uploads stay in progress until recovery aborts them).
func (w *Writer) Close() {
	w.bg.Wait()
	w.recycled.drop()
	w.o.Budget.Add(-int64(w.encoders) * w.overhead)
}

// OpenFiles reports how many files are open.
func (w *Writer) OpenFiles() int { return len(w.files) }

// Pending reports how many closed files wait for a checkpoint.
func (w *Writer) Pending() int { return len(w.closing) }

func waitGroup(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// InstanceOf returns the instance a data file key belongs to, from its name
// <prefix>.<instance>.<epoch>.<seq>.parquet; ok is false for other keys.
func InstanceOf(key string) (string, bool) {
	name := key[strings.LastIndexByte(key, '/')+1:]
	name, found := strings.CutSuffix(name, ".parquet")
	if !found {
		return "", false
	}
	parts := strings.Split(name, ".")
	if len(parts) < 4 {
		return "", false
	}
	if _, err := strconv.Atoi(parts[len(parts)-1]); err != nil {
		return "", false
	}
	return parts[len(parts)-3], true
}
