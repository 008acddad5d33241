package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // parquet.timezone must validate in minimal containers without zoneinfo
)

// Validate checks a loaded configuration (defaults applied) and returns every
// problem found as a *Problems, or nil. Load and Parse call it; call it again
// after changing a loaded Config in code.
func (c *Config) Validate() error { return NewProblems(c.validate()...) }

// validator collects problems, each located through the Config's key positions.
type validator struct {
	c        *Config
	problems []Problem
}

func (v *validator) errorf(path, format string, args ...any) {
	v.problems = append(v.problems, v.c.Problem(path, format, args...))
}

// required reports a missing value and says whether it was there.
func (v *validator) required(path, val string) bool {
	if val == "" {
		v.errorf(path, "is required")
		return false
	}
	return true
}

func (v *validator) oneOf(path, val string, allowed ...string) bool {
	if !slices.Contains(allowed, val) {
		v.errorf(path, "%q is not one of %s", val, strings.Join(allowed, ", "))
		return false
	}
	return true
}

func (v *validator) match(path, val string, re *regexp.Regexp, what string) {
	if val != "" && !re.MatchString(val) {
		v.errorf(path, "%q: %s", val, what)
	}
}

func (v *validator) hostPort(path, val string) {
	host, port, err := net.SplitHostPort(val)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || host == "" || n < 1 || n > 65535 {
		v.errorf(path, "%q is not host:port", val)
	}
}

// listenAddr accepts what net.Listen does: an empty host (all interfaces)
// and port 0 (any free port).
func (v *validator) listenAddr(path, val string) {
	_, port, err := net.SplitHostPort(val)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
		v.errorf(path, "%q is not [host]:port", val)
	}
}

func (v *validator) httpURL(path, val string) {
	u, err := url.Parse(val)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.errorf(path, "%q is not an http:// or https:// URL", redactURL(val))
	}
}

func (v *validator) rfc3339(path, val string) {
	if _, err := time.Parse(time.RFC3339, val); err != nil {
		v.errorf(path, "%q is not an RFC 3339 time such as 2018-01-01T00:00:00Z", val)
	}
}

func atLeast[T ~int | ~int64](v *validator, path string, val, low T, unit func(T) string) {
	if val < low {
		v.errorf(path, "must be at least %s, got %s", unit(low), unit(val))
	}
}

func count(n int) string     { return strconv.Itoa(n) }
func sizeText(s Size) string { return s.String() }
func positive(v *validator, path string, d Duration) {
	if d <= 0 {
		v.errorf(path, "must be a positive duration, got %s", d)
	}
}

