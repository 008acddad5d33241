package checkpoint

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"

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
