package dlq

import (
	"log/slog"

	"github.com/sinkd/sinkd/internal/promreg"

	"github.com/prometheus/client_golang/prometheus"
)

// Options are the settings every sink shares.
type Options struct {
	Pipeline, Version string // stamped on every letter
	// Registerer receives the sink's metrics; nil gives the sink a private
	// registry. Several sinks may share one registerer: they share counters.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// MaxBuffered bounds the letters sent but not yet acknowledged; Send
	// blocks beyond it. 0 means DefaultMaxBuffered.
	MaxBuffered int
}

// DefaultMaxBuffered is the buffer bound when Options.MaxBuffered is 0.
const DefaultMaxBuffered = 10000

func (o Options) withDefaults() Options {
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxBuffered <= 0 {
		o.MaxBuffered = DefaultMaxBuffered
	}
	return o
}

// stamp fills the letter's pipeline and version from the options.
func (o Options) stamp(l *Letter) *Letter {
	if (l.Pipeline != "" || o.Pipeline == "") && (l.Version != "" || o.Version == "") {
		return l
	}
	c := *l
	if c.Pipeline == "" {
		c.Pipeline = o.Pipeline
	}
	if c.Version == "" {
		c.Version = o.Version
	}
	return &c
}

type metrics struct {
	records  *prometheus.CounterVec
	retries  prometheus.Counter
	buffered prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sinkd_dlq_records_total",
			Help: "Records sent to the dead-letter stream, by stage and bounded error reason.",
		}, []string{"stage", "reason"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sinkd_dlq_send_retries_total",
			Help: "Dead-letter writes retried after the stream failed or refused them.",
		}),
		buffered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sinkd_dlq_buffered_letters",
			Help: "Dead letters accepted but not yet acknowledged durable by the stream.",
		}),
	}
	var err error
	m.records, err = promreg.Register(reg, m.records)
	if err != nil {
		return nil, err
	}
	if m.retries, err = promreg.Register(reg, m.retries); err != nil {
		return nil, err
	}
	if m.buffered, err = promreg.Register(reg, m.buffered); err != nil {
		return nil, err
	}
	// Every (stage, reason) pair the stages can produce exists from the
	// start at zero, so that rates and alerts see a series before the first
	// dead letter.
	for _, c := range classes {
		m.records.WithLabelValues(string(c.Stage), c.Class)
	}
	return m, nil
}

// counted records a letter in sinkd_dlq_records_total.
func (m *metrics) counted(l *Letter) {
	m.records.WithLabelValues(stageLabel(l.Stage), Reason(l.Class)).Inc()
}

func stageLabel(s Stage) string {
	switch s {
	case StageDecode, StageSchema, StageRoute, StageBucket, StageParquet,
		StageOpenSearch, StageOversize, StageKPL:
		return string(s)
	}
	return ReasonOther
}
