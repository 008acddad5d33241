package jsonlines

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are one route's series. Series of several routes share their
// collectors: the first route registers them, the others find them there.
type metrics struct {
	rolled     *prometheus.CounterVec
	open, held prometheus.Gauge
	memoryFull prometheus.Counter
	earlyParts prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, route string) *metrics {
	rolled := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sinkd_jsonlines_files_rolled_total", Help: "JSON-lines files closed, by reason (size, age, inactivity, memory, evicted, handover, ...).",
	}, []string{"route", "reason"}))
	open := register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sinkd_jsonlines_open_files", Help: "JSON-lines files open (in-progress multipart uploads being written).",
	}, []string{"route"}))
	held := register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sinkd_jsonlines_buffered_bytes", Help: "Bytes JSON-lines open files hold against memory.budget (buffers and bookkeeping), as of the last tick.",
	}, []string{"route"}))
	full := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sinkd_jsonlines_memory_full_total", Help: "Times a JSON-lines write found memory.budget full and relieved it (parts uploaded early, files rolled: reason memory).",
	}, []string{"route"}))
	early := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sinkd_jsonlines_early_parts_total", Help: "JSON-lines parts uploaded below s3.part_size (at least 5MiB) because memory.budget was full.",
	}, []string{"route"}))
	m := &metrics{
		rolled: rolled, open: open.WithLabelValues(route), held: held.WithLabelValues(route),
		memoryFull: full.WithLabelValues(route), earlyParts: early.WithLabelValues(route),
	}
	// Resolved up front, so that series that stay at zero in a healthy run
	// exist for alerts and dashboards.
	for _, reason := range []string{"size", "age", "inactivity", "memory"} {
		rolled.WithLabelValues(route, reason)
	}
	return m
}

// register registers c, or returns the collector already registered under
// its name; with no registerer, c serves unregistered.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(C); ok {
				return old
			}
		}
		panic(err)
	}
	return c
}
