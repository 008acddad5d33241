package parquetsink

import (
	"cmp"
	"container/list"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sinkd/sinkd/checkpoint"
	"github.com/sinkd/sinkd/internal/backoff"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/store"
	"github.com/sinkd/sinkd/writers"
)

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
	lastSeq   uint64 // the writer's write count at this file's last row
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
	wg      inflight
}

// partBuffer collects encoded bytes until they make a part.
type partBuffer struct{ b []byte }

func (p *partBuffer) Write(b []byte) (int, error) {
	p.b = append(p.b, b...)
	return len(b), nil
}

func (w *Writer) open(ctx context.Context, bucket string) (*file, error) {
	if len(w.files) >= w.o.MaxOpenFiles {
		// A safety net far above any working set the budget can hold:
		// reaching it means files roll early as new buckets come.
		if w.now.Sub(w.capWarned) >= time.Minute {
			w.capWarned = w.now
			w.o.Logger.Warn("memory.max_open_files reached: the least recently written files roll early as new buckets come, which makes small files; raise memory.max_open_files (and memory.budget or memory.spool_budget if memory or spool are full too)",
				"route", w.o.Route, "max_open_files", w.o.MaxOpenFiles)
		}
		if err := w.evict(); err != nil {
			return nil, err
		}
	}
	w.seq++
	name := checkpoint.ObjectName(w.o.Config.FilePrefix, w.o.Instance, w.o.Epoch, w.seq, "parquet")
	f := &file{
		bucket:    bucket,
		key:       w.o.Prefix + bucket + "/" + name,
		out:       &partBuffer{b: append([]byte(nil), magic...)},
		opened:    w.now,
		lastWrite: w.now,
		spans:     map[record.PartitionID]*span{},
		up:        &upload{created: make(chan struct{})},
	}
	w.files[bucket] = f
	w.o.Metrics.openFiles.WithLabelValues(w.o.Route).Inc()
	w.queueCreate(f)
	return f, nil
}

// evictShare: at memory.max_open_files, the least recently written 64th of
// the open files rolls at once (at least one). Finding them sorts every open
// file, paid once a batch rather than for every new bucket; keeping the open
// files in write order instead cost every row a list move (3% of sinkd's
// CPU in a profile of 300,000 events into 2,119 buckets, where nothing is
// evicted).
const evictShare = 64

// evict rolls the least recently written files, to make room for one more.
func (w *Writer) evict() error {
	files := make([]*file, 0, len(w.files))
	for _, f := range w.files {
		files = append(files, f)
	}
	slices.SortFunc(files, func(a, b *file) int { return cmp.Compare(a.lastSeq, b.lastSeq) })
	n := max(1, len(files)-w.o.MaxOpenFiles+1, w.o.MaxOpenFiles/evictShare)
	return w.rollMany(files[:min(n, len(files))], "evicted", time.Time{})
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
	// Exponential from 100ms, capped at 10s, equal jitter (internal/backoff).
	partBackoff := backoff.Policy{Base: 100 * time.Millisecond, Max: 10 * time.Second}
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
		w.partRetries.Inc()
		if attempt == 0 || attempt%10 == 0 {
			w.o.Logger.Warn("object store request failed; retrying", "route", w.o.Route, "attempt", attempt+1, "err", err)
		}
		if err := partBackoff.Wait(w.ctx, attempt); err != nil {
			return err
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
	f.staged.release(&w.recycled)
	w.charge(f, f.heldBytes())
	if err := w.sendPart(f); err != nil {
		return err
	}
	w.charge(f, 0)
	delete(w.files, f.bucket)
	w.closing = append(w.closing, f)
	w.o.Metrics.openFiles.WithLabelValues(w.o.Route).Dec()
	w.o.Metrics.rolled.WithLabelValues(w.o.Route, reason).Inc()
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
	if err := w.rollMany(aged, "age", time.Time{}); err != nil {
		return err
	}
	return w.rollMany(inactive, "inactivity", time.Time{})
}

// RollPartitions closes every open file holding records of the given
// partitions (of every partition when ps is nil), so that they can be handed
// over with an exact position.
func (w *Writer) RollPartitions(ps map[record.PartitionID]bool, reason string) error {
	return w.Roll(writers.Roll{All: ps == nil, Partitions: ps, Reason: reason})
}

// Roll closes the open files roll names, oldest first when roll.Until is set,
// and none after it.
func (w *Writer) Roll(roll writers.Roll) error {
	if !roll.Until.IsZero() && !wallClock().Before(roll.Until) {
		// Prepare rolls again after a drain's Roll: nothing to list or sort.
		return nil
	}
	var files []*file
	for _, f := range w.files {
		for p := range f.spans {
			if roll.All || roll.Partitions[p] {
				files = append(files, f)
				break
			}
		}
	}
	if !roll.Until.IsZero() {
		// What a drain leaves open is read again after the restart: the
		// files open longest go first, as they hold the oldest records.
		slices.SortFunc(files, func(a, b *file) int { return a.opened.Compare(b.opened) })
	}
	return w.rollMany(files, roll.Reason, roll.Until)
}

// InstanceOf returns the instance a data file key belongs to
// (checkpoint.InstanceOf), for keys of Parquet files only.
func InstanceOf(key string) (string, bool) {
	if !strings.HasSuffix(key, ".parquet") {
		return "", false
	}
	return checkpoint.InstanceOf(key)
}
