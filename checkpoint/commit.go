package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/sinkd/sinkd/store"
)

// KindMultipart is the entry kind of an object-store multipart upload whose
// completion makes a file visible.
const KindMultipart = "multipart"

// ErrLost marks an entry whose upload can no longer be completed while no
// object holds its file: the store lost the file after a manifest committed
// it, and no retry brings it back.
var ErrLost = errors.New("the store lost a file a manifest commits")

// Committer applies the entries of one kind. Apply must be idempotent: an
// entry is applied again after every crash until a manifest no longer lists
// it, so applying one that is already applied succeeds and changes nothing.
type Committer interface {
	Apply(ctx context.Context, e Entry) error
}

// Committers maps an entry kind to its committer.
type Committers map[string]Committer

// Apply hands e to the committer of its kind.
func (c Committers) Apply(ctx context.Context, e Entry) error {
	kind := e.Kind
	if kind == "" {
		kind = KindMultipart
	}
	cm, ok := c[kind]
	if !ok {
		return fmt.Errorf("the manifest lists an entry of kind %q, which no committer of this build applies", kind)
	}
	return cm.Apply(ctx, e)
}

// Multipart completes multipart uploads in the stores the configuration
// names, by destination URL.
type Multipart struct {
	Stores map[string]store.Store
}

// Apply completes one upload; the stores make completing a completed upload a
// success. An upload that cannot be completed while no object has its key is
// ErrLost: aborted by a lifecycle rule or another process, or lost by a store
// that does not complete uploads atomically (docs/guarantees.md).
func (m Multipart) Apply(ctx context.Context, e Entry) error {
	s, ok := m.Stores[e.Store]
	if !ok {
		return fmt.Errorf("the manifest names destination %s, which this configuration does not have", e.Store)
	}
	err := s.CompleteUpload(ctx, e.Key, e.UploadID, e.Parts)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: upload %s of %s (%d rows) can no longer be completed and no object is there: %w", ErrLost, e.UploadID, e.Key, e.Rows, err)
	}
	return err
}

// ObjectName is the name of a data file a writer uploads:
// <prefix>.<instance>.<epoch>.<seq>.<ext>. Recovery finds the files of an
// instance by it (InstanceOf), whatever writer made them.
func ObjectName(prefix, instance, epoch string, seq uint64, ext string) string {
	return fmt.Sprintf("%s.%s.%s.%06d.%s", prefix, instance, epoch, seq, ext)
}

// InstanceOf returns the instance a data file key belongs to, from its name
// (ObjectName); ok is false for other keys.
func InstanceOf(key string) (string, bool) {
	name := key[strings.LastIndexByte(key, '/')+1:]
	i := strings.LastIndexByte(name, '.')
	if i < 0 || !isExt(name[i+1:]) {
		return "", false
	}
	parts := strings.Split(name[:i], ".")
	if len(parts) < 4 {
		return "", false
	}
	if _, err := strconv.Atoi(parts[len(parts)-1]); err != nil {
		return "", false
	}
	return parts[len(parts)-3], true
}

// isExt accepts the extensions writers give their files: lower-case letters
// and digits, such as parquet or jsonl.
func isExt(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
