package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// The local store keeps its bookkeeping beside the objects, in directories whose
// names are reserved: no key may start with ".sinkd-".
//
//	<root>/<key>                                    completed objects
//	<root>/.sinkd-uploads/<uploadID>/meta.json      an in-progress upload (key, initiated, meta)
//	<root>/.sinkd-uploads/<uploadID>/part-00001     its parts
//	<root>/.sinkd-uploads/.tmp/                     temp files; renamed or linked into place
//	<root>/.sinkd-objects/<key>.json                a completed upload's attributes (ETag, meta)
//
// Every object reaches its final name by one rename or link of a file that was
// fully written and fsynced first, so a crash never leaves a partial object
// under its key. An upload appears by renaming a complete directory into
// .sinkd-uploads and disappears by renaming it out before removal.
//
// The attributes file is what makes CompleteUpload idempotent once the upload
// directory is gone, as S3's HEAD does: it records the multipart ETag together
// with the size and modification time the object had when it was completed, so
// an object replaced since then (or an attributes file left stale by a crash)
// does not pass for the completed upload. Objects written with PutIfAbsent have
// no attributes file; Delete removes both.
//
// Empty directories left by Delete stay: removing them would race with a
// concurrent write creating a file inside them. Calls on the same upload are
// not serialised: the checkpoint protocol completes or aborts an upload from
// one goroutine at a time, and different uploads proceed in parallel.
const (
	reservedPrefix = ".sinkd-"
	uploadsDir     = ".sinkd-uploads"
	objectsDir     = ".sinkd-objects"
	tmpDirName     = ".tmp"
	uploadMetaName = "meta.json"
	// tmpMaxAge is how old a temp file must be before Open deletes it as a
	// crash leftover; a live writer finishes with its temp file long before.
	tmpMaxAge = 24 * time.Hour
)

type fileStore struct {
	root string
}

type uploadMeta struct {
	Key       string            `json:"key"`
	Initiated time.Time         `json:"initiated"`
	Meta      map[string]string `json:"meta,omitempty"`
}

type objectAttrs struct {
	ETag     string            `json:"etag"`
	UploadID string            `json:"upload_id"`
	Size     int64             `json:"size"`
	ModTime  int64             `json:"mod_time_unix_nano"`
	Meta     map[string]string `json:"meta,omitempty"`
}

func newFileStore(root string) (*fileStore, error) {
	s := &fileStore{root: filepath.Clean(root)}
	for _, dir := range []string{s.root, s.tmpDir(), filepath.Join(s.root, objectsDir)} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	if err := s.removeStaleTemps(time.Now().Add(-tmpMaxAge)); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *fileStore) tmpDir() string { return filepath.Join(s.root, uploadsDir, tmpDirName) }

func (s *fileStore) uploadDir(id string) string { return filepath.Join(s.root, uploadsDir, id) }

func (s *fileStore) attrsPath(key string) string {
	return filepath.Join(s.root, objectsDir, filepath.FromSlash(key)+".json")
}

func partName(number int32) string { return fmt.Sprintf("part-%05d", number) }

// validateKey rejects keys that could escape the root or hit the store's own
// bookkeeping, and keys a file system cannot hold as a file path.
func validateKey(key string) error {
	if key == "" {
		return errors.New("store: empty key")
	}
	if strings.HasPrefix(key, "/") {
		return fmt.Errorf("store: key %q is absolute", key)
	}
	if strings.ContainsRune(key, 0) {
		return fmt.Errorf("store: key %q contains NUL", key)
	}
	for i, seg := range strings.Split(key, "/") {
		switch {
		case seg == "" || seg == "." || seg == "..":
			return fmt.Errorf("store: key %q has an empty, \".\" or \"..\" segment", key)
		case i == 0 && strings.HasPrefix(seg, reservedPrefix):
			return fmt.Errorf("store: key %q starts with the reserved %q", key, reservedPrefix)
		}
	}
	return nil
}