var (
	pipelineName = regexp.MustCompile(`^[a-z0-9_-]+$`)
	instanceName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	fieldName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

func (c *Config) validate() []Problem {
	v := &validator{c: c}
	if v.required("pipeline", c.Pipeline) {
		v.match("pipeline", c.Pipeline, pipelineName, "use lowercase letters, digits, _ and - (it is part of object keys and metric labels)")
	}
	if v.required("instance_id", c.InstanceID) {
		v.match("instance_id", c.InstanceID, instanceName, "use letters, digits, ., _ and - (it is part of object keys)")
	}
	if c.HTTP.Addr != "" {
		v.listenAddr("http.addr", c.HTTP.Addr)
	}
	if c.HTTP.Admin.Addr != "" {
		v.listenAddr("http.admin.addr", c.HTTP.Admin.Addr)
		if c.HTTP.Admin.Addr == c.HTTP.Addr {
			v.errorf("http.admin.addr", "must differ from http.addr: the admin actions do not share the metrics listener")
		}
	}

	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "json", "text")
	atLeast(v, "max_record_size", c.MaxRecordSize, 1, sizeText)

	switch {
	case c.Source.Kafka != nil && c.Source.Kinesis != nil:
		v.errorf("source", "give exactly one of kafka or kinesis, not both")
	case c.Source.Kafka != nil:
		c.Source.Kafka.validate(v, "source.kafka")
	case c.Source.Kinesis != nil:
		c.Source.Kinesis.validate(v, "source.kinesis")
	default:
		v.errorf("source", "give exactly one of kafka or kinesis")
	}

	fields := c.Schema.validate(v)
	c.validateRoutes(v, fields)
	c.S3.validate(v)

	positive(v, "checkpoint.interval", c.Checkpoint.Interval)
	positive(v, "checkpoint.timeout", c.Checkpoint.Timeout)
	if c.Checkpoint.Store == "" {
		// With a Parquet route the store was derived from a destination
		// that is itself reported; without any route, routes is reported.
		if len(c.Routes) > 0 && !slices.ContainsFunc(c.Routes, func(r Route) bool { return r.Parquet != nil }) {
			v.errorf("checkpoint.store", "is required when no route writes Parquet (it defaults to <first parquet destination>/_sinkd)")
		}
	} else if _, err := ParseLocation(c.Checkpoint.Store); err != nil {
		v.errorf("checkpoint.store", "%v", err)
	}

	atLeast(v, "memory.budget", c.Memory.Budget, 16*mib, sizeText)
	if src := Size(c.Source.MemoryBytes()); c.Memory.Budget >= 16*mib && c.Memory.Budget-src < 16*mib {
		hint := "raise memory.budget"
		if c.Source.Kafka != nil {
			hint += " or lower kafka.fetch_max_bytes (four times it is set aside)"
		}
		v.errorf("memory.budget", "%s leaves less than 16MiB for files once the source's fetch buffers (%s) are set aside: %s", c.Memory.Budget, src, hint)
	}
	atLeast(v, "memory.max_open_files", c.Memory.MaxOpenFiles, 1, count)
	atLeast(v, "memory.max_encoders", c.Memory.MaxEncoders, 1, count)
	if c.Memory.SpoolBudget > 0 && c.Memory.SpoolBudget < 1*mib {
		v.errorf("memory.spool_budget", "%s is too small to hold anything useful: use at least 1MiB, or 0 to spill nothing", c.Memory.SpoolBudget)
	}
	if c.S3.PartSize > c.Memory.Budget {
		v.errorf("s3.part_size", "%s does not fit in memory.budget %s", c.S3.PartSize, c.Memory.Budget)
	}

	c.DLQ.validate(v)
	positive(v, "shutdown.drain_timeout", c.Shutdown.DrainTimeout)
	positive(v, "shutdown.unhealthy_after", c.Shutdown.UnhealthyAfter)
	return v.problems
}

func (k *Kafka) validate(v *validator, path string) {
	if len(k.Brokers) == 0 {
		v.errorf(path+".brokers", "is required (a list, or one comma-separated string of host:port)")
	}
	for i, b := range k.Brokers {
		v.hostPort(fmt.Sprintf("%s.brokers[%d]", path, i), b)
	}
	if len(k.Topics) == 0 {
		v.errorf(path+".topics", "is required")
	}
	v.required(path+".group", k.Group)
	if v.oneOf(path+".start", k.Start, "earliest", "latest", "timestamp") {
		switch {
		case k.Start == "timestamp" && k.StartTimestamp == "":
			v.errorf(path+".start_timestamp", "is required with start: timestamp")
		case k.Start == "timestamp":
			v.rfc3339(path+".start_timestamp", k.StartTimestamp)
		case k.StartTimestamp != "":
			v.errorf(path+".start_timestamp", "is only used with start: timestamp")
		}
	}
	k.TLS.validate(v, path+".tls")
	k.SASL.validate(v, path+".sasl")
	atLeast(v, path+".fetch_max_bytes", k.FetchMaxBytes, 1, sizeText)
	atLeast(v, path+".fetch_max_partition_bytes", k.PartitionBytes, 1, sizeText)
	if k.PartitionBytes > k.FetchMaxBytes {
		v.errorf(path+".fetch_max_partition_bytes", "%s is larger than fetch_max_bytes %s", k.PartitionBytes, k.FetchMaxBytes)
	}
	positive(v, path+".session_timeout", k.SessionTimeout)
	positive(v, path+".request_timeout", k.RequestTimeout)
}

func (t *TLS) validate(v *validator, path string) {
	if (t.CertFile == "") != (t.KeyFile == "") {
		v.errorf(path, "cert_file and key_file go together")
	}
	if !t.Enabled && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.InsecureSkipVerify) {
		v.errorf(path+".enabled", "TLS settings are given but enabled is false")
	}
}

