// Package opensearch writes documents to OpenSearch through the _bulk API:
// buffered by bytes, count and age, sent with bounded concurrency, with every
// item's outcome classified (indexed, conflict that counts as success,
// retried, dead-lettered). Flush returns only when every document written
// before it is settled, which is what the checkpoint needs before it commits
// source positions.
package opensearch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/record"
)

// Doc is one document to index. The writer keeps Body until the document is
// settled: callers must not modify it after Write.
type Doc struct {
	Index, ID string
	Version   int64          // >0 selects external versioning with this version
	Body      []byte         // the original JSON document
	Rec       *record.Record // for dead letters
}

// DeadLetter receives a document the cluster rejected for good: a mapping
// error or another per-item 4xx. Transient failures never reach it: they are
// retried for as long as the writer's context lives. An error it returns is
// permanent for the writer, since the document would otherwise be lost.
type DeadLetter func(ctx context.Context, d Doc, status int, errType, reason string) error

// Defaults for zero configuration values.
const (
	DefaultFlushBytes    = 5 << 20
	DefaultFlushDocs     = 5000
	DefaultFlushInterval = time.Second
	DefaultConcurrency   = 2
	DefaultMaxRetries    = 3
	DefaultTimeout       = 30 * time.Second
)

// Option adjusts a Writer.
type Option func(*options)

type options struct {
	registerer prometheus.Registerer
	logger     *slog.Logger
	httpClient *http.Client
	backoffMin time.Duration
	backoffMax time.Duration
}

