// Package opensearch writes documents to OpenSearch through the _bulk API:
// buffered by bytes, count and age, sent with bounded concurrency, with every
// item's outcome classified (indexed, conflict that counts as success,
// retried, dead-lettered). Flush returns only when every document written
// before it is settled, which is what the checkpoint needs before it commits
// source positions.
package opensearch

// Over 500 lines on purpose: one concern, the bulk writer's buffering, dispatch
// and flush, whose locking spans all of it; the HTTP calls (api.go, send.go)
// and the route (route.go) are already apart.

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

	"github.com/sinkd/sinkd/internal/backoff"
	"github.com/sinkd/sinkd/record"
)

// Doc is one document to index. Write copies Index, ID and Body into the
// request it builds; only Rec is kept until the document is settled.
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
	backoff  backoff.Policy // waits between rounds of retried items, equal jitter
	template *indexTemplate

	sem chan struct{} // one token per bulk request in flight

	// mu guards the fields below. Write holds it while waiting for a free
	// slot, so that a full pipeline blocks every writer: that is the backpressure.
	mu       sync.Mutex
	buf      *batch
	spare    chan *buffers // of batches sent, for the next ones
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

// item is one document in a batch's body: body[start:meta] is its action
// line, body[meta:end-1] the document, body[end-1] the newline.
type item struct {
	start, meta, end int
	version          int64
	rec              *record.Record
}

// buffers hold a batch's request body and its items. They are reused from
// one batch to the next, so that a steady stream of documents allocates
// nothing per document.
type buffers struct {
	body    []byte
	items   []item
	results []itemStatus // the parsed answer, one per item
	answer  []byte       // the raw answer
}

// batch is one bulk request's worth of documents.
type batch struct {
	*buffers
	created time.Time
	done    chan struct{}
	err     error // set before done closes
}

