package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"
)

// openFunc gives a conformance case a store and a key prefix of its own.
type openFunc func(t *testing.T) (Store, string)

// metadataReader is implemented by both stores for these tests: the Store
// interface has no HEAD, but metadata must round-trip.
type metadataReader interface {
	metadata(ctx context.Context, key string) (map[string]string, error)
}

// payload is n deterministic bytes that differ with seed, so that parts and
// objects cannot be mistaken for one another.
func payload(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31) ^ seed
	}
	return b
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // hang detection only
	t.Cleanup(cancel)
	return ctx
}

// upload runs a whole multipart upload of bodies (one per part) without completing it.
func upload(t *testing.T, s Store, key string, meta map[string]string, bodies ...[]byte) (string, []Part) {
	t.Helper()
	ctx := testContext(t)
	id, err := s.CreateUpload(ctx, key, meta)
	if err != nil {
		t.Fatalf("CreateUpload(%s): %v", key, err)
	}
	var parts []Part
	for i, body := range bodies {
		p, err := s.UploadPart(ctx, key, id, int32(i+1), body)
		if err != nil {
			t.Fatalf("UploadPart(%s, %d): %v", key, i+1, err)
		}
		if p.Number != int32(i+1) || p.Size != int64(len(body)) || p.ETag == "" {
			t.Fatalf("UploadPart(%s, %d) = %+v", key, i+1, p)
		}
		parts = append(parts, p)
	}
	return id, parts
}

func mustGet(t *testing.T, s Store, key string, want []byte) {
	t.Helper()
	got, err := s.Get(testContext(t), key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%s) = %d bytes, want %d bytes (equal: false)", key, len(got), len(want))
	}
}

func mustNotFound(t *testing.T, s Store, key string) {
	t.Helper()
	if _, err := s.Get(testContext(t), key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(%s) error = %v, want ErrNotFound", key, err)
	}
}

func uploadKeys(t *testing.T, s Store, prefix string) []string {
	t.Helper()
	ups, err := s.ListUploads(testContext(t), prefix)
	if err != nil {
		t.Fatalf("ListUploads(%s): %v", prefix, err)
	}
	var keys []string
	for _, u := range ups {
		if u.UploadID == "" || u.Initiated.IsZero() {
			t.Fatalf("ListUploads(%s) returned %+v", prefix, u)
		}
		keys = append(keys, u.Key)
	}
	slices.Sort(keys)
	return keys
}

