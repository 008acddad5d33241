package kafka

import (
	"cmp"
	"time"

	"github.com/sinkd/sinkd/config/conf"
)

// Config is the source.kafka block. Its defaults and rules live here; the
// config package composes it into the file and reports its problems with
// their lines.
type Config struct {
	Brokers conf.StringList `yaml:"brokers"` // a list, or one comma-separated string
	Topics  conf.StringList `yaml:"topics"`
	Group   string          `yaml:"group"`
	// Start is where a group with no committed offset begins: earliest | latest | timestamp.
	Start          string        `yaml:"start"`
	StartTimestamp string        `yaml:"start_timestamp"` // RFC 3339, with start: timestamp
	TLS            conf.TLS      `yaml:"tls"`
	SASL           conf.SASL     `yaml:"sasl"`
	FetchMaxBytes  conf.Size     `yaml:"fetch_max_bytes"`
	PartitionBytes conf.Size     `yaml:"fetch_max_partition_bytes"`
	SessionTimeout conf.Duration `yaml:"session_timeout"`
	// StaticMembership (default true) joins with instance_id as
	// group.instance.id (KIP-345): a restarted instance takes its partitions
	// back at once instead of waiting out its previous session. A clean
	// shutdown still leaves the group; a killed instance that does not come
	// back holds its partitions until session_timeout, as a dynamic member
	// would.
	StaticMembership bool          `yaml:"static_membership"`
	RequestTimeout   conf.Duration `yaml:"request_timeout"`
}

// Defaults, listed in source/kafka/README.md and config/README.md (a test
// keeps both in step with these).
const (
	// Four times this is set aside in memory.budget for fetched records.
	DefaultFetchMaxBytes  = 4 * conf.MiB
	DefaultPartitionBytes = 1 * conf.MiB
	DefaultStart          = "earliest" // an archive must not skip data
	DefaultSessionTimeout = conf.Duration(45 * time.Second)
	DefaultRequestTimeout = conf.Duration(30 * time.Second)
)

// SetDefaults fills every setting left unset. isSet says whether the file
// gave a key (relative to this block) a value, for settings whose zero
// value means something.
func (c *Config) SetDefaults(isSet func(key string) bool) {
	c.Start = cmp.Or(c.Start, DefaultStart)
	c.FetchMaxBytes = cmp.Or(c.FetchMaxBytes, DefaultFetchMaxBytes)
	c.PartitionBytes = cmp.Or(c.PartitionBytes, DefaultPartitionBytes)
	c.SessionTimeout = cmp.Or(c.SessionTimeout, DefaultSessionTimeout)
	c.RequestTimeout = cmp.Or(c.RequestTimeout, DefaultRequestTimeout)
	// Static membership by default: a restarted instance (same
	// instance_id) takes its partitions back at once instead of waiting
	// out the session of the member it was; a clean shutdown still
	// leaves the group, so a scale-down hands partitions over at once.
	if isSet == nil || !isSet("static_membership") {
		c.StaticMembership = true
	}
}

// Validate returns every problem of a defaulted block, each with its path
// relative to the block.
func (c *Config) Validate() conf.Issues {
	var v conf.Check
	if len(c.Brokers) == 0 {
		v.Errorf("brokers", "is required (a list, or one comma-separated string of host:port)")
	}
	for i, b := range c.Brokers {
		v.HostPort("brokers"+conf.Index(i), b)
	}
	if len(c.Topics) == 0 {
		v.Errorf("topics", "is required")
	}
	v.Required("group", c.Group)
	if v.OneOf("start", c.Start, "earliest", "latest", "timestamp") {
		switch {
		case c.Start == "timestamp" && c.StartTimestamp == "":
			v.Errorf("start_timestamp", "is required with start: timestamp")
		case c.Start == "timestamp":
			v.RFC3339("start_timestamp", c.StartTimestamp)
		case c.StartTimestamp != "":
			v.Errorf("start_timestamp", "is only used with start: timestamp")
		}
	}
	v.Add("", conf.KafkaSecurity(c.TLS, c.SASL))
	v.AtLeastSize("fetch_max_bytes", c.FetchMaxBytes, 1)
	v.AtLeastSize("fetch_max_partition_bytes", c.PartitionBytes, 1)
	if c.PartitionBytes > c.FetchMaxBytes {
		v.Errorf("fetch_max_partition_bytes", "%s is larger than fetch_max_bytes %s", c.PartitionBytes, c.FetchMaxBytes)
	}
	v.Positive("session_timeout", c.SessionTimeout)
	v.Positive("request_timeout", c.RequestTimeout)
	return v.Issues()
}

// MemoryBytes is what the source may hold in fetched records not yet
// written, the part of memory.budget set aside for it. Measured with
// franz-go and one broker on taxi JSON (heap profiles of benchmark (e)): one
// fetch buffered and one being handed out, decompressed (s2: about 4×), plus
// franz-go's record structs and the source's own, peak at 55 to 65 MB for
// fetch_max_bytes 8MiB: eight times fetch_max_bytes. The default fetch is
// 4MiB so that the 32MiB set aside leaves a 64MiB budget room for files.
func (c *Config) MemoryBytes() int64 { return 8 * c.FetchMaxBytes.Bytes() }
