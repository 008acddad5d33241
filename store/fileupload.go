// The local store's multipart uploads (create, part, complete, abort,
// list); objects and the on-disk layout are in file.go.

package store

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// validUploadID keeps upload ids to the hex names CreateUpload makes, so that
// an id can never name a path outside .sinkd-uploads.
func validUploadID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

func newUploadID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *fileStore) CreateUpload(ctx context.Context, key string, meta map[string]string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := validateKey(key); err != nil {
		return "", err
	}
	m := uploadMeta{Key: key, Initiated: time.Now().UTC(), Meta: lowerKeys(meta)}
	data, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("store: %w", err)
	}
	staging, err := os.MkdirTemp(s.tmpDir(), "upload-")
	if err != nil {
		return "", fmt.Errorf("store: create upload: %w", err)
	}
	defer os.RemoveAll(staging) // a no-op once renamed into place
	if err := writeSynced(filepath.Join(staging, uploadMetaName), data); err != nil {
		return "", err
	}
	if err := syncDir(staging); err != nil {
		return "", err
	}
	id := newUploadID()
	if err := os.Rename(staging, s.uploadDir(id)); err != nil {
		return "", fmt.Errorf("store: create upload: %w", err)
	}
	if err := syncDir(filepath.Join(s.root, uploadsDir)); err != nil {
		return "", err
	}
	return id, nil
}

// readUpload returns the upload's metadata, or an error wrapping ErrNotFound
// when no such upload is in progress for key (S3's NoSuchUpload).
func (s *fileStore) readUpload(key, id string) (uploadMeta, error) {
	var m uploadMeta
	if !validUploadID(id) {
		return m, fmt.Errorf("store: upload %q of %s: %w", id, key, ErrNotFound)
	}
	data, err := os.ReadFile(filepath.Join(s.uploadDir(id), uploadMetaName))
	if errors.Is(err, fs.ErrNotExist) {
		return m, fmt.Errorf("store: upload %s of %s: %w", id, key, ErrNotFound)
	}
	if err != nil {
		return m, fmt.Errorf("store: %w", err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("store: upload %s: corrupt %s: %w", id, uploadMetaName, err)
	}
	if m.Key != key {
		return m, fmt.Errorf("store: upload %s is for %s, not %s: %w", id, m.Key, key, ErrNotFound)
	}
	return m, nil
}

func (s *fileStore) UploadPart(ctx context.Context, key, uploadID string, number int32, body []byte) (Part, error) {
	if err := ctx.Err(); err != nil {
		return Part{}, err
	}
	if number < 1 || number > 10000 {
		return Part{}, fmt.Errorf("store: part number %d outside 1..10000", number)
	}
	if _, err := s.readUpload(key, uploadID); err != nil {
		return Part{}, err
	}
	tmp, err := s.writeTemp(body)
	if err != nil {
		return Part{}, err
	}
	defer os.Remove(tmp)
	// An abort that renamed the upload away in the meantime makes this fail
	// with ENOENT, like S3's NoSuchUpload.
	if err := os.Rename(tmp, filepath.Join(s.uploadDir(uploadID), partName(number))); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Part{}, fmt.Errorf("store: upload %s of %s: %w", uploadID, key, ErrNotFound)
		}
		return Part{}, fmt.Errorf("store: upload part: %w", err)
	}
	if err := syncDir(s.uploadDir(uploadID)); err != nil {
		return Part{}, err
	}
	return Part{Number: number, ETag: contentETag(body), Size: int64(len(body))}, nil
}

func (s *fileStore) CompleteUpload(ctx context.Context, key, uploadID string, parts []Part) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	final, err := s.objectPath(key)
	if err != nil {
		return err
	}
	if err := checkParts(parts); err != nil {
		return err
	}
	want, err := multipartETag(parts)
	if err != nil {
		return err
	}
	meta, err := s.readUpload(key, uploadID)
	if errors.Is(err, ErrNotFound) {
		return s.checkCompleted(key, uploadID, want)
	}
	if err != nil {
		return err
	}

	tmp, err := s.concatParts(uploadID, parts)
	if err != nil {
		if _, rerr := s.readUpload(key, uploadID); errors.Is(rerr, ErrNotFound) {
			return s.checkCompleted(key, uploadID, want) // completed or aborted meanwhile
		}
		if errors.Is(err, ErrNotFound) {
			if _, serr := os.Stat(final); serr == nil {
				// A part is missing, but the key has an object: not a lost file.
				return fmt.Errorf("store: complete %s: %v", key, err)
			}
		}
		return fmt.Errorf("store: complete %s: %w", key, err)
	}
	defer os.Remove(tmp) // a no-op once renamed into place
	info, err := os.Stat(tmp)
	if err != nil {
		return fmt.Errorf("store: complete %s: %w", key, err)
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return fmt.Errorf("store: complete %s: %w", key, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("store: complete %s: %w", key, err)
	}
	if err := syncDir(filepath.Dir(final)); err != nil {
		return err
	}
	attrs, err := json.Marshal(objectAttrs{
		ETag: want, UploadID: uploadID, Size: info.Size(), ModTime: info.ModTime().UnixNano(), Meta: meta.Meta,
	})
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := s.replaceFile(s.attrsPath(key), attrs); err != nil {
		return err
	}
	// Until the upload directory is gone a retry redoes the whole complete,
	// which rewrites the same bytes; after, the attributes answer it.
	return s.removeUpload(uploadID)
}