func (s *SASL) validate(v *validator, path string) {
	if !v.oneOf(path+".mechanism", s.Mechanism, "", "plain", "scram-sha-256", "scram-sha-512", "aws-msk-iam") {
		return
	}
	switch s.Mechanism {
	case "plain", "scram-sha-256", "scram-sha-512":
		v.required(path+".username", s.Username)
		v.required(path+".password", s.Password)
	case "":
		if s.Username != "" || s.Password != "" {
			v.errorf(path+".mechanism", "is required with a username or password")
		}
	}
}

func (k *Kinesis) validate(v *validator, path string) {
	v.required(path+".stream", k.Stream)
	if k.Endpoint != "" {
		v.httpURL(path+".endpoint", k.Endpoint)
	}
	if v.oneOf(path+".start", k.Start, "trim_horizon", "latest", "at_timestamp") {
		switch {
		case k.Start == "at_timestamp" && k.StartTime == "":
			v.errorf(path+".start_timestamp", "is required with start: at_timestamp")
		case k.Start == "at_timestamp":
			v.rfc3339(path+".start_timestamp", k.StartTime)
		case k.StartTime != "":
			v.errorf(path+".start_timestamp", "is only used with start: at_timestamp")
		}
	}
	if k.PollInterval < Duration(200*time.Millisecond) {
		v.errorf(path+".poll_interval", "must be at least 200ms (a shard allows 5 reads per second, shared by all consumers), got %s", k.PollInterval)
	}
	if k.MaxRecords < 1 || k.MaxRecords > 10000 {
		v.errorf(path+".max_records", "must be between 1 and 10000, got %d", k.MaxRecords)
	}
	positive(v, path+".shard_sync_interval", k.ListInterval)
	positive(v, path+".failover_time", k.FailoverTime)
	positive(v, path+".request_timeout", k.RequestTimeout)
	if k.DynamoDBEndpoint != "" {
		v.httpURL(path+".dynamodb_endpoint", k.DynamoDBEndpoint)
		if k.LeaseTable == "" {
			v.errorf(path+".dynamodb_endpoint", "is only used with lease_table")
		}
	}
}

var fieldTypes = []string{"int32", "int64", "float", "double", "string", "bool", "timestamp", "date", "time", "decimal", "uuid", "json", "struct", "list", "map"}

// validate checks the schema and returns its fields by name for the checks
// that refer to them. Fields inside structs are there by their dotted path
// (payment.type); fields inside lists and maps are not, because a record has
// any number of them.
func (s *Schema) validate(v *validator) map[string]*Field {
	v.oneOf("schema.format", s.Format, "json", "avro", "protobuf", "jsonschema")
	if s.CDC != nil && s.Format != "json" && s.Format != "avro" {
		v.errorf("schema.cdc", "applies to formats json and avro only")
	}
	if s.Format == "avro" || s.Format == "protobuf" || s.Format == "jsonschema" {
		// The fields come from the registry when the pipeline starts: the
		// checks that refer to them happen then.
		if len(s.Fields) > 0 {
			v.errorf("schema.fields", "with format %s the fields are derived from the registry's schema; leave them out", s.Format)
		}
		if s.Registry == nil {
			v.errorf("schema.registry", "format %s needs a registry (url and subject)", s.Format)
			return nil
		}
		if v.required("schema.registry.url", s.Registry.URL) {
			v.httpURL("schema.registry.url", s.Registry.URL)
		}
		v.required("schema.registry.subject", s.Registry.Subject)
		positive(v, "schema.registry.timeout", s.Registry.Timeout)
		v.oneOf("schema.registry.on_incompatible", s.Registry.OnIncompatible, "dead_letter", "stop")
		if s.Format != "protobuf" && s.Registry.Message != "" {
			v.errorf("schema.registry.message", "applies to format protobuf only")
		}
		if s.CDC != nil {
			v.oneOf("schema.cdc.envelope", s.CDC.Envelope, "debezium")
			v.oneOf("schema.cdc.deletes", s.CDC.Deletes, "keep", "drop")
		}
		return nil
	}
	if s.Registry != nil {
		v.errorf("schema.registry", "applies to formats avro, protobuf and jsonschema only")
	}
	if len(s.Fields) == 0 {
		v.errorf("schema.fields", "at least one field is required")
	}
	byName := make(map[string]*Field, len(s.Fields))
	validateFields(v, "schema.fields", "", s.Fields, byName)
	if s.CDC != nil {
		v.oneOf("schema.cdc.envelope", s.CDC.Envelope, "debezium")
		v.oneOf("schema.cdc.deletes", s.CDC.Deletes, "keep", "drop")
		// The columns CDC adds, for routes and templates.
		byName["__op"] = &Field{Name: "__op", Type: "string"}
		byName["__source_ts_ms"] = &Field{Name: "__source_ts_ms", Type: "timestamp", Unit: "millis"}
	}
	return byName
}