// runConformance is the behaviour both stores must share.
func runConformance(t *testing.T, open openFunc) {
	big1, big2 := payload(MinPartSize, 1), payload(MinPartSize+17, 2)
	small := payload(1000, 3)

	cases := []struct {
		name string
		run  func(t *testing.T, s Store, p string)
	}{
		{"multipart round trip with metadata", func(t *testing.T, s Store, p string) {
			ctx := testContext(t)
			key := p + "type=yellow/dt=2018-01-01/a.parquet"
			meta := map[string]string{"instance": "i-1", "epoch": "7"}
			id, parts := upload(t, s, key, meta, big1, big2, small)
			if got := uploadKeys(t, s, p); !slices.Equal(got, []string{key}) {
				t.Fatalf("in-progress uploads = %v, want [%s]", got, key)
			}
			if keys, err := s.List(ctx, p); err != nil || len(keys) != 0 {
				t.Fatalf("List before complete = %v, %v; want nothing", keys, err)
			}
			if err := s.CompleteUpload(ctx, key, id, parts); err != nil {
				t.Fatalf("CompleteUpload: %v", err)
			}
			mustGet(t, s, key, slices.Concat(big1, big2, small))
			if keys, err := s.List(ctx, p); err != nil || !slices.Equal(keys, []string{key}) {
				t.Fatalf("List after complete = %v, %v; want [%s]", keys, err, key)
			}
			if got := uploadKeys(t, s, p); len(got) != 0 {
				t.Fatalf("in-progress uploads after complete = %v", got)
			}
			got, err := s.(metadataReader).metadata(ctx, key)
			if err != nil || !maps.Equal(got, meta) {
				t.Fatalf("metadata = %v, %v; want %v", got, err, meta)
			}
		}},
		{"complete twice succeeds twice", func(t *testing.T, s Store, p string) {
			ctx := testContext(t)
			key := p + "twice.parquet"
			id, parts := upload(t, s, key, nil, big1, small)
			for i := range 2 {
				if err := s.CompleteUpload(ctx, key, id, parts); err != nil {
					t.Fatalf("CompleteUpload #%d: %v", i+1, err)
				}
			}
			mustGet(t, s, key, slices.Concat(big1, small))
		}},
		{"complete of a replaced object fails", func(t *testing.T, s Store, p string) {
			ctx := testContext(t)
			key := p + "replaced.parquet"
			idA, partsA := upload(t, s, key, nil, small)
			if err := s.CompleteUpload(ctx, key, idA, partsA); err != nil {
				t.Fatalf("CompleteUpload A: %v", err)
			}
			other := payload(2000, 9)
			idB, partsB := upload(t, s, key, nil, other)
			if err := s.CompleteUpload(ctx, key, idB, partsB); err != nil {
				t.Fatalf("CompleteUpload B: %v", err)
			}
			err := s.CompleteUpload(ctx, key, idA, partsA)
			if err == nil || errors.Is(err, ErrNotFound) {
				t.Fatalf("CompleteUpload A again = %v, want an ETag mismatch", err)
			}
			mustGet(t, s, key, other)
		}},
		{"complete after abort fails", func(t *testing.T, s Store, p string) {
			ctx := testContext(t)
			key := p + "aborted.parquet"
			id, parts := upload(t, s, key, nil, small)
			if err := s.AbortUpload(ctx, key, id); err != nil {
				t.Fatalf("AbortUpload: %v", err)
			}
			if err := s.CompleteUpload(ctx, key, id, parts); !errors.Is(err, ErrNotFound) {
				t.Fatalf("CompleteUpload after abort = %v, want ErrNotFound", err)
			}
			mustNotFound(t, s, key)
		}},
		{"abort twice succeeds twice", func(t *testing.T, s Store, p string) {
			ctx := testContext(t)
			key := p + "abort-twice.parquet"
			id, _ := upload(t, s, key, nil, small)
			for i := range 2 {
				if err := s.AbortUpload(ctx, key, id); err != nil {
					t.Fatalf("AbortUpload #%d: %v", i+1, err)
				}
			}
			if got := uploadKeys(t, s, p); len(got) != 0 {
				t.Fatalf("in-progress uploads after abort = %v", got)
			}
		}},
		{"upload part to an aborted upload fails", func(t *testing.T, s Store, p string) {
			ctx := testContext(t)
			key := p + "late-part.parquet"
			id, _ := upload(t, s, key, nil)
			if err := s.AbortUpload(ctx, key, id); err != nil {
				t.Fatalf("AbortUpload: %v", err)
			}
			if _, err := s.UploadPart(ctx, key, id, 1, small); !errors.Is(err, ErrNotFound) {
				t.Fatalf("UploadPart after abort = %v, want ErrNotFound", err)
			}
		}},
		{"wrong part ETag publishes nothing", func(t *testing.T, s Store, p string) {
			ctx := testContext(t)
			key := p + "bad-etag.parquet"
			id, parts := upload(t, s, key, nil, small)
			bad := []Part{{Number: 1, ETag: contentETag(payload(1000, 4)), Size: 1000}}
			if err := s.CompleteUpload(ctx, key, id, bad); err == nil {
				t.Fatal("CompleteUpload with a wrong ETag succeeded")
			} else if errors.Is(err, ErrNotFound) {
				t.Fatalf("CompleteUpload with a wrong ETag = %v, want an error that does not call the file gone", err)
			}
			mustNotFound(t, s, key)
			if err := s.CompleteUpload(ctx, key, id, parts); err != nil {
				t.Fatalf("CompleteUpload with the right ETag after a failed one: %v", err)
			}
			mustGet(t, s, key, small)
		}},
		{"complete naming a part the upload lacks is not found", func(t *testing.T, s Store, p string) {
			ctx := testContext(t)
			key := p + "missing-part.parquet"
			id, parts := upload(t, s, key, nil, small)
			absent := []Part{{Number: 2, ETag: parts[0].ETag, Size: parts[0].Size}}
			if err := s.CompleteUpload(ctx, key, id, absent); !errors.Is(err, ErrNotFound) {
				t.Fatalf("CompleteUpload naming part 2 of an upload with only part 1 = %v, want ErrNotFound", err)
			}
			mustNotFound(t, s, key)
			if err := s.CompleteUpload(ctx, key, id, parts); err != nil {
				t.Fatalf("CompleteUpload with its real part after a failed one: %v", err)
			}
			mustGet(t, s, key, small)
		}},
		{"a part the upload lacks, with another object at the key, is not called gone", func(t *testing.T, s Store, p string) {
			ctx := testContext(t)
			key := p + "missing-part-replaced.parquet"
			other := payload(2000, 9)
			idB, partsB := upload(t, s, key, nil, other)
			if err := s.CompleteUpload(ctx, key, idB, partsB); err != nil {
				t.Fatalf("CompleteUpload of the other object: %v", err)
			}
			id, parts := upload(t, s, key, nil, small)
			absent := []Part{{Number: 2, ETag: parts[0].ETag, Size: parts[0].Size}}
			if err := s.CompleteUpload(ctx, key, id, absent); err == nil || errors.Is(err, ErrNotFound) {
				t.Fatalf("CompleteUpload naming a missing part while another object has the key = %v, want an error that does not call the file gone", err)
			}
			mustGet(t, s, key, other)
			if err := s.AbortUpload(ctx, key, id); err != nil {
				t.Fatalf("AbortUpload: %v", err)
			}
		}},
		{"small part before the last is rejected", func(t *testing.T, s Store, p string) {
			ctx := testContext(t)
			key := p + "too-small.parquet"
			id, parts := upload(t, s, key, nil, small, small)
			if err := s.CompleteUpload(ctx, key, id, parts); err == nil {
				t.Fatal("CompleteUpload with a small first part succeeded")
			}
			mustNotFound(t, s, key)
			if err := s.AbortUpload(ctx, key, id); err != nil {
				t.Fatalf("AbortUpload: %v", err)
			}
		}},
		{"re-uploaded part replaces the first", func(t *testing.T, s Store, p string) {
			ctx := testContext(t)
			key := p + "reupload.parquet"
			id, _ := upload(t, s, key, nil, small)
			second := payload(1500, 5)
			part, err := s.UploadPart(ctx, key, id, 1, second)
			if err != nil {
				t.Fatalf("UploadPart again: %v", err)
			}
			if err := s.CompleteUpload(ctx, key, id, []Part{part}); err != nil {
				t.Fatalf("CompleteUpload: %v", err)
			}
			mustGet(t, s, key, second)
		}},
		{"list uploads sees only the prefix", func(t *testing.T, s Store, p string) {
			ctx := testContext(t)
			a1, a2, b1 := p+"a/1.parquet", p+"a/2.parquet", p+"b/1.parquet"
			var ids []string
			for _, key := range []string{a1, b1, a2} {
				id, _ := upload(t, s, key, nil)
				ids = append(ids, id)
			}
			if got := uploadKeys(t, s, p+"a/"); !slices.Equal(got, []string{a1, a2}) {
				t.Fatalf("ListUploads(a/) = %v, want [%s %s]", got, a1, a2)
			}
			if got := uploadKeys(t, s, p); !slices.Equal(got, []string{a1, a2, b1}) {
				t.Fatalf("ListUploads(all) = %v", got)
			}
			for i, key := range []string{a1, b1, a2} {
				if err := s.AbortUpload(ctx, key, ids[i]); err != nil {
					t.Fatalf("AbortUpload: %v", err)
				}
			}
		}},
		{"put if absent keeps the first body", func(t *testing.T, s Store, p string) {
			ctx := testContext(t)
			key := p + "_sinkd/manifests/00000001.json"
			first, second := []byte(`{"checkpoint":1}`), []byte(`{"checkpoint":1,"other":true}`)
			if err := s.PutIfAbsent(ctx, key, first); err != nil {
				t.Fatalf("PutIfAbsent #1: %v", err)
			}
			if err := s.PutIfAbsent(ctx, key, second); !errors.Is(err, ErrExists) {
				t.Fatalf("PutIfAbsent #2 = %v, want ErrExists", err)
			}
			mustGet(t, s, key, first)
		}},
		{"get of a missing key is not found", func(t *testing.T, s Store, p string) {
			mustNotFound(t, s, p+"missing/object")
		}},
		{"delete", func(t *testing.T, s Store, p string) {
			ctx := testContext(t)
			key := p + "doomed"
			if err := s.PutIfAbsent(ctx, key, small); err != nil {
				t.Fatalf("PutIfAbsent: %v", err)
			}
			for i := range 2 {
				if err := s.Delete(ctx, key); err != nil {
					t.Fatalf("Delete #%d: %v", i+1, err)
				}
			}
			mustNotFound(t, s, key)
			if err := s.PutIfAbsent(ctx, key, big1[:10]); err != nil {
				t.Fatalf("PutIfAbsent after delete: %v", err)
			}
			mustGet(t, s, key, big1[:10])
		}},
		{"list is sorted, complete and string-prefixed", func(t *testing.T, s Store, p string) {
			ctx := testContext(t)
			var want []string
			for i := range 23 {
				want = append(want, fmt.Sprintf("%sl/a/%02d", p, 22-i))
			}
			want = append(want, p+"l/ab", p+"l/a-b/c/d")
			for _, key := range want {
				if err := s.PutIfAbsent(ctx, key, []byte(key)); err != nil {
					t.Fatalf("PutIfAbsent(%s): %v", key, err)
				}
			}
			if err := s.PutIfAbsent(ctx, p+"l/b", nil); err != nil {
				t.Fatalf("PutIfAbsent: %v", err)
			}
			slices.Sort(want)
			got, err := s.List(ctx, p+"l/a")
			if err != nil || !slices.Equal(got, want) {
				t.Fatalf("List(l/a) = %v, %v\nwant %v", got, err, want)
			}
			got, err = s.List(ctx, p+"l/a/0")
			if err != nil || len(got) != 10 {
				t.Fatalf("List(l/a/0) = %v, %v; want 10 keys", got, err)
			}
			got, err = s.List(ctx, p+"nothing/")
			if err != nil || len(got) != 0 {
				t.Fatalf("List(nothing/) = %v, %v", got, err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, p := open(t)
			tc.run(t, s, p)
		})
	}
}
