// Package jsonlines archives each record's original value, one line per
// record, in objects under bucket paths (gzip-free `.jsonl` files), committed
// exactly once by the checkpoint like the Parquet writer's files. It is the
// smallest complete writer on the writers contract and the example that
// docs/design.md ("How to add a writer") walks through.
//
// Memory: open files' buffers count against memory.budget, which the writer
// shares with the Parquet writers and the source (relief.go); a file's lines
// upload as a part once they reach s3.part_size.
package jsonlines

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/buckets"
	"github.com/sinkd/sinkd/checkpoint"
	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/internal/backoff"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/store"
	"github.com/sinkd/sinkd/writers"
	"github.com/sinkd/sinkd/writers/plugin"
)

// Kind registers the writer under `writers: {jsonlines: …}`.
var Kind = plugin.Kind{Name: "jsonlines", Check: check, New: newWriter}

func load(r *plugin.Route) (*Config, *buckets.Template, []config.Problem) {
	path := r.Path("jsonlines")
	var c Config
	if err := r.Decode(&c); err != nil {
		return nil, nil, []config.Problem{r.Config.Problem(path, "%v", err)}
	}
	c.SetDefaults(r.Name)
	var problems []config.Problem
	for _, is := range c.Validate() {
		problems = append(problems, r.Config.Problem(path+"."+is.Path, "%s", is.Msg))
	}
	var tmpl *buckets.Template
	if c.Path != "" {
		var err error
		if tmpl, err = buckets.Compile(c.Path, r.Schema, c.EventTime, c.TimeZone); err != nil {
			compile := func(t string) error {
				_, err := buckets.Compile(t, r.Schema, c.EventTime, c.TimeZone)
				return err
			}
			for _, msg := range writers.TemplateProblems(c.Path, r.Schema, compile, err) {
				problems = append(problems, r.Config.Problem(path+".path", "%s", msg))
			}
		}
	}
	return &c, tmpl, problems
}

func check(r *plugin.Route) []config.Problem {
	_, _, problems := load(r)
	return problems
}

func newWriter(ctx context.Context, r *plugin.Route) (writers.Writer, error) {
	c, tmpl, problems := load(r)
	if len(problems) > 0 {
		return nil, config.NewProblems(problems...)
	}
	st, prefix, err := r.OpenStore(c.Destination)
	if err != nil {
		return nil, err
	}
	if r.Budget == nil {
		return nil, errors.New("jsonlines: no memory budget (plugin.Route.Budget)")
	}
	// Writers that share the budget: each relieves its own files while it
	// holds more than half a fair share (relief.go).
	sharing := 0
	for _, rc := range r.Config.Routes {
		if rc.Parquet != nil {
			sharing++
		}
		sharing += len(rc.Writers)
	}
	partSize := r.Config.S3.PartSize.Bytes()
	if partSize <= 0 {
		partSize = int64(store.DefaultPartSize)
	}
	return &Writer{
		cfg: *c, route: r.Name, path: tmpl, dl: r.DeadLetter, st: st, dest: c.Destination, prefix: prefix,
		instance: r.Instance, epoch: r.Epoch, partSize: partSize, ctx: r.Background, log: r.Logger,
		concurrency: max(1, r.Config.S3.CompleteConcurrency), budget: r.Budget, sharing: max(1, sharing),
		files: map[string]*file{}, lru: list.New(), filter: writers.NewReplayFilter(),
		m: newMetrics(r.Registerer, r.Name),
	}, nil
}

// Writer is one route's JSON-lines destination.
type Writer struct {
	cfg      Config
	route    string
	path     *buckets.Template
	dl       writers.DeadLetter
	st       store.Store
	dest     string
	prefix   string
	instance string
	epoch    string
	partSize int64
	// concurrency bounds the part uploads of files rolled together (a
	// drain, a handover, many files reaching age or inactivity at once).
	concurrency int
	ctx         context.Context // background: lives through the drain
	log         *slog.Logger
	m           *metrics

	budget  plugin.Budget
	sharing int   // writers sharing budget
	held    int64 // what this writer's open files charge to budget
	// quiet counts writes that skip relief after one that found the budget's
	// excess held by other writers.
	quiet int
	// When the budget and max_open_files were last found full, for
	// warnings at most once a minute.
	fullWarned, capWarned time.Time
	bySize                []*file // reused by relieve

	files   map[string]*file
	lru     *list.List // of *file, least recently written at the front
	closing []*file    // rolled, waiting for the next checkpoint
	seq     uint64
	// filter: bucket → partition → highest position in a committed file;
	// a replayed record at or below it is skipped.
	filter writers.ReplayFilter
	buf    []byte // the bucket path being rendered
	now    time.Time
}

