// Package config is sinkd's configuration: the YAML schema, its defaults, ${ENV}
// expansion, and validation that reports every problem with its line.
package config

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
// written, the part of memory.budget set aside for it. Measured with franz-go
// on JSON: one fetch buffered and one being handed out, decompressed (about
// 2.3× for snappy), plus the record structs, come to about four times
// fetch_max_bytes. Kinesis queues 16 MiB of records plus one GetRecords
// result.
func (s Source) MemoryBytes() int64 {
	if s.Kafka != nil {
		return 4 * s.Kafka.FetchMaxBytes.Bytes()
	}
	return 32 << 20
}

type Kafka struct {
	Brokers StringList `yaml:"brokers"` // a list, or one comma-separated string
	Topics  StringList `yaml:"topics"`
	Group   string     `yaml:"group"`
	// Start is where a group with no committed offset begins: earliest | latest | timestamp.
	Start          string   `yaml:"start"`
	StartTimestamp string   `yaml:"start_timestamp"` // RFC 3339, with start: timestamp
	TLS            TLS      `yaml:"tls"`
	SASL           SASL     `yaml:"sasl"`
	FetchMaxBytes  Size     `yaml:"fetch_max_bytes"`
	PartitionBytes Size     `yaml:"fetch_max_partition_bytes"`
	SessionTimeout Duration `yaml:"session_timeout"`
	// StaticMembership (default true) joins with instance_id as
	// group.instance.id (KIP-345): a restarted instance takes its partitions
	// back at once instead of waiting out its previous session. A clean
	// shutdown still leaves the group; a killed instance that does not come
	// back holds its partitions until session_timeout, as a dynamic member
	// would.
	StaticMembership bool     `yaml:"static_membership"`
	RequestTimeout   Duration `yaml:"request_timeout"`
}

type TLS struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

type SASL struct {
	Mechanism string `yaml:"mechanism"` // "" | plain | scram-sha-256 | scram-sha-512 | aws-msk-iam
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
}

type Kinesis struct {
	Stream       string   `yaml:"stream"`
	Endpoint     string   `yaml:"endpoint"` // "" = AWS
	Region       string   `yaml:"region"`
	Start        string   `yaml:"start"` // trim_horizon | latest | at_timestamp
	StartTime    string   `yaml:"start_timestamp"`
	PollInterval Duration `yaml:"poll_interval"` // GetRecords interval per shard
	MaxRecords   int      `yaml:"max_records"`   // GetRecords limit
	ListInterval Duration `yaml:"shard_sync_interval"`
	// Leases: with a table, several instances share the stream.
	LeaseTable       string   `yaml:"lease_table"`
	DynamoDBEndpoint string   `yaml:"dynamodb_endpoint"`
	FailoverTime     Duration `yaml:"failover_time"`
	RequestTimeout   Duration `yaml:"request_timeout"`
}

