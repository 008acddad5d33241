package conf

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
)

// Location is a parsed Parquet destination or checkpoint store.
type Location struct {
	Scheme string // "s3" or "file"
	Bucket string // s3 only
	Prefix string // s3 only: key prefix without leading or trailing "/", may be ""
	Dir    string // file only: an absolute, cleaned directory
}

func (l Location) String() string {
	switch {
	case l.Scheme == "file":
		return "file://" + l.Dir
	case l.Prefix == "":
		return "s3://" + l.Bucket
	}
	return "s3://" + l.Bucket + "/" + l.Prefix
}

var bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// ParseLocation reads s3://bucket[/prefix] or file:///absolute/dir.
func ParseLocation(s string) (Location, error) {
	if rest, ok := strings.CutPrefix(s, "s3://"); ok {
		bucket, prefix, _ := strings.Cut(rest, "/")
		if !bucketName.MatchString(bucket) {
			return Location{}, fmt.Errorf("%q: %q is not a valid S3 bucket name", s, bucket)
		}
		prefix = strings.Trim(prefix, "/")
		if strings.Contains(prefix, "//") {
			return Location{}, fmt.Errorf("%q: the prefix has an empty path segment", s)
		}
		return Location{Scheme: "s3", Bucket: bucket, Prefix: prefix}, nil
	}
	if rest, ok := strings.CutPrefix(s, "file://"); ok {
		if !filepath.IsAbs(rest) {
			return Location{}, fmt.Errorf("%q: a file location needs an absolute directory (file:///path/to/dir)", s)
		}
		return Location{Scheme: "file", Dir: filepath.Clean(rest)}, nil
	}
	return Location{}, fmt.Errorf("%q is neither s3://bucket[/prefix] nor file:///absolute/dir", s)
}
