package conf

import (
	"cmp"
	"os"
	"time"
)

// MiB is a mebibyte, the unit most size defaults are written in.
const MiB = 1 << 20

// Seconds is n seconds as a Duration, for defaults.
func Seconds(n int) Duration { return Duration(time.Duration(n) * time.Second) }

// AWSRegion is the default region of every AWS client: $AWS_REGION, else
// us-east-1.
func AWSRegion() string { return cmp.Or(os.Getenv("AWS_REGION"), "us-east-1") }

// TLS is a client's TLS settings (Kafka brokers, the schema registry).
type TLS struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// Validate returns every problem, with paths relative to the tls block.
func (t TLS) Validate() Issues {
	var c Check
	if (t.CertFile == "") != (t.KeyFile == "") {
		c.Errorf("", "cert_file and key_file go together")
	}
	if !t.Enabled && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.InsecureSkipVerify) {
		c.Errorf("enabled", "TLS settings are given but enabled is false")
	}
	return c.Issues()
}

// SASL is a Kafka client's authentication.
type SASL struct {
	Mechanism string `yaml:"mechanism"` // "" | plain | scram-sha-256 | scram-sha-512 | aws-msk-iam
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
}

// Validate returns every problem, with paths relative to the sasl block.
func (s SASL) Validate() Issues {
	var c Check
	if !c.OneOf("mechanism", s.Mechanism, "", "plain", "scram-sha-256", "scram-sha-512", "aws-msk-iam") {
		return c.Issues()
	}
	switch s.Mechanism {
	case "plain", "scram-sha-256", "scram-sha-512":
		c.Required("username", s.Username)
		c.Required("password", s.Password)
	case "":
		if s.Username != "" || s.Password != "" {
			c.Errorf("mechanism", "is required with a username or password")
		}
	}
	return c.Issues()
}

// Field is one field of a JSON schema (schema.fields[]). It lives here, not
// in config, because the schema package reads it and the writers' tests read
// the schema package: config imports the writers.
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

// KafkaSecurity returns the problems of a Kafka client's tls and sasl
// blocks, each alone and together, with paths relative to the client's
// block (tls.ca_file, sasl.mechanism).
func KafkaSecurity(t TLS, s SASL) Issues {
	var c Check
	c.Add("tls", t.Validate())
	c.Add("sasl", s.Validate())
	if s.Mechanism == "aws-msk-iam" && !t.Enabled {
		// Amazon MSK serves IAM authentication on its TLS listener only
		// (port 9098): without TLS the client never gets an answer.
		c.Errorf("sasl.mechanism", "aws-msk-iam needs tls.enabled: true (MSK serves IAM authentication on its TLS listener, port 9098)")
	}
	return c.Issues()
}

// EventTime says where a record's event time comes from: a payload field, the
// broker timestamp ("broker") or the wall clock ("processing", at-least-once).
// Bucket templates and the Parquet writer's block share it.
type EventTime struct {
	Field  string `yaml:"field"`
	Source string `yaml:"source"` // field | broker | processing
}

// Condition selects the records a route takes: Field's value is one of In.
type Condition struct {
	Field string     `yaml:"field"`
	In    StringList `yaml:"in"`
}

// EditDistance is the Levenshtein distance between a and b, for "did you
// mean" suggestions.
func EditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