// Schema describes how a record's value decodes into a typed row.
type Schema struct {
	Format string  `yaml:"format"` // json | avro | protobuf | jsonschema
	Fields []Field `yaml:"fields"` // json only: with avro they are derived from the registry
	// Registry is the Confluent-compatible schema registry that avro records
	// are serialised through.
	Registry *Registry `yaml:"registry"`
	// CDC unwraps change-data-capture envelopes (formats json and avro).
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

type Field struct {
	Name     string `yaml:"name"` // column name
	From     string `yaml:"from"` // JSON key, when it differs from the column name
	Type     string `yaml:"type"` // int32 | int64 | float | double | string | bool | timestamp | date | decimal | struct | list | map
	Required bool   `yaml:"required"`
	// Unit is the Parquet timestamp unit: millis | micros | nanos.
	Unit string `yaml:"unit"`
	// Input is how a JSON number reads as a timestamp: seconds | millis | micros.
	// Strings are always RFC 3339.
	Input     string `yaml:"input"`
	Precision int    `yaml:"precision"` // decimal
	Scale     int    `yaml:"scale"`     // decimal
	// Fields are the fields of a struct, in column order.
	Fields []Field `yaml:"fields"`
	// Items is the element of a list; its name is not used.
	Items *Field `yaml:"items"`
	// Values is the value of a map, whose keys are strings; its name is not used.
	Values *Field `yaml:"values"`
}

// Route selects records and names their destinations.
type Route struct {
	Name       string      `yaml:"name"`
	When       *Condition  `yaml:"when"`
	Parquet    *Parquet    `yaml:"parquet"`
	OpenSearch *OpenSearch `yaml:"opensearch"`
}

// Condition selects records whose field equals one of In.
type Condition struct {
	Field string     `yaml:"field"`
	In    StringList `yaml:"in"`
}

// EventTime says where a record's event time comes from: a payload field, the
// broker timestamp ("broker") or the wall clock ("processing", at-least-once).
type EventTime struct {
	Field  string `yaml:"field"`
	Source string `yaml:"source"` // field | broker | processing
}

type Parquet struct {
	// Destination is s3://bucket/prefix or file:///dir.
	Destination    string    `yaml:"destination"`
	Path           string    `yaml:"path"` // bucket template, e.g. type={type}/dt={pickup_datetime:yyyy-MM-dd}
	EventTime      EventTime `yaml:"event_time"`
	TimeZone       string    `yaml:"timezone"`
	FilePrefix     string    `yaml:"file_prefix"`
	Compression    string    `yaml:"compression"` // snappy | zstd | gzip | none
	RowGroupSize   Size      `yaml:"row_group_size"`
	PageSize       Size      `yaml:"page_size"`
	TargetFileSize Size      `yaml:"target_file_size"`
	MaxFileAge     Duration  `yaml:"max_file_age"`
	Inactivity     Duration  `yaml:"inactivity"`
}

type OpenSearch struct {
	URL           string     `yaml:"url"` // "" turns the destination off
	Index         string     `yaml:"index"`
	ID            string     `yaml:"id"`
	Action        string     `yaml:"action"`        // index | create
	VersionField  string     `yaml:"version_field"` // external versioning from a payload field
	Username      string     `yaml:"username"`
	Password      string     `yaml:"password"`
	CAFile        string     `yaml:"ca_file"`
	SigV4         *SigV4     `yaml:"sigv4"`
	FlushBytes    Size       `yaml:"flush_bytes"`
	FlushDocs     int        `yaml:"flush_docs"`
	FlushInterval Duration   `yaml:"flush_interval"`
	Concurrency   int        `yaml:"concurrency"`
	MaxRetries    int        `yaml:"max_retries"`
	Timeout       Duration   `yaml:"timeout"`
	Template      string     `yaml:"index_template"` // JSON file installed at start
	Fanout        StringList `yaml:"also_index"`     // further index templates for the same document
}

// Enabled reports whether the destination is on: an OpenSearch block whose url
// is empty (typically an unset ${SINKD_OPENSEARCH_URL}) is off, not an error.
func (o *OpenSearch) Enabled() bool { return o != nil && o.URL != "" }

type SigV4 struct {
	Service string `yaml:"service"` // es | aoss
	Region  string `yaml:"region"`
}

type S3 struct {
	Endpoint          string `yaml:"endpoint"` // "" = AWS
	Region            string `yaml:"region"`
	PathStyle         bool   `yaml:"path_style"`
	SSE               string `yaml:"sse"` // "" | AES256 | aws:kms
	KMSKeyID          string `yaml:"kms_key_id"`
	StorageClass      string `yaml:"storage_class"`
	PartSize          Size   `yaml:"part_size"` // >= 5MiB
	UploadConcurrency int    `yaml:"upload_concurrency"`
	// CompleteConcurrency bounds the multipart uploads a checkpoint
	// completes at once: a drain with thousands of open files completes
	// thousands.
	CompleteConcurrency int      `yaml:"complete_concurrency"`
	RequestTimeout      Duration `yaml:"request_timeout"`
}

type Checkpoint struct {
	Interval Duration `yaml:"interval"`
	// Store is where manifests live: s3://bucket/prefix or file:///dir. Defaults to
	// "_sinkd" beside the first Parquet destination.
	Store   string   `yaml:"store"`
	Timeout Duration `yaml:"timeout"`
}

type Memory struct {
	Budget       Size `yaml:"budget"`
	MaxOpenFiles int  `yaml:"max_open_files"`
	// MaxEncoders bounds the Parquet encoders of each route: they are lent to
	// the files written most, so it bounds encoder memory however many
	// buckets are open.
	MaxEncoders int `yaml:"max_encoders"`
	// SpoolDir and SpoolBudget bound the local directory where open files
	// keep encoded bytes that do not make an S3 part yet when memory is
	// full. A spool budget of 0 spills nothing.
	SpoolDir    string `yaml:"spool_dir"`
	SpoolBudget Size   `yaml:"spool_budget"`
}

// DLQ holds at most one dead-letter destination.
type DLQ struct {
	Kafka   *DLQKafka   `yaml:"kafka"`
	Kinesis *DLQKinesis `yaml:"kinesis"`
	File    string      `yaml:"file"` // a local JSON-lines file (demo, tests)
	// MaxRedrives stops a record that keeps failing after this many redrives.
	MaxRedrives int `yaml:"max_redrives"`
}

type DLQKafka struct {
	Brokers StringList `yaml:"brokers"` // defaults to the source's brokers
	Topic   string     `yaml:"topic"`
	TLS     TLS        `yaml:"tls"`
	SASL    SASL       `yaml:"sasl"`
	// Create makes the topic when it is missing, as Kafka Connect does with
	// its dead-letter topic; false forbids it (a missing topic is an error).
	Create *bool `yaml:"create"`
	// Partitions and ReplicationFactor of a created topic; -1 is the
	// broker's default (num.partitions, default.replication.factor).
	Partitions        int32 `yaml:"partitions"`
	ReplicationFactor int16 `yaml:"replication_factor"`
}

// Creates says whether a missing dead-letter topic may be created.
func (k *DLQKafka) Creates() bool { return k.Create == nil || *k.Create }

type DLQKinesis struct {
	Stream   string `yaml:"stream"`
	Endpoint string `yaml:"endpoint"`
	Region   string `yaml:"region"`
	// Create makes the stream when it is missing (on-demand capacity);
	// false forbids it.
	Create *bool `yaml:"create"`
}

// Creates says whether a missing dead-letter stream may be created.
func (k *DLQKinesis) Creates() bool { return k.Create == nil || *k.Create }

type Shutdown struct {
	DrainTimeout Duration `yaml:"drain_timeout"`
	// UnhealthyAfter fails /healthz when checkpoints have failed this long.
	UnhealthyAfter Duration `yaml:"unhealthy_after"`
}
