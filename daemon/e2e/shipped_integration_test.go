//go:build integration

package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/taxi"
	"github.com/sinkd/sinkd/writers/opensearch/osfake"
)

// The tests in this file run the example configurations exactly as shipped
// (see shipped_harness_integration_test.go) on data shaped like a user's: a
// quarter of taxi trips, about 1,000 buckets, arriving in random event-time
// order, with the defaults the examples leave in place (45 s Kafka session
// timeout, 10 s checkpoints, 5 min inactivity, 15 min file age, 30 s drain).

// restartAssignLimit is how soon a restarted instance (same instance_id) must
// own partitions again.
const restartAssignLimit = 10 * time.Second

// TestShippedKafkaExample: config/examples/taxi-kafka.yaml, unchanged, with
// OpenSearch on (the in-process fake): 60,000 trips over Q1 2018 in 6
// partitions (270 `trips` buckets, 795 `by-location` buckets), sinkd SIGKILLed
// 4 times at random moments 3–13 s after it got its partitions and restarted
// with the same instance_id. Each restart must own partitions within 10 s;
// every trip must be in exactly one committed row of each route that selects
// it, at most 3 files per bucket, no upload left in progress, and one
// OpenSearch document per trip.
func TestShippedKafkaExample(t *testing.T) {
	s := newShippedKafka(t, "shipkafka")
	search := httptest.NewServer(osfake.New())
	t.Cleanup(search.Close)
	s.vars["SINKD_OPENSEARCH_URL"] = search.URL
	const partitions = 6
	// Records keep arriving through the kill phase, so that kills land on a
	// pipeline at work.
	produced := s.produceKafka(60_000, partitions, newSpread(1201, quarterStart, quarterDays), 2000)
	p, waits := s.killLoop(4, time.Now().UnixNano(), nil)
	s.checkRestarts(waits, restartAssignLimit)
	produced()
	caught, behind := s.awaitCaughtUp(p, partitions, 3*time.Minute)
	if behind != "" {
		t.Error(behind)
	} else {
		t.Logf("the last instance caught up %s after the last record was produced", caught.Round(time.Second))
	}
	if !s.drainAndVerify(p, behind) {
		return
	}

	c := &cluster{url: search.URL, client: &http.Client{Timeout: 30 * time.Second}}
	if status, body := c.call(t, http.MethodPost, "/trips-*/_refresh", nil); status != http.StatusOK {
		t.Fatalf("_refresh: %d %s", status, body)
	}
	if n := c.count(t, "trips-*"); n != len(s.inputs) {
		t.Errorf("OpenSearch holds %d trip documents, want one per trip: %d", n, len(s.inputs))
	}
}

// TestShippedKinesisExample: config/examples/taxi-kinesis.yaml, unchanged, on
// kinesalite and a dynalite of the test's own: 40,000 trips over Q1 2018 into
// 4 shards; while they arrive the first shard is split, then the split's two
// children are merged (a child with two parents), and sinkd is SIGKILLed 3
// times and restarted with the same instance_id. Each restart must own shards
// within 10 s; the children must be read as soon as their parents are done,
// so everything is read well inside the 5 min inactivity default; the
// archive is checked as for Kafka.
func TestShippedKinesisExample(t *testing.T) {
	s, k := newShippedStream(t, "shipkinesis", 4)
	produced := s.produceKinesis(40_000, newSpread(1202, quarterStart, quarterDays), 1000)
	began := time.Now()
	p, waits := s.killLoop(3, time.Now().UnixNano(), func(run int) {
		switch run {
		case 1:
			k.reshard(true)
			t.Logf("split the first shard: %d open shards", len(k.openShards(context.Background())))
		case 2:
			k.reshard(false)
			t.Logf("merged the first two open shards (the split's children): %d open shards", len(k.openShards(context.Background())))
		}
	})
	s.checkRestarts(waits, restartAssignLimit)
	produced()
	producedAt := time.Since(began)
	caught, behind := s.awaitCaughtUp(p, 0, 3*time.Minute)
	if behind != "" {
		t.Error(behind)
	} else {
		t.Logf("the last instance caught up %s after the last record was produced (%s into the run)", caught.Round(time.Second), (producedAt + caught).Round(time.Second))
	}
	// Children that waited for a shard sync or a lease expiry would show up
	// here; the 5 min inactivity default would hide a wait of minutes.
	if caught > time.Minute {
		t.Errorf("everything was not read until %s after the last record was produced, want well inside the 5 min inactivity default (< 1 min)", caught.Round(time.Second))
	}
	s.drainAndVerify(p, behind)
}

