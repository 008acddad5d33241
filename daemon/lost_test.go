package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sinkd/sinkd/config"
)

// syncBuffer collects log lines written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLostSessionReplaysExactlyOnce loses the group session in the middle of
// a run: the broker answers one heartbeat with UNKNOWN_MEMBER_ID, as after a
// session timeout. Every file not yet committed must be dropped, the batches
// polled in the lost session ignored, and the partitions read again from the
// last manifest when the group hands them back: each record is committed
// exactly once, in the same process, without a restart.
func TestLostSessionReplaysExactlyOnce(t *testing.T) { testLostSession(t, "") }

// TestLostSessionReplaysExactlyOnceJSONLines: the same with the JSON-lines
// writer beside Parquet on the route: its Discard must drop what it holds, and
// its replay filter come back from the manifest, as the Parquet writer's do.
func TestLostSessionReplaysExactlyOnceJSONLines(t *testing.T) {
	testLostSession(t, `    writers:
      jsonlines: {destination: "file://%s/lines", path: "v={vendor_id}", event_time: {source: processing}, max_file_age: 300ms}
`)
}

// testLostSession runs the lost-session scenario; extraRoute (with %s for
// the test's directory) adds a writer to the route.
func testLostSession(t *testing.T, extraRoute string) {
	const (
		n     = 12_000
		first = 2_000 // committed before the session is lost
	)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	var armed, lostAnswers atomic.Int32
	unknownMember := func(req kmsg.Request) (kmsg.Response, error, bool) {
		if armed.Load() == 0 || !armed.CompareAndSwap(1, 0) {
			return nil, nil, false
		}
		lostAnswers.Add(1)
		switch req := req.(type) {
		case *kmsg.HeartbeatRequest:
			resp := kmsg.NewPtrHeartbeatResponse()
			resp.Version = req.Version
			resp.ErrorCode = kerr.UnknownMemberID.Code
			return resp, nil, true
		case *kmsg.ConsumerGroupHeartbeatRequest:
			resp := kmsg.NewPtrConsumerGroupHeartbeatResponse()
			resp.Version = req.Version
			resp.ErrorCode = kerr.UnknownMemberID.Code
			return resp, nil, true
		}
		return nil, nil, false
	}
	for _, key := range []kmsg.Key{kmsg.Heartbeat, kmsg.ConsumerGroupHeartbeat} {
		cluster.ControlKey(int16(key), func(req kmsg.Request) (kmsg.Response, error, bool) {
			cluster.KeepControl()
			return unknownMember(req)
		})
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	produce := func(from, to int) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic("in"))
		if err != nil {
			t.Error(err) // also called from the trickle's goroutine
			return
		}
		defer cl.Close()
		var recs []*kgo.Record
		for i := from; i < to; i++ {
			recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf(`{"trip_id":%d,"vendor_id":%d}`, i, i%3))})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Error(err)
		}
	}

	// Files roll after 300 ms without records and commit at the next
	// checkpoint. The rest is produced in a trickle after the first part is
	// committed, while the next heartbeat (at most 3 s away) is answered with
	// the error: the session is lost with committed files, closed files not
	// yet committed, and open files.
	dir := t.TempDir()
	yaml := fmt.Sprintf(`pipeline: t
http: {addr: "127.0.0.1:0"}
source: {kafka: {brokers: %s, topics: [in], group: g}}
schema:
  fields:
    - {name: trip_id, type: int64, required: true}
    - {name: vendor_id, type: int32}
routes:
  - name: r
    parquet:
      destination: file://%s/lake
      path: v={vendor_id}
      event_time: {source: processing}
      inactivity: 300ms
%s
checkpoint: {interval: 200ms}
dlq: {file: %s/dlq.jsonl}
`, strings.Join(cluster.ListenAddrs(), ","), dir, strings.ReplaceAll(extraRoute, "%s", dir), dir)
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	produce(0, first)

	p, stop, done := startRun(ctx, t, cfg, log)
	wait := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			select {
			case err := <-done:
				t.Fatalf("run ended while waiting for %s: %v", what, err)
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %s; log:\n%s", what, logs.String())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	wait("the first part committed", func() bool { return committedRows(t, dir) == first })

	armed.Store(1)
	trickle := make(chan struct{})
	go func() {
		defer close(trickle)
		for i := first; i < n; i += 50 {
			produce(i, i+50)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	wait("the session lost", func() bool { return strings.Contains(logs.String(), "partitions lost") })
	if p.Stats().Records >= n {
		t.Fatal("everything was read before the session was lost; the trickle is too short")
	}
	<-trickle
	wait("everything read again and caught up", func() bool {
		return p.Stats().Records > n && p.Caught(ctx)
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	if lostAnswers.Load() != 1 {
		t.Fatalf("the broker answered %d heartbeats with UNKNOWN_MEMBER_ID, want 1", lostAnswers.Load())
	}
	ids := committedIDs(t, dir)
	for i := 0; i < n; i++ {
		if c := ids[int64(i)]; c != 1 {
			t.Errorf("trip %d committed %d times", i, c)
		}
	}
	if len(ids) != n {
		t.Errorf("%d distinct trips committed, want %d", len(ids), n)
	}
	if extraRoute != "" {
		lines := committedLineIDs(t, dir)
		for i := 0; i < n; i++ {
			if c := lines[int64(i)]; c != 1 {
				t.Errorf("trip %d committed in %d JSON lines", i, c)
			}
		}
		if len(lines) != n {
			t.Errorf("%d distinct trips in JSON lines, want %d", len(lines), n)
		}
	}
	t.Logf("records read %d for %d produced", p.Stats().Records, n)
}

func committedRows(t *testing.T, dir string) int {
	n := 0
	for _, c := range committedIDs(t, dir) {
		n += c
	}
	return n
}

// committedIDs counts the trip ids in the committed Parquet files under dir.
func committedIDs(t *testing.T, dir string) map[int64]int {
	t.Helper()
	ids := map[int64]int{}
	err := filepath.Walk(filepath.Join(dir, "lake"), func(path string, info os.FileInfo, err error) error {
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil || !strings.HasSuffix(path, ".parquet") {
			return err
		}
		rows, err := parquet.ReadFile[struct {
			TripID int64 `parquet:"trip_id"`
		}](path)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for _, r := range rows {
			ids[r.TripID]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// committedLineIDs counts the trip ids in the committed JSON-lines files
// under dir.
func committedLineIDs(t *testing.T, dir string) map[int64]int {
	t.Helper()
	ids := map[int64]int{}
	err := filepath.Walk(filepath.Join(dir, "lines"), func(path string, info os.FileInfo, err error) error {
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil || !strings.HasSuffix(path, ".jsonl") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
			var v struct {
				TripID int64 `json:"trip_id"`
			}
			if err := json.Unmarshal(line, &v); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			ids[v.TripID]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}