// validateFields checks the fields of the schema or of a struct; prefix is the
// dotted path of the struct, byName collects the fields reachable by path (nil
// inside lists and maps).
func validateFields(v *validator, path, prefix string, fields []Field, byName map[string]*Field) {
	names := make(map[string]bool, len(fields))
	for i := range fields {
		f := &fields[i]
		p := fmt.Sprintf("%s[%d]", path, i)
		if v.required(p+".name", f.Name) {
			v.match(p+".name", f.Name, fieldName, "use letters, digits and _, not starting with a digit")
			if names[f.Name] {
				v.errorf(p+".name", "field %q is defined twice", f.Name)
			}
			names[f.Name] = true
			if byName != nil {
				byName[prefix+f.Name] = f
			}
		}
		var sub map[string]*Field
		if byName != nil && f.Type == "struct" {
			sub = byName
		}
		validateField(v, p, prefix+f.Name+".", f, sub)
	}
}

// validateField checks one field's type and the settings that go with it.
func validateField(v *validator, p, prefix string, f *Field, byName map[string]*Field) {
	v.oneOf(p+".type", f.Type, fieldTypes...)
	switch {
	case f.Type == "timestamp":
		v.oneOf(p+".unit", f.Unit, "millis", "micros", "nanos")
		v.oneOf(p+".input", f.Input, "seconds", "millis", "micros")
	case f.Type == "time":
		v.oneOf(p+".unit", f.Unit, "millis", "micros", "nanos")
		if f.Input != "" {
			v.errorf(p+".input", "applies to timestamp fields only (a time is an \"HH:MM:SS\" string)")
		}
	case f.Unit != "" || f.Input != "":
		v.errorf(p, "unit and input apply to timestamp fields only (and unit to time fields)")
	}
	if f.Type == "decimal" {
		if f.Precision < 1 || f.Precision > 38 {
			v.errorf(p+".precision", "must be between 1 and 38, got %d", f.Precision)
		}
		if f.Scale < 0 || f.Scale > f.Precision {
			v.errorf(p+".scale", "must be between 0 and precision (%d), got %d", f.Precision, f.Scale)
		}
	} else if f.Precision != 0 || f.Scale != 0 {
		v.errorf(p, "precision and scale apply to decimal fields only")
	}
	switch {
	case f.Type == "struct" && len(f.Fields) == 0:
		v.errorf(p+".fields", "a struct needs at least one field")
	case f.Type == "struct":
		validateFields(v, p+".fields", prefix, f.Fields, byName)
	case len(f.Fields) > 0:
		v.errorf(p+".fields", "fields apply to struct fields only")
	}
	for _, e := range []struct {
		key, typ string
		f        *Field
	}{{"items", "list", f.Items}, {"values", "map", f.Values}} {
		switch {
		case f.Type == e.typ && e.f == nil:
			v.errorf(p+"."+e.key, "a %s needs %s (a field whose name is not used)", e.typ, e.key)
		case f.Type == e.typ:
			if e.f.Name != "" {
				v.match(p+"."+e.key+".name", e.f.Name, fieldName, "use letters, digits and _, not starting with a digit")
			}
			validateField(v, p+"."+e.key, "", e.f, nil)
		case e.f != nil:
			v.errorf(p+"."+e.key, "%s applies to %s fields only", e.key, e.typ)
		}
	}
}