// newShippedStream is newShipped for taxi-kinesis.yaml: a stream of the
// given shards and its dead-letter stream on kinesalite, and a dynalite of the
// test's own for the lease table.
func newShippedStream(t *testing.T, name string, shards int32) (*shipped, *kinesisRun) {
	s := newShipped(t, name, "taxi-kinesis")
	s.vars["SINKD_DYNAMODB_ENDPOINT"] = startDynalite(t, s.env.Dir)
	s.vars["SINKD_KINESIS_ENDPOINT"] = s.env.KinesisEndpoint
	s.vars["SINKD_KINESIS_STREAM"] = s.topic
	s.vars["SINKD_DLQ_STREAM"] = s.topic + "-dlq"
	k := &kinesisRun{harness: s.harness}
	k.createStream(shards)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := taxi.NewKinesisSink(ctx, s.topic+"-dlq", s.env.KinesisEndpoint, s.env.Region, 1, false); err != nil {
		t.Fatal(err)
	}
	return s, k
}

// TestDrainManyOpenBuckets: taxi-kafka.yaml unchanged, 30,000 trips over half
// a year (3 types × 181 days + 265 zones × 6 months = 2,133 buckets), all read
// before SIGTERM, so that every bucket has a file open when the drain starts.
// sinkd must exit 0 within the default shutdown.drain_timeout with every file
// completed and committed exactly once, and no upload left in progress.
func TestDrainManyOpenBuckets(t *testing.T) {
	drainOpenBuckets(t, "drainmany", 30_000, 1203, 181, 2000)
}

func drainOpenBuckets(t *testing.T, name string, trips int, seed int64, days, minBuckets int) {
	s := newShippedKafka(t, name)
	const partitions = 6
	s.produceKafka(trips, partitions, newSpread(seed, quarterStart, days), 0)()
	buckets := 0
	for _, n := range s.expectedBuckets() {
		buckets += n
	}
	if buckets < minBuckets {
		t.Fatalf("the inputs fall into %d buckets, want at least %d", buckets, minBuckets)
	}
	p, _ := s.startAssigned(3 * time.Minute)
	// A run that cannot read them all in time still drains what it has
	// open: the drain is checked either way, the archive's content only
	// when everything was read.
	_, behind := s.awaitCaughtUp(p, partitions, 3*time.Minute)
	if behind != "" {
		t.Error(behind)
	}
	m, err := scrapeSamples(s.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	open := m.sum("sinkd_parquet_open_files")
	t.Logf("before SIGTERM: %.0f files open for %d buckets; %.0f files already rolled (%v)",
		open, buckets, m.sum("sinkd_parquet_files_rolled_total"), m["sinkd_parquet_files_rolled_total"])
	if open < float64(buckets)*9/10 {
		t.Errorf("only %.0f files open for %d buckets with data: the rest were rolled early (tiny files) and the drain is not tested on %d open buckets", open, buckets, minBuckets)
	}
	limit := time.Duration(defaultConfig(t).Shutdown.DrainTimeout)
	took, err := p.drain(limit + time.Minute)
	t.Logf("SIGTERM with %.0f open files: exited in %s (%v)", open, took.Round(time.Millisecond), err)
	if err != nil {
		t.Errorf("the drain did not exit 0: %v; log tail:\n%s", err, tail(p.logFile.Name(), 15))
	}
	if took > limit {
		t.Errorf("the drain took %s, longer than the default shutdown.drain_timeout (%s)", took.Round(time.Millisecond), limit)
	}
	if s.logHas("drain timed out") {
		t.Errorf("the log says the drain timed out")
	}
	if behind != "" {
		s.checkCommittedComplete(err == nil)
		s.checkNoUploads()
		return
	}
	s.verifyArchive()
}

// TestDrainShortOfTimeLeavesCleanArchive: an example configuration unchanged,
// about 1,000 open buckets, S3 reached through a proxy of the test's own that
// slows requests from the moment SIGTERM is sent, so that the default
// drain_timeout cannot close every file:
//   - "timed out" (taxi-kafka.yaml): every request takes 15 s, so even the
//     final manifest cannot be written in time, and sinkd exits 1 without a
//     final checkpoint;
//   - "left open" (taxi-kafka.yaml and taxi-kinesis.yaml): part uploads take
//     2 s, so the drain closes files during the first 45% of its timeout
//     only, commits those, and exits 0 with the rest left open, their
//     records to be read again from the restart points of the last manifest
//     (which the Kafka group's committed offsets, or the Kinesis leases,
//     refer to).
//
// The store is then healthy again and the same instance starts: afterwards
// every trip must be committed exactly once and no multipart upload may be
// left in progress.
func TestDrainShortOfTimeLeavesCleanArchive(t *testing.T) {
	for _, tt := range []struct {
		name      string
		kinesis   bool
		delay     time.Duration
		partsOnly bool
		leftOpen  bool // else the drain times out
	}{
		{"timed out", false, 15 * time.Second, false, false},
		{"left open", false, 2 * time.Second, true, true},
		{"left open kinesis", true, 2 * time.Second, true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var s *shipped
			partitions := 0 // Kinesis: every shard, however many there are
			if tt.kinesis {
				s, _ = newShippedStream(t, "drainshortkin", 4)
				s.produceKinesis(12_000, newSpread(1205, quarterStart, quarterDays), 0)()
			} else {
				s = newShippedKafka(t, "drainshort")
				partitions = 6
				s.produceKafka(30_000, int32(partitions), newSpread(1204, quarterStart, quarterDays), 0)()
			}
			px := newSlowProxy(t, s.env.S3Endpoint)
			s.vars["SINKD_S3_ENDPOINT"] = px.url
			p, _ := s.startAssigned(3 * time.Minute)
			// The drain has to find files open, not every record read: a run
			// too slow to catch up is stopped after 90 s all the same.
			if _, behind := s.awaitCaughtUp(p, partitions, 90*time.Second); behind != "" {
				t.Logf("SIGTERM before everything was read: %s", behind)
			}
			if m, err := scrapeSamples(s.httpAddr); err == nil {
				t.Logf("before SIGTERM: %.0f files open", m.sum("sinkd_parquet_open_files"))
			}
			px.partsOnly.Store(tt.partsOnly)
			px.delay.Store(int64(tt.delay))
			took, err := p.drain(2 * time.Minute)
			t.Logf("SIGTERM with S3 requests delayed by %s (part uploads only: %v): exited in %s (%v); the proxy delayed %d requests, %d of them abandoned by sinkd",
				tt.delay, tt.partsOnly, took.Round(time.Millisecond), err, px.held.Load(), px.dropped.Load())
			limit := defaultConfig(t).Shutdown.DrainTimeout.D()
			if !tt.leftOpen {
				if s.logHas("drain: files committed") || !errExit(err, 1) {
					t.Fatalf("the drain did not time out (exit %v): the slow store did not force what this test is about; log tail:\n%s", err, tail(p.logFile.Name(), 15))
				}
			} else {
				if err != nil || took > limit {
					t.Fatalf("the drain did not exit 0 within the default drain_timeout (%s): exit %v after %s; log tail:\n%s", limit, err, took.Round(time.Millisecond), tail(p.logFile.Name(), 15))
				}
				if !s.logHas("drain: files left open") {
					t.Fatalf("the drain committed every file: the slow store did not force what this test is about; log tail:\n%s", tail(p.logFile.Name(), 15))
				}
			}
			px.delay.Store(0)
			st, _ := s.store()
			if left, err := st.ListUploads(context.Background(), s.prefix); err == nil {
				t.Logf("after the drain: %d multipart uploads listed in progress (the next start must clean them up)", len(left))
			}
			p, d := s.startAssigned(3 * time.Minute)
			t.Logf("restarted: first partition assigned after %s", d.Round(time.Millisecond))
			s.waitCaughtUp(p, partitions, 3*time.Minute)
			took, err = p.drain(2 * time.Minute)
			t.Logf("second SIGTERM, store healthy: exited in %s (%v)", took.Round(time.Millisecond), err)
			if err != nil {
				t.Errorf("the drain with a healthy store did not exit 0: %v; log tail:\n%s", err, tail(p.logFile.Name(), 15))
			}
			s.verifyArchive()
		})
	}
}