func (s *fileStore) objectPath(key string) (string, error) {
	if err := validateKey(key); err != nil {
		return "", err
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

func (s *fileStore) PutIfAbsent(ctx context.Context, key string, body []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	final, err := s.objectPath(key)
	if err != nil {
		return err
	}
	tmp, err := s.writeTemp(body)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return fmt.Errorf("store: put %s: %w", key, err)
	}
	// link(2), unlike rename(2), fails when the name exists: the atomic
	// create-if-absent that S3's If-None-Match gives.
	if err := os.Link(tmp, final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("store: put %s: %w", key, ErrExists)
		}
		return fmt.Errorf("store: put %s: %w", key, err)
	}
	return syncDir(filepath.Dir(final))
}

func (s *fileStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	path, err := s.objectPath(key)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EISDIR) {
		return nil, fmt.Errorf("store: get %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: get %s: %w", key, err)
	}
	return data, nil
}

func (s *fileStore) List(ctx context.Context, prefix string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Walk only the deepest directory the prefix names in full.
	base := prefix[:strings.LastIndex(prefix, "/")+1]
	start := s.root
	if base != "" {
		if err := validateKey(strings.TrimSuffix(base, "/")); err != nil {
			return nil, err
		}
		start = filepath.Join(s.root, filepath.FromSlash(base))
	}
	var keys []string
	err := filepath.WalkDir(start, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			if filepath.Dir(path) == s.root && strings.HasPrefix(d.Name(), reservedPrefix) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(s.root, path)
		if err != nil {
			return err
		}
		if key := filepath.ToSlash(rel); strings.HasPrefix(key, prefix) {
			keys = append(keys, key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: list %s: %w", prefix, err)
	}
	sort.Strings(keys)
	return keys, nil
}

func (s *fileStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	path, err := s.objectPath(key)
	if err != nil {
		return err
	}
	err = os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil // like S3, deleting nothing succeeds
	}
	if err != nil {
		return fmt.Errorf("store: delete %s: %w", key, err)
	}
	if err := os.Remove(s.attrsPath(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: delete %s: %w", key, err)
	}
	return syncDir(filepath.Dir(path))
}

// metadata returns the user metadata stored with a completed upload (tests).
func (s *fileStore) metadata(_ context.Context, key string) (map[string]string, error) {
	data, err := os.ReadFile(s.attrsPath(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("store: metadata %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	var attrs objectAttrs
	if err := json.Unmarshal(data, &attrs); err != nil {
		return nil, err
	}
	return attrs.Meta, nil
}

// objectMode is the mode objects are created with, less the process's umask
// (0644 under the usual 022), as cp or aws s3 cp would leave them: the
// archive is for readers (DuckDB, Spark, a backup job) that often run as
// another user. os.CreateTemp's 0600 would hide it from them; an operator
// who wants it private sets the umask (systemd: UMask=0077).
const objectMode = 0o666

// createTemp creates a new temp file for an object: os.CreateTemp with
// objectMode instead of 0600.
func (s *fileStore) createTemp() (*os.File, error) {
	for range 100 {
		var b [8]byte
		rand.Read(b[:])
		f, err := os.OpenFile(filepath.Join(s.tmpDir(), "object-"+hex.EncodeToString(b[:])), os.O_RDWR|os.O_CREATE|os.O_EXCL, objectMode)
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
	return nil, fmt.Errorf("store: no unused temp file name in %s", s.tmpDir())
}

// writeTemp writes body to a new fsynced temp file and returns its path.
func (s *fileStore) writeTemp(body []byte) (string, error) {
	f, err := s.createTemp()
	if err != nil {
		return "", fmt.Errorf("store: %w", err)
	}
	_, werr := f.Write(body)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("store: write temp: %w", werr)
	}
	return f.Name(), nil
}

// replaceFile atomically replaces path with data.
func (s *fileStore) replaceFile(path string, data []byte) error {
	tmp, err := s.writeTemp(data)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

func (s *fileStore) removeStaleTemps(before time.Time) error {
	entries, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || info.ModTime().After(before) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.tmpDir(), e.Name())); err != nil {
			return fmt.Errorf("store: remove stale temp: %w", err)
		}
	}
	return nil
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, objectMode)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("store: write %s: %w", path, werr)
	}
	return nil
}

// syncDir makes a rename, link or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("store: sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("store: sync dir %s: %w", dir, err)
	}
	return nil
}

// lowerKeys matches S3, which keeps user metadata names in lower case.
func lowerKeys(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out
}
