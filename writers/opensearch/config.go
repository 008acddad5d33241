package opensearch

import (
	"cmp"
	"time"

	"github.com/sinkd/sinkd/config/conf"
)

// Config is a route's opensearch block. Its defaults and rules live here;
// the config package composes it into the file, checks what needs the
// schema (version_field), and reports problems with their lines.
type Config struct {
	URL           string          `yaml:"url"` // "" turns the destination off
	Index         string          `yaml:"index"`
	ID            string          `yaml:"id"`
	Action        string          `yaml:"action"`        // index | create
	VersionField  string          `yaml:"version_field"` // external versioning from a payload field
	Username      string          `yaml:"username"`
	Password      string          `yaml:"password"`
	CAFile        string          `yaml:"ca_file"`
	SigV4         *SigV4          `yaml:"sigv4"`
	FlushBytes    conf.Size       `yaml:"flush_bytes"`
	FlushDocs     int             `yaml:"flush_docs"`
	FlushInterval conf.Duration   `yaml:"flush_interval"`
	Concurrency   int             `yaml:"concurrency"`
	MaxRetries    int             `yaml:"max_retries"`
	Timeout       conf.Duration   `yaml:"timeout"`
	Template      string          `yaml:"index_template"` // JSON file installed at start
	Fanout        conf.StringList `yaml:"also_index"`     // further index templates for the same document
}

// Enabled reports whether the destination is on: an OpenSearch block whose url
// is empty (typically an unset ${SINKD_OPENSEARCH_URL}) is off, not an error.
func (c *Config) Enabled() bool { return c != nil && c.URL != "" }

// SigV4 signs requests for Amazon OpenSearch Service (es) or Serverless (aoss).
type SigV4 struct {
	Service string `yaml:"service"` // es | aoss
	Region  string `yaml:"region"`
}

// Defaults, the only ones: config/README.md, this package's README and the
// examples list them, and a test keeps them in step. Why these values (the
// README has the measurements): sinkd's CPU per document falls with the
// batch size up to a few thousand documents and is flat beyond, so
// flush_docs is 5000 (about 2.4 MB of taxi trips, within OpenSearch's
// advice of bulk requests of a few MiB) and flush_bytes 5MiB bounds larger
// documents; two requests in flight keep the cluster busy while the next
// batch fills, and more only queue on a busy cluster while holding a batch
// each.
const (
	DefaultAction        = "index"
	DefaultFlushBytes    = 5 * conf.MiB
	DefaultFlushDocs     = 5000
	DefaultFlushInterval = conf.Duration(time.Second)
	DefaultConcurrency   = 2
	DefaultMaxRetries    = 8
	DefaultTimeout       = conf.Duration(30 * time.Second)
	DefaultSigV4Service  = "es"
)

// SetDefaults fills every setting left at zero with its default.
// max_retries is filled only when maxRetriesSet is false: an explicit 0
// means no retries of a request inside the HTTP client (the writer's own
// backoff still retries what the cluster refused).
func (c *Config) SetDefaults(maxRetriesSet bool) {
	c.Action = cmp.Or(c.Action, DefaultAction)
	c.FlushBytes = cmp.Or(c.FlushBytes, DefaultFlushBytes)
	c.FlushDocs = cmp.Or(c.FlushDocs, DefaultFlushDocs)
	c.FlushInterval = cmp.Or(c.FlushInterval, DefaultFlushInterval)
	c.Concurrency = cmp.Or(c.Concurrency, DefaultConcurrency)
	if !maxRetriesSet {
		c.MaxRetries = DefaultMaxRetries
	}
	c.Timeout = cmp.Or(c.Timeout, DefaultTimeout)
	if c.SigV4 != nil {
		c.SigV4.Service = cmp.Or(c.SigV4.Service, DefaultSigV4Service)
		c.SigV4.Region = cmp.Or(c.SigV4.Region, conf.AWSRegion())
	}
}

// Validate returns every problem of a defaulted, enabled block, each with
// its path relative to the block. Whether version_field names an integer
// field of the schema is checked by the config package, which has the
// schema.
func (c *Config) Validate() conf.Issues {
	var v conf.Check
	v.HTTPURL("url", c.URL)
	v.Required("index", c.Index)
	v.Required("id", c.ID)
	if v.OneOf("action", c.Action, "index", "create") && c.Action == "create" && c.VersionField != "" {
		// create refuses a document whose id exists, whatever its
		// version: an external version needs index.
		v.Errorf("version_field", "cannot be used with action: create (create refuses any existing id, whatever its version); use action: index")
	}
	if c.Username != "" && c.Password == "" {
		v.Errorf("password", "is required with a username")
	}
	if c.Password != "" && c.Username == "" {
		v.Errorf("username", "is required with a password")
	}
	if c.SigV4 != nil {
		v.OneOf("sigv4.service", c.SigV4.Service, "es", "aoss")
		if c.Username != "" {
			v.Errorf("sigv4", "use either SigV4 or a username and password, not both")
		}
	}
	v.AtLeastSize("flush_bytes", c.FlushBytes, 1)
	v.AtLeast("flush_docs", c.FlushDocs, 1)
	v.Positive("flush_interval", c.FlushInterval)
	v.AtLeast("concurrency", c.Concurrency, 1)
	v.AtLeast("max_retries", c.MaxRetries, 0)
	v.Positive("timeout", c.Timeout)
	for i, t := range c.Fanout {
		if t == "" {
			v.Errorf("also_index"+conf.Index(i), "is empty")
		}
	}
	return v.Issues()
}
