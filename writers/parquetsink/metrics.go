package parquetsink

import "github.com/prometheus/client_golang/prometheus"

// Metrics are shared by the Parquet writers of all routes; the route label is
// bounded by the configuration.
type Metrics struct {
	rows        *prometheus.CounterVec
	skipped     *prometheus.CounterVec
	bytes       *prometheus.CounterVec
	rolled      *prometheus.CounterVec
	openFiles   *prometheus.GaugeVec
	parts       *prometheus.CounterVec
	partRetries *prometheus.CounterVec
	rowGroups   *prometheus.CounterVec
	encoders    *prometheus.GaugeVec
	steals      *prometheus.CounterVec
	inflight    prometheus.Gauge
	buffered    prometheus.GaugeFunc
	budget      prometheus.GaugeFunc
}

func NewMetrics(reg prometheus.Registerer, b *Budget) *Metrics {
	m := &Metrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sinkd_parquet_rows_total", Help: "Rows written into Parquet files (committed or not yet).",
		}, []string{"route"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sinkd_parquet_replay_skipped_total", Help: "Replayed records skipped because a committed file already holds them.",
		}, []string{"route"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sinkd_parquet_bytes_total", Help: "Encoded Parquet bytes uploaded as parts.",
		}, []string{"route"}),
		rolled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sinkd_parquet_files_rolled_total", Help: "Files closed, by reason (size, age, inactivity, evicted, memory, handover).",
		}, []string{"route", "reason"}),
		openFiles: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sinkd_parquet_open_files", Help: "Parquet files open (in-progress multipart uploads being written).",
		}, []string{"route"}),
		parts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sinkd_parquet_parts_uploaded_total", Help: "Multipart upload parts uploaded.",
		}, []string{"route"}),
		partRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sinkd_parquet_part_retries_total", Help: "Part uploads retried after an error.",
		}, []string{"route"}),
		rowGroups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sinkd_parquet_row_groups_total", Help: "Row groups written into Parquet files.",
		}, []string{"route"}),
		encoders: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sinkd_parquet_encoders", Help: "Parquet encoders in the route's pool (bounded by memory.max_encoders).",
		}, []string{"route"}),
		steals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sinkd_parquet_encoder_steals_total", Help: "Encoders taken from a file that had not been written for a second, ending its row group early.",
		}, []string{"route"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sinkd_parquet_uploads_in_flight", Help: "Part uploads in flight.",
		}),
		buffered: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sinkd_memory_buffered_bytes", Help: "Bytes held against the memory budget: row groups being built, parts not yet uploaded, and the share set aside for fetched records.",
		}, func() float64 { return float64(b.Used()) }),
		budget: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sinkd_memory_budget_bytes", Help: "What open files and fetched records may hold: memory.budget less the Go runtime's room for garbage.",
		}, func() float64 { return float64(b.Limit()) }),
	}
	if reg != nil {
		reg.MustRegister(m.rows, m.skipped, m.bytes, m.rolled, m.openFiles, m.parts, m.partRetries, m.rowGroups, m.encoders, m.steals, m.inflight, m.buffered, m.budget)
	}
	return m
}
