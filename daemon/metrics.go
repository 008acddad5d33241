package daemon

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the pipeline's own series; writers and the dead-letter sink
// register theirs on the same registry.
type metrics struct {
	recordsIn         *prometheus.CounterVec
	bytesIn           *prometheus.CounterVec
	lagRecords        *prometheus.GaugeVec
	durableLagRecords *prometheus.GaugeVec
	millisBehind      *prometheus.GaugeVec
	groupLagRecords   *prometheus.GaugeVec
	pendingMillis     *prometheus.GaugeVec
	pendingParts      *prometheus.GaugeVec
	cpDuration        prometheus.Histogram
	cpLastSuccess     prometheus.Gauge
	cpFailures        prometheus.Counter
	cpFiles           prometheus.Counter
	cpFilesLost       prometheus.Counter
	cpBytes           prometheus.Counter
	ownedPartitions   prometheus.Gauge
	busy              prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, version string) *metrics {
	m := &metrics{
		recordsIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sinkd_source_records_total", Help: "Records read from the source.",
		}, []string{"source", "stream"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sinkd_source_bytes_total", Help: "Record value bytes read from the source.",
		}, []string{"source", "stream"}),
		lagRecords: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sinkd_source_lag_records", Help: "Records in the partition not yet processed (fetched lag): high watermark minus next position.",
		}, []string{"source", "stream", "partition"}),
		durableLagRecords: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sinkd_source_durable_lag_records", Help: "Records in the partition after the last committed (durable) position.",
		}, []string{"source", "stream", "partition"}),
		millisBehind: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sinkd_source_millis_behind_latest", Help: "Age in milliseconds of the last processed record, 0 when caught up.",
		}, []string{"source", "stream", "partition"}),
		groupLagRecords: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sinkd_source_group_lag_records",
			Help: "Records after the group's committed restart point, for every partition of the source's streams, owned here or not (same on every instance: aggregate with max by partition).",
		}, []string{"source", "stream", "partition"}),
		pendingMillis: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sinkd_source_pending_millis_behind_latest",
			Help: "For a partition with unread records and no live reader, the age in milliseconds of its first unread record.",
		}, []string{"source", "stream", "partition"}),
		pendingParts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sinkd_source_partitions_pending",
			Help: "Partitions with unread records that no live instance reads (a child shard waiting, a shard nobody leases, a partition held by a dead member).",
		}, []string{"source", "stream"}),
		cpDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sinkd_checkpoint_duration_seconds", Help: "Time to take a checkpoint, from barrier to committed positions.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		cpLastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sinkd_checkpoint_last_success_timestamp_seconds", Help: "Unix time of the last committed checkpoint.",
		}),
		cpFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sinkd_checkpoint_failures_total", Help: "Checkpoints that failed and will be retried.",
		}),
		cpFiles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sinkd_checkpoint_files_committed_total", Help: "Parquet files made visible by checkpoints.",
		}),
		cpFilesLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sinkd_checkpoint_files_lost_total", Help: "Files the store lost after a manifest committed them, accepted with sinkd run --accept-lost: their records are not in the archive.",
		}),
		cpBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sinkd_checkpoint_bytes_committed_total", Help: "Parquet bytes made visible by checkpoints.",
		}),
		ownedPartitions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sinkd_source_partitions_owned", Help: "Source partitions this instance owns.",
		}),
		busy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sinkd_pipeline_busy_seconds_total", Help: "Time the pipeline spent processing records; its rate is the busy ratio.",
		}),
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sinkd_build_info", Help: "Build information.", ConstLabels: prometheus.Labels{"version": version},
	})
	info.Set(1)
	reg.MustRegister(m.recordsIn, m.bytesIn, m.lagRecords, m.durableLagRecords, m.millisBehind, m.groupLagRecords, m.pendingMillis, m.pendingParts, m.cpDuration,
		m.cpLastSuccess, m.cpFailures, m.cpFiles, m.cpFilesLost, m.cpBytes, m.ownedPartitions, m.busy, info,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
