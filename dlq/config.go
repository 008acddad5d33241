package dlq

import (
	"cmp"
	"path/filepath"

	"github.com/sinkd/sinkd/config/conf"
)

// Config is the dlq block: at most one dead-letter destination. Its
// defaults and rules live here; the config package composes it into the
// file, fills what comes from the source (a Kafka DLQ's brokers and
// security, a Kinesis DLQ's endpoint and region), and reports problems with
// their lines.
type Config struct {
	Kafka   *KafkaConfig   `yaml:"kafka"`
	Kinesis *KinesisConfig `yaml:"kinesis"`
	File    string         `yaml:"file"` // a local JSON-lines file (demo, tests)
	// MaxRedrives stops a record that keeps failing after this many redrives.
	MaxRedrives int `yaml:"max_redrives"`
}

// KafkaConfig is a dead-letter topic.
type KafkaConfig struct {
	Brokers conf.StringList `yaml:"brokers"` // defaults to the source's brokers
	Topic   string          `yaml:"topic"`
	TLS     conf.TLS        `yaml:"tls"`
	SASL    conf.SASL       `yaml:"sasl"`
	// Create makes the topic when it is missing, as Kafka Connect does with
	// its dead-letter topic; false forbids it (a missing topic is an error).
	Create *bool `yaml:"create"`
	// Partitions and ReplicationFactor of a created topic; -1 is the
	// broker's default (num.partitions, default.replication.factor).
	Partitions        int32 `yaml:"partitions"`
	ReplicationFactor int16 `yaml:"replication_factor"`
}

// Creates says whether a missing dead-letter topic may be created.
func (k *KafkaConfig) Creates() bool { return k.Create == nil || *k.Create }

// KinesisConfig is a dead-letter stream.
type KinesisConfig struct {
	Stream   string `yaml:"stream"`
	Endpoint string `yaml:"endpoint"`
	Region   string `yaml:"region"`
	// Create makes the stream when it is missing (on-demand capacity);
	// false forbids it.
	Create *bool `yaml:"create"`
}

// Creates says whether a missing dead-letter stream may be created.
func (k *KinesisConfig) Creates() bool { return k.Create == nil || *k.Create }

// Defaults, listed in this package's README and config/README.md (a test
// keeps both in step with these).
const (
	DefaultMaxRedrives       = 3
	DefaultPartitions        = -1 // the broker's num.partitions
	DefaultReplicationFactor = -1 // the broker's default.replication.factor
)

// SetDefaults fills every setting left unset, except those taken from the
// source (the config package fills those first). maxRedrivesSet says
// whether the file gave max_redrives, whose 0 means none.
func (c *Config) SetDefaults(maxRedrivesSet bool) {
	if !maxRedrivesSet {
		c.MaxRedrives = cmp.Or(c.MaxRedrives, DefaultMaxRedrives)
	}
	if k := c.Kafka; k != nil {
		k.Partitions = cmp.Or(k.Partitions, DefaultPartitions)
		k.ReplicationFactor = cmp.Or(k.ReplicationFactor, DefaultReplicationFactor)
	}
	if k := c.Kinesis; k != nil {
		k.Region = cmp.Or(k.Region, conf.AWSRegion())
	}
}

// Validate returns every problem of a defaulted block, each with its path
// relative to the block.
func (c *Config) Validate() conf.Issues {
	var v conf.Check
	given := 0
	for _, on := range []bool{c.Kafka != nil, c.Kinesis != nil, c.File != ""} {
		if on {
			given++
		}
	}
	if given > 1 {
		v.Errorf("", "give at most one of kafka, kinesis or file")
	}
	if k := c.Kafka; k != nil {
		v.Required("kafka.topic", k.Topic)
		if len(k.Brokers) == 0 {
			v.Errorf("kafka.brokers", "is required when the source is not Kafka")
		}
		for i, b := range k.Brokers {
			v.HostPort("kafka.brokers"+conf.Index(i), b)
		}
		v.Add("kafka", conf.KafkaSecurity(k.TLS, k.SASL))
		if k.Partitions < 1 && k.Partitions != -1 {
			v.Errorf("kafka.partitions", "must be at least 1, or -1 for the broker's default, got %d", k.Partitions)
		}
		if k.ReplicationFactor < 1 && k.ReplicationFactor != -1 {
			v.Errorf("kafka.replication_factor", "must be at least 1, or -1 for the broker's default, got %d", k.ReplicationFactor)
		}
	}
	if k := c.Kinesis; k != nil {
		v.Required("kinesis.stream", k.Stream)
		if k.Endpoint != "" {
			v.HTTPURL("kinesis.endpoint", k.Endpoint)
		}
	}
	if c.File != "" && !filepath.IsAbs(c.File) {
		v.Errorf("file", "%q must be an absolute path", c.File)
	}
	v.AtLeast("max_redrives", c.MaxRedrives, 0)
	return v.Issues()
}
