package jsonlines

import (
	"cmp"
	"time"

	"github.com/sinkd/sinkd/config/conf"
)

// Config is a route's `writers.jsonlines` settings.
type Config struct {
	// Destination is s3://bucket/prefix or file:///dir.
	Destination string `yaml:"destination"`
	// Path is the bucket template, as for Parquet.
	Path           string         `yaml:"path"`
	EventTime      conf.EventTime `yaml:"event_time"`
	TimeZone       string         `yaml:"timezone"`
	FilePrefix     string         `yaml:"file_prefix"`
	TargetFileSize conf.Size      `yaml:"target_file_size"`
	MaxFileAge     conf.Duration  `yaml:"max_file_age"`
	// Inactivity rolls a file that has not been written for this long, so
	// that a bucket whose records stopped (an event-time bucket the clock
	// moved past, a partition handed away) becomes durable and stops
	// holding the partitions' committed positions back.
	Inactivity conf.Duration `yaml:"inactivity"`
	// MaxOpenFiles is a safety net, not a working-set bound: memory.budget
	// bounds open files (DESIGN §4).
	MaxOpenFiles int `yaml:"max_open_files"`
}

// The defaults of Config; the package README and config/README.md list them
// (TestDocumentedDefaults keeps both in step with these).
const (
	DefaultTargetFileSize = 64 * conf.MiB
	DefaultMaxFileAge     = conf.Duration(5 * time.Minute)
	// A minute without a record: long enough that a bucket still being
	// written is not cut (a file can be cut at most max_file_age /
	// inactivity = 5 times more often than by age alone, and only when its
	// bucket gets under one record a minute), short enough that committed
	// positions and the restart point follow the input within about a
	// minute once a bucket goes quiet, instead of max_file_age.
	DefaultInactivity = conf.Duration(time.Minute)
	// As memory.max_open_files for Parquet: far above what a budget holds,
	// so that reaching it means something is wrong, and it says so.
	DefaultMaxOpenFiles = 100_000
	DefaultTimeZone     = "UTC"
)

// SetDefaults fills every setting left unset; route is the route's name.
func (c *Config) SetDefaults(route string) {
	c.FilePrefix = cmp.Or(c.FilePrefix, route)
	c.TimeZone = cmp.Or(c.TimeZone, DefaultTimeZone)
	c.EventTime.Source = cmp.Or(c.EventTime.Source, "broker")
	c.TargetFileSize = cmp.Or(c.TargetFileSize, DefaultTargetFileSize)
	c.MaxFileAge = cmp.Or(c.MaxFileAge, DefaultMaxFileAge)
	c.Inactivity = cmp.Or(c.Inactivity, DefaultInactivity)
	c.MaxOpenFiles = cmp.Or(c.MaxOpenFiles, DefaultMaxOpenFiles)
}

// Validate returns every problem of a defaulted block, each with its path
// relative to the block. The path template is compiled against the schema by
// the writer's Check.
func (c *Config) Validate() conf.Issues {
	var v conf.Check
	if v.Required("destination", c.Destination) {
		if _, err := conf.ParseLocation(c.Destination); err != nil {
			v.Errorf("destination", "%v", err)
		}
	}
	v.Required("path", c.Path)
	v.AtLeastSize("target_file_size", c.TargetFileSize, 1)
	v.Positive("max_file_age", c.MaxFileAge)
	v.Positive("inactivity", c.Inactivity)
	v.AtLeast("max_open_files", c.MaxOpenFiles, 1)
	return v.Issues()
}
