package config

import (
	"cmp"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Default values, listed in config/README.md and in the example files.
const (
	defaultHTTPAddr      = "127.0.0.1:9464"
	defaultMaxRecordSize = 1 << 20
	mib                  = 1 << 20
)

// applyDefaults fills every setting the file left unset. It is the only place
// defaults live. A zero value means unset, except where the file may set a
// meaningful zero (http.addr: "" turns the HTTP server off, max_retries: 0,
// max_redrives: 0); those consult isSet.
func applyDefaults(c *Config) {
	if !c.isSet("http.addr") {
		c.HTTP.Addr = cmp.Or(c.HTTP.Addr, defaultHTTPAddr)
	}
	c.Log.Level = cmp.Or(c.Log.Level, "info")
	c.Log.Format = cmp.Or(c.Log.Format, "json")
	c.MaxRecordSize = cmp.Or(c.MaxRecordSize, defaultMaxRecordSize)
	if c.InstanceID == "" {
		c.InstanceID = hostname()
	}

	if k := c.Source.Kafka; k != nil {
		k.Start = cmp.Or(k.Start, "earliest")
		k.FetchMaxBytes = cmp.Or(k.FetchMaxBytes, 8*mib) // four times this is set aside in memory.budget
		k.PartitionBytes = cmp.Or(k.PartitionBytes, 1*mib)
		k.SessionTimeout = cmp.Or(k.SessionTimeout, seconds(45))
		k.RequestTimeout = cmp.Or(k.RequestTimeout, seconds(30))
		// Static membership by default: a restarted instance (same
		// instance_id) takes its partitions back at once instead of waiting
		// out the session of the member it was; a clean shutdown still
		// leaves the group, so a scale-down hands partitions over at once.
		if !c.isSet("source.kafka.static_membership") {
			k.StaticMembership = true
		}
	}
	if k := c.Source.Kinesis; k != nil {
		k.Region = cmp.Or(k.Region, awsRegion())
		k.Start = cmp.Or(k.Start, "trim_horizon")
		k.PollInterval = cmp.Or(k.PollInterval, seconds(1))
		k.MaxRecords = cmp.Or(k.MaxRecords, 10000)
		k.ListInterval = cmp.Or(k.ListInterval, seconds(30))
		k.FailoverTime = cmp.Or(k.FailoverTime, seconds(30))
		k.RequestTimeout = cmp.Or(k.RequestTimeout, seconds(30))
	}

	c.Schema.Format = cmp.Or(c.Schema.Format, "json")
	fieldDefaults(c.Schema.Fields)
	if cdc := c.Schema.CDC; cdc != nil {
		// An archive keeps deletes: dropping them is a choice to make.
		cdc.Deletes = cmp.Or(cdc.Deletes, "keep")
	}
	if r := c.Schema.Registry; r != nil {
		r.Timeout = cmp.Or(r.Timeout, seconds(10))
		r.OnIncompatible = cmp.Or(r.OnIncompatible, "dead_letter")
	}

	for i := range c.Routes {
		r := &c.Routes[i]
		if p := r.Parquet; p != nil {
			defaultParquet(p, r.Name)
		}
		if o := r.OpenSearch; o != nil {
			DefaultOpenSearch(o, c.isSet(routePath(i)+".opensearch.max_retries"))
		}
	}

	c.S3.Region = cmp.Or(c.S3.Region, awsRegion())
	c.S3.PartSize = cmp.Or(c.S3.PartSize, 8*mib)
	c.S3.UploadConcurrency = cmp.Or(c.S3.UploadConcurrency, 4)
	c.S3.CompleteConcurrency = cmp.Or(c.S3.CompleteConcurrency, 64)
	c.S3.RequestTimeout = cmp.Or(c.S3.RequestTimeout, seconds(30))

	c.Checkpoint.Interval = cmp.Or(c.Checkpoint.Interval, seconds(10))
	c.Checkpoint.Timeout = cmp.Or(c.Checkpoint.Timeout, seconds(60))
	if c.Checkpoint.Store == "" {
		c.Checkpoint.Store = defaultStore(c.Routes)
	}

	c.Memory.Budget = cmp.Or(c.Memory.Budget, 256*mib)
	// A safety net, not a working-set bound: memory and the spool bound open
	// files (DESIGN §4). Reaching it rolls a file per new bucket.
	c.Memory.MaxOpenFiles = cmp.Or(c.Memory.MaxOpenFiles, 100_000)
	c.Memory.SpoolDir = cmp.Or(c.Memory.SpoolDir, filepath.Join(os.TempDir(), "sinkd-spool"))
	if !c.isSet("memory.spool_budget") {
		c.Memory.SpoolBudget = 2 << 30
	}
	c.Memory.MaxEncoders = cmp.Or(c.Memory.MaxEncoders, 64)

	defaultDLQ(c)

	c.Shutdown.DrainTimeout = cmp.Or(c.Shutdown.DrainTimeout, seconds(30))
	c.Shutdown.UnhealthyAfter = cmp.Or(c.Shutdown.UnhealthyAfter, Duration(5*time.Minute))
}

func defaultParquet(p *Parquet, route string) {
	p.Compression = cmp.Or(p.Compression, "snappy")
	p.RowGroupSize = cmp.Or(p.RowGroupSize, 16*mib)
	p.PageSize = cmp.Or(p.PageSize, 64<<10)
	p.TargetFileSize = cmp.Or(p.TargetFileSize, 128*mib)
	p.MaxFileAge = cmp.Or(p.MaxFileAge, Duration(15*time.Minute))
	p.Inactivity = cmp.Or(p.Inactivity, Duration(5*time.Minute))
	p.TimeZone = cmp.Or(p.TimeZone, "UTC")
	p.FilePrefix = cmp.Or(p.FilePrefix, route)
	if p.EventTime.Source == "" {
		// Bucketing by a payload field is exact on replay; the broker
		// timestamp is the next best thing and is always there.
		p.EventTime.Source = "broker"
		if p.EventTime.Field != "" {
			p.EventTime.Source = "field"
		}
	}
}

// OpenSearch defaults. The writer takes its defaults from DefaultOpenSearch
// too, so that these are the only ones; config/README.md,
// writers/opensearch/README.md and the examples list them, and a test keeps
// them in step. Why these values (writers/opensearch/README.md has the
// measurements): sinkd's CPU per document falls with the batch size up to a
// few thousand documents and is flat beyond, so flush_docs is 5000 (about
// 2.4 MB of taxi trips, within OpenSearch's advice of bulk requests of a few
// MiB) and flush_bytes 5MiB bounds larger documents; two requests in flight
// keep the cluster busy while the next batch fills, and more only queue on a
// busy cluster while holding a batch each.
const (
	defaultOSFlushBytes    = 5 * mib
	defaultOSFlushDocs     = 5000
	defaultOSFlushInterval = Duration(time.Second)
	defaultOSConcurrency   = 2
	defaultOSMaxRetries    = 8
	defaultOSTimeout       = Duration(30 * time.Second)
)

// DefaultOpenSearch fills every OpenSearch setting left at zero with its
// default. max_retries is filled only when maxRetriesSet is false: an
// explicit 0 means no retries of a request inside the HTTP client (the
// writer's own backoff still retries what the cluster refused).
func DefaultOpenSearch(o *OpenSearch, maxRetriesSet bool) {
	o.Action = cmp.Or(o.Action, "index")
	o.FlushBytes = cmp.Or(o.FlushBytes, defaultOSFlushBytes)
	o.FlushDocs = cmp.Or(o.FlushDocs, defaultOSFlushDocs)
	o.FlushInterval = cmp.Or(o.FlushInterval, defaultOSFlushInterval)
	o.Concurrency = cmp.Or(o.Concurrency, defaultOSConcurrency)
	if !maxRetriesSet {
		o.MaxRetries = defaultOSMaxRetries
	}
	o.Timeout = cmp.Or(o.Timeout, defaultOSTimeout)
	if o.SigV4 != nil {
		o.SigV4.Service = cmp.Or(o.SigV4.Service, "es")
		o.SigV4.Region = cmp.Or(o.SigV4.Region, awsRegion())
	}
}

// defaultStore puts manifests beside the first Parquet destination; with no
// valid one there is no default, and validation reports why.
func defaultStore(routes []Route) string {
	for _, r := range routes {
		if r.Parquet == nil {
			continue
		}
		if loc, err := ParseLocation(r.Parquet.Destination); err == nil {
			return loc.String() + "/_sinkd"
		}
	}
	return ""
}

// defaultDLQ points a dead-letter topic or stream at the source's cluster or
// endpoint unless told otherwise: dead letters usually live beside their source.
func defaultDLQ(c *Config) {
	if !c.isSet("dlq.max_redrives") {
		c.DLQ.MaxRedrives = cmp.Or(c.DLQ.MaxRedrives, 3)
	}
	if d := c.DLQ.Kafka; d != nil {
		d.Partitions = cmp.Or(d.Partitions, -1) // -1: the broker's default
		d.ReplicationFactor = cmp.Or(d.ReplicationFactor, -1)
	}
	if d, src := c.DLQ.Kafka, c.Source.Kafka; d != nil && src != nil && len(d.Brokers) == 0 {
		d.Brokers = append(StringList(nil), src.Brokers...)
		if d.TLS == (TLS{}) {
			d.TLS = src.TLS
		}
		if d.SASL == (SASL{}) {
			d.SASL = src.SASL
		}
	}
	if d := c.DLQ.Kinesis; d != nil {
		if src := c.Source.Kinesis; src != nil {
			if !c.isSet("dlq.kinesis.endpoint") {
				d.Endpoint = cmp.Or(d.Endpoint, src.Endpoint)
			}
			d.Region = cmp.Or(d.Region, src.Region)
		}
		d.Region = cmp.Or(d.Region, awsRegion())
	}
}

func routePath(i int) string { return "routes[" + strconv.Itoa(i) + "]" }

func awsRegion() string { return cmp.Or(os.Getenv("AWS_REGION"), "us-east-1") }

func hostname() string {
	if h := os.Getenv("HOSTNAME"); h != "" {
		return h
	}
	h, _ := os.Hostname()
	return h
}

func seconds(n int) Duration { return Duration(time.Duration(n) * time.Second) }

// fieldDefaults fills in fields, and the fields nested in them, in place.
func fieldDefaults(fields []Field) {
	for i := range fields {
		fieldDefault(&fields[i])
	}
}

func fieldDefault(f *Field) {
	f.From = cmp.Or(f.From, f.Name)
	switch f.Type {
	case "timestamp":
		f.Unit = cmp.Or(f.Unit, "millis")
		f.Input = cmp.Or(f.Input, "millis")
	case "time":
		// Microseconds: what DuckDB, Spark and Athena's TIME holds.
		f.Unit = cmp.Or(f.Unit, "micros")
	}
	fieldDefaults(f.Fields)
	for _, e := range []*Field{f.Items, f.Values} {
		if e != nil {
			fieldDefault(e)
		}
	}
}
