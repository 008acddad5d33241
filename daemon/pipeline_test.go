package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sinkd/sinkd/config"
)

// runInProcess runs the real pipeline (the code of `sinkd run`) on an
// embedded broker until every record is processed, then drains it.
func runInProcess(t testing.TB, yaml string, records []*kgo.Record) *Pipeline {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic("in"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Producing stamps a record (topic, partition, offset, context): send
	// copies, so that a caller may run the same records again.
	fresh := make([]*kgo.Record, len(records))
	for i, r := range records {
		fresh[i] = &kgo.Record{Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: r.Timestamp}
	}
	if err := cl.ProduceSync(ctx, fresh...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	cfg, err := config.Parse("test.yaml", []byte(strings.ReplaceAll(yaml, "BROKERS", strings.Join(cluster.ListenAddrs(), ","))))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := runUntilCaught(ctx, cfg, log, int64(len(records)), 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("pipeline did not catch up in time")
	}
	return p
}

// startRun runs the pipeline (the code of `sinkd run`) in the background and
// returns it once it is ready, with what stops it and what reports run's
// result.
func startRun(ctx context.Context, t testing.TB, cfg *config.Config, log *slog.Logger) (*Pipeline, context.CancelFunc, <-chan error) {
	t.Helper()
	runCtx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	started := make(chan *Pipeline, 1)
	done := make(chan error, 1)
	go func() { done <- run(runCtx, cfg, log, options{}, func(p *Pipeline) { started <- p }) }()
	select {
	case p := <-started:
		return p, stop, done
	case err := <-done:
		t.Fatalf("run ended before it was ready: %v", err)
	case <-ctx.Done():
		t.Fatal("the pipeline did not get ready")
	}
	return nil, nil, nil
}

type letter struct {
	Stage, Class, Message string
	Key                   []byte `json:"key_b64"`
}

func readLetters(t *testing.T, path string) []letter {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []letter
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var l letter
		if err := json.Unmarshal(line, &l); err != nil {
			t.Fatalf("bad letter %s: %v", line, err)
		}
		out = append(out, l)
	}
	return out
}

func countRows(t *testing.T, dir string) (rows int64, files int) {
	t.Helper()
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || !strings.HasSuffix(path, ".parquet") {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		pf, err := parquet.OpenFile(f, info.Size())
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		rows += pf.NumRows()
		files++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rows, files
}

// TestBucketAndTimeFailuresAreDeadLettered: a record whose bucket cannot be
// computed (a missing field in the path, a missing event time) or whose time
// does not parse reaches the dead-letter sink with its stage and reason, and
// the run goes on with the rest.
func TestBucketAndTimeFailuresAreDeadLettered(t *testing.T) {
	dir := t.TempDir()
	yaml := fmt.Sprintf(`pipeline: t
http: {addr: "127.0.0.1:0"}
source: {kafka: {brokers: BROKERS, topics: [in], group: g}}
schema:
  fields:
    - {name: trip_id, type: int64, required: true}
    - {name: vendor_id, type: int32}
    - {name: pickup_datetime, type: timestamp}
routes:
  - name: r
    parquet:
      destination: file://%[1]s/lake
      path: v={vendor_id}/dt={pickup_datetime:yyyy-MM-dd}
      event_time: {field: pickup_datetime}
checkpoint: {interval: 200ms}
dlq: {file: %[1]s/dlq.jsonl}
`, dir)
	var recs []*kgo.Record
	add := func(n int, format string) {
		for i := 0; i < n; i++ {
			id := len(recs) + 1
			recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprint(id)), Value: []byte(fmt.Sprintf(format, id))})
		}
	}
	add(100, `{"trip_id":%d,"vendor_id":2,"pickup_datetime":"2018-01-01T00:21:05Z"}`)
	add(10, `{"trip_id":%d,"vendor_id":null,"pickup_datetime":"2018-01-01T00:21:05Z"}`)
	add(7, `{"trip_id":%d,"vendor_id":1}`)
	add(5, `{"trip_id":%d,"vendor_id":1,"pickup_datetime":"yesterday"}`)
	add(3, `{"trip_id":%d,"vendor_id":1,"pickup_datetime":"2018-01-01T00:21:05Z"`)

	p := runInProcess(t, yaml, recs)
	want := map[string]int{
		"bucket/missing_field vendor_id":       10,
		"bucket/missing_field pickup_datetime": 7,
		"schema/ pickup_datetime":              5,
		"decode/malformed_json ":               3,
	}
	got := map[string]int{}
	for _, l := range readLetters(t, filepath.Join(dir, "dlq.jsonl")) {
		field := ""
		for _, f := range []string{"vendor_id", "pickup_datetime"} {
			if strings.Contains(l.Message, f) {
				field = f
			}
		}
		class := l.Class
		if l.Stage == "schema" {
			class = "" // the decoder's class for a bad time is its own business; the field must be named
		}
		got[l.Stage+"/"+class+" "+field]++
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %d dead letters, want %d (all: %v)", k, got[k], n, got)
		}
	}
	if rows, _ := countRows(t, filepath.Join(dir, "lake")); rows != 100 {
		t.Errorf("committed rows = %d, want the 100 good records", rows)
	}
	if st := p.Stats(); st.DeadLetters != 25 || st.Records != int64(len(recs)) {
		t.Errorf("stats: %+v", st)
	}
}