// defaultConfig is the Kafka example as loaded, for the defaults it leaves in
// place.
func defaultConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Parse("defaults.yaml", []byte(`pipeline: x
source: {kafka: {brokers: "127.0.0.1:9", topics: [x], group: x}}
schema: {format: json, fields: [{name: a, type: string}]}
routes: [{name: r, parquet: {destination: "file:///tmp/x", path: "{a}"}}]
`))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// produceKinesis produces n spread trips into the stream at about rate
// events/s in the background, each keyed by its trip_id (spread over every
// shard); wait returns when all are acknowledged.
func (s *shipped) produceKinesis(n int, sp *spread, rate int) (wait func()) {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		sink, err := taxi.NewKinesisSink(ctx, s.topic, s.env.KinesisEndpoint, s.env.Region, 0, false)
		if err != nil {
			done <- err
			return
		}
		defer sink.Close()
		begin := time.Now()
		for i := 0; i < n; i++ {
			id, v := sp.next()
			s.remember(id, v, "")
			if err := sink.Send(ctx, []byte(strconv.FormatInt(id, 10)), v); err != nil {
				done <- err
				return
			}
			if i%200 == 199 {
				if err := sink.Flush(ctx); err != nil {
					done <- err
					return
				}
			}
			pace(rate, i, begin)
		}
		done <- sink.Flush(ctx)
	}()
	return func() {
		s.t.Helper()
		if err := <-done; err != nil {
			s.t.Fatal(err)
		}
	}
}

// drainAndVerify stops p with SIGTERM, which must exit 0, and checks the
// archive: all of it when everything was read (behind is empty), otherwise
// only what the drain left (every committed file complete, no upload in
// progress). It reports whether the whole archive was checked.
func (s *shipped) drainAndVerify(p *proc, behind string) bool {
	t := s.t
	took, err := p.drain(time.Minute)
	t.Logf("SIGTERM: exited in %s (%v)", took.Round(time.Millisecond), err)
	if err != nil {
		t.Errorf("the final drain did not exit 0: %v; log tail:\n%s", err, tail(p.logFile.Name(), 15))
	}
	t.Logf("buckets the inputs fall into: %v", s.expectedBuckets())
	if behind != "" {
		s.checkCommittedComplete(err == nil)
		s.checkNoUploads()
		return false
	}
	s.verifyArchive()
	return true
}
