package opensearch

import (
	"github.com/sinkd/sinkd/internal/promreg"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	duration prometheus.Histogram
	docs     *prometheus.CounterVec // result: indexed | conflict_ok | dead_lettered | retried
	retries  *prometheus.CounterVec // reason: transport | http_429 | http_5xx | item_429 | item_5xx | split_413
	buffered prometheus.Gauge
	inFlight prometheus.Gauge

	// The docs series, resolved once: settling counts every item.
	indexed, conflictOK, deadLettered, retried prometheus.Counter
}

// newMetrics registers the writer's metrics; writers of several routes share
// one set when they share a registerer.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sinkd_opensearch_request_duration_seconds",
			Help:    "Duration of each HTTP attempt to OpenSearch.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		docs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sinkd_opensearch_docs_total",
			Help: "Bulk item outcomes: indexed, conflict_ok (already present), dead_lettered, retried (one per retry).",
		}, []string{"result"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sinkd_opensearch_retries_total",
			Help: "Retries by reason: transport, http_429, http_5xx (whole requests), item_429, item_5xx (bulk items), split_413.",
		}, []string{"reason"}),
		buffered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sinkd_opensearch_buffered_bytes",
			Help: "Bytes of documents buffered or in flight, not yet settled.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sinkd_opensearch_bulk_in_flight",
			Help: "Bulk requests being sent or retried.",
		}),
	}
	var err error
	m.duration = register(reg, m.duration, &err)
	m.docs = register(reg, m.docs, &err)
	m.retries = register(reg, m.retries, &err)
	m.buffered = register(reg, m.buffered, &err)
	m.inFlight = register(reg, m.inFlight, &err)
	if err == nil {
		m.indexed = m.docs.WithLabelValues("indexed")
		m.conflictOK = m.docs.WithLabelValues("conflict_ok")
		m.deadLettered = m.docs.WithLabelValues("dead_lettered")
		m.retried = m.docs.WithLabelValues("retried")
	}
	return m, err
}

// register adds c to reg, or returns the collector already registered under
// the same description.
func register[C prometheus.Collector](reg prometheus.Registerer, c C, errp *error) C {
	c, err := promreg.Register(reg, c)
	if err != nil && *errp == nil {
		*errp = err
	}
	return c
}