// concatParts writes the parts, checked against their ETags and S3's minimum
// part size, into one fsynced temp file and returns its path.
func (s *fileStore) concatParts(uploadID string, parts []Part) (string, error) {
	out, err := s.createTemp()
	if err != nil {
		return "", err
	}
	ok := false
	defer func() {
		if !ok {
			out.Close()
			os.Remove(out.Name())
		}
	}()
	for i, p := range parts {
		size, etag, err := appendPart(out, filepath.Join(s.uploadDir(uploadID), partName(p.Number)))
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("part %d was not uploaded to %s: %w", p.Number, uploadID, ErrNotFound)
		}
		if err != nil {
			return "", err
		}
		if unquoteETag(etag) != unquoteETag(p.ETag) {
			return "", fmt.Errorf("part %d has ETag %s, not the %s given", p.Number, etag, p.ETag)
		}
		if size < MinPartSize && i < len(parts)-1 {
			return "", fmt.Errorf("part %d is %d bytes, under the %d bytes every part but the last needs", p.Number, size, MinPartSize)
		}
	}
	if err := out.Sync(); err != nil {
		return "", err
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	ok = true
	return out.Name(), nil
}

func appendPart(out io.Writer, path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := md5.New()
	n, err := io.Copy(io.MultiWriter(out, h), f)
	if err != nil {
		return 0, "", err
	}
	return n, `"` + hex.EncodeToString(h.Sum(nil)) + `"`, nil
}

// checkCompleted answers a complete whose upload is gone: nil if the object
// under key is the one those parts made.
func (s *fileStore) checkCompleted(key, uploadID, want string) error {
	info, err := os.Stat(filepath.Join(s.root, filepath.FromSlash(key)))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: complete %s: upload %s is gone and the object does not exist: %w", key, uploadID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("store: complete %s: %w", key, err)
	}
	var attrs objectAttrs
	data, err := os.ReadFile(s.attrsPath(key))
	if err == nil {
		err = json.Unmarshal(data, &attrs)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: complete %s: attributes: %w", key, err)
	}
	if attrs.ETag != want || attrs.Size != info.Size() || attrs.ModTime != info.ModTime().UnixNano() {
		return fmt.Errorf("store: complete %s: upload %s is gone and the object there is not the one its parts make (multipart ETag %s)", key, uploadID, want)
	}
	return nil
}

func (s *fileStore) AbortUpload(ctx context.Context, key, uploadID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := s.readUpload(key, uploadID); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	return s.removeUpload(uploadID)
}

// removeUpload renames the upload directory out of .sinkd-uploads, so that it
// disappears at once, then deletes it.
func (s *fileStore) removeUpload(uploadID string) error {
	doomed := filepath.Join(s.tmpDir(), "removed-"+uploadID)
	if err := os.Rename(s.uploadDir(uploadID), doomed); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("store: remove upload %s: %w", uploadID, err)
	}
	if err := syncDir(filepath.Join(s.root, uploadsDir)); err != nil {
		return err
	}
	if err := os.RemoveAll(doomed); err != nil {
		return fmt.Errorf("store: remove upload %s: %w", uploadID, err)
	}
	return nil
}

func (s *fileStore) ListUploads(ctx context.Context, prefix string) ([]Upload, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Join(s.root, uploadsDir))
	if err != nil {
		return nil, fmt.Errorf("store: list uploads: %w", err)
	}
	var uploads []Upload
	for _, e := range entries {
		if !e.IsDir() || !validUploadID(e.Name()) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(s.uploadDir(e.Name()), uploadMetaName))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed while we listed
		}
		if err != nil {
			return nil, fmt.Errorf("store: list uploads: %w", err)
		}
		var m uploadMeta
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("store: list uploads: corrupt %s of %s: %w", uploadMetaName, e.Name(), err)
		}
		if strings.HasPrefix(m.Key, prefix) {
			uploads = append(uploads, Upload{Key: m.Key, UploadID: e.Name(), Initiated: m.Initiated})
		}
	}
	// S3's order: by key, then by initiation time.
	sort.Slice(uploads, func(i, j int) bool {
		if uploads[i].Key != uploads[j].Key {
			return uploads[i].Key < uploads[j].Key
		}
		return uploads[i].Initiated.Before(uploads[j].Initiated)
	})
	return uploads, nil
}