type span struct{ first, last record.Position }

type file struct {
	bucket, key string
	uploadID    string
	parts       []store.Part
	buf         []byte // lines not yet uploaded
	size, rows  int64
	held        int64 // charged to the budget: buf's capacity and fileOverhead
	opened      time.Time
	lastWrite   time.Time
	spans       map[record.PartitionID]*span
	elem        *list.Element
}

const (
	// fileOverhead is charged for every open file: its bookkeeping (structs,
	// maps, key) is small but, with tens of thousands of buckets, not
	// nothing.
	fileOverhead = 1 << 10
	// minBuf is the least capacity a file's buffer starts with.
	minBuf = 1 << 10
	// growStep is the most a buffer grows by at once: it bounds what
	// capacity a file holds beyond its bytes, and what one growth takes
	// from the budget.
	growStep = 1 << 20
	// minPartSize is S3's least size of a part that is not the last one: a
	// file uploads a part early to relieve memory only once it has this
	// much.
	minPartSize = 5 << 20
)

var _ writers.Writer = (*Writer)(nil)

func (w *Writer) Name() string { return w.route + "/jsonlines" }

func (w *Writer) Write(ctx context.Context, row parquet.Row, rec *record.Record, now time.Time) error {
	w.now = now
	b, err := w.path.Append(w.buf[:0], row, rec, now)
	w.buf = b
	if err != nil {
		return writers.TemplateFailure(ctx, w.dl, rec, err, w.route, "path")
	}
	if w.filter.Replayed(b, rec.Partition, rec.Position) {
		return nil // replayed, and already in a committed file
	}
	f := w.files[string(b)]
	n := len(rec.Value) + 1
	if f == nil || cap(f.buf)-len(f.buf) < n {
		// Memory is relieved before it is taken, so that the budget holds
		// with a buffer's growth in it, not only after it.
		if need := w.growth(f, n); w.budget.Used()+need > w.budget.Limit() {
			if err := w.relieve(need); err != nil {
				return err
			}
			f = w.files[string(b)] // relief may have rolled it
		}
		if f == nil {
			if f, err = w.open(string(b)); err != nil {
				return err
			}
		}
		if cap(f.buf)-len(f.buf) < n {
			w.grow(f, n)
		}
	}
	w.lru.MoveToBack(f.elem)
	f.buf = append(f.buf, rec.Value...)
	f.buf = append(f.buf, '\n')
	f.size += int64(n)
	f.rows++
	f.lastWrite = now
	if s := f.spans[rec.Partition]; s != nil {
		s.last = rec.Position
	} else {
		f.spans[rec.Partition] = &span{first: rec.Position, last: rec.Position}
	}
	if f.size >= w.cfg.TargetFileSize.Bytes() {
		return w.rollMany([]*file{f}, "size")
	}
	if int64(len(f.buf)) >= w.partSize {
		if err := w.sendParts([]*file{f}); err != nil {
			return err
		}
	}
	return nil
}

// newCap is the capacity f's buffer grows to for n more bytes. Growth
// doubles, as append does, up to growStep, then goes by growStep up to a
// part's size, where the buffer uploads: append's own growth would leave a
// part-sized buffer with up to twice its capacity, and jump past S3's least
// part size at which a file can relieve memory by uploading early.
func (w *Writer) newCap(f *file, n int) int {
	if f == nil {
		return max(n, minBuf)
	}
	c := cap(f.buf)
	return max(len(f.buf)+n, minBuf, min(2*c, c+growStep, int(w.partSize)))
}

// growth is what making room for n more bytes in f (nil: a new file) adds
// to the budget.
func (w *Writer) growth(f *file, n int) int64 {
	if f == nil {
		return fileOverhead + int64(w.newCap(nil, n))
	}
	return int64(w.newCap(f, n) - cap(f.buf))
}

