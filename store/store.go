// Package store is the object store under the Parquet writer and the checkpoint
// manifests: S3 (or anything that speaks its API, such as MinIO) and a local
// directory, with the same multipart-upload commit semantics.
//
// Keys are the full object keys inside the bucket or directory; Open returns the
// prefix the URL named so that callers can prepend it.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	// ErrExists is returned by PutIfAbsent when the key already holds an object.
	ErrExists = errors.New("store: object exists")
	// ErrNotFound is returned (wrapped) for a missing object or multipart upload.
	ErrNotFound = errors.New("store: not found")
)

// Part is one uploaded part of a multipart upload, as CompleteUpload needs it.
type Part struct {
	Number int32
	ETag   string
	Size   int64
}

// Upload is an in-progress multipart upload.
type Upload struct {
	Key, UploadID string
	Initiated     time.Time
}

// Store is an object store with S3's multipart-upload and conditional-write semantics.
type Store interface {
	// CreateUpload starts a multipart upload; meta is stored with the object (S3 user metadata).
	CreateUpload(ctx context.Context, key string, meta map[string]string) (uploadID string, err error)
	UploadPart(ctx context.Context, key, uploadID string, number int32, body []byte) (Part, error)
	// CompleteUpload is idempotent: if the upload is already gone but the object exists with
	// the multipart ETag the parts imply, it returns nil. It wraps ErrNotFound only when no
	// object has the key and the upload, or a part it names, is not there: the file is gone,
	// and no retry completes it.
	CompleteUpload(ctx context.Context, key, uploadID string, parts []Part) error
	// AbortUpload is idempotent (an unknown upload is not an error).
	AbortUpload(ctx context.Context, key, uploadID string) error
	// ListUploads returns the in-progress uploads under prefix, all pages.
	ListUploads(ctx context.Context, prefix string) ([]Upload, error)
	// PutIfAbsent writes an object only if no object has the key; ErrExists otherwise.
	PutIfAbsent(ctx context.Context, key string, body []byte) error
	// Get returns an object's bytes, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// List returns the completed object keys under prefix, sorted, all pages.
	List(ctx context.Context, prefix string) ([]string, error)
	// Delete removes an object; a missing object is not an error.
	Delete(ctx context.Context, key string) error
}

// MinPartSize is S3's smallest allowed size for every part but the last.
const MinPartSize = 5 << 20

// Option tunes a store.
type Option func(*options)

type options struct {
	registerer prometheus.Registerer
	pageSize   int32
	logger     *slog.Logger
}

// WithLogger sends the AWS SDK's log lines to log (default slog.Default()).
func WithLogger(log *slog.Logger) Option {
	return func(o *options) { o.logger = log }
}

// WithMetrics registers the S3 request metrics (duration, retries, errors per
// operation) with reg. Several stores may share one registerer.
func WithMetrics(reg prometheus.Registerer) Option {
	return func(o *options) { o.registerer = reg }
}

// WithPageSize bounds how many keys or uploads one S3 list request returns
// (S3's default and maximum is 1000). Tests use it to exercise pagination.
func WithPageSize(n int32) Option {
	return func(o *options) { o.pageSize = n }
}

// Open parses s3://bucket/prefix or file:///abs/dir and returns the store and the
// key prefix inside it ("" or "prefix/").
func Open(ctx context.Context, rawURL string, cfg S3Config, opts ...Option) (Store, string, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, "", fmt.Errorf("store: parse %q: %w", rawURL, err)
	}
	switch u.Scheme {
	case "s3":
		if u.Host == "" {
			return nil, "", fmt.Errorf("store: %q names no bucket (want s3://bucket/prefix)", rawURL)
		}
		prefix := strings.Trim(u.Path, "/")
		if prefix != "" {
			prefix += "/"
		}
		s, err := newS3Store(ctx, u.Host, cfg, o)
		if err != nil {
			return nil, "", err
		}
		return s, prefix, nil
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, "", fmt.Errorf("store: %q is not a local path (want file:///absolute/dir)", rawURL)
		}
		if !strings.HasPrefix(u.Path, "/") {
			return nil, "", fmt.Errorf("store: %q is not an absolute path (want file:///absolute/dir)", rawURL)
		}
		s, err := newFileStore(u.Path)
		if err != nil {
			return nil, "", err
		}
		return s, "", nil
	default:
		return nil, "", fmt.Errorf("store: %q: unsupported scheme %q (want s3:// or file://)", rawURL, u.Scheme)
	}
}
