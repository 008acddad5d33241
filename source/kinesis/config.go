package kinesis

import (
	"cmp"
	"time"

	"github.com/sinkd/sinkd/config/conf"
)

// Config is the source.kinesis block. Its defaults and rules live here; the
// config package composes it into the file and reports its problems with
// their lines.
type Config struct {
	Stream       string        `yaml:"stream"`
	Endpoint     string        `yaml:"endpoint"` // "" = AWS
	Region       string        `yaml:"region"`
	Start        string        `yaml:"start"` // trim_horizon | latest | at_timestamp
	StartTime    string        `yaml:"start_timestamp"`
	PollInterval conf.Duration `yaml:"poll_interval"` // GetRecords interval per shard
	MaxRecords   int           `yaml:"max_records"`   // GetRecords limit
	ListInterval conf.Duration `yaml:"shard_sync_interval"`
	// Leases: with a table, several instances share the stream.
	LeaseTable       string        `yaml:"lease_table"`
	DynamoDBEndpoint string        `yaml:"dynamodb_endpoint"`
	FailoverTime     conf.Duration `yaml:"failover_time"`
	RequestTimeout   conf.Duration `yaml:"request_timeout"`
}

// Defaults, listed in source/kinesis/README.md and config/README.md (a test
// keeps both in step with these). The region defaults to conf.AWSRegion.
const (
	DefaultStart          = "trim_horizon"
	DefaultPollInterval   = conf.Duration(time.Second)
	DefaultMaxRecords     = 10000 // the most GetRecords returns
	DefaultListInterval   = conf.Duration(30 * time.Second)
	DefaultFailoverTime   = conf.Duration(30 * time.Second)
	DefaultRequestTimeout = conf.Duration(30 * time.Second)
)

// SetDefaults fills every setting left unset.
func (c *Config) SetDefaults() {
	c.Region = cmp.Or(c.Region, conf.AWSRegion())
	c.Start = cmp.Or(c.Start, DefaultStart)
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
	c.MaxRecords = cmp.Or(c.MaxRecords, DefaultMaxRecords)
	c.ListInterval = cmp.Or(c.ListInterval, DefaultListInterval)
	c.FailoverTime = cmp.Or(c.FailoverTime, DefaultFailoverTime)
	c.RequestTimeout = cmp.Or(c.RequestTimeout, DefaultRequestTimeout)
}

// Validate returns every problem of a defaulted block, each with its path
// relative to the block.
func (c *Config) Validate() conf.Issues {
	var v conf.Check
	v.Required("stream", c.Stream)
	if c.Endpoint != "" {
		v.HTTPURL("endpoint", c.Endpoint)
	}
	if v.OneOf("start", c.Start, "trim_horizon", "latest", "at_timestamp") {
		switch {
		case c.Start == "at_timestamp" && c.StartTime == "":
			v.Errorf("start_timestamp", "is required with start: at_timestamp")
		case c.Start == "at_timestamp":
			v.RFC3339("start_timestamp", c.StartTime)
		case c.StartTime != "":
			v.Errorf("start_timestamp", "is only used with start: at_timestamp")
		}
	}
	if c.PollInterval < conf.Duration(200*time.Millisecond) {
		v.Errorf("poll_interval", "must be at least 200ms (a shard allows 5 reads per second, shared by all consumers), got %s", c.PollInterval)
	}
	if c.MaxRecords < 1 || c.MaxRecords > 10000 {
		v.Errorf("max_records", "must be between 1 and 10000, got %d", c.MaxRecords)
	}
	v.Positive("shard_sync_interval", c.ListInterval)
	v.Positive("failover_time", c.FailoverTime)
	v.Positive("request_timeout", c.RequestTimeout)
	if c.DynamoDBEndpoint != "" {
		v.HTTPURL("dynamodb_endpoint", c.DynamoDBEndpoint)
		if c.LeaseTable == "" {
			v.Errorf("dynamodb_endpoint", "is only used with lease_table")
		}
	}
	return v.Issues()
}

// MemoryBytes is what the source may hold, the part of memory.budget set
// aside for it: GetRecords results being decoded and records not yet
// written.
func (c *Config) MemoryBytes() int64 { return sourceBytes }
