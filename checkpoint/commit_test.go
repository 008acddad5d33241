package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
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
			dest, st := fileDestination(t)
			e := uploadOne(t, dest, st, "type=yellow/trips.i.e.000001.parquet")
			key := e.Key
			tc.afterPut(t, st, key, e.UploadID, e.Parts)
			m := &Manifest{Pipeline: "p", Instance: "i", Seq: 7, Uploads: []Entry{e}}
			applied := st
			if tc.wrap != nil {
				applied = tc.wrap(st)
			}
			var attempts int
			c := &Coordinator{
				Committers: Committers{KindMultipart: countingCommitter{Multipart{Stores: map[string]store.Store{dest: applied}}, &attempts}},
				Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
			}
			began := time.Now()
			err := c.Apply(ctx, m)
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

// fileDestination opens a destination in a directory of the test's own.
func fileDestination(t *testing.T) (string, store.Store) {
	t.Helper()
	dest := "file://" + t.TempDir() + "/lake"
	st, _, err := store.Open(context.Background(), dest, store.S3Config{})
	if err != nil {
		t.Fatal(err)
	}
	return dest, st
}

// uploadOne starts an upload of key with one part and returns the entry a
// manifest lists for it.
func uploadOne(t *testing.T, dest string, st store.Store, key string) Entry {
	t.Helper()
	ctx := context.Background()
	id, err := st.CreateUpload(ctx, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	part, err := st.UploadPart(ctx, key, id, 1, []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return Entry{Store: dest, Key: key, UploadID: id, Parts: []store.Part{part}, Rows: 140, Bytes: part.Size}
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

// TestAcceptLost: an operator who accepts the lost files of a manifest
// (sinkd run --accept-lost REF) gets sinkd past exactly those: recovery
// completes the manifest's other files, reports each accepted file once and
// carries nothing into the next manifest; an older manifest listing the same
// lost file is accepted too (a partition's state can come from it); a
// reference to a manifest that does not list the file accepts nothing.
func TestAcceptLost(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name       string
		acceptLost string
		wantLost   bool // Recover fails as ErrLost
	}{
		{"not accepted", "", true},
		{"accepted by the manifest that lists it", Ref("i", 7), false},
		{"accepted by an older manifest that lists it", Ref("i", 6), false},
		{"a manifest that does not list it accepts nothing", Ref("i", 5), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dest, st := fileDestination(t)
			lost := uploadOne(t, dest, st, "type=yellow/trips.i.e.000001.parquet")
			kept := uploadOne(t, dest, st, "type=green/trips.i.e.000002.parquet")
			if err := st.AbortUpload(ctx, lost.Key, lost.UploadID); err != nil {
				t.Fatal(err)
			}
			manifests := newStore(t)
			m5 := manifest("i", 5, "t/0")
			m6 := manifest("i", 6, "t/1")
			m6.Uploads = []Entry{lost}
			m7 := manifest("i", 7, "t/0")
			m7.Uploads = []Entry{lost, kept}
			for _, m := range []*Manifest{m5, m6, m7} {
				if err := manifests.Write(ctx, m); err != nil {
					t.Fatal(err)
				}
			}
			var accepted []string
			c := &Coordinator{
				Manifests: manifests, Instance: "i", Epoch: "e2",
				Committers: Committers{KindMultipart: Multipart{Stores: map[string]store.Store{dest: st}}},
				Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
				AcceptLost: tc.acceptLost,
				Lost:       func(e Entry) { accepted = append(accepted, e.Key) },
			}
			latest, _, err := c.Recover(ctx, nil)
			if tc.wantLost {
				if !errors.Is(err, ErrLost) {
					t.Fatalf("Recover = %v, want ErrLost", err)
				}
				if want := "--accept-lost " + Ref("i", 7); !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
				if len(accepted) != 0 {
					t.Errorf("accepted %v", accepted)
				}
				return
			}
			if err != nil {
				t.Fatalf("Recover: %v", err)
			}
			if latest == nil || latest.Seq != 7 {
				t.Fatalf("recovered from %+v, want manifest 7", latest)
			}
			if _, err := st.Get(ctx, kept.Key); err != nil {
				t.Errorf("the manifest's other file was not completed: %v", err)
			}
			if c.Carried() != 0 {
				t.Errorf("the next manifest carries %d entries, want none", c.Carried())
			}
			// t/1's state is in manifest 6 only, which lists the lost file too.
			state, err := c.State(ctx, Ref("i", 6), true, "t/1")
			if err != nil || state == nil {
				t.Fatalf("State of t/1 from manifest 6 = %v, %v", state, err)
			}
			if want := []string{lost.Key}; !slices.Equal(accepted, want) {
				t.Errorf("accepted %v, want %v (once, however many manifests list it)", accepted, want)
			}
		})
	}
}
