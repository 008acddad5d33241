package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func openFileStore(t *testing.T) (Store, string) {
	t.Helper()
	s, prefix, err := Open(testContext(t), "file://"+t.TempDir(), S3Config{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s, prefix
}

func TestFileStoreConformance(t *testing.T) {
	runConformance(t, openFileStore)
}

func TestValidateKey(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{"a", true},
		{"type=yellow/dt=2018-01-01/part-1.parquet", true},
		{"_sinkd/manifests/00000001.json", true},
		{"a/.sinkd-uploads/x", true}, // reserved only at the top
		{"..a/b..", true},
		{"", false},
		{"/etc/passwd", false},
		{"../escape", false},
		{"a/../../escape", false},
		{"a/./b", false},
		{"a//b", false},
		{"a/", false},
		{".sinkd-uploads/x", false},
		{".sinkd-objects", false},
		{"a\x00b", false},
	}
	for _, tt := range tests {
		if err := validateKey(tt.key); (err == nil) != tt.ok {
			t.Errorf("validateKey(%q) = %v, want ok=%v", tt.key, err, tt.ok)
		}
	}
}

func TestFileStoreRejectsBadKeysEverywhere(t *testing.T) {
	s, _ := openFileStore(t)
	ctx := testContext(t)
	for _, key := range []string{"../x", "/abs", ".sinkd-uploads/meta.json"} {
		if _, err := s.CreateUpload(ctx, key, nil); err == nil {
			t.Errorf("CreateUpload(%q) succeeded", key)
		}
		if err := s.PutIfAbsent(ctx, key, []byte("x")); err == nil {
			t.Errorf("PutIfAbsent(%q) succeeded", key)
		}
		if _, err := s.Get(ctx, key); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q) = %v, want a key error", key, err)
		}
		if err := s.Delete(ctx, key); err == nil {
			t.Errorf("Delete(%q) succeeded", key)
		}
	}
	if _, err := s.List(ctx, "../"); err == nil {
		t.Error(`List("../") succeeded`)
	}
	if err := s.AbortUpload(ctx, "k", "../../etc"); err != nil {
		t.Errorf("AbortUpload of a path-like id = %v, want nil (unknown upload)", err)
	}
}

// TestFileStoreCompleteResumesAfterCrash rebuilds the states a crash inside
// CompleteUpload can leave, and checks that a retried complete finishes the job.
func TestFileStoreCompleteResumesAfterCrash(t *testing.T) {
	body := payload(MinPartSize, 7)
	tail := payload(100, 8)
	tests := []struct {
		name  string
		crash func(t *testing.T, s *fileStore, key string)
	}{
		{"after the rename, before the attributes", func(t *testing.T, s *fileStore, key string) {
			if err := os.Remove(s.attrsPath(key)); err != nil {
				t.Fatal(err)
			}
		}},
		{"after the attributes, before the upload was removed", func(*testing.T, *fileStore, string) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := openFileStore(t)
			s := st.(*fileStore)
			ctx := testContext(t)
			key := "k/obj.parquet"
			id, parts := upload(t, s, key, nil, body, tail)
			// Keep a copy of the upload directory to put back after the complete.
			saved := filepath.Join(t.TempDir(), "saved")
			if err := os.CopyFS(saved, os.DirFS(s.uploadDir(id))); err != nil {
				t.Fatal(err)
			}
			if err := s.CompleteUpload(ctx, key, id, parts); err != nil {
				t.Fatalf("CompleteUpload: %v", err)
			}
			tt.crash(t, s, key)
			if err := os.CopyFS(s.uploadDir(id), os.DirFS(saved)); err != nil {
				t.Fatal(err)
			}
			if got := uploadKeys(t, s, ""); !slices.Equal(got, []string{key}) {
				t.Fatalf("uploads after the simulated crash = %v", got)
			}
			if err := s.CompleteUpload(ctx, key, id, parts); err != nil {
				t.Fatalf("CompleteUpload after the crash: %v", err)
			}
			if err := s.CompleteUpload(ctx, key, id, parts); err != nil {
				t.Fatalf("CompleteUpload once more: %v", err)
			}
			mustGet(t, s, key, append(body, tail...))
			if got := uploadKeys(t, s, ""); len(got) != 0 {
				t.Fatalf("uploads left = %v", got)
			}
		})
	}
}

