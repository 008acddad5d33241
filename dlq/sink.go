package dlq

import (
	"context"
	"errors"
)

// Sink writes dead letters to a durable stream.
type Sink interface {
	// Send accepts a letter into a bounded buffer, blocking while the buffer
	// is full (until ctx ends). An accepted letter is never dropped.
	Send(ctx context.Context, l *Letter) error
	// Flush returns nil only when every letter sent before the call is
	// acknowledged durable by the stream. While the stream is unreachable it
	// keeps retrying with backoff until ctx ends.
	Flush(ctx context.Context) error
	// Close flushes, then releases the sink's connections. It reports
	// letters left unacknowledged when ctx ends first.
	Close(ctx context.Context) error
}

// errClosed is returned by Send after Close.
var errClosed = errors.New("dlq: sink closed")

// Open returns the sink the configuration names. ctx bounds what opening
// does on the network (looking up, or creating, the topic or stream).
func Open(ctx context.Context, cfg Config, o Options) (Sink, error) {
	n := 0
	for _, set := range []bool{cfg.Kafka != nil, cfg.Kinesis != nil, cfg.File != ""} {
		if set {
			n++
		}
	}
	switch {
	case n > 1:
		return nil, errors.New("dlq: configure only one of kafka, kinesis or file")
	case cfg.Kafka != nil:
		return NewKafka(ctx, *cfg.Kafka, o)
	case cfg.Kinesis != nil:
		return NewKinesis(ctx, *cfg.Kinesis, o)
	case cfg.File != "":
		return NewFile(cfg.File, o)
	}
	return nil, errors.New("dlq: no destination configured (kafka, kinesis or file)")
}
