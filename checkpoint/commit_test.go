package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sinkd/sinkd/store"
)

func TestInstanceOf(t *testing.T) {
	for _, tt := range []struct {
		key, want string
		ok        bool
	}{
		{"lake/type=a/" + ObjectName("trips", "i-1", "e1", 7, "parquet"), "i-1", true},
		{"lines/type=a/" + ObjectName("my.prefix", "i2", "e1", 12, "jsonl"), "i2", true},
		{"lake/a.b.parquet", "", false},                // too few parts
		{"lake/trips.i1.e1.x.parquet", "", false},      // no sequence number
		{"lake/trips.i1.e1.000001.PARQUET", "", false}, // not an extension a writer gives
		{"lake/trips.i1.e1.000001", "", false},         // no extension
	} {
		got, ok := InstanceOf(tt.key)
		if got != tt.want || ok != tt.ok {
			t.Errorf("InstanceOf(%q) = %q, %v; want %q, %v", tt.key, got, ok, tt.want, tt.ok)
		}
	}
}

// A manifest written before entries had kinds lists bare uploads: it must
// still be re-applied, by the multipart committer, idempotently.
func TestOldManifestEntriesApplyAsMultipart(t *testing.T) {
	ctx := context.Background()
	dest := "file://" + t.TempDir() + "/lake"
	st, _, err := store.Open(ctx, dest, store.S3Config{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := st.CreateUpload(ctx, "f.parquet", nil)
	if err != nil {
		t.Fatal(err)
	}
	part, err := st.UploadPart(ctx, "f.parquet", id, 1, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	parts, _ := json.Marshal([]store.Part{part})
	old := `{"pipeline":"p","instance":"i","epoch":"e","seq":3,"created":"2026-01-01T00:00:00Z",` +
		`"uploads":[{"store":"` + dest + `","key":"f.parquet","upload_id":"` + id + `","parts":` + string(parts) + `,"rows":1,"bytes":5}],"partitions":{}}`
	var m Manifest
	if err := json.Unmarshal([]byte(old), &m); err != nil {
		t.Fatal(err)
	}
	c := &Coordinator{
		Committers: Committers{KindMultipart: Multipart{Stores: map[string]store.Store{dest: st}}},
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if err := c.Apply(ctx, &m); err != nil {
		t.Fatal(err)
	}
	body, err := st.Get(ctx, "f.parquet")
	if err != nil || string(body) != "hello" {
		t.Fatalf("after apply: %q, %v", body, err)
	}
	// Applying a second time (a restart re-applies the newest manifest)
	// succeeds and changes nothing.
	if err := (Committers{KindMultipart: Multipart{Stores: map[string]store.Store{dest: st}}}).Apply(ctx, m.Uploads[0]); err != nil {
		t.Fatalf("second apply: %v", err)
	}
}

func TestUnknownEntryKindIsAnError(t *testing.T) {
	err := Committers{KindMultipart: Multipart{}}.Apply(context.Background(), Entry{Kind: "iceberg-append"})
	if err == nil || !strings.Contains(err.Error(), "iceberg-append") {
		t.Fatalf("got %v, want an error naming the kind", err)
	}
}

// TestLostFileIsNamed: an entry whose upload is gone while no object has its
// key (the store lost the file after the manifest committed it) fails as
// ErrLost, with its key and rows in the message and without the retries a
// transient failure gets; an entry whose upload is gone because it was
// completed, or whose key holds another object, is not called lost.
func TestLostFileIsNamed(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name     string
		afterPut func(t *testing.T, st store.Store, key, id string, parts []store.Part)
		lost     bool
		ok       bool
		wrap     func(store.Store) store.Store
	}{
		{"aborted, no object", func(t *testing.T, st store.Store, key, id string, _ []store.Part) {
			if err := st.AbortUpload(ctx, key, id); err != nil {
				t.Fatal(err)
			}
		}, true, false, nil},
		{"completed already", func(t *testing.T, st store.Store, key, id string, parts []store.Part) {
			if err := st.CompleteUpload(ctx, key, id, parts); err != nil {
				t.Fatal(err)
			}
		}, false, true, nil},
		{"aborted, another object there", func(t *testing.T, st store.Store, key, id string, _ []store.Part) {
			if err := st.AbortUpload(ctx, key, id); err != nil {
				t.Fatal(err)
			}
			other, err := st.CreateUpload(ctx, key, nil)
			if err != nil {
				t.Fatal(err)
			}
			p, err := st.UploadPart(ctx, key, other, 1, []byte("other"))
			if err != nil {
				t.Fatal(err)
			}
			if err := st.CompleteUpload(ctx, key, other, []store.Part{p}); err != nil {
				t.Fatal(err)
			}
		}, false, false, nil},
		// A store that fails (a 503, a timeout) while the upload is intact
		// and no object is there yet: retried, not called lost.
		{"store failing once, no object yet", func(*testing.T, store.Store, string, string, []store.Part) {},
			false, true, func(st store.Store) store.Store { return &failingOnce{Store: st} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dest := "file://" + t.TempDir() + "/lake"
			st, _, err := store.Open(ctx, dest, store.S3Config{})
			if err != nil {
				t.Fatal(err)
			}
			key := "type=yellow/trips.i.e.000001.parquet"
			id, err := st.CreateUpload(ctx, key, nil)
			if err != nil {
				t.Fatal(err)
			}
			part, err := st.UploadPart(ctx, key, id, 1, []byte("hello"))
			if err != nil {
				t.Fatal(err)
			}
			tc.afterPut(t, st, key, id, []store.Part{part})
			m := &Manifest{Pipeline: "p", Instance: "i", Seq: 7, Uploads: []Entry{
				{Store: dest, Key: key, UploadID: id, Parts: []store.Part{part}, Rows: 140, Bytes: 5},
			}}
			var attempts int
			c := &Coordinator{
				Committers: Committers{KindMultipart: Multipart{Stores: map[string]store.Store{dest: st}}},
				Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
			}
			if tc.wrap != nil {
				c.Committers[KindMultipart] = Multipart{Stores: map[string]store.Store{dest: tc.wrap(st)}}
			}
			c.Committers[KindMultipart] = countingCommitter{c.Committers[KindMultipart], &attempts}
			began := time.Now()
			err = c.Apply(ctx, m)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("Apply = %v, want nil", err)
			case tc.ok:
				return
			case err == nil:
				t.Fatal("Apply succeeded")
			case errors.Is(err, ErrLost) != tc.lost:
				t.Fatalf("errors.Is(err, ErrLost) = %v, want %v: %v", !tc.lost, tc.lost, err)
			case !tc.lost:
				return
			}
			for _, want := range []string{Ref("i", 7), key, "140 rows", "guarantees.md"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
			if attempts != 1 || time.Since(began) > time.Second {
				t.Errorf("a lost file was tried %d times in %s, want once", attempts, time.Since(began))
			}
		})
	}
}

// failingOnce fails its first CompleteUpload the way a store that is down
// does, before touching the upload.
type failingOnce struct {
	store.Store
	failed bool
}

func (f *failingOnce) CompleteUpload(ctx context.Context, key, uploadID string, parts []store.Part) error {
	if !f.failed {
		f.failed = true
		return errors.New("store: complete: 503 Service Unavailable: SlowDown")
	}
	return f.Store.CompleteUpload(ctx, key, uploadID, parts)
}

// countingCommitter counts the applications it passes on.
type countingCommitter struct {
	Committer
	n *int
}

func (c countingCommitter) Apply(ctx context.Context, e Entry) error {
	*c.n++
	return c.Committer.Apply(ctx, e)
}
