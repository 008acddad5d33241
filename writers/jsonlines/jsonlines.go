// Package jsonlines archives each record's original value, one line per
// record, in objects under bucket paths (gzip-free `.jsonl` files), committed
// exactly once by the checkpoint like the Parquet writer's files. It is the
// smallest complete writer on the writers contract and the example that
// docs/design.md ("How to add a writer") walks through.
//
// Memory: an open file holds at most one part (s3.part_size) in memory before
// the part uploads, and at most max_open_files files are open; the least
// recently written rolls when another bucket needs a file.
package jsonlines

import (
	"cmp"
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// Config is a route's `writers.jsonlines` settings.
type Config struct {
	// Destination is s3://bucket/prefix or file:///dir.
	Destination string `yaml:"destination"`
	// Path is the bucket template, as for Parquet.
	Path           string           `yaml:"path"`
	EventTime      config.EventTime `yaml:"event_time"`
	TimeZone       string           `yaml:"timezone"`
	FilePrefix     string           `yaml:"file_prefix"`
	TargetFileSize config.Size      `yaml:"target_file_size"`
	MaxFileAge     config.Duration  `yaml:"max_file_age"`
	MaxOpenFiles   int              `yaml:"max_open_files"`
}

// The defaults of Config; the package README lists them.
const (
	DefaultTargetFileSize = 64 << 20
	DefaultMaxFileAge     = 5 * time.Minute
	DefaultMaxOpenFiles   = 256
)

func (c *Config) setDefaults(route string) {
	c.FilePrefix = cmp.Or(c.FilePrefix, route)
	c.TimeZone = cmp.Or(c.TimeZone, "UTC")
	c.EventTime.Source = cmp.Or(c.EventTime.Source, "broker")
	c.TargetFileSize = cmp.Or(c.TargetFileSize, config.Size(DefaultTargetFileSize))
	c.MaxFileAge = cmp.Or(c.MaxFileAge, config.Duration(DefaultMaxFileAge))
	c.MaxOpenFiles = cmp.Or(c.MaxOpenFiles, DefaultMaxOpenFiles)
}

// Kind registers the writer under `writers: {jsonlines: …}`.
var Kind = plugin.Kind{Name: "jsonlines", Check: check, New: newWriter}

func load(r *plugin.Route) (*Config, *buckets.Template, []config.Problem) {
	path := r.Path("jsonlines")
	var c Config
	if err := r.Decode(&c); err != nil {
		return nil, nil, []config.Problem{r.Config.Problem(path, "%v", err)}
	}
	c.setDefaults(r.Name)
	var problems []config.Problem
	if c.Destination == "" {
		problems = append(problems, r.Config.Problem(path+".destination", "a destination is required"))
	}
	if c.Path == "" {
		problems = append(problems, r.Config.Problem(path+".path", "a path template is required"))
	}
	if c.TargetFileSize < 1 || c.MaxFileAge < 0 || c.MaxOpenFiles < 1 {
		problems = append(problems, r.Config.Problem(path, "target_file_size and max_open_files must be positive, max_file_age not negative"))
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
	return &Writer{
		cfg: *c, route: r.Name, path: tmpl, dl: r.DeadLetter, st: st, dest: c.Destination, prefix: prefix,
		instance: r.Instance, epoch: r.Epoch, partSize: r.Config.S3.PartSize.Bytes(), ctx: r.Background, log: r.Logger,
		files: map[string]*file{}, lru: list.New(), filter: writers.NewReplayFilter(),
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
	ctx      context.Context // background: lives through the drain
	log      *slog.Logger

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
	buf         []byte // lines not yet uploaded: less than a part
	size, rows  int64
	opened      time.Time
	spans       map[record.PartitionID]*span
	elem        *list.Element
}

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
	if f == nil {
		if f, err = w.open(string(b)); err != nil {
			return err
		}
	} else {
		w.lru.MoveToBack(f.elem)
	}
	f.buf = append(f.buf, rec.Value...)
	f.buf = append(f.buf, '\n')
	f.size += int64(len(rec.Value)) + 1
	f.rows++
	if s := f.spans[rec.Partition]; s != nil {
		s.last = rec.Position
	} else {
		f.spans[rec.Partition] = &span{first: rec.Position, last: rec.Position}
	}
	if f.size >= w.cfg.TargetFileSize.Bytes() {
		return w.roll(f)
	}
	if int64(len(f.buf)) >= w.partSize {
		return w.sendPart(f)
	}
	return nil
}

func (w *Writer) open(bucket string) (*file, error) {
	for len(w.files) >= w.cfg.MaxOpenFiles {
		if err := w.roll(w.lru.Front().Value.(*file)); err != nil {
			return nil, err
		}
	}
	w.seq++
	f := &file{
		bucket: bucket,
		key:    w.prefix + bucket + "/" + checkpoint.ObjectName(w.cfg.FilePrefix, w.instance, w.epoch, w.seq, "jsonl"),
		opened: w.now,
		spans:  map[record.PartitionID]*span{},
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
	return f, nil
}

// sendPart uploads what the file buffers as its next part. Uploads are
// synchronous: the pipeline waits, which is the backpressure.
func (w *Writer) sendPart(f *file) error {
	if len(f.buf) == 0 {
		return nil
	}
	number := int32(len(f.parts) + 1)
	var part store.Part
	if err := w.retry(func(ctx context.Context) error {
		var err error
		part, err = w.st.UploadPart(ctx, f.key, f.uploadID, number, f.buf)
		return err
	}); err != nil {
		return err
	}
	f.parts = append(f.parts, part)
	f.buf = f.buf[:0]
	return nil
}

// roll uploads the file's last part; the file waits for the next checkpoint.
func (w *Writer) roll(f *file) error {
	if err := w.sendPart(f); err != nil {
		return err
	}
	f.buf = nil
	delete(w.files, f.bucket)
	w.lru.Remove(f.elem)
	w.closing = append(w.closing, f)
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

func (w *Writer) Tick(now time.Time) error {
	w.now = now
	if w.cfg.MaxFileAge <= 0 {
		return nil
	}
	for _, f := range w.files {
		if now.Sub(f.opened) >= w.cfg.MaxFileAge.D() {
			if err := w.roll(f); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *Writer) Prepare(ctx context.Context, roll writers.Roll) (*writers.Prepared, error) {
	if roll.Any() {
		for _, f := range w.files {
			for pid := range f.spans {
				if roll.All || roll.Partitions[pid] {
					if err := w.roll(f); err != nil {
						return nil, err
					}
					break
				}
			}
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
		drop = append(drop, f)
	}
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

func (w *Writer) Close(context.Context) error { return nil }