// grow makes room for n more bytes in f's buffer.
func (w *Writer) grow(f *file, n int) {
	c := w.newCap(f, n)
	nb := make([]byte, len(f.buf), c)
	copy(nb, f.buf)
	f.buf = nb
	w.charge(f, fileOverhead+int64(c))
}

func (w *Writer) charge(f *file, held int64) {
	w.budget.Add(held - f.held)
	w.held += held - f.held
	f.held = held
}

func (w *Writer) open(bucket string) (*file, error) {
	for len(w.files) >= w.cfg.MaxOpenFiles {
		// A safety net far above what the budget holds: reaching it means a
		// file rolls early for every new bucket.
		if w.now.Sub(w.capWarned) >= time.Minute {
			w.capWarned = w.now
			w.log.Warn("jsonlines max_open_files reached: the least recently written file rolls early for each new bucket, which makes small files; raise max_open_files (and memory.budget if memory is full too)",
				"route", w.route, "max_open_files", w.cfg.MaxOpenFiles)
		}
		if err := w.rollMany([]*file{w.lru.Front().Value.(*file)}, "evicted"); err != nil {
			return nil, err
		}
	}
	w.seq++
	f := &file{
		bucket:    bucket,
		key:       w.prefix + bucket + "/" + checkpoint.ObjectName(w.cfg.FilePrefix, w.instance, w.epoch, w.seq, "jsonl"),
		opened:    w.now,
		lastWrite: w.now,
		spans:     map[record.PartitionID]*span{},
	}
	meta := map[string]string{"sinkd-instance": w.instance, "sinkd-epoch": w.epoch, "sinkd-route": w.route}
	if err := w.retry(func(ctx context.Context) error {
		id, err := w.st.CreateUpload(ctx, f.key, meta)
		f.uploadID = id
		return err
	}); err != nil {
		return nil, err
	}
	f.elem = w.lru.PushBack(f)
	w.files[bucket] = f
	w.charge(f, fileOverhead)
	w.m.open.Inc()
	return f, nil
}

// sendParts uploads what each file buffers as its next part, side by side,
// concurrency at a time. Uploads are synchronous: the pipeline waits, which
// is the backpressure.
func (w *Writer) sendParts(files []*file) error {
	errs := make([]error, len(files))
	parts := make([]store.Part, len(files))
	upload := func(i int) {
		f := files[i]
		number := int32(len(f.parts) + 1)
		errs[i] = w.retry(func(ctx context.Context) error {
			var err error
			parts[i], err = w.st.UploadPart(ctx, f.key, f.uploadID, number, f.buf)
			return err
		})
	}
	if len(files) == 1 {
		if len(files[0].buf) > 0 {
			upload(0)
		}
	} else {
		sem := make(chan struct{}, w.concurrency)
		var wg sync.WaitGroup
		for i, f := range files {
			if len(f.buf) == 0 {
				continue
			}
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				upload(i)
			}()
		}
		wg.Wait()
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i, f := range files {
		if len(f.buf) == 0 {
			continue
		}
		f.parts = append(f.parts, parts[i])
		// The buffer goes: a file's next lines may be a long time coming,
		// and thousands of part-sized buffers kept for them would be the
		// budget.
		f.buf = nil
		w.charge(f, fileOverhead)
	}
	return nil
}

// rollMany uploads the files' last parts; they wait for the next checkpoint.
func (w *Writer) rollMany(files []*file, reason string) error {
	if len(files) == 0 {
		return nil
	}
	if err := w.sendParts(files); err != nil {
		return err
	}
	for _, f := range files {
		w.charge(f, 0)
		delete(w.files, f.bucket)
		w.lru.Remove(f.elem)
		w.closing = append(w.closing, f)
	}
	w.m.open.Sub(float64(len(files)))
	w.m.rolled.WithLabelValues(w.route, reason).Add(float64(len(files)))
	return nil
}

