// Package config is sinkd's configuration: the YAML schema, its defaults, ${ENV}
// expansion, and validation that reports every problem with its line.
package config

import (
	"gopkg.in/yaml.v3"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/dlq"
	"github.com/sinkd/sinkd/source/kafka"
	"github.com/sinkd/sinkd/source/kinesis"
	"github.com/sinkd/sinkd/store"
	"github.com/sinkd/sinkd/writers/opensearch"
	"github.com/sinkd/sinkd/writers/parquetsink"
)

// Config is one sinkd pipeline.
type Config struct {
	Pipeline   string     `yaml:"pipeline"`    // name; part of object keys, metrics and dead letters
	InstanceID string     `yaml:"instance_id"` // stable per instance (pod or host name); keys uploads and manifests
	HTTP       HTTP       `yaml:"http"`
	Log        Log        `yaml:"log"`
	Source     Source     `yaml:"source"`
	Schema     Schema     `yaml:"schema"`
	Routes     []Route    `yaml:"routes"`
	S3         S3         `yaml:"s3"`
	Checkpoint Checkpoint `yaml:"checkpoint"`
	Memory     Memory     `yaml:"memory"`
	DLQ        DLQ        `yaml:"dlq"`
	Shutdown   Shutdown   `yaml:"shutdown"`
	// MaxRecordSize bounds one source record; a larger one is dead-lettered.
	MaxRecordSize Size `yaml:"max_record_size"`

	origin *origin // where each key was; nil for a Config built in code
}

type HTTP struct {
	Addr string `yaml:"addr"` // "" turns the HTTP server off
	// Pprof serves Go's profiles under /debug/pprof/ on the admin listener.
	Pprof bool `yaml:"pprof"`
	// Admin is the listener of the actions (pause, resume, pprof): off by
	// default, never on the metrics address.
	Admin HTTPAdmin `yaml:"admin"`
}

type HTTPAdmin struct {
	Addr  string `yaml:"addr"`  // "" (the default) turns the admin listener off
	Token string `yaml:"token"` // when set, requests need "Authorization: Bearer TOKEN"
}

type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // json | text
}

// Source holds exactly one of Kafka or Kinesis.
type Source struct {
	Kafka   *Kafka   `yaml:"kafka"`
	Kinesis *Kinesis `yaml:"kinesis"`
}

// MemoryBytes is what the source may hold in fetched records not yet
// written, the part of memory.budget set aside for it (each source says why
// its share is what it is).
func (s Source) MemoryBytes() int64 {
	if s.Kafka != nil {
		return s.Kafka.MemoryBytes()
	}
	if s.Kinesis != nil {
		return s.Kinesis.MemoryBytes()
	}
	return 32 << 20
}

// maxGarbageRoom caps GarbageRoom: what the runtime needs between collections
// follows the allocation rate, not the budget, so a large budget keeps the
// rest for files.
const maxGarbageRoom = 256 << 20

// GarbageRoom is the part of memory.budget that nothing holds: room for the
// Go runtime's garbage between collections. It is half the budget, at most
// 256 MiB, and never so much that files keep less than
// parquetsink.MinBudget. Without it the open files of thousands of buckets
// filled the whole budget, the heap sat at the runtime's memory limit
// (budget + 40 MiB), and the runtime collected garbage more than ten times a
// second (docs/scaling.md, "Vertical sizing", has the cost). Half is about
// the room Go's default (GOGC=100) gives a heap.
func (c *Config) GarbageRoom() int64 {
	total := c.Memory.Budget.Bytes()
	return max(0, min(total/2, maxGarbageRoom, total-c.Source.MemoryBytes()-int64(parquetsink.MinBudget)))
}

// The blocks below are defined beside the code that reads them; config
// composes them into the file (see README.md, "Where settings live").
type (
	Kafka   = kafka.Config
	Kinesis = kinesis.Config
	TLS     = conf.TLS
	SASL    = conf.SASL
)