func (c *Config) validateRoutes(v *validator, fields map[string]*Field) {
	if len(c.Routes) == 0 {
		v.errorf("routes", "at least one route is required")
	}
	names := map[string]bool{}
	for i := range c.Routes {
		r := &c.Routes[i]
		path := routePath(i)
		if v.required(path+".name", r.Name) {
			v.match(path+".name", r.Name, pipelineName, "use lowercase letters, digits, _ and -")
			if names[r.Name] {
				v.errorf(path+".name", "route %q is defined twice", r.Name)
			}
			names[r.Name] = true
		}
		if r.When != nil {
			if v.required(path+".when.field", r.When.Field) && fields != nil && fields[r.When.Field] == nil {
				v.errorf(path+".when.field", "%q is not a schema field", r.When.Field)
			}
			if len(r.When.In) == 0 {
				v.errorf(path+".when.in", "at least one value is required")
			}
		}
		if r.Parquet != nil {
			r.Parquet.validate(v, path+".parquet", fields, c.Memory.Budget)
		}
		if r.OpenSearch.Enabled() {
			r.OpenSearch.validate(v, path+".opensearch", fields)
		}
		if r.Parquet == nil && !r.OpenSearch.Enabled() {
			v.errorf(path, "the route writes nowhere: give it a parquet destination or an opensearch url (an empty url turns OpenSearch off)")
		}
	}
}

func (p *Parquet) validate(v *validator, path string, fields map[string]*Field, budget Size) {
	if v.required(path+".destination", p.Destination) {
		if _, err := ParseLocation(p.Destination); err != nil {
			v.errorf(path+".destination", "%v", err)
		}
	}
	v.required(path+".path", p.Path)
	v.oneOf(path+".compression", p.Compression, "snappy", "zstd", "gzip", "none")
	atLeast(v, path+".page_size", p.PageSize, 1, sizeText)
	atLeast(v, path+".row_group_size", p.RowGroupSize, 1, sizeText)
	atLeast(v, path+".target_file_size", p.TargetFileSize, 1, sizeText)
	if p.RowGroupSize > p.TargetFileSize {
		v.errorf(path+".row_group_size", "%s is larger than target_file_size %s", p.RowGroupSize, p.TargetFileSize)
	}
	if p.PageSize > p.RowGroupSize {
		v.errorf(path+".page_size", "%s is larger than row_group_size %s", p.PageSize, p.RowGroupSize)
	}
	if p.RowGroupSize > budget {
		v.errorf(path+".row_group_size", "%s does not fit in memory.budget %s", p.RowGroupSize, budget)
	}
	positive(v, path+".max_file_age", p.MaxFileAge)
	positive(v, path+".inactivity", p.Inactivity)
	if _, err := time.LoadLocation(p.TimeZone); err != nil {
		v.errorf(path+".timezone", "%q is not a time zone (use IANA names such as UTC or America/New_York)", p.TimeZone)
	}
	if strings.ContainsAny(p.FilePrefix, "/\\") {
		v.errorf(path+".file_prefix", "%q must not contain a slash", p.FilePrefix)
	}
	et := p.EventTime
	if !v.oneOf(path+".event_time.source", et.Source, "field", "broker", "processing") {
		return
	}
	switch {
	case et.Source == "field" && et.Field == "":
		v.errorf(path+".event_time.field", "is required with source: field")
	case et.Source == "field" && fields == nil: // derived at start
	case et.Source == "field":
		f := fields[et.Field]
		if f == nil {
			v.errorf(path+".event_time.field", "%q is not a schema field", et.Field)
		} else if f.Type != "timestamp" && f.Type != "date" {
			v.errorf(path+".event_time.field", "%q is a %s field; event time needs a timestamp or date field", et.Field, f.Type)
		}
	case et.Field != "":
		v.errorf(path+".event_time.field", "is only used with source: field, not %s", et.Source)
	}
}

