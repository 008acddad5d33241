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
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/store"
	"github.com/sinkd/sinkd/writers"
)

// Options configure one writer (one route's Parquet destination).
type Options struct {
	Route       string
	Config      Config
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
	Destination      string // Store's URL: manifest entries name it
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
	writes  uint64  // rows written, the clock of least recently written
	closing []*file // rolled, waiting for the next checkpoint
	seq     uint64

	// The encoder pool (encoders.go): idle encoders, how many exist, and
	// the files holding one, least recently written at the front.
	idle        []*encoder
	oneShot     *encoder // builds the row groups of files without an encoder
	encoders    int
	maxEncoders int
	leases      *list.List

	tmpl     footerTemplate // what every file's footer shares (rowgroup.go)
	columns  columnFeed     // reused by feed
	recycled chunkPool      // staging chunks given back by files

	// committed: bucket → partition → highest position already in a committed file.
	committed writers.ReplayFilter

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
	partRetries                                 prometheus.Counter
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

var codecs = map[string]compress.Codec{
	"snappy": &parquet.Snappy, "zstd": &parquet.Zstd, "gzip": &parquet.Gzip, "none": &parquet.Uncompressed,
}

func New(ctx context.Context, o Options) (*Writer, error) {
	codec, ok := codecs[o.Config.Compression]
	if !ok {
		return nil, fmt.Errorf("parquet: unknown compression %q", o.Config.Compression)
	}
	if err := CheckSchema(o.Schema); err != nil {
		return nil, fmt.Errorf("parquet: %w", err)
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
		recycled:    newChunkPool(o.Budget),
		rowsWritten: o.Metrics.rows.WithLabelValues(o.Route),
		rowsSkipped: o.Metrics.skipped.WithLabelValues(o.Route),
		// Resolved up front, which also makes series that stay at zero in
		// a healthy run exist for alerts and dashboards.
		rowGroups:    o.Metrics.rowGroups.WithLabelValues(o.Route),
		steals:       o.Metrics.steals.WithLabelValues(o.Route),
		encoderGauge: o.Metrics.encoders.WithLabelValues(o.Route),
		partRetries:  o.Metrics.partRetries.WithLabelValues(o.Route),
		o:            o,
		codec:        codec,
		ctx:          ctx,
		files:        map[string]*file{},
		committed:    writers.NewReplayFilter(),
		sem:          make(chan struct{}, o.Concurrency),
		smallSem:     make(chan struct{}, max(o.SmallConcurrency, o.Concurrency)),
		uploaded:     make(chan struct{}, 1),
		now:          time.Now(),
	}, nil
}

// SetNow sets the clock used for file age and inactivity; the pipeline calls it
// once per batch so that the per-row path never reads the clock.
func (w *Writer) SetNow(t time.Time) { w.now = t }

// Write appends one row to its bucket's file. A replayed record that a committed
// file already holds is skipped: that is what makes replay exactly-once.
func (w *Writer) Write(ctx context.Context, bucket []byte, row parquet.Row, rec *record.Record) error {
	if w.committed.Replayed(bucket, rec.Partition, rec.Position) {
		w.rowsSkipped.Inc()
		return nil
	}
	f := w.files[string(bucket)]
	if f == nil {
		var err error
		if f, err = w.open(ctx, string(bucket)); err != nil {
			return err
		}
	}
	w.writes++
	f.lastSeq = w.writes
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
	f.staged.add(row, &w.recycled)
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

func (w *Writer) charge(f *file, held int64) {
	w.o.Budget.Add(held - f.held)
	w.held += held - f.held
	f.held = held
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
