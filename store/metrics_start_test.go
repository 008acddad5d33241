package store

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The S3 error and retry counters, which alerts and the dashboard name,
// exist at zero from the start for every operation.
func TestS3MetricsExistFromStart(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := newS3Metrics(reg); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, f := range families {
		count[f.GetName()] = len(f.GetMetric())
	}
	for _, name := range []string{"sinkd_s3_request_errors_total", "sinkd_s3_request_retries_total"} {
		if count[name] != len(s3Operations) {
			t.Errorf("%s: %d series, want %d", name, count[name], len(s3Operations))
		}
	}
}
