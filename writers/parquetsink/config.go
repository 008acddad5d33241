package parquetsink

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	_ "time/tzdata" // timezone must validate in minimal containers without zoneinfo

	"github.com/parquet-go/parquet-go"
	"github.com/sinkd/sinkd/config/conf"
)

// Config is a route's parquet block. Its defaults and rules live here; the
// config package composes it into the file, checks what needs the schema or
// memory.budget, and reports problems with their lines.
type Config struct {
	// Destination is s3://bucket/prefix or file:///dir.
	Destination    string        `yaml:"destination"`
	Path           string        `yaml:"path"` // bucket template, e.g. type={type}/dt={pickup_datetime:yyyy-MM-dd}
	EventTime      EventTime     `yaml:"event_time"`
	TimeZone       string        `yaml:"timezone"`
	FilePrefix     string        `yaml:"file_prefix"`
	Compression    string        `yaml:"compression"` // snappy | zstd | gzip | none
	RowGroupSize   conf.Size     `yaml:"row_group_size"`
	PageSize       conf.Size     `yaml:"page_size"`
	TargetFileSize conf.Size     `yaml:"target_file_size"`
	MaxFileAge     conf.Duration `yaml:"max_file_age"`
	Inactivity     conf.Duration `yaml:"inactivity"`
}

// EventTime is shared with the bucket templates (config/conf).
type EventTime = conf.EventTime

// Defaults, listed in this package's README and config/README.md (a test
// keeps both in step with these). file_prefix defaults to the route's name.
const (
	DefaultCompression    = "snappy"
	DefaultRowGroupSize   = 16 * conf.MiB
	DefaultPageSize       = 64 << 10
	DefaultTargetFileSize = 128 * conf.MiB
	DefaultMaxFileAge     = conf.Duration(15 * time.Minute)
	DefaultInactivity     = conf.Duration(5 * time.Minute)
	DefaultTimeZone       = "UTC"
)

// SetDefaults fills every setting left unset; route is the route's name.
func (c *Config) SetDefaults(route string) {
	c.Compression = cmp.Or(c.Compression, DefaultCompression)
	c.RowGroupSize = cmp.Or(c.RowGroupSize, DefaultRowGroupSize)
	c.PageSize = cmp.Or(c.PageSize, DefaultPageSize)
	c.TargetFileSize = cmp.Or(c.TargetFileSize, DefaultTargetFileSize)
	c.MaxFileAge = cmp.Or(c.MaxFileAge, DefaultMaxFileAge)
	c.Inactivity = cmp.Or(c.Inactivity, DefaultInactivity)
	c.TimeZone = cmp.Or(c.TimeZone, DefaultTimeZone)
	c.FilePrefix = cmp.Or(c.FilePrefix, route)
	if c.EventTime.Source == "" {
		// Bucketing by a payload field is exact on replay; the broker
		// timestamp is the next best thing and is always there.
		c.EventTime.Source = "broker"
		if c.EventTime.Field != "" {
			c.EventTime.Source = "field"
		}
	}
}

// Validate returns every problem of a defaulted block, each with its path
// relative to the block. Whether event_time.field is a timestamp or date
// field of the schema, and whether a row group fits in memory.budget, are
// checked by the config package.
func (c *Config) Validate() conf.Issues {
	var v conf.Check
	if v.Required("destination", c.Destination) {
		if _, err := conf.ParseLocation(c.Destination); err != nil {
			v.Errorf("destination", "%v", err)
		}
	}
	v.Required("path", c.Path)
	v.OneOf("compression", c.Compression, "snappy", "zstd", "gzip", "none")
	v.AtLeastSize("page_size", c.PageSize, 1)
	v.AtLeastSize("row_group_size", c.RowGroupSize, 1)
	v.AtLeastSize("target_file_size", c.TargetFileSize, 1)
	if c.RowGroupSize > c.TargetFileSize {
		v.Errorf("row_group_size", "%s is larger than target_file_size %s", c.RowGroupSize, c.TargetFileSize)
	}
	if c.PageSize > c.RowGroupSize {
		v.Errorf("page_size", "%s is larger than row_group_size %s", c.PageSize, c.RowGroupSize)
	}
	v.Positive("max_file_age", c.MaxFileAge)
	v.Positive("inactivity", c.Inactivity)
	if _, err := time.LoadLocation(c.TimeZone); err != nil {
		v.Errorf("timezone", "%q is not a time zone (use IANA names such as UTC or America/New_York)", c.TimeZone)
	}
	if strings.ContainsAny(c.FilePrefix, "/\\") {
		v.Errorf("file_prefix", "%q must not contain a slash", c.FilePrefix)
	}
	et := c.EventTime
	if v.OneOf("event_time.source", et.Source, "field", "broker", "processing") {
		switch {
		case et.Source == "field" && et.Field == "":
			v.Errorf("event_time.field", "is required with source: field")
		case et.Source != "field" && et.Field != "":
			v.Errorf("event_time.field", "is only used with source: field, not %s", et.Source)
		}
	}
	return v.Issues()
}

