package store

import (
	"cmp"
	"time"

	"github.com/sinkd/sinkd/config/conf"
)

// S3Config is the s3 block: how every s3:// destination and checkpoint
// store is reached. Its defaults and rules live here; the config package
// composes it into the file and reports its problems with their lines.
type S3Config struct {
	Endpoint          string    `yaml:"endpoint"` // "" = AWS
	Region            string    `yaml:"region"`
	PathStyle         bool      `yaml:"path_style"`
	SSE               string    `yaml:"sse"` // "" | AES256 | aws:kms
	KMSKeyID          string    `yaml:"kms_key_id"`
	StorageClass      string    `yaml:"storage_class"`
	PartSize          conf.Size `yaml:"part_size"` // >= 5MiB
	UploadConcurrency int       `yaml:"upload_concurrency"`
	// CompleteConcurrency bounds the multipart uploads a checkpoint
	// completes at once: a drain with thousands of open files completes
	// thousands.
	CompleteConcurrency int           `yaml:"complete_concurrency"`
	RequestTimeout      conf.Duration `yaml:"request_timeout"`
}

// Defaults, listed in store/README.md and config/README.md (a test keeps
// both in step with these). The region defaults to conf.AWSRegion.
const (
	DefaultPartSize          = 8 * conf.MiB
	DefaultUploadConcurrency = 4
	// Latency-bound requests in flight: completing uploads at a
	// checkpoint, and parts under 1MiB (mostly files' last parts).
	DefaultCompleteConcurrency = 64
	DefaultRequestTimeout      = conf.Duration(30 * time.Second)
)

// SetDefaults fills every setting left unset.
func (c *S3Config) SetDefaults() {
	c.Region = cmp.Or(c.Region, conf.AWSRegion())
	c.PartSize = cmp.Or(c.PartSize, DefaultPartSize)
	c.UploadConcurrency = cmp.Or(c.UploadConcurrency, DefaultUploadConcurrency)
	c.CompleteConcurrency = cmp.Or(c.CompleteConcurrency, DefaultCompleteConcurrency)
	c.RequestTimeout = cmp.Or(c.RequestTimeout, DefaultRequestTimeout)
}

// Validate returns every problem of a defaulted block, each with its path
// relative to the block.
func (c *S3Config) Validate() conf.Issues {
	var v conf.Check
	if c.Endpoint != "" {
		v.HTTPURL("endpoint", c.Endpoint)
	}
	if c.PartSize < 5*conf.MiB || c.PartSize > 5<<30 {
		v.Errorf("part_size", "must be between 5MiB and 5GiB (S3 multipart limits), got %s", c.PartSize)
	}
	v.AtLeast("upload_concurrency", c.UploadConcurrency, 1)
	v.AtLeast("complete_concurrency", c.CompleteConcurrency, 1)
	v.Positive("request_timeout", c.RequestTimeout)
	v.OneOf("sse", c.SSE, "", "AES256", "aws:kms")
	if c.KMSKeyID != "" && c.SSE != "aws:kms" {
		v.Errorf("kms_key_id", "is only used with sse: aws:kms")
	}
	if c.StorageClass != "" {
		v.OneOf("storage_class", c.StorageClass, "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA",
			"ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER", "GLACIER_IR", "DEEP_ARCHIVE", "OUTPOSTS", "EXPRESS_ONEZONE")
	}
	return v.Issues()
}
