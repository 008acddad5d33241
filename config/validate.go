package config

import (
	"fmt"
	"regexp"
	"slices"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/writers/parquetsink"
)

// Validate checks a loaded configuration (defaults applied) and returns every
// problem found as a *Problems, or nil. Load and Parse call it; call it again
// after changing a loaded Config in code.
func (c *Config) Validate() error { return NewProblems(c.validate()...) }

// validator collects problems by YAML path: the pipeline's own rules and the
// rules that join several blocks are here, each plugin's own rules in its
// Validate. validate locates every path at the end.
type validator struct {
	c *Config
	conf.Check
}

var (
	pipelineName = regexp.MustCompile(`^[a-z0-9_-]+$`)
	instanceName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	fieldName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

func (c *Config) validate() []Problem {
	v := &validator{c: c}
	if v.Required("pipeline", c.Pipeline) {
		v.Match("pipeline", c.Pipeline, pipelineName, "use lowercase letters, digits, _ and - (it is part of object keys and metric labels)")
	}
	if v.Required("instance_id", c.InstanceID) {
		v.Match("instance_id", c.InstanceID, instanceName, "use letters, digits, ., _ and - (it is part of object keys)")
	}
	if c.HTTP.Addr != "" {
		v.ListenAddr("http.addr", c.HTTP.Addr)
	}
	if c.HTTP.Pprof && c.HTTP.Admin.Addr == "" {
		// Profiles are never served on the metrics listener.
		v.Errorf("http.pprof", "needs http.admin.addr: profiles are served on the admin listener only")
	}
	if c.HTTP.Admin.Addr != "" {
		v.ListenAddr("http.admin.addr", c.HTTP.Admin.Addr)
		if c.HTTP.Admin.Addr == c.HTTP.Addr {
			v.Errorf("http.admin.addr", "must differ from http.addr: the admin actions do not share the metrics listener")
		}
	}

	v.OneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.OneOf("log.format", c.Log.Format, "json", "text")
	v.AtLeastSize("max_record_size", c.MaxRecordSize, 1)

	switch {
	case c.Source.Kafka != nil && c.Source.Kinesis != nil:
		v.Errorf("source", "give exactly one of kafka or kinesis, not both")
	case c.Source.Kafka != nil:
		v.Add("source.kafka", c.Source.Kafka.Validate())
	case c.Source.Kinesis != nil:
		v.Add("source.kinesis", c.Source.Kinesis.Validate())
	default:
		v.Errorf("source", "give exactly one of kafka or kinesis")
	}

	fields := c.Schema.validate(v)
	c.validateRoutes(v, fields)
	v.Add("s3", c.S3.Validate())

	v.Positive("checkpoint.interval", c.Checkpoint.Interval)
	v.Positive("checkpoint.timeout", c.Checkpoint.Timeout)
	if c.Checkpoint.Store == "" {
		// With a Parquet route the store was derived from a destination
		// that is itself reported; without any route, routes is reported.
		if len(c.Routes) > 0 && !slices.ContainsFunc(c.Routes, func(r Route) bool { return r.Parquet != nil }) {
			v.Errorf("checkpoint.store", "is required when no route writes Parquet (it defaults to <first parquet destination>/_sinkd)")
		}
	} else if _, err := ParseLocation(c.Checkpoint.Store); err != nil {
		v.Errorf("checkpoint.store", "%v", err)
	}

	v.Add("memory", c.Memory.Validate())
	if src := Size(c.Source.MemoryBytes()); c.Memory.Budget >= parquetsink.MinBudget && c.Memory.Budget-src < parquetsink.MinBudget {
		hint := "raise memory.budget"
		if c.Source.Kafka != nil {
			hint += " or lower kafka.fetch_max_bytes (eight times it is set aside)"
		}
		v.Errorf("memory.budget", "%s leaves less than 16MiB for files once the source's fetch buffers (%s) are set aside: %s", c.Memory.Budget, src, hint)
	}
	if c.S3.PartSize > c.Memory.Budget {
		v.Errorf("s3.part_size", "%s does not fit in memory.budget %s", c.S3.PartSize, c.Memory.Budget)
	}

	v.Add("dlq", c.DLQ.Validate())
	c.validateDLQLoop(v)
	v.Positive("shutdown.drain_timeout", c.Shutdown.DrainTimeout)
	v.Positive("shutdown.unhealthy_after", c.Shutdown.UnhealthyAfter)
	problems := make([]Problem, 0, len(v.Issues()))
	for _, is := range v.Issues() {
		problems = append(problems, c.Problem(is.Path, "%s", is.Msg))
	}
	return problems
}

var fieldTypes = []string{"int32", "int64", "float", "double", "string", "bool", "timestamp", "date", "time", "decimal", "uuid", "json", "struct", "list", "map"}

// validate checks the schema and returns its fields by name for the checks
// that refer to them. Fields inside structs are there by their dotted path
// (payment.type); fields inside lists and maps are not, because a record has
// any number of them.
func (s *Schema) validate(v *validator) map[string]*Field {
	v.OneOf("schema.format", s.Format, "json", "avro", "protobuf", "jsonschema")
	if s.Format == "avro" || s.Format == "protobuf" || s.Format == "jsonschema" {
		// The fields come from the registry when the pipeline starts: the
		// checks that refer to them happen then.
		if len(s.Fields) > 0 {
			v.Errorf("schema.fields", "with format %s the fields are derived from the registry's schema; leave them out", s.Format)
		}
		if s.Registry == nil {
			v.Errorf("schema.registry", "format %s needs a registry (url and subject)", s.Format)
			return nil
		}
		if v.Required("schema.registry.url", s.Registry.URL) {
			v.HTTPURL("schema.registry.url", s.Registry.URL)
		}
		v.Required("schema.registry.subject", s.Registry.Subject)
		v.Add("schema.registry.tls", s.Registry.TLS.Validate())
		v.Positive("schema.registry.timeout", s.Registry.Timeout)
		v.OneOf("schema.registry.on_incompatible", s.Registry.OnIncompatible, "dead_letter", "stop")
		if s.Format != "protobuf" && s.Registry.Message != "" {
			v.Errorf("schema.registry.message", "applies to format protobuf only")
		}
		if s.CDC != nil {
			v.OneOf("schema.cdc.envelope", s.CDC.Envelope, "debezium")
			v.OneOf("schema.cdc.deletes", s.CDC.Deletes, "keep", "drop")
		}
		return nil
	}
	if s.Registry != nil {
		v.Errorf("schema.registry", "applies to formats avro, protobuf and jsonschema only")
	}
	if len(s.Fields) == 0 {
		v.Errorf("schema.fields", "at least one field is required")
	}
	byName := make(map[string]*Field, len(s.Fields))
	validateFields(v, "schema.fields", "", s.Fields, byName)
	if s.CDC != nil {
		v.OneOf("schema.cdc.envelope", s.CDC.Envelope, "debezium")
		v.OneOf("schema.cdc.deletes", s.CDC.Deletes, "keep", "drop")
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
		if v.Required(p+".name", f.Name) {
			v.Match(p+".name", f.Name, fieldName, "use letters, digits and _, not starting with a digit")
			if names[f.Name] {
				v.Errorf(p+".name", "field %q is defined twice", f.Name)
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
	v.OneOf(p+".type", f.Type, fieldTypes...)
	switch {
	case f.Type == "timestamp":
		v.OneOf(p+".unit", f.Unit, "millis", "micros", "nanos")
		v.OneOf(p+".input", f.Input, "seconds", "millis", "micros")
	case f.Type == "time":
		v.OneOf(p+".unit", f.Unit, "millis", "micros", "nanos")
		if f.Input != "" {
			v.Errorf(p+".input", "applies to timestamp fields only (a time is an \"HH:MM:SS\" string)")
		}
	case f.Unit != "" || f.Input != "":
		v.Errorf(p, "unit and input apply to timestamp fields only (and unit to time fields)")
	}
	if f.Type == "decimal" {
		if f.Precision < 1 || f.Precision > 38 {
			v.Errorf(p+".precision", "must be between 1 and 38, got %d", f.Precision)
		}
		if f.Scale < 0 || f.Scale > f.Precision {
			v.Errorf(p+".scale", "must be between 0 and precision (%d), got %d", f.Precision, f.Scale)
		}
	} else if f.Precision != 0 || f.Scale != 0 {
		v.Errorf(p, "precision and scale apply to decimal fields only")
	}
	switch {
	case f.Type == "struct" && len(f.Fields) == 0:
		v.Errorf(p+".fields", "a struct needs at least one field")
	case f.Type == "struct":
		validateFields(v, p+".fields", prefix, f.Fields, byName)
	case len(f.Fields) > 0:
		v.Errorf(p+".fields", "fields apply to struct fields only")
	}
	for _, e := range []struct {
		key, typ string
		f        *Field
	}{{"items", "list", f.Items}, {"values", "map", f.Values}} {
		switch {
		case f.Type == e.typ && e.f == nil:
			v.Errorf(p+"."+e.key, "a %s needs %s (a field whose name is not used)", e.typ, e.key)
		case f.Type == e.typ:
			if e.f.Name != "" {
				v.Match(p+"."+e.key+".name", e.f.Name, fieldName, "use letters, digits and _, not starting with a digit")
			}
			validateField(v, p+"."+e.key, "", e.f, nil)
		case e.f != nil:
			v.Errorf(p+"."+e.key, "%s applies to %s fields only", e.key, e.typ)
		}
	}
}

func (c *Config) validateRoutes(v *validator, fields map[string]*Field) {
	if len(c.Routes) == 0 {
		v.Errorf("routes", "at least one route is required")
	}
	names := map[string]bool{}
	for i := range c.Routes {
		r := &c.Routes[i]
		path := routePath(i)
		if v.Required(path+".name", r.Name) {
			v.Match(path+".name", r.Name, pipelineName, "use lowercase letters, digits, _ and -")
			if names[r.Name] {
				v.Errorf(path+".name", "route %q is defined twice", r.Name)
			}
			names[r.Name] = true
		}
		if r.When != nil {
			if v.Required(path+".when.field", r.When.Field) && fields != nil && fields[r.When.Field] == nil {
				v.Errorf(path+".when.field", "%q is not a schema field", r.When.Field)
			}
			if len(r.When.In) == 0 {
				v.Errorf(path+".when.in", "at least one value is required")
			}
		}
		if r.Parquet != nil {
			v.Add(path+".parquet", r.Parquet.Validate())
			c.validateParquet(v, path+".parquet", r.Parquet, fields)
		}
		if r.OpenSearch.Enabled() {
			v.Add(path+".opensearch", r.OpenSearch.Validate())
			validateVersionField(v, path+".opensearch.version_field", r.OpenSearch.VersionField, fields)
		}
		if r.Parquet == nil && !r.OpenSearch.Enabled() && len(r.Writers) == 0 {
			v.Errorf(path, "the route writes nowhere: give it a parquet destination, an opensearch url (an empty url turns OpenSearch off) or a writer under writers")
		}
	}
}

// validateParquet checks the parquet rules that need other blocks: the
// schema (event_time.field) and memory.budget (a row group is held whole).
func (c *Config) validateParquet(v *validator, path string, p *Parquet, fields map[string]*Field) {
	if p.RowGroupSize > c.Memory.Budget {
		v.Errorf(path+".row_group_size", "%s does not fit in memory.budget %s", p.RowGroupSize, c.Memory.Budget)
	}
	et := p.EventTime
	if et.Source != "field" || et.Field == "" || fields == nil { // nil: avro, derived at start
		return
	}
	f := fields[et.Field]
	if f == nil {
		v.Errorf(path+".event_time.field", "%q is not a schema field", et.Field)
	} else if f.Type != "timestamp" && f.Type != "date" {
		v.Errorf(path+".event_time.field", "%q is a %s field; event time needs a timestamp or date field", et.Field, f.Type)
	}
}

// VersionTypes are the schema types an OpenSearch version_field may have:
// the pipeline reads the field's value as a 64-bit integer (a timestamp as
// its stored count of units since the epoch), which is what
// version_type=external takes.
var VersionTypes = []string{"int32", "int64", "timestamp"}

// validateVersionField checks that version_field names a schema field that
// reads as an integer. fields is nil with avro: the field is checked when
// the schema is derived at start.
func validateVersionField(v *validator, path, name string, fields map[string]*Field) {
	if name == "" || fields == nil {
		return
	}
	f := fields[name]
	switch {
	case f == nil:
		v.Errorf(path, "%q is not a schema field", name)
	case !slices.Contains(VersionTypes, f.Type):
		v.Errorf(path, "%q is a %s field; an external version is a whole number: use an int32, int64 or timestamp field", name, f.Type)
	}
}

// validateDLQLoop refuses a dead-letter topic or stream that is one the
// source reads: every letter would come back as input, fail again and be
// written again, for ever.
func (c *Config) validateDLQLoop(v *validator) {
	if d, src := c.DLQ.Kafka, c.Source.Kafka; d != nil && src != nil &&
		slices.Contains(src.Topics, d.Topic) && sameSet(d.Brokers, src.Brokers) {
		v.Errorf("dlq.kafka.topic", "%q is a topic the source reads: dead letters would be read back as input; use a topic of their own", d.Topic)
	}
	if d, src := c.DLQ.Kinesis, c.Source.Kinesis; d != nil && src != nil &&
		d.Stream == src.Stream && d.Endpoint == src.Endpoint && d.Region == src.Region {
		v.Errorf("dlq.kinesis.stream", "%q is the stream the source reads: dead letters would be read back as input; use a stream of their own", d.Stream)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func redactURL(s string) string { return conf.RedactURL(s) }