// MemoryConfig is the memory block: the budget the Parquet writers share
// with the source's fetch buffers, and the bounds on open files, encoders
// and the spool. Its defaults and rules live here; the config package
// checks what needs the other blocks (the source's share, s3.part_size,
// row_group_size) and reports problems with their lines.
type MemoryConfig struct {
	Budget       conf.Size `yaml:"budget"`
	MaxOpenFiles int       `yaml:"max_open_files"`
	// MaxEncoders bounds the Parquet encoders of each route: they are lent to
	// the files written most, so it bounds encoder memory however many
	// buckets are open.
	MaxEncoders int `yaml:"max_encoders"`
	// SpoolDir and SpoolBudget bound the local directory where open files
	// keep encoded bytes that do not make an S3 part yet when memory is
	// full. A spool budget of 0 spills nothing.
	SpoolDir    string    `yaml:"spool_dir"`
	SpoolBudget conf.Size `yaml:"spool_budget"`
}

// Memory defaults, listed in config/README.md (a test keeps it in step).
// The spool directory defaults to $TMPDIR/sinkd-spool.
const (
	DefaultBudget = 256 * conf.MiB
	// A safety net, not a working-set bound: memory and the spool bound
	// open files (DESIGN §4). Reaching it rolls a file per new bucket.
	DefaultMaxOpenFiles = 100_000
	DefaultMaxEncoders  = 64
	DefaultSpoolBudget  = 2 << 30
	// MinBudget is the least memory.budget, and the least left for files
	// once the source's share is set aside.
	MinBudget = 16 * conf.MiB
)

// SetDefaults fills every setting left unset. spoolBudgetSet says whether
// the file gave spool_budget, whose 0 spills nothing.
func (c *MemoryConfig) SetDefaults(spoolBudgetSet bool) {
	c.Budget = cmp.Or(c.Budget, DefaultBudget)
	c.MaxOpenFiles = cmp.Or(c.MaxOpenFiles, DefaultMaxOpenFiles)
	c.SpoolDir = cmp.Or(c.SpoolDir, filepath.Join(os.TempDir(), "sinkd-spool"))
	if !spoolBudgetSet {
		c.SpoolBudget = DefaultSpoolBudget
	}
	c.MaxEncoders = cmp.Or(c.MaxEncoders, DefaultMaxEncoders)
}

// Validate returns every problem of a defaulted block, each with its path
// relative to the block.
func (c *MemoryConfig) Validate() conf.Issues {
	var v conf.Check
	v.AtLeastSize("budget", c.Budget, MinBudget)
	v.AtLeast("max_open_files", c.MaxOpenFiles, 1)
	v.AtLeast("max_encoders", c.MaxEncoders, 1)
	if c.SpoolBudget > 0 && c.SpoolBudget < 1*conf.MiB {
		v.Errorf("spool_budget", "%s is too small to hold anything useful: use at least 1MiB, or 0 to spill nothing", c.SpoolBudget)
	}
	return v.Issues()
}

// CheckSchema reports a schema the writer cannot stage: a column nested
// deeper than maxLevel repetition or definition levels. sinkd validate calls
// it (through the daemon's route compilation) so that such a schema is
// refused before start, with the schema's line.
func CheckSchema(s *parquet.Schema) error {
	for _, path := range s.Columns() {
		leaf, _ := s.Lookup(path...)
		if leaf.MaxRepetitionLevel > maxLevel || leaf.MaxDefinitionLevel > maxLevel {
			return fmt.Errorf("column %s is nested deeper than %d levels", strings.Join(path, "."), maxLevel)
		}
	}
	return nil
}
