package kinesis

import "github.com/prometheus/client_golang/prometheus"

// metrics of one source, labelled with its stream.
type metrics struct {
	reads, throttles, expired, readErrors, badAggregates prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, stream string) *metrics {
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{
			Name: name, Help: help, ConstLabels: prometheus.Labels{"stream": stream},
		})
		if reg != nil {
			reg.MustRegister(c)
		}
		return c
	}
	return &metrics{
		reads:         counter("sinkd_kinesis_reads_total", "GetRecords calls that succeeded."),
		throttles:     counter("sinkd_kinesis_throttles_total", "Kinesis calls throttled (ProvisionedThroughputExceeded, LimitExceeded, KMS throttling); each one backs off."),
		expired:       counter("sinkd_kinesis_expired_iterators_total", "Shard iterators that expired and were re-acquired from the last position."),
		readErrors:    counter("sinkd_kinesis_read_errors_total", "GetRecords calls that failed for another reason than a throttle or an expired iterator."),
		badAggregates: counter("sinkd_kinesis_bad_aggregates_total", "KPL aggregates that failed their checksum or did not parse; each one is dead-lettered whole."),
	}
}
