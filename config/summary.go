package config

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// Summary writes a one-screen description of the configuration for people:
// what is read, how it decodes, where each route writes, and how often it
// commits. Secrets are never printed: passwords show as "set", URLs lose their
// user information.
func (c *Config) Summary(w io.Writer) {
	s := &summary{}
	s.line("pipeline", "%s (instance %s)", c.Pipeline, c.InstanceID)
	switch {
	case c.Source.Kafka != nil:
		k := c.Source.Kafka
		s.line("source", "kafka %s, topics %s, group %s, start %s", strings.Join(k.Brokers, ","),
			strings.Join(k.Topics, ","), k.Group, startText(k.Start, k.StartTimestamp))
		if sec := securityText(k.TLS, k.SASL); sec != "" {
			s.more("%s", sec)
		}
	case c.Source.Kinesis != nil:
		k := c.Source.Kinesis
		s.line("source", "kinesis stream %s at %s (region %s), start %s, poll %s, max %d records",
			k.Stream, endpointText(k.Endpoint), k.Region, startText(k.Start, k.StartTime), k.PollInterval, k.MaxRecords)
		if k.LeaseTable != "" {
			s.more("leases in DynamoDB table %s at %s, failover %s", k.LeaseTable, endpointText(k.DynamoDBEndpoint), k.FailoverTime)
		} else {
			s.more("no lease table: this instance reads every shard alone")
		}
	default:
		s.line("source", "none")
	}

	s.line("schema", "%s, %d fields (* = required)", c.Schema.Format, len(c.Schema.Fields))
	var fields []string
	for _, f := range c.Schema.Fields {
		fields = append(fields, fieldText(f))
	}
	s.wrapped(fields)

	for _, r := range c.Routes {
		cond := "all records"
		if r.When != nil {
			cond = fmt.Sprintf("where %s in [%s]", r.When.Field, strings.Join(r.When.In, ", "))
		}
		s.line("route", "%s: %s", r.Name, cond)
		if p := r.Parquet; p != nil {
			s.line("  parquet", "%s/%s", strings.TrimRight(p.Destination, "/"), p.Path)
			s.more("roll at %s, after %s or %s idle; %s; event time %s (%s)",
				p.TargetFileSize, p.MaxFileAge, p.Inactivity, p.Compression, eventTimeText(p.EventTime), p.TimeZone)
		} else {
			s.line("  parquet", "off")
		}
		if o := r.OpenSearch; o.Enabled() {
			s.line("  opensearch", "%s index %s id %s (%s)%s", redactURL(o.URL), o.Index, o.ID, o.Action, authText(o))
		} else {
			s.line("  opensearch", "off")
		}
		for _, name := range slices.Sorted(maps.Keys(r.Writers)) {
			// Registered writers' settings are theirs to describe.
			s.line("  "+name, "configured")
		}
	}

	s.line("s3", "endpoint %s%s, region %s, part size %s", endpointText(c.S3.Endpoint),
		map[bool]string{true: " (path style)"}[c.S3.PathStyle], c.S3.Region, c.S3.PartSize)
	s.line("checkpoint", "every %s, store %s", c.Checkpoint.Interval, c.Checkpoint.Store)
	spool := "no spool"
	if c.Memory.SpoolBudget > 0 {
		spool = fmt.Sprintf("spool %s in %s", c.Memory.SpoolBudget, c.Memory.SpoolDir)
	}
	s.line("memory", "budget %s (%s of it room for garbage), %s, at most %d open files and %d encoders per route", c.Memory.Budget, Size(c.GarbageRoom()), spool, c.Memory.MaxOpenFiles, c.Memory.MaxEncoders)
	s.line("dlq", "%s", dlqText(c.DLQ))
	http := "off"
	if c.HTTP.Addr != "" {
		http = "http://" + c.HTTP.Addr + " (/metrics, /healthz, /readyz)"
	}
	s.line("http", "%s; log %s/%s", http, c.Log.Level, c.Log.Format)
	io.WriteString(w, s.String())
}