// New checks the configuration and prepares a writer; Start connects it. ctx
// bounds loading the AWS configuration that SigV4 signing needs.
// Settings left at zero take their defaults (Config.SetDefaults),
// except max_retries, where 0 means no retries inside the HTTP client.
func New(ctx context.Context, cfg Config, dl DeadLetter, opts ...Option) (*Writer, error) {
	if cfg.URL == "" {
		return nil, errors.New("opensearch: url is required")
	}
	if dl == nil {
		return nil, errors.New("opensearch: a dead-letter function is required")
	}
	cfg.SetDefaults(true)
	if cfg.FlushBytes < 0 || cfg.FlushDocs < 0 || cfg.FlushInterval < 0 || cfg.Concurrency < 0 || cfg.MaxRetries < 0 || cfg.Timeout < 0 {
		return nil, errors.New("opensearch: flush_bytes, flush_docs, flush_interval, concurrency, max_retries and timeout must not be negative")
	}
	o := options{logger: slog.Default(), backoffMin: 100 * time.Millisecond, backoffMax: 10 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if o.registerer == nil {
		o.registerer = prometheus.NewRegistry() // metrics still work, nobody scrapes them
	}
	w := &Writer{
		flushBytes:    int(cfg.FlushBytes.Bytes()),
		flushDocs:     cfg.FlushDocs,
		flushInterval: cfg.FlushInterval.D(),
		action:        cfg.Action,
		deadLtr:       dl,
		log:           o.logger.With("component", "opensearch"),
		backoff:       backoff.Policy{Base: o.backoffMin, Max: o.backoffMax},
		sem:           make(chan struct{}, cfg.Concurrency),
		spare:         make(chan *buffers, cfg.Concurrency+1),
		inflight:      map[*batch]struct{}{},
		loopEnd:       make(chan struct{}),
	}
	switch w.action {
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
	if w.api, err = newAPI(ctx, cfg, o, m); err != nil {
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
	return write(w, ctx, d.Index, d.ID, d.Version, d.Body, d.Rec)
}

// WriteBytes is Write for a caller that renders index and id into buffers it
// reuses: index, id and body are copied before it returns, rec is kept until
// the document is settled (it is what a dead letter carries).
func (w *Writer) WriteBytes(ctx context.Context, index, id []byte, version int64, body []byte, rec *record.Record) error {
	return write(w, ctx, index, id, version, body, rec)
}

// write appends one document to the open batch: the action line is encoded
// and the document copied straight into the batch's request body, so that a
// document costs no allocation of its own.
func write[S string | []byte](w *Writer, ctx context.Context, index, id S, version int64, body []byte, rec *record.Record) error {
	if len(index) == 0 {
		return fmt.Errorf("opensearch: document %q has no index", id)
	}
	// NDJSON frames documents by lines: a pretty-printed one must be
	// compacted. (Two IndexByte calls are much faster than IndexAny.)
	if bytes.IndexByte(body, '\n') >= 0 || bytes.IndexByte(body, '\r') >= 0 {
		var compact bytes.Buffer
		if err := json.Compact(&compact, body); err != nil {
			d := Doc{Index: string(index), ID: string(id), Version: version, Body: body, Rec: rec}
			return w.deadLetter(ctx, d, http.StatusBadRequest, "invalid_json", err.Error())
		}
		body = compact.Bytes()
	}
	// The action line's size is estimated: it only decides whether the
	// document still fits in the open batch.
	size := len(index) + len(id) + len(body) + 64

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
	if w.buf != nil && (len(w.buf.body)+size > w.flushBytes || len(w.buf.items) >= w.flushDocs) {
		if err := w.dispatch(ctx); err != nil {
			return err
		}
	}
	if w.buf == nil {
		w.buf = &batch{buffers: w.takeBuffers(), created: time.Now(), done: make(chan struct{})}
	}
	b := w.buf
	start := len(b.body)
	b.body = appendActionLine(b.body, w.action, index, id, version)
	meta := len(b.body)
	b.body = append(append(b.body, body...), '\n')
	b.items = append(b.items, item{start: start, meta: meta, end: len(b.body), version: version, rec: rec})
	w.metrics.buffered.Set(float64(w.buffered.Add(int64(len(b.body) - start))))
	if w.full(b) {
		w.tryDispatch() // else the next Write or the interval loop sends it
	}
	return nil
}

func (w *Writer) full(b *batch) bool {
	return len(b.body) >= w.flushBytes || len(b.items) >= w.flushDocs
}

// takeBuffers returns spare buffers or new ones. They start small and grow
// to what a batch needs; once they are reused, a batch allocates nothing.
func (w *Writer) takeBuffers() *buffers {
	select {
	case b := <-w.spare:
		return b
	default:
		return &buffers{body: make([]byte, 0, min(w.flushBytes+w.flushBytes/8, 256<<10))}
	}
}

// giveBuffers keeps b for a later batch, unless it grew far beyond a batch's
// size (one huge document travels alone) or enough are kept already: at most
// one per request in flight plus the open one ever exist. It does not take
// w.mu: a sender gives its buffers back before it frees its slot, so that
// the Write waiting for that slot (holding w.mu) finds them.
func (w *Writer) giveBuffers(b *buffers) {
	if cap(b.body) > 2*w.flushBytes+(1<<20) || cap(b.answer) > 64<<20 {
		return
	}
	clear(b.items) // drop the records they point to
	b.body, b.items, b.results, b.answer = b.body[:0], b.items[:0], b.results[:0], b.answer[:0]
	select {
	case w.spare <- b:
	default:
	}
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
	size := len(b.body)
	err := w.send(w.runCtx, b.buffers, b.body, b.items)
	// The bytes are released before the slot, so that the next batch never
	// counts on top of this one; the slot before w.mu, which a dispatcher may
	// hold while it waits for this slot.
	w.metrics.buffered.Set(float64(w.buffered.Add(-int64(size))))
	w.metrics.inFlight.Dec()
	w.giveBuffers(b.buffers)
	b.buffers = nil
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
	return appendActionLine(nil, w.action, d.Index, d.ID, d.Version)
}

// appendActionLine appends the bulk action and metadata line, newline
// included.
func appendActionLine[S string | []byte](b []byte, action string, index, id S, version int64) []byte {
	if version > 0 {
		action = "index" // create accepts only internal versions
	}
	b = append(b, `{"`...)
	b = append(b, action...)
	b = append(b, `":{"_index":`...)
	b = appendJSONString(b, index)
	if len(id) > 0 {
		b = append(b, `,"_id":`...)
		b = appendJSONString(b, id)
	}
	if version > 0 {
		b = append(b, `,"version":`...)
		b = strconv.AppendInt(b, version, 10)
		b = append(b, `,"version_type":"external"`...)
	}
	return append(b, "}}\n"...)
}

// appendJSONString appends s as a JSON string. Index names and ids are
// nearly always plain printable ASCII, which needs no escaping; anything else
// goes through encoding/json.
func appendJSONString[S string | []byte](b []byte, s S) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			q, _ := json.Marshal(string(s)) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func (w *Writer) deadLetter(ctx context.Context, d Doc, status int, errType, reason string) error {
	if err := w.deadLtr(ctx, d, status, errType, reason); err != nil {
		return fmt.Errorf("opensearch: dead-lettering %s/%s: %w", d.Index, d.ID, err)
	}
	w.metrics.deadLettered.Inc()
	return nil
}

// doc rebuilds the document of an item for a dead letter: index and id from
// its action line, a copy of its body (the buffers are reused).
func (it item) doc(body []byte) Doc {
	var meta map[string]struct {
		Index string `json:"_index"`
		ID    string `json:"_id"`
	}
	_ = json.Unmarshal(body[it.start:it.meta], &meta) // we wrote it: it parses
	d := Doc{Version: it.version, Body: bytes.Clone(body[it.meta : it.end-1]), Rec: it.rec}
	for _, m := range meta {
		d.Index, d.ID = m.Index, m.ID
	}
	return d
}
