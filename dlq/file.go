package dlq

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
)

// fileSink appends JSON envelopes, one per line, to a local file. Letters
// are durable once Flush has synced the file.
type fileSink struct {
	path    string
	opts    Options
	metrics *metrics
	log     *slog.Logger

	mu       sync.Mutex
	f        *os.File
	pending  []byte // lines not yet written to f
	unsynced int    // letters not yet synced
}

// NewFile returns a sink that appends to the JSON-lines file at path.
func NewFile(path string, o Options) (Sink, error) {
	o = o.withDefaults()
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("dlq metrics: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("dlq file: %w", err)
	}
	return &fileSink{
		path: path, opts: o, metrics: m, f: f,
		log: o.Logger.With("dlq", "file", "path", path),
	}, nil
}

func (s *fileSink) Send(ctx context.Context, l *Letter) error {
	b, err := ToJSON(s.opts.stamp(l))
	if err != nil {
		return fmt.Errorf("dlq file: encode %s: %w", l.ID(), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return fmt.Errorf("dlq file %s: closed", s.path)
	}
	s.pending = append(append(s.pending, b...), '\n')
	s.unsynced++
	s.metrics.counted(l)
	s.metrics.buffered.Inc()
	if s.unsynced >= s.opts.MaxBuffered {
		return s.syncLocked(ctx)
	}
	return nil
}

func (s *fileSink) Flush(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	return s.syncLocked(ctx)
}

// syncLocked writes the buffer and fsyncs, retrying with backoff (a full
// disk may be freed) until ctx ends.
func (s *fileSink) syncLocked(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		n, err := s.f.Write(s.pending)
		s.pending = s.pending[n:]
		if err == nil {
			err = s.f.Sync()
		}
		if err == nil {
			s.metrics.buffered.Sub(float64(s.unsynced))
			s.unsynced = 0
			s.pending = nil
			return nil
		}
		s.metrics.retries.Inc()
		s.log.Warn("dead-letter file not synced, retrying", "err", err, "attempt", attempt+1)
		if serr := sleep(ctx, retryDelay(attempt)); serr != nil {
			return fmt.Errorf("dlq file %s: %d letters not synced: %w (last error: %v)", s.path, s.unsynced, serr, err)
		}
	}
}

func (s *fileSink) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.syncLocked(ctx)
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	s.f = nil
	return err
}