func (o *OpenSearch) validate(v *validator, path string, fields map[string]*Field) {
	v.httpURL(path+".url", o.URL)
	v.required(path+".index", o.Index)
	v.required(path+".id", o.ID)
	v.oneOf(path+".action", o.Action, "index", "create")
	if o.VersionField != "" && fields != nil && fields[o.VersionField] == nil {
		v.errorf(path+".version_field", "%q is not a schema field", o.VersionField)
	}
	if o.Username != "" && o.Password == "" {
		v.errorf(path+".password", "is required with a username")
	}
	if o.Password != "" && o.Username == "" {
		v.errorf(path+".username", "is required with a password")
	}
	if o.SigV4 != nil {
		v.oneOf(path+".sigv4.service", o.SigV4.Service, "es", "aoss")
		if o.Username != "" {
			v.errorf(path+".sigv4", "use either SigV4 or a username and password, not both")
		}
	}
	atLeast(v, path+".flush_bytes", o.FlushBytes, 1, sizeText)
	atLeast(v, path+".flush_docs", o.FlushDocs, 1, count)
	positive(v, path+".flush_interval", o.FlushInterval)
	atLeast(v, path+".concurrency", o.Concurrency, 1, count)
	atLeast(v, path+".max_retries", o.MaxRetries, 0, count)
	positive(v, path+".timeout", o.Timeout)
	for i, t := range o.Fanout {
		if t == "" {
			v.errorf(fmt.Sprintf("%s.also_index[%d]", path, i), "is empty")
		}
	}
}

func (s *S3) validate(v *validator) {
	if s.Endpoint != "" {
		v.httpURL("s3.endpoint", s.Endpoint)
	}
	if s.PartSize < 5*mib || s.PartSize > 5<<30 {
		v.errorf("s3.part_size", "must be between 5MiB and 5GiB (S3 multipart limits), got %s", s.PartSize)
	}
	atLeast(v, "s3.upload_concurrency", s.UploadConcurrency, 1, count)
	atLeast(v, "s3.complete_concurrency", s.CompleteConcurrency, 1, count)
	positive(v, "s3.request_timeout", s.RequestTimeout)
	v.oneOf("s3.sse", s.SSE, "", "AES256", "aws:kms")
	if s.KMSKeyID != "" && s.SSE != "aws:kms" {
		v.errorf("s3.kms_key_id", "is only used with sse: aws:kms")
	}
	if s.StorageClass != "" {
		v.oneOf("s3.storage_class", s.StorageClass, "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA",
			"ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER", "GLACIER_IR", "DEEP_ARCHIVE", "OUTPOSTS", "EXPRESS_ONEZONE")
	}
}

func (d *DLQ) validate(v *validator) {
	given := 0
	for _, on := range []bool{d.Kafka != nil, d.Kinesis != nil, d.File != ""} {
		if on {
			given++
		}
	}
	if given > 1 {
		v.errorf("dlq", "give at most one of kafka, kinesis or file")
	}
	if k := d.Kafka; k != nil {
		v.required("dlq.kafka.topic", k.Topic)
		if len(k.Brokers) == 0 {
			v.errorf("dlq.kafka.brokers", "is required when the source is not Kafka")
		}
		for i, b := range k.Brokers {
			v.hostPort(fmt.Sprintf("dlq.kafka.brokers[%d]", i), b)
		}
		k.TLS.validate(v, "dlq.kafka.tls")
		k.SASL.validate(v, "dlq.kafka.sasl")
		if k.Partitions < 1 && k.Partitions != -1 {
			v.errorf("dlq.kafka.partitions", "must be at least 1, or -1 for the broker's default, got %d", k.Partitions)
		}
		if k.ReplicationFactor < 1 && k.ReplicationFactor != -1 {
			v.errorf("dlq.kafka.replication_factor", "must be at least 1, or -1 for the broker's default, got %d", k.ReplicationFactor)
		}
	}
	if k := d.Kinesis; k != nil {
		v.required("dlq.kinesis.stream", k.Stream)
		if k.Endpoint != "" {
			v.httpURL("dlq.kinesis.endpoint", k.Endpoint)
		}
	}
	if d.File != "" && !filepath.IsAbs(d.File) {
		v.errorf("dlq.file", "%q must be an absolute path", d.File)
	}
	atLeast(v, "dlq.max_redrives", d.MaxRedrives, 0, count)
}

// redactURL hides a password in a URL's user information.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err == nil {
		return u.Redacted()
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		return "xxxxx" + s[i:]
	}
	return s
}