type summary struct{ strings.Builder }

const summaryIndent = "             "

func (s *summary) line(label, format string, args ...any) {
	fmt.Fprintf(s, "%-12s "+format+"\n", append([]any{label}, args...)...)
}

func (s *summary) more(format string, args ...any) {
	fmt.Fprintf(s, summaryIndent+format+"\n", args...)
}

// wrapped prints items comma-separated on indented lines of at most 100 columns.
func (s *summary) wrapped(items []string) {
	line := summaryIndent
	for i, it := range items {
		if i < len(items)-1 {
			it += ","
		}
		if len(line) > len(summaryIndent) && len(line)+1+len(it) > 100 {
			s.WriteString(strings.TrimRight(line, " ") + "\n")
			line = summaryIndent
		}
		line += it + " "
	}
	if len(line) > len(summaryIndent) {
		s.WriteString(strings.TrimRight(line, " ") + "\n")
	}
}

func fieldText(f Field) string {
	text := f.Name + " " + typeText(f)
	if f.From != "" && f.From != f.Name {
		text += " from " + f.From
	}
	if f.Required {
		text += "*"
	}
	return text
}

// typeText renders a field's type, nested ones in full:
// struct<type string, card struct<last4 string>>, list<int32*>.
func typeText(f Field) string {
	switch f.Type {
	case "decimal":
		return fmt.Sprintf("decimal(%d,%d)", f.Precision, f.Scale)
	case "timestamp", "time":
		return f.Type + "(" + f.Unit + ")"
	case "struct":
		parts := make([]string, len(f.Fields))
		for i, c := range f.Fields {
			parts[i] = fieldText(c)
		}
		return "struct<" + strings.Join(parts, ", ") + ">"
	case "list", "map":
		e := f.Items
		if f.Type == "map" {
			e = f.Values
		}
		if e == nil {
			return f.Type
		}
		t := typeText(*e)
		if e.Required {
			t += "*"
		}
		if f.Type == "map" {
			return "map<string, " + t + ">"
		}
		return "list<" + t + ">"
	}
	return f.Type
}

func startText(start, at string) string {
	if at != "" {
		return start + " " + at
	}
	return start
}

func endpointText(e string) string {
	if e == "" {
		return "AWS"
	}
	return redactURL(e)
}

func securityText(t TLS, s SASL) string {
	var parts []string
	if t.Enabled {
		parts = append(parts, "tls on")
	}
	if s.Mechanism != "" {
		p := "sasl " + s.Mechanism
		if s.Username != "" {
			p += " as " + s.Username
		}
		if s.Password != "" {
			p += " (password set)"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

func eventTimeText(e EventTime) string {
	switch e.Source {
	case "field":
		return e.Field
	case "broker":
		return "broker timestamp"
	}
	return e.Source + " time (at-least-once)"
}

func authText(o *OpenSearch) string {
	switch {
	case o.SigV4 != nil:
		return ", sigv4 " + o.SigV4.Service + " " + o.SigV4.Region
	case o.Username != "":
		return ", basic auth as " + o.Username + " (password set)"
	}
	return ""
}

func dlqText(d DLQ) string {
	switch {
	case d.Kafka != nil:
		return fmt.Sprintf("kafka topic %s on %s%s, max %d redrives", d.Kafka.Topic, strings.Join(d.Kafka.Brokers, ","),
			prefixed(", ", securityText(d.Kafka.TLS, d.Kafka.SASL)), d.MaxRedrives)
	case d.Kinesis != nil:
		return fmt.Sprintf("kinesis stream %s at %s (region %s), max %d redrives", d.Kinesis.Stream,
			endpointText(d.Kinesis.Endpoint), d.Kinesis.Region, d.MaxRedrives)
	case d.File != "":
		return "file " + d.File
	}
	return "none"
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}
