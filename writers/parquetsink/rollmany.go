package parquetsink

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parquet-go/parquet-go"
)

// Rolling many files at once (a drain, a handover, thousands of buckets
// reaching max_file_age or inactivity together) is mostly encoding: every
// file turns its staged rows into a row group and writes its footer, about a
// millisecond of CPU for a small file. One file at a time on the pipeline
// goroutine, 20,000 files outlast any drain timeout; so the encoding of files
// without an encoder of their own runs on several workers, each with its own
// parquet-go writer, while everything that touches the writer's shared state
// (the spool, the budget's per-file charges, uploads, the file maps) stays on
// the calling goroutine.

const (
	// minParallelRolls is the least number of files worth starting workers
	// for.
	minParallelRolls = 8
	// rollBatchPerWorker bounds how many files a batch holds per worker:
	// a batch's spooled rows are loaded into memory before it is encoded.
	rollBatchPerWorker = 16
)

// wallClock is what a roll's deadline is held against (a drain's timeout
// runs on the wall clock, not the pipeline's); tests step it.
var wallClock = time.Now

// rollEncoder is one worker's parquet-go writer and scratch.
type rollEncoder struct {
	pw   *parquet.GenericWriter[any]
	feed columnFeed
}

// rollWorkers is how many encoders a many-file roll may use: one per CPU,
// within what a quarter of this writer's share of the budget pays for.
func (w *Writer) rollWorkers() int {
	share := w.o.Budget.Limit() / int64(max(1, w.o.Routes))
	return max(1, min(runtime.GOMAXPROCS(0), int(share/(4*w.overhead))))
}

// rollMany rolls every file of files that is still open, for reason, in
// their order; after until (when set) it starts no more.
func (w *Writer) rollMany(files []*file, reason string, until time.Time) error {
	late := func() bool { return !until.IsZero() && !wallClock().Before(until) }
	workers := w.rollWorkers()
	if workers < 2 || len(files) < minParallelRolls {
		for _, f := range files {
			if late() {
				return nil
			}
			if w.files[f.bucket] == f {
				if err := w.roll(f, reason); err != nil {
					return err
				}
			}
		}
		return nil
	}
	// Files whose upload exists go first: a part waits for its upload's
	// creation while holding an upload slot, so files still in the creation
	// queue would stall the uploads of the others.
	ordered := make([]*file, 0, len(files))
	var later []*file
	for _, f := range files {
		select {
		case <-f.up.created:
			ordered = append(ordered, f)
		default:
			later = append(later, f)
		}
	}
	files = append(ordered, later...)
	encs := make([]*rollEncoder, workers)
	for i := range encs {
		encs[i] = &rollEncoder{}
	}
	w.o.Budget.Add(int64(workers) * w.overhead)
	defer w.o.Budget.Add(-int64(workers) * w.overhead)
	began := time.Now()
	var encoding, sending time.Duration
	defer func() {
		w.o.Logger.Debug("parquet: files rolled", "route", w.o.Route, "reason", reason, "files", len(files), "workers", workers,
			"took", time.Since(began).String(), "encoding", encoding.String(), "sending", sending.String())
	}()

	batch := workers * rollBatchPerWorker
	jobs := make([]*file, 0, batch)
	errs := make([]error, batch)
	for start := 0; start < len(files) && !late(); start += batch {
		jobs = jobs[:0]
		for _, f := range files[start:min(start+batch, len(files))] {
			if w.files[f.bucket] != f {
				continue // rolled already (an encoder steal, say)
			}
			if f.enc == nil && f.rowSpill.n > 0 {
				if err := w.loadRows(f); err != nil {
					return err
				}
			}
			// A file holding an encoder or no rows, or the writer's very
			// first row group (which fills the footer template), takes the
			// serial path.
			if f.enc != nil || f.staged.rows() == 0 || !w.tmpl.encoded {
				if err := w.roll(f, reason); err != nil {
					return err
				}
				continue
			}
			jobs = append(jobs, f)
		}
		encStart := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for _, enc := range encs[:min(workers, len(jobs))] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= len(jobs) {
						return
					}
					errs[i] = w.encodeLast(jobs[i], enc)
				}
			}()
		}
		wg.Wait()
		sendStart := time.Now()
		encoding += sendStart.Sub(encStart)
		for i, f := range jobs {
			if errs[i] != nil {
				return errs[i]
			}
			if err := w.rolled(f, reason); err != nil {
				return err
			}
		}
		sending += time.Since(sendStart)
	}
	return nil
}

// footerBytesPerColumn is about what a column adds to a one-row-group file
// beyond its pages: column and offset index, chunk metadata.
const footerBytesPerColumn = 384

// encodeLast turns f's staged rows into its last row group and appends the
// footer. It touches only f, enc and what the writer never changes after its
// first row group (options, the footer template), so workers run it side by
// side.
func (w *Writer) encodeLast(f *file, enc *rollEncoder) error {
	if enc.pw == nil {
		enc.pw = w.newWriter(f.out)
	} else {
		enc.pw.Reset(f.out)
	}
	// Sized once for the compressed rows, page index and footer (with the
	// taxi schema the rows take a little under half their plain size),
	// instead of doubling from the magic: with thousands of small files
	// that regrowth was the most a drain allocated.
	f.out.b = slices.Grow(f.out.b, int(f.staged.raw/2)+len(w.tmpl.paths)*footerBytesPerColumn)
	if err := writeStaged(&f.staged, enc.pw, &enc.feed); err != nil {
		return fmt.Errorf("parquet encode into %s: %w", f.key, err)
	}
	built := enc.pw.Size()
	at := len(f.out.b)
	if err := enc.pw.Close(); err != nil {
		return fmt.Errorf("parquet row group of %s: %w", f.key, err)
	}
	// The file's last row group goes straight into the footer, without
	// being encoded and decoded once more on the way.
	b, g, last, err := spliceRowGroup(f.out.b, at, f.flushed(), &w.tmpl, enc.pw.File().Metadata(), false)
	if err != nil {
		return fmt.Errorf("parquet row group of %s: %w", f.key, err)
	}
	f.out.b = b
	f.groups = append(f.groups, g)
	w.rowGroups.Inc()
	if built > max(2*w.overhead, retireAfter) {
		enc.pw = nil // see recycle: a large row group leaves its size behind
	}
	tail, err := footer(&w.tmpl, f.groups, last, f.flushed()+int64(len(f.out.b)))
	if err != nil {
		return fmt.Errorf("parquet close %s: %w", f.key, err)
	}
	f.out.b = append(f.out.b, tail...)
	f.groups, f.groupsMem = nil, 0
	return nil
}
