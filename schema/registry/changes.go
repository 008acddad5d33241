package registry

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a writer schema met in records, the outcome label of
// sinkd_schema_changes_total.
const (
	// OutcomeSameParquet: the writer schema merges into the file schema and
	// leaves its Parquet schema as it is (a new enum symbol, a schema
	// registered again under a new id): the open files keep being written.
	OutcomeSameParquet = "same_parquet"
	// OutcomeMerged: merging changes the Parquet schema (a field added,
	// a type widened): the files in progress close and the pipeline
	// restarts with the merged schema.
	OutcomeMerged = "merged"
	// OutcomeIncompatible: the writer schema cannot be merged; its records
	// are incompatible_schema dead letters, or the run stops.
	OutcomeIncompatible = "incompatible"
)

// maxCounted bounds the writer schemas Changes remembers having counted.
const maxCounted = 4096

// Changes counts the writer schemas met in records after a pipeline's start,
// by outcome, once per schema id (and Protobuf message): the ids met again
// after a restart with the merged schema are not counted again, so it is
// made once for the life of the process and handed to every Input. Schemas
// checked at the start (the subject's latest) are not counted. Safe for
// concurrent use.
type Changes struct {
	total   *prometheus.CounterVec
	mu      sync.Mutex
	counted map[string]struct{}
}

// NewChanges returns a counter whose series for every outcome exist at 0.
func NewChanges() *Changes {
	c := &Changes{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sinkd_schema_changes_total",
			Help: "Writer schemas (schema ids) met in records, by the outcome of merging them into the file schema: same_parquet, merged (files roll), incompatible.",
		}, []string{"outcome"}),
		counted: map[string]struct{}{},
	}
	for _, o := range []string{OutcomeSameParquet, OutcomeMerged, OutcomeIncompatible} {
		c.total.WithLabelValues(o)
	}
	return c
}

// Collector is what to register: the sinkd_schema_changes_total series.
func (c *Changes) Collector() prometheus.Collector { return c.total }

// known marks key as counted without counting it: the subject's latest
// schema, which the file schema starts from.
func (c *Changes) known(key string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.counted) < maxCounted {
		c.counted[key] = struct{}{}
	}
}

// count counts the writer schema key (its id, with the message's name for
// Protobuf) once. A nil Changes counts nothing.
func (c *Changes) count(key, outcome string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.counted[key]; ok {
		return
	}
	if len(c.counted) >= maxCounted {
		clear(c.counted) // ids are few; a flood may count some twice, never grow memory
	}
	c.counted[key] = struct{}{}
	c.total.WithLabelValues(outcome).Inc()
}
