package config

import (
	"cmp"
	"os"
	"strconv"
	"time"

	"github.com/sinkd/sinkd/config/conf"
)

// Default values of the settings that belong to no plugin, listed in
// config/README.md and in the example files. Each plugin's defaults live in
// its config.go (source/kafka, source/kinesis, store, writers/opensearch,
// writers/parquetsink, dlq); applyDefaults calls them.
const (
	defaultHTTPAddr      = "127.0.0.1:9464"
	defaultMaxRecordSize = 1 << 20
	mib                  = conf.MiB
)

// applyDefaults fills every setting the file left unset: the pipeline's own
// here, each plugin's through its SetDefaults. A zero value means unset, except where the file may set a
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
		k.SetDefaults(c.isSetUnder("source.kafka"))
	}
	if k := c.Source.Kinesis; k != nil {
		k.SetDefaults()
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
			p.SetDefaults(r.Name)
		}
		if o := r.OpenSearch; o != nil {
			o.SetDefaults(c.isSet(routePath(i) + ".opensearch.max_retries"))
		}
	}

	c.S3.SetDefaults()

	c.Checkpoint.Interval = cmp.Or(c.Checkpoint.Interval, seconds(10))
	c.Checkpoint.Timeout = cmp.Or(c.Checkpoint.Timeout, seconds(60))
	if c.Checkpoint.Store == "" {
		c.Checkpoint.Store = defaultStore(c.Routes)
	}

	c.Memory.SetDefaults(c.isSet("memory.spool_budget"))

	defaultDLQ(c)

	c.Shutdown.DrainTimeout = cmp.Or(c.Shutdown.DrainTimeout, seconds(30))
	c.Shutdown.UnhealthyAfter = cmp.Or(c.Shutdown.UnhealthyAfter, Duration(5*time.Minute))
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
	if d, src := c.DLQ.Kafka, c.Source.Kafka; d != nil && src != nil && len(d.Brokers) == 0 {
		d.Brokers = append(StringList(nil), src.Brokers...)
		if d.TLS == (TLS{}) {
			d.TLS = src.TLS
		}
		if d.SASL == (SASL{}) {
			d.SASL = src.SASL
		}
	}
	if d, src := c.DLQ.Kinesis, c.Source.Kinesis; d != nil && src != nil {
		if !c.isSet("dlq.kinesis.endpoint") {
			d.Endpoint = cmp.Or(d.Endpoint, src.Endpoint)
		}
		d.Region = cmp.Or(d.Region, src.Region)
	}
	c.DLQ.SetDefaults(c.isSet("dlq.max_redrives"))
}

func routePath(i int) string { return "routes[" + strconv.Itoa(i) + "]" }

func hostname() string {
	if h := os.Getenv("HOSTNAME"); h != "" {
		return h
	}
	h, _ := os.Hostname()
	return h
}

func seconds(n int) Duration { return conf.Seconds(n) }

// isSetUnder is isSet for the keys of one block, for its SetDefaults.
func (c *Config) isSetUnder(block string) func(key string) bool {
	return func(key string) bool { return c.isSet(block + "." + key) }
}

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