// WithMetrics registers the writer's metrics on r.
func WithMetrics(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithHTTPClient replaces the HTTP client whose transport carries requests;
// the writer still wraps it for signing, retries and metrics. Its Timeout
// should be set.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.httpClient = c } }

// WithRetryBackoff bounds the waits between retries of rejected items and of
// failed requests (defaults 100ms and 10s).
func WithRetryBackoff(min, max time.Duration) Option {
	return func(o *options) { o.backoffMin, o.backoffMax = min, max }
}

// Writer buffers documents and sends them in _bulk requests.
type Writer struct {
	flushBytes    int
	flushDocs     int
	flushInterval time.Duration
	action        string

	api      *api
	deadLtr  DeadLetter
	log      *slog.Logger
	metrics  *metrics
	backoff  backoff
	template *indexTemplate

	sem chan struct{} // one token per bulk request in flight

	// mu guards the fields below. Write holds it while waiting for a free
	// slot, so that a full pipeline blocks every writer: that is the backpressure.
	mu       sync.Mutex
	buf      *batch
	inflight map[*batch]struct{}
	err      error // the first permanent failure; the writer is unusable after it
	started  bool
	closed   bool

	buffered atomic.Int64 // bytes held in the buffer and in batches in flight

	runCtx  context.Context // lives until Close: sends and retries run under it
	stop    context.CancelFunc
	loopEnd chan struct{}
}

type indexTemplate struct {
	name string
	body []byte
}

// item is one document with its encoded action line.
type item struct {
	doc  Doc
	meta []byte // action and metadata, newline included
}

func (it item) size() int { return len(it.meta) + len(it.doc.Body) + 1 }

type batch struct {
	items   []item
	bytes   int
	created time.Time
	done    chan struct{}
	err     error // set before done closes
}

// New checks the configuration and prepares a writer; Start connects it.
func New(cfg config.OpenSearch, dl DeadLetter, opts ...Option) (*Writer, error) {
	if cfg.URL == "" {
		return nil, errors.New("opensearch: url is required")
	}
	if dl == nil {
		return nil, errors.New("opensearch: a dead-letter function is required")
	}
	o := options{logger: slog.Default(), backoffMin: 100 * time.Millisecond, backoffMax: 10 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if o.registerer == nil {
		o.registerer = prometheus.NewRegistry() // metrics still work, nobody scrapes them
	}
	w := &Writer{
		flushBytes:    int(orDefault(cfg.FlushBytes.Bytes(), DefaultFlushBytes)),
		flushDocs:     orDefault(cfg.FlushDocs, DefaultFlushDocs),
		flushInterval: orDefault(cfg.FlushInterval.D(), DefaultFlushInterval),
		action:        cfg.Action,
		deadLtr:       dl,
		log:           o.logger.With("component", "opensearch"),
		backoff:       backoff{min: o.backoffMin, max: o.backoffMax},
		sem:           make(chan struct{}, orDefault(cfg.Concurrency, DefaultConcurrency)),
		inflight:      map[*batch]struct{}{},
		loopEnd:       make(chan struct{}),
	}
	switch w.action {
	case "":
		w.action = "index"
	case "index", "create":
	default:
		return nil, fmt.Errorf("opensearch: action %q is not index or create", cfg.Action)
	}
	if w.action == "create" && cfg.VersionField != "" {
		return nil, errors.New("opensearch: action create cannot use external versions (version_field); use action index")
	}
	m, err := newMetrics(o.registerer)
	if err != nil {
		return nil, err
	}
	w.metrics = m
	if w.api, err = newAPI(cfg, o, m); err != nil {
		return nil, err
	}
	if cfg.Template != "" {
		body, err := os.ReadFile(cfg.Template)
		if err != nil {
			return nil, fmt.Errorf("opensearch: index template: %w", err)
		}
		if !json.Valid(body) {
			return nil, fmt.Errorf("opensearch: index template %s is not valid JSON", cfg.Template)
		}
		name := strings.TrimSuffix(filepath.Base(cfg.Template), filepath.Ext(cfg.Template))
		w.template = &indexTemplate{name: name, body: body}
	}
	w.runCtx, w.stop = context.WithCancel(context.Background())
	return w, nil
}

func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Start checks that the cluster answers and accepts the credentials, installs
// the index template if one is configured, and starts the interval flush.
func (w *Writer) Start(ctx context.Context) error {
	if err := w.api.ping(ctx); err != nil {
		return err
	}
	if w.template != nil {
		if err := w.api.putTemplate(ctx, w.template.name, w.template.body); err != nil {
			return err
		}
		w.log.Info("index template installed", "name", w.template.name)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		return errors.New("opensearch: writer already started")
	}
	w.started = true
	go w.flushLoop()
	return nil
}

// Write buffers d. It blocks while the buffer is full and `concurrency` bulk
// requests are in flight. An error means d was not accepted.
func (w *Writer) Write(ctx context.Context, d Doc) error {
	if d.Index == "" {
		return fmt.Errorf("opensearch: document %q has no index", d.ID)
	}
	if bytes.ContainsAny(d.Body, "\r\n") {
		// NDJSON frames documents by lines: a pretty-printed one must be compacted.
		var compact bytes.Buffer
		if err := json.Compact(&compact, d.Body); err != nil {
			return w.deadLetter(ctx, d, http.StatusBadRequest, "invalid_json", err.Error())
		}
		d.Body = compact.Bytes()
	}
	it := item{doc: d, meta: w.actionLine(d)}
	size := it.size()

	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.err != nil:
		return w.err
	case w.closed:
		return errors.New("opensearch: writer closed")
	case !w.started:
		return errors.New("opensearch: Write before Start")
	}
	if w.buf != nil && (w.buf.bytes+size > w.flushBytes || len(w.buf.items) >= w.flushDocs) {
		if err := w.dispatch(ctx); err != nil {
			return err
		}
	}
	if w.buf == nil {
		w.buf = &batch{created: time.Now(), done: make(chan struct{})}
	}
	w.buf.items = append(w.buf.items, it)
	w.buf.bytes += size
	w.metrics.buffered.Set(float64(w.buffered.Add(int64(size))))
	if w.full(w.buf) {
		w.tryDispatch() // else the next Write or the interval loop sends it
	}
	return nil
}

func (w *Writer) full(b *batch) bool {
	return b.bytes >= w.flushBytes || len(b.items) >= w.flushDocs
}

// Flush sends the buffer and returns when every document written before the
// call is indexed or dead-lettered, or with the error that prevents it.
func (w *Writer) Flush(ctx context.Context) error {
	w.mu.Lock()
	if w.err != nil {
		defer w.mu.Unlock()
		return w.err
	}
	if w.buf != nil {
		if err := w.dispatch(ctx); err != nil {
			w.mu.Unlock()
			return err
		}
	}
	pending := make([]*batch, 0, len(w.inflight))
	for b := range w.inflight {
		pending = append(pending, b)
	}
	w.mu.Unlock()
	for _, b := range pending {
		select {
		case <-b.done:
			if b.err != nil {
				return b.err
			}
		case <-ctx.Done():
			return fmt.Errorf("opensearch: flush: %w", ctx.Err())
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close flushes, then stops the writer; documents not settled by the time ctx
// ends are abandoned (they were never acknowledged, so their positions were
// never committed).
func (w *Writer) Close(ctx context.Context) error {
	err := w.Flush(ctx)
	w.mu.Lock()
	w.closed = true
	started := w.started
	w.mu.Unlock()
	w.stop()
	if started {
		<-w.loopEnd
	}
	w.api.close()
	return err
}

// dispatch hands the buffer to a sender, waiting for a free slot. Callers hold w.mu.
func (w *Writer) dispatch(ctx context.Context) error {
	select {
	case w.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("opensearch: waiting for a bulk slot: %w", ctx.Err())
	case <-w.runCtx.Done():
		return errors.New("opensearch: writer closed")
	}
	w.launch()
	return nil
}

// tryDispatch sends the buffer if a slot is free. Callers hold w.mu.
func (w *Writer) tryDispatch() {
	select {
	case w.sem <- struct{}{}:
		w.launch()
	default:
	}
}

// launch starts sending the buffer; the caller holds w.mu and a slot.
func (w *Writer) launch() {
	b := w.buf
	w.buf = nil
	w.inflight[b] = struct{}{}
	w.metrics.inFlight.Inc()
	go w.run(b)
}

func (w *Writer) run(b *batch) {
	err := w.send(w.runCtx, b.items)
	// The bytes are released before the slot, so that the next batch never
	// counts on top of this one; the slot before w.mu, which a dispatcher may
	// hold while it waits for this slot.
	w.metrics.buffered.Set(float64(w.buffered.Add(-int64(b.bytes))))
	w.metrics.inFlight.Dec()
	<-w.sem
	w.mu.Lock()
	delete(w.inflight, b)
	if err != nil && w.err == nil && w.runCtx.Err() == nil {
		w.err = err
		w.log.Error("opensearch writer failed", "err", err)
	}
	w.mu.Unlock()
	b.err = err
	close(b.done)
}

// flushLoop sends buffers that are full or older than the flush interval.
func (w *Writer) flushLoop() {
	defer close(w.loopEnd)
	tick := time.NewTicker(max(w.flushInterval/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-w.runCtx.Done():
			return
		case <-tick.C:
		}
		w.mu.Lock()
		if w.buf != nil && w.err == nil && (w.full(w.buf) || time.Since(w.buf.created) >= w.flushInterval) {
			_ = w.dispatch(w.runCtx) // fails only when the writer is closing
		}
		w.mu.Unlock()
	}
}

// actionLine encodes the bulk action and metadata line for d.
func (w *Writer) actionLine(d Doc) []byte {
	action := w.action
	if d.Version > 0 {
		action = "index" // create accepts only internal versions
	}
	b := make([]byte, 0, 64+len(d.Index)+len(d.ID))
	b = append(b, `{"`...)
	b = append(b, action...)
	b = append(b, `":{"_index":`...)
	b = appendJSONString(b, d.Index)
	if d.ID != "" {
		b = append(b, `,"_id":`...)
		b = appendJSONString(b, d.ID)
	}
	if d.Version > 0 {
		b = append(b, `,"version":`...)
		b = strconv.AppendInt(b, d.Version, 10)
		b = append(b, `,"version_type":"external"`...)
	}
	return append(b, "}}\n"...)
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}

func (w *Writer) deadLetter(ctx context.Context, d Doc, status int, errType, reason string) error {
	if err := w.deadLtr(ctx, d, status, errType, reason); err != nil {
		return fmt.Errorf("opensearch: dead-lettering %s/%s: %w", d.Index, d.ID, err)
	}
	w.metrics.docs.WithLabelValues("dead_lettered").Inc()
	return nil
}
