//go:build integration

package e2e

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sinkd/sinkd/checkpoint"
)

// TestAcceptLostResumesWithoutTheLostFile: the store loses a file after the
// manifest that commits it (sinkd is killed just after a manifest that
// commits files, and one of them is deleted while it is down). The restarted
// instance does not resume past the file's records: it stays in recovery and
// its log names the file and the --accept-lost reference. Started once with
// that reference, it resumes: every other trip is in exactly one committed
// file, the lost file's trips in none, and no upload is left in progress.
func TestAcceptLostResumesWithoutTheLostFile(t *testing.T) {
	h := newHarness(t, "lost")
	h.static = true // sinkd's default: each restart takes the partitions back at once
	produced := h.produceAsync(30_000, 4, 0, 47, 3000)
	p := h.start("lost-a")
	// Checkpoints come every second: killed at once, the newest manifest is
	// the one that commits files.
	committing := regexp.MustCompile(`"msg":"checkpoint: manifest written".*"uploads":[1-9]`)
	if !p.waitLineMatching(committing, time.Minute) {
		t.Fatalf("no manifest committed a file; log tail:\n%s", tail(p.logFile.Name(), 20))
	}
	p.kill(t)

	ctx := context.Background()
	st, _ := h.store()
	manifests := checkpoint.Store{S: st, Prefix: h.prefix + "_sinkd/"}
	m, err := manifests.Latest(ctx, "lost-a")
	if err != nil || m == nil {
		t.Fatalf("the newest manifest: %v, %v", m, err)
	}
	if len(m.Uploads) == 0 {
		t.Fatalf("the newest manifest, %d, commits no file: the kill came more than a checkpoint interval late", m.Seq)
	}
	victim := m.Uploads[0]
	// The kill may have come before the completion: complete it as
	// recovery would, to learn its trips.
	if err := st.CompleteUpload(ctx, victim.Key, victim.UploadID, victim.Parts); err != nil {
		t.Fatal(err)
	}
	lost := map[int64]bool{}
	for _, id := range h.tripIDs(victim.Key) {
		lost[id] = true
	}
	if len(lost) == 0 {
		t.Fatalf("%s holds no rows", victim.Key)
	}
	if err := st.Delete(ctx, victim.Key); err != nil {
		t.Fatal(err)
	}
	t.Logf("deleted %s (%d trips) of manifest %d, which commits %d files", victim.Key, len(lost), m.Seq, len(m.Uploads))
	produced()

	ref := checkpoint.Ref("lost-a", m.Seq)
	blocked := h.start("lost-a")
	named := regexp.MustCompile(`--accept-lost (sinkd:v1:[^ "\\]+)`)
	deadline := time.After(time.Minute)
	for found := false; !found; {
		select {
		case line := <-blocked.lines:
			if strings.Contains(line, "sinkd running") {
				t.Fatalf("sinkd resumed past a lost file: %s", line)
			}
			if g := named.FindStringSubmatch(line); g != nil {
				if g[1] != ref || !strings.Contains(line, victim.Key) || !strings.Contains(line, "rows") {
					t.Fatalf("the recovery error names %s, want %s and the file %s: %s", g[1], ref, victim.Key, line)
				}
				found = true
			}
		case <-blocked.done:
			t.Fatalf("sinkd exited during recovery: %v; log tail:\n%s", blocked.err, tail(blocked.logFile.Name(), 20))
		case <-deadline:
			t.Fatalf("no recovery error naming --accept-lost within a minute; log tail:\n%s", tail(blocked.logFile.Name(), 20))
		}
	}
	blocked.kill(t)

	accepting := startSinkd(t, h.env, h.dir, "lost-a", h.config("lost-a"), "--accept-lost", ref)
	if !accepting.waitLine("a lost file is accepted", time.Minute) {
		t.Fatalf("no acceptance logged; log tail:\n%s", tail(accepting.logFile.Name(), 20))
	}
	accepting.waitRunning(t)
	h.waitDrained(3*time.Minute, accepting)
	accepting.stop(t, time.Minute)
	h.verifyWithout("trips", lost)
}