// retry runs op until it succeeds or the writer's context ends: a store
// outage stalls the pipeline instead of losing data. Each attempt is bounded
// by the store's request timeout.
func (w *Writer) retry(op func(ctx context.Context) error) error {
	// Exponential from 100ms, capped at 10s, equal jitter, as the Parquet
	// writer's part uploads.
	wait := backoff.Policy{Base: 100 * time.Millisecond, Max: 10 * time.Second}
	for attempt := 0; ; attempt++ {
		err := op(w.ctx)
		if err == nil || w.ctx.Err() != nil {
			return err
		}
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %v", writers.ErrLost, err)
		}
		if attempt == 0 || attempt%10 == 0 {
			w.log.Warn("object store request failed; retrying", "route", w.route, "attempt", attempt+1, "err", err)
		}
		if err := wait.Wait(w.ctx, attempt); err != nil {
			return err
		}
	}
}

// Tick rolls files by age and inactivity.
func (w *Writer) Tick(now time.Time) error {
	w.now = now
	var aged, inactive []*file
	for _, f := range w.files {
		switch {
		case now.Sub(f.opened) >= w.cfg.MaxFileAge.D():
			aged = append(aged, f)
		case now.Sub(f.lastWrite) >= w.cfg.Inactivity.D():
			inactive = append(inactive, f)
		}
	}
	if err := w.rollMany(aged, "age"); err != nil {
		return err
	}
	if err := w.rollMany(inactive, "inactivity"); err != nil {
		return err
	}
	w.m.held.Set(float64(w.held))
	return nil
}

func (w *Writer) Prepare(ctx context.Context, roll writers.Roll) (*writers.Prepared, error) {
	if roll.Any() {
		var rolling []*file
		for _, f := range w.files {
			for pid := range f.spans {
				if roll.All || roll.Partitions[pid] {
					rolling = append(rolling, f)
					break
				}
			}
		}
		reason := roll.Reason
		if reason == "" {
			reason = "handover"
		}
		if err := w.rollMany(rolling, reason); err != nil {
			return nil, err
		}
	}
	p := &writers.Prepared{OpenLow: map[record.PartitionID]record.Position{}, State: len(w.closing)}
	for _, f := range w.closing {
		p.Entries = append(p.Entries, checkpoint.Entry{
			Kind: checkpoint.KindMultipart, Store: w.dest, Key: f.key, UploadID: f.uploadID,
			Parts: append([]store.Part(nil), f.parts...), Rows: f.rows, Bytes: f.size,
		})
		// The filter may learn the new highs now: they only become
		// replayable if this checkpoint fails and the process dies, which
		// loses the filter too.
		for pid, s := range f.spans {
			w.filter.Raise(f.bucket, pid, s.last)
		}
	}
	for _, f := range w.files {
		for pid, s := range f.spans {
			if old, ok := p.OpenLow[pid]; !ok || s.first.Compare(old) < 0 {
				p.OpenLow[pid] = s.first
			}
		}
	}
	p.Filter = w.filter.ByPartition()
	return p, nil
}

func (w *Writer) Committed(p *writers.Prepared, restart map[record.PartitionID]checkpoint.Restart) {
	w.closing = append(w.closing[:0], w.closing[p.State.(int):]...)
	for pid, r := range restart {
		w.filter.Prune(pid, r.Position, r.After)
	}
}

func (w *Writer) Restore(id record.PartitionID, filter map[string]record.Position) {
	w.filter.Restore(id, filter)
}

func (w *Writer) Release(id record.PartitionID) { w.filter.Release(id) }

// Discard aborts every upload not yet committed; recovery at the next
// start aborts any this cannot reach.
func (w *Writer) Discard() {
	drop := w.closing
	for _, f := range w.files {
		w.charge(f, 0)
		drop = append(drop, f)
	}
	w.m.open.Sub(float64(len(w.files)))
	w.files = map[string]*file{}
	w.lru.Init()
	w.closing = nil
	w.filter = writers.NewReplayFilter()
	for _, f := range drop {
		ctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
		if err := w.st.AbortUpload(ctx, f.key, f.uploadID); err != nil {
			w.log.Warn("aborting a discarded upload failed; the next start aborts it", "key", f.key, "err", err)
		}
		cancel()
	}
}

// Close gives back what open files still charge to the shared budget (none
// after a drain; an abandoned run's files stay in progress until recovery
// aborts them).
func (w *Writer) Close(context.Context) error {
	w.budget.Add(-w.held)
	w.held = 0
	return nil
}
