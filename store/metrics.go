package store

import (
	"time"

	"github.com/sinkd/sinkd/internal/promreg"

	"github.com/prometheus/client_golang/prometheus"
)

// s3Metrics are the S3 request metrics of one store. Several stores may share
// a registerer: the second one reuses the vectors the first registered.
type s3Metrics struct {
	duration *prometheus.HistogramVec
	retries  *prometheus.CounterVec
	errors   *prometheus.CounterVec
}

func newS3Metrics(reg prometheus.Registerer) (*s3Metrics, error) {
	m := &s3Metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sinkd_s3_request_duration_seconds",
			Help:    "Duration of S3 calls, retries included, by operation.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10), // 5ms .. ~19s
		}, []string{"operation"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sinkd_s3_request_retries_total",
			Help: "S3 request attempts beyond the first, by operation.",
		}, []string{"operation"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sinkd_s3_request_errors_total",
			Help: "S3 calls that failed after their retries, by operation (not-found and failed preconditions, which are answers, excluded).",
		}, []string{"operation"}),
	}
	var err error
	if m.duration, err = promreg.Register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.retries, err = promreg.Register(reg, m.retries); err != nil {
		return nil, err
	}
	if m.errors, err = promreg.Register(reg, m.errors); err != nil {
		return nil, err
	}
	// Alerts and the dashboard name these: zero from the start.
	for _, op := range s3Operations {
		m.retries.WithLabelValues(op)
		m.errors.WithLabelValues(op)
	}
	return m, nil
}

func (m *s3Metrics) observe(op string, d time.Duration, attempts int, err error) {
	if m == nil {
		return
	}
	m.duration.WithLabelValues(op).Observe(d.Seconds())
	if attempts > 1 {
		m.retries.WithLabelValues(op).Add(float64(attempts - 1))
	}
	if err != nil && !isAnswer(err) {
		m.errors.WithLabelValues(op).Inc()
	}
}

// isAnswer reports failures that are outcomes the caller asked about (no such
// key or upload, an object already there) rather than a failing S3.
func isAnswer(err error) bool {
	return isNotFound(err) || isConditionFailed(err)
}

// s3Operations are the operation label values of the S3 store's calls.
var s3Operations = []string{"CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "HeadObject",
	"AbortMultipartUpload", "ListMultipartUploads", "ListParts", "PutObject", "GetObject", "ListObjectsV2", "DeleteObject"}
