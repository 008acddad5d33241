// Package kgolog routes franz-go's client logs through log/slog, so that
// connection problems reach sinkd's log in its format instead of vanishing.
package kgolog

import (
	"context"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"
)

type logger struct{ log *slog.Logger }

// New returns a kgo.Logger writing to log. franz-go's errors and warnings
// (a broker refusing connections, SASL failures) keep their level; its info
// lines (group joins, assignments) become debug, and its own debug level,
// which logs every request, is never enabled.
func New(log *slog.Logger) kgo.Logger { return logger{log.With("component", "kafka-client")} }

func (l logger) Level() kgo.LogLevel {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		return kgo.LogLevelInfo
	}
	return kgo.LogLevelWarn
}

func (l logger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lvl := slog.LevelDebug
	switch level {
	case kgo.LogLevelError:
		lvl = slog.LevelError
	case kgo.LogLevelWarn:
		lvl = slog.LevelWarn
	}
	l.log.Log(context.Background(), lvl, msg, keyvals...)
}