// Schema describes how a record's value decodes into a typed row.
type Schema struct {
	Format string  `yaml:"format"` // json | avro | protobuf | jsonschema
	Fields []Field `yaml:"fields"` // json only: with avro they are derived from the registry
	// Registry is the Confluent-compatible schema registry that avro records
	// are serialised through.
	Registry *Registry `yaml:"registry"`
	// CDC unwraps change-data-capture envelopes (every format).
	CDC *CDC `yaml:"cdc"`
}

// CDC unwraps Debezium change events: the after image is the row, followed
// by the __op and __source_ts_ms columns.
type CDC struct {
	Envelope string `yaml:"envelope"` // debezium
	// Deletes: keep writes a delete's before image with __op d; drop skips it.
	Deletes string `yaml:"deletes"`
}

// Registry is a Confluent-compatible schema registry.
type Registry struct {
	URL string `yaml:"url"`
	// Subject's latest schema is what the Parquet schema is derived from
	// (usually <topic>-value).
	Subject  string   `yaml:"subject"`
	Username string   `yaml:"username"`
	Password string   `yaml:"password"`
	TLS      TLS      `yaml:"tls"`
	Timeout  Duration `yaml:"timeout"` // per request
	// Message is the full name of the Protobuf message records hold; empty
	// for the first message of the subject's schema.
	Message string `yaml:"message"`
	// OnIncompatible is what a record whose schema cannot be merged into the
	// file schema does: dead_letter | stop.
	OnIncompatible string `yaml:"on_incompatible"`
}

// Field is one field of a JSON schema; it lives in conf because the schema
// package, which the writers' tests import, reads it.
type Field = conf.Field

// Route selects records and names their destinations.
type Route struct {
	Name       string      `yaml:"name"`
	When       *Condition  `yaml:"when"`
	Parquet    *Parquet    `yaml:"parquet"`
	OpenSearch *OpenSearch `yaml:"opensearch"`
	// Writers configures writers registered beside the built-in ones
	// (docs/design.md, "How to add a writer"): writer name → its settings,
	// which that writer decodes and checks itself.
	Writers Plugins `yaml:"writers"`
}

// Plugins holds the settings of registered writers as YAML, by writer name.
type Plugins map[string]yaml.Node

// UnmarshalYAML keeps each writer's settings undecoded: only the writer
// knows their shape.
func (p *Plugins) UnmarshalYAML(n *yaml.Node) error {
	return n.Decode((*map[string]yaml.Node)(p))
}

// Condition selects records whose field equals one of In.
type Condition = conf.Condition

// A route's destinations, each defined beside its writer.
type (
	Parquet    = parquetsink.Config
	EventTime  = parquetsink.EventTime
	OpenSearch = opensearch.Config
	SigV4      = opensearch.SigV4
)

// S3 is how every s3:// location is reached, defined beside the store.
type S3 = store.S3Config

type Checkpoint struct {
	Interval Duration `yaml:"interval"`
	// Store is where manifests live: s3://bucket/prefix or file:///dir. Defaults to
	// "_sinkd" beside the first Parquet destination.
	Store   string   `yaml:"store"`
	Timeout Duration `yaml:"timeout"`
}

// Memory is the budget the Parquet writers share with the source, defined
// beside the writer that enforces it.
type Memory = parquetsink.MemoryConfig

// The dead-letter block, defined beside the dead-letter sinks.
type (
	DLQ        = dlq.Config
	DLQKafka   = dlq.KafkaConfig
	DLQKinesis = dlq.KinesisConfig
)

// Value types, for code that reads settings.
type (
	Duration   = conf.Duration
	Size       = conf.Size
	StringList = conf.StringList
	Location   = conf.Location
)

// ParseSize reads "128MiB", "5MB", "64k" or a plain byte count.
func ParseSize(s string) (Size, error) { return conf.ParseSize(s) }

// ParseLocation reads s3://bucket[/prefix] or file:///absolute/dir.
func ParseLocation(s string) (Location, error) { return conf.ParseLocation(s) }

type Shutdown struct {
	DrainTimeout Duration `yaml:"drain_timeout"`
	// UnhealthyAfter fails /healthz when checkpoints have failed this long.
	UnhealthyAfter Duration `yaml:"unhealthy_after"`
}