func TestFileStoreCompleteNoticesATouchedObject(t *testing.T) {
	st, _ := openFileStore(t)
	s := st.(*fileStore)
	ctx := testContext(t)
	key := "touched"
	id, parts := upload(t, s, key, nil, payload(10, 1))
	if err := s.CompleteUpload(ctx, key, id, parts); err != nil {
		t.Fatalf("CompleteUpload: %v", err)
	}
	// Another writer replaced the object behind the store's back.
	if err := os.WriteFile(filepath.Join(s.root, key), payload(10, 2), 0o644); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(s.root, key), future, future); err != nil {
		t.Fatal(err)
	}
	if err := s.CompleteUpload(ctx, key, id, parts); err == nil {
		t.Fatal("CompleteUpload of a replaced object succeeded")
	}
}

// TestFileStoreHidesLeftovers checks that what a crash leaves behind (temp
// files, a half-built upload directory) is never listed, and that Open
// removes it once it is old.
func TestFileStoreHidesLeftovers(t *testing.T) {
	dir := t.TempDir()
	st, _, err := Open(testContext(t), "file://"+dir, S3Config{})
	if err != nil {
		t.Fatal(err)
	}
	s := st.(*fileStore)
	ctx := testContext(t)
	if err := s.PutIfAbsent(ctx, "visible", []byte("v")); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(s.tmpDir(), "object-old")
	fresh := filepath.Join(s.tmpDir(), "object-fresh")
	staging := filepath.Join(s.tmpDir(), "upload-half")
	for _, f := range []string{old, fresh} {
		if err := os.WriteFile(f, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	// An upload directory without meta.json, as an interrupted rename cannot
	// leave but a hand-made mess can.
	if err := os.Mkdir(s.uploadDir(newUploadID()), 0o755); err != nil {
		t.Fatal(err)
	}
	keys, err := s.List(ctx, "")
	if err != nil || !slices.Equal(keys, []string{"visible"}) {
		t.Fatalf("List = %v, %v; want [visible]", keys, err)
	}
	if ups, err := s.ListUploads(ctx, ""); err != nil || len(ups) != 0 {
		t.Fatalf("ListUploads = %v, %v; want none", ups, err)
	}

	long := time.Now().Add(-2 * tmpMaxAge)
	for _, f := range []string{old, staging} {
		if err := os.Chtimes(f, long, long); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := Open(ctx, "file://"+dir, S3Config{}); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]bool{old: false, staging: false, fresh: true} {
		_, err := os.Stat(f)
		if exists := err == nil; exists != want {
			t.Errorf("%s exists = %v after reopening, want %v", strings.TrimPrefix(f, dir), exists, want)
		}
	}
}

// TestFileStoreObjectMode: objects (written whole or completed from parts)
// get 0666 less the umask, as cp would leave them, so that readers running
// as another user can open the archive; a private umask keeps them private.
// os.CreateTemp alone made every object 0600 whatever the umask.
func TestFileStoreObjectMode(t *testing.T) {
	for _, tt := range []struct {
		umask int
		want  os.FileMode
	}{
		{0o022, 0o644},
		{0o027, 0o640},
		{0o077, 0o600},
	} {
		t.Run(fmt.Sprintf("umask %04o", tt.umask), func(t *testing.T) {
			old := syscall.Umask(tt.umask)
			defer syscall.Umask(old)
			root := t.TempDir()
			s, _, err := Open(testContext(t), "file://"+root, S3Config{})
			if err != nil {
				t.Fatal(err)
			}
			ctx := testContext(t)
			if err := s.PutIfAbsent(ctx, "m/put.json", []byte("{}")); err != nil {
				t.Fatal(err)
			}
			id, err := s.CreateUpload(ctx, "p/file.parquet", nil)
			if err != nil {
				t.Fatal(err)
			}
			part, err := s.UploadPart(ctx, "p/file.parquet", id, 1, []byte("rows"))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.CompleteUpload(ctx, "p/file.parquet", id, []Part{part}); err != nil {
				t.Fatal(err)
			}
			for _, key := range []string{"m/put.json", "p/file.parquet"} {
				info, err := os.Stat(filepath.Join(root, key))
				if err != nil {
					t.Fatal(err)
				}
				if got := info.Mode().Perm(); got != tt.want {
					t.Errorf("%s: mode %04o, want %04o", key, got, tt.want)
				}
			}
		})
	}
}
