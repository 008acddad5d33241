//go:build integration

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/checkpoint"
	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/taxi"
)

// The shipped-example tests run config/examples/*.yaml exactly as a user
// would: the file is passed to `sinkd run` as it is in the repository, and
// only the endpoint variables it documents (SINKD_*) plus HOSTNAME (its
// instance id) are set. Everything the file hard-codes (the Kafka group, the
// Kinesis lease table, the key prefixes under the bucket) is made private to
// the run by giving it servers or a bucket of its own: a Kafka broker process
// of the test's own, a DynamoDB (dynalite) process of its own, and a fresh S3
// bucket on the shared MinIO.

// shipped is one run of a shipped example config.
type shipped struct {
	*harness
	example  string // "taxi-kafka" or "taxi-kinesis"
	config   string // path of the example file, unchanged
	instance string // $HOSTNAME: the instance id the example defaults to
	httpAddr string // $SINKD_HTTP_ADDR, to scrape /metrics
	vars     map[string]string
	// base is the rows of each route committed before the current process
	// started: with the rows it writes, they must cover the route's inputs
	// before it has caught up.
	base map[string]int64
}

// newShipped prepares a run of config/examples/<example>.yaml with a bucket of
// its own (SINKD_S3_BUCKET), so that the example's fixed key prefixes
// (<example>/trips, <example>/by-location, <example>/_sinkd) are the run's.
func newShipped(t *testing.T, name, example string) *shipped {
	h := newHarness(t, name)
	// h.topic is "e2e-<name>-<base36>": a valid, unique bucket name.
	bucket := strings.ToLower(h.topic)
	createBucket(t, h.env, bucket)
	h.env.S3Bucket = bucket
	h.prefix = example + "/"
	abs, err := filepath.Abs(filepath.Join("..", "..", "config", "examples", example+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := &shipped{
		harness: h, example: example, config: abs,
		instance: "sinkd-" + h.topic, httpAddr: freePort(t),
		vars: map[string]string{"SINKD_S3_BUCKET": bucket, "SINKD_OPENSEARCH_URL": ""},
	}
	s.vars["HOSTNAME"] = s.instance
	s.vars["SINKD_HTTP_ADDR"] = s.httpAddr
	t.Logf("example %s, bucket %s, instance %s, logs in %s", example, bucket, s.instance, h.dir)
	return s
}

// newShippedKafka is newShipped for taxi-kafka.yaml on a Kafka broker of the
// test's own: the example's group name (sinkd-taxi-kafka) is fixed, and on
// the shared broker another run's members would join the same group.
func newShippedKafka(t *testing.T, name string) *shipped {
	s := newShipped(t, name, "taxi-kafka")
	b := s.startBroker(t.TempDir())
	s.env.KafkaBrokers = b.addr()
	s.vars["SINKD_KAFKA_BROKERS"] = b.addr()
	s.vars["SINKD_KAFKA_TOPIC"] = s.topic
	s.vars["SINKD_DLQ_TOPIC"] = s.topic + "-dlq"
	createTopic(t, b.addr(), s.topic+"-dlq")
	return s
}

// start runs `sinkd run --config <example>` with the run's variables.
func (s *shipped) start() *proc {
	s.t.Helper()
	env := s.env
	env.Vars = maps.Clone(s.env.Vars)
	maps.Copy(env.Vars, s.vars)
	p := startSinkd(s.t, env, s.dir, s.instance, s.config)
	// A test that stops early leaves no sinkd behind.
	s.t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// ---- data: trips spread over many buckets ----

// spread makes taxi trips whose pickups fall uniformly at random in
// [from, from+days): arrival order is random in event time, and every trip
// lands in one of 3 types × days `trips` buckets and (yellow and green) one
// of 265 zones × months `by-location` buckets, as a quarter of real trips do.
type spread struct {
	g    *taxi.Generator
	rng  *rand.Rand
	from time.Time
	span time.Duration
}

func newSpread(seed int64, from time.Time, days int) *spread {
	return &spread{
		g: taxi.NewGenerator(seed, from), rng: rand.New(rand.NewPCG(uint64(seed), 0x5350524541440000)),
		from: from, span: time.Duration(days) * 24 * time.Hour,
	}
}

// next returns the next trip's id and JSON value.
func (s *spread) next() (int64, []byte) {
	t := s.g.Next()
	ride := t.DropoffDatetime.Sub(t.PickupDatetime)
	t.PickupDatetime = s.from.Add(time.Duration(s.rng.Int64N(int64(s.span)))).Truncate(time.Second)
	t.DropoffDatetime = t.PickupDatetime.Add(ride)
	return t.TripID, t.AppendJSON(nil)
}

// quarter is Q1 2018: 90 days, 3 months.
var quarterStart = time.Date(2018, 1, 1, 0, 0, 0, 0, time.UTC)

const quarterDays = 90

// produceKafka creates the topic and produces n spread trips into it at
// about rate events/s (0: as fast as possible) in the background; wait
// returns when all are acknowledged.
func (s *shipped) produceKafka(n int, partitions int32, sp *spread, rate int) (wait func()) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	sink, err := taxi.NewKafkaSink(ctx, strings.Split(s.env.KafkaBrokers, ","), s.topic, partitions)
	if err != nil {
		cancel()
		s.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		defer cancel()
		defer sink.Close()
		begin := time.Now()
		for i := 0; i < n; i++ {
			id, v := sp.next()
			s.remember(id, v, "")
			if err := sink.Send(ctx, []byte(strconv.FormatInt(id, 10)), v); err != nil {
				done <- err
				return
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

// pace sleeps so that event i is sent no earlier than rate allows.
func pace(rate, i int, begin time.Time) {
	if rate > 0 && i%200 == 199 {
		if ahead := time.Duration(i+1)*time.Second/time.Duration(rate) - time.Since(begin); ahead > 0 {
			time.Sleep(ahead)
		}
	}
}

// ---- the process: restarts, assignment latency, catching up ----

// assignedLine is the pipeline's log line for an adopted source partition.
const assignedLine = `"msg":"partition assigned"`

// startAssigned starts sinkd and returns it with the time from the start of
// the process to its first partition assignment.
func (s *shipped) startAssigned(within time.Duration) (*proc, time.Duration) {
	s.t.Helper()
	// What earlier runs committed, for waitCaughtUp; no process runs now.
	s.base = s.committedRows()
	began := time.Now()
	p := s.start()
	if !p.waitLine(assignedLine, within) {
		s.t.Fatalf("sinkd %s was assigned no partition within %s of its start (exited: %v); log tail:\n%s",
			s.instance, within, p.exited(), tail(p.logFile.Name(), 20))
	}
	return p, time.Since(began)
}

// committedRows sums, per route, the rows of the files the manifests commit
// (one read of the manifests for every route).
func (s *shipped) committedRows() map[string]int64 {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows := map[string]int64{}
	k := &kinesisRun{harness: s.harness}
	seen := map[string]bool{}
	if err := k.readManifests(ctx, nil, func(_ string, m *checkpoint.Manifest) {
		for _, u := range m.Uploads {
			route, _, ok := strings.Cut(strings.TrimPrefix(u.Key, s.prefix), "/")
			if ok && strings.HasPrefix(u.Key, s.prefix) && !seen[u.Key] {
				seen[u.Key] = true
				rows[route] += u.Rows
			}
		}
	}); err != nil {
		s.t.Fatal(err)
	}
	return rows
}

// killLoop runs sinkd, SIGKILLs it `kills` times at random moments 3–13 s
// after it was assigned its first partition, and restarts it with the same
// instance id each time; during(run) is called once per run, right after the
// assignment. It returns the last (running) process and every run's time to
// its first assignment (index 0 is the first start, the rest restarts).
func (s *shipped) killLoop(kills int, seed int64, during func(run int)) (*proc, []time.Duration) {
	s.t.Helper()
	s.t.Logf("kill schedule seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 11))
	var waits []time.Duration
	for run := 0; ; run++ {
		// A restart that waits past the session timeout of the killed
		// member (45 s) still completes, so the test can report by how much.
		p, d := s.startAssigned(3 * time.Minute)
		waits = append(waits, d)
		s.t.Logf("run %d: first partition assigned %s after the process started", run, d.Round(time.Millisecond))
		if during != nil {
			during(run)
		}
		if run == kills {
			return p, waits
		}
		time.Sleep(time.Duration(3000+rng.IntN(10_000)) * time.Millisecond)
		if p.exited() {
			s.t.Fatalf("sinkd exited by itself before kill %d: %v; log tail:\n%s", run+1, p.err, tail(p.logFile.Name(), 20))
		}
		p.kill(s.t)
	}
}

// checkRestarts asserts that each restart got its first partition within
// limit.
func (s *shipped) checkRestarts(waits []time.Duration, limit time.Duration) {
	s.t.Helper()
	for i, d := range waits[1:] {
		if d > limit {
			s.t.Errorf("restart %d with the same instance_id waited %s for its first partition, want < %s", i+1, d.Round(time.Millisecond), limit)
		}
	}
}

// samples maps a metric's label set ("{a="x",b="y"}", or "" without labels)
// to its value, for every metric on /metrics.
type samples map[string]map[string]float64

func scrapeSamples(addr string) (samples, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := samples{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, labels, rest := line, "", ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
			rest = line[i:]
			if rest[0] == '{' {
				j := strings.LastIndexByte(rest, '}')
				labels, rest = rest[:j+1], rest[j+1:]
			}
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		if out[name] == nil {
			out[name] = map[string]float64{}
		}
		out[name][labels] = v
	}
	return out, nil
}

func (m samples) sum(name string) float64 {
	var s float64
	for _, v := range m[name] {
		s += v
	}
	return s
}

// sumWith sums the series of name whose labels include label (such as
// route="trips"), whatever other labels (pipeline) they carry.
func (m samples) sumWith(name, label string) float64 {
	var s float64
	for labels, v := range m[name] {
		if strings.Contains(labels, label) {
			s += v
		}
	}
	return s
}

// caughtUp reports whether the instance has processed everything its source
// holds: in every route, the rows it wrote, with those committed before it
// started (base), cover the inputs the route selects (want); no partition is
// pending (unread with no reader, as Kinesis children are until their
// parents are done); and every owned partition's fetched lag is 0. Kafka
// also has to own all of its partitions and report lag for each (0: any
// number, for Kinesis, whose emulator always reports 0 ms behind, so that
// only the rows tell). Every route counts: a restart after a drain that left
// one route's files open finds the other route complete.
func caughtUp(m samples, partitions int, base, want map[string]int64) (bool, string) {
	owned := m.sum("sinkd_source_partitions_owned")
	pending := m.sum("sinkd_source_partitions_pending")
	lag := m.sum("sinkd_source_lag_records")
	state := fmt.Sprintf("owned %.0f, pending %.0f, fetched lag %.0f records", owned, pending, lag)
	short := false
	for _, r := range shippedRoutes {
		rows := int64(m.sumWith("sinkd_parquet_rows_total", `route="`+r.name+`"`))
		state += fmt.Sprintf("; %s rows: %d committed before this start + %d written by it, for %d inputs", r.name, base[r.name], rows, want[r.name])
		short = short || base[r.name]+rows < want[r.name]
	}
	if owned == 0 || pending > 0 || lag > 0 || short {
		return false, state
	}
	if partitions > 0 && (owned != float64(partitions) || len(m["sinkd_source_lag_records"]) != partitions) {
		return false, state
	}
	return true, state
}

// waitCaughtUp waits until three scrapes a second apart find the instance
// caught up, and returns how long that took. Production must be over.
func (s *shipped) waitCaughtUp(p *proc, partitions int, within time.Duration) time.Duration {
	s.t.Helper()
	took, state := s.awaitCaughtUp(p, partitions, within)
	if state != "" {
		s.t.Fatal(state)
	}
	return took
}

// awaitCaughtUp is waitCaughtUp that does not fail the test: when the
// instance has not caught up within the time, it returns why ("" if it did).
func (s *shipped) awaitCaughtUp(p *proc, partitions int, within time.Duration) (time.Duration, string) {
	s.t.Helper()
	began := time.Now()
	ok, state := 0, "no scrape"
	want, _ := s.routeInputs()
	report := began.Add(30 * time.Second)
	for time.Since(began) < within {
		if p.exited() {
			s.t.Fatalf("sinkd %s exited by itself: %v; log tail:\n%s", p.instance, p.err, tail(p.logFile.Name(), 20))
		}
		m, err := scrapeSamples(s.httpAddr)
		if err == nil {
			var caught bool
			caught, state = caughtUp(m, partitions, s.base, want)
			if caught {
				ok++
				if ok == 3 {
					return time.Since(began), ""
				}
			} else {
				ok = 0
			}
			if time.Now().After(report) {
				report = report.Add(30 * time.Second)
				s.t.Logf("catching up, %s: %s; %s", time.Since(began).Round(time.Second), state, pipelineSummary(m))
			}
		}
		time.Sleep(time.Second)
	}
	m, _ := scrapeSamples(s.httpAddr)
	return within, fmt.Sprintf("sinkd %s did not catch up within %s: %s; %s; log tail:\n%s", p.instance, within, state, pipelineSummary(m), tail(p.logFile.Name(), 10))
}

// pipelineSummary summarises what the pipeline did, from its metrics: records
// read, rows written, files open, rolled (by reason) and committed.
func pipelineSummary(m samples) string {
	if m == nil {
		return "no metrics"
	}
	rolled := map[string]float64{}
	for labels, v := range m["sinkd_parquet_files_rolled_total"] {
		if i := strings.Index(labels, `reason="`); i >= 0 {
			r := labels[i+len(`reason="`):]
			rolled[r[:strings.IndexByte(r, '"')]] += v
		}
	}
	return fmt.Sprintf("this process read %.0f records, wrote %.0f rows (%.0f replayed rows skipped), has %.0f files open, rolled %v, committed %.0f files in checkpoints, was busy %.1f s",
		m.sum("sinkd_source_records_total"), m.sum("sinkd_parquet_rows_total"), m.sum("sinkd_parquet_replay_skipped_total"),
		m.sum("sinkd_parquet_open_files"), rolled, m.sum("sinkd_checkpoint_files_committed_total"), m.sum("sinkd_pipeline_busy_seconds_total"))
}

// drain sends SIGTERM and returns how long the process took to exit, and
// its exit error; after `within` it is killed.
func (p *proc) drain(within time.Duration) (time.Duration, error) {
	began := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return time.Since(began), p.err
	case <-time.After(within):
		_ = p.cmd.Process.Kill()
		<-p.done
		return time.Since(began), fmt.Errorf("still running %s after SIGTERM: killed", within)
	}
}

// logHas reports whether the instance's log (all its runs) has a line
// containing s.
func (s *shipped) logHas(sub string) bool {
	b, err := os.ReadFile(filepath.Join(s.dir, s.instance+".log"))
	if err != nil {
		s.t.Fatal(err)
	}
	return bytes.Contains(b, []byte(sub))
}

// ---- the archive: read back and checked ----

// routeCheck is what one route's committed files must hold.
type routeCheck struct {
	name   string
	want   map[int64][]byte                  // trip_id → the JSON value produced
	bucket func(t *taxi.Trip) (string, bool) // the trip's bucket path, false if the route skips it
}

// shippedRoutes are the example configs' two routes, with the bucket path
// templates they configure.
var shippedRoutes = []routeCheck{
	{name: "trips", bucket: func(t *taxi.Trip) (string, bool) {
		return fmt.Sprintf("type=%s/dt=%s", t.Type, t.PickupDatetime.Format("2006-01-02")), true
	}},
	{name: "by-location", bucket: func(t *taxi.Trip) (string, bool) {
		if t.Type != "yellow" && t.Type != "green" {
			return "", false
		}
		return fmt.Sprintf("pickup_location=%03d/year=%04d/month=%02d", t.PickupLocationID, t.PickupDatetime.Year(), int(t.PickupDatetime.Month())), true
	}},
}

// archiveStats is what verifyArchive found for one route.
type archiveStats struct {
	buckets, files int
	rows           int64
}

// routeInputs counts, per route, the inputs it selects and the distinct
// buckets they fall into.
func (s *shipped) routeInputs() (rows map[string]int64, buckets map[string]int) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	rows, buckets = map[string]int64{}, map[string]int{}
	for _, r := range shippedRoutes {
		rows[r.name], buckets[r.name] = 0, 0
	}
	seen := map[string]bool{}
	for _, v := range s.inputs {
		var trip taxi.Trip
		if err := json.Unmarshal(v, &trip); err != nil {
			s.t.Fatal(err)
		}
		for _, r := range shippedRoutes {
			if b, ok := r.bucket(&trip); ok {
				rows[r.name]++
				if k := r.name + "|" + b; !seen[k] {
					seen[k] = true
					buckets[r.name]++
				}
			}
		}
	}
	return rows, buckets
}

// expectedBuckets counts the buckets the inputs fall into, per route.
func (s *shipped) expectedBuckets() map[string]int {
	_, buckets := s.routeInputs()
	return buckets
}

// verifyArchive reads back, route by route, every Parquet file the manifests
// commit and checks that each input the route selects is in exactly one row,
// equal to its input, and in the bucket its fields name; that no Parquet
// object is visible that no manifest commits; and that no multipart upload
// is left in progress under the example's prefix. It prints files per bucket
// and rows per file, and fails when a route has more than 3 files per bucket
// (files must not be tiny).
func (s *shipped) verifyArchive() map[string]archiveStats {
	s.t.Helper()
	ctx := context.Background()
	st, _ := s.store()
	committed := map[string]int64{} // key → rows its manifest says
	k := &kinesisRun{harness: s.harness}
	manifests := 0
	if err := k.readManifests(ctx, nil, func(_ string, m *checkpoint.Manifest) {
		manifests++
		for _, u := range m.Uploads {
			committed[u.Key] = u.Rows
		}
	}); err != nil {
		s.t.Fatal(err)
	}
	cfg, err := config.Load(s.config)
	if err != nil {
		s.t.Fatal(err)
	}
	sch, err := schema.New(cfg.Schema.Fields)
	if err != nil {
		s.t.Fatal(err)
	}
	out := map[string]archiveStats{}
	for _, r := range shippedRoutes {
		dir := s.prefix + r.name + "/"
		var keys []string
		for key := range committed {
			if strings.HasPrefix(key, dir) {
				keys = append(keys, key)
			}
		}
		sort.Strings(keys)
		visible, err := st.List(ctx, dir)
		if err != nil {
			s.t.Fatal(err)
		}
		stray := 0
		for _, key := range visible {
			if _, ok := committed[key]; !ok && strings.HasSuffix(key, ".parquet") {
				stray++
				if stray <= 3 {
					s.t.Errorf("%s is visible but no manifest commits it", key)
				}
			}
		}
		want := map[int64][]byte{}
		for id, v := range s.inputs {
			var trip taxi.Trip
			if err := json.Unmarshal(v, &trip); err != nil {
				s.t.Fatal(err)
			}
			if _, ok := r.bucket(&trip); ok {
				want[id] = v
			}
		}
		rc := r
		rc.want = want
		res := s.checkFiles(st.Get, sch, rc, dir, keys)
		buckets := map[string]bool{}
		for _, key := range keys {
			buckets[path.Dir(strings.TrimPrefix(key, dir))] = true
		}
		as := archiveStats{buckets: len(buckets), files: len(keys), rows: res.rows}
		out[r.name] = as
		perBucket, perFile := 0.0, 0.0
		if as.buckets > 0 {
			perBucket = float64(as.files) / float64(as.buckets)
		}
		if as.files > 0 {
			perFile = float64(as.rows) / float64(as.files)
		}
		s.t.Logf("route %s: %d committed files in %d buckets (%.2f files per bucket, %.1f rows per file); %d rows for %d inputs: %d missing, %d duplicated, %d differing, %d in the wrong bucket; %d visible files no manifest commits",
			r.name, as.files, as.buckets, perBucket, perFile, res.rows, len(want), res.missing, res.dups, res.mismatches, res.misplaced, stray)
		if res.missing+res.dups+res.mismatches+res.misplaced > 0 {
			s.t.Errorf("route %s: exactly-once violated: %d missing, %d duplicated, %d differing, %d in the wrong bucket",
				r.name, res.missing, res.dups, res.mismatches, res.misplaced)
		}
		if as.files > 3*as.buckets {
			s.t.Errorf("route %s: %d committed files for %d buckets (%.1f per bucket, %.1f rows per file): more than 3 per bucket, the files are tiny",
				r.name, as.files, as.buckets, perBucket, perFile)
		}
	}
	s.t.Logf("%d manifests commit %d files", manifests, len(committed))
	s.checkNoUploads()
	return out
}

// checkNoUploads fails the test when a multipart upload is in progress under
// the example's prefix.
func (s *shipped) checkNoUploads() {
	s.t.Helper()
	uploads := uploadsInProgress(s.t, s.env, s.prefix)
	s.t.Logf("%d multipart uploads in progress under s3://%s/%s", len(uploads), s.env.S3Bucket, s.prefix)
	if len(uploads) > 0 {
		var first []string
		for _, u := range uploads[:min(3, len(uploads))] {
			first = append(first, u.Key)
		}
		s.t.Errorf("%d multipart uploads left in progress under s3://%s/%s, want 0 (first: %s)", len(uploads), s.env.S3Bucket, s.prefix, strings.Join(first, ", "))
	}
}

// checkCommittedComplete fails the test when a file a manifest commits is not
// a complete object after a clean drain (exit 0; after a drain that timed out
// the next start completes them, so they are only counted), or when a route
// has more than 3 committed files per bucket its inputs fall into: what can
// be checked after a drain even when not every record was read.
func (s *shipped) checkCommittedComplete(clean bool) {
	s.t.Helper()
	ctx := context.Background()
	st, _ := s.store()
	visible := map[string]bool{}
	keys, err := st.List(ctx, s.prefix)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, k := range keys {
		visible[k] = true
	}
	committed, absent := 0, 0
	files, rows := map[string]int{}, map[string]int64{}
	k := &kinesisRun{harness: s.harness}
	if err := k.readManifests(ctx, nil, func(_ string, m *checkpoint.Manifest) {
		for _, u := range m.Uploads {
			committed++
			route, _, _ := strings.Cut(strings.TrimPrefix(u.Key, s.prefix), "/")
			files[route]++
			rows[route] += u.Rows
			if !visible[u.Key] {
				absent++
				if clean && absent <= 3 {
					s.t.Errorf("%s is committed by a manifest but is no complete object after a clean drain", u.Key)
				}
			}
		}
	}); err != nil {
		s.t.Fatal(err)
	}
	s.t.Logf("manifests commit %d files, %d of them not complete objects (clean drain: %t)", committed, absent, clean)
	if clean && absent > 0 {
		s.t.Errorf("%d committed files are not complete objects after a clean drain", absent)
	}
	for route, buckets := range s.expectedBuckets() {
		perFile := 0.0
		if files[route] > 0 {
			perFile = float64(rows[route]) / float64(files[route])
		}
		s.t.Logf("route %s: %d committed files, %d rows (%.1f rows per file), for %d buckets", route, files[route], rows[route], perFile, buckets)
		if files[route] > 3*buckets {
			s.t.Errorf("route %s: %d committed files for %d buckets (%.1f rows per file): more than 3 per bucket, the files are tiny", route, files[route], buckets, perFile)
		}
	}
}

type checkResult struct {
	rows                                 int64
	missing, dups, mismatches, misplaced int
}

// checkFiles reads keys (eight at a time: a tiny-file run has tens of
// thousands) and checks their rows against the route's inputs.
func (s *shipped) checkFiles(get func(context.Context, string) ([]byte, error), sch *schema.Schema, r routeCheck, dir string, keys []string) checkResult {
	s.t.Helper()
	idField, _ := sch.Lookup("trip_id")
	var (
		mu   sync.Mutex
		res  checkResult
		seen = map[int64]string{}
		errs []string
	)
	report := func(format string, args ...any) {
		if len(errs) < 8 {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
	}
	work := make(chan string)
	var wg sync.WaitGroup
	var fatal atomic.Value
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dec := sch.NewDecoder()
			for key := range work {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				body, err := get(ctx, key)
				cancel()
				if err != nil {
					fatal.CompareAndSwap(nil, fmt.Sprintf("%s is committed but cannot be read: %v", key, err))
					continue
				}
				f, err := parquet.OpenFile(bytes.NewReader(body), int64(len(body)))
				if err != nil {
					fatal.CompareAndSwap(nil, fmt.Sprintf("%s is not a readable Parquet file: %v", key, err))
					continue
				}
				bucket := path.Dir(strings.TrimPrefix(key, dir))
				for _, rg := range f.RowGroups() {
					rows := rg.Rows()
					buf := make([]parquet.Row, 256)
					for {
						n, err := rows.ReadRows(buf)
						for _, row := range buf[:n] {
							id := row[idField.Column].Int64()
							in, ok := r.want[id]
							var want parquet.Row
							var trip taxi.Trip
							if ok {
								want, _ = dec.Decode(in, nil)
								_ = json.Unmarshal(in, &trip)
							}
							mu.Lock()
							res.rows++
							if prev, dup := seen[id]; dup {
								res.dups++
								report("trip_id %d is in %s and in %s", id, prev, key)
							} else {
								seen[id] = key
								switch b, _ := r.bucket(&trip); {
								case !ok:
									res.mismatches++
									report("trip_id %d in %s is not an input of route %s", id, key, r.name)
								case !rowsEqual(row, want):
									res.mismatches++
									report("trip_id %d: row in %s differs from input %s", id, key, in)
								case b != bucket:
									res.misplaced++
									report("trip_id %d is in bucket %s, its fields name %s", id, bucket, b)
								}
							}
							mu.Unlock()
						}
						if err != nil {
							break
						}
					}
					rows.Close()
				}
			}
		}()
	}
	for _, key := range keys {
		work <- key
	}
	close(work)
	wg.Wait()
	if msg := fatal.Load(); msg != nil {
		s.t.Fatal(msg)
	}
	for id := range r.want {
		if _, ok := seen[id]; !ok {
			res.missing++
			report("route %s: trip_id %d is in no committed file", r.name, id)
		}
	}
	for _, e := range errs {
		s.t.Error(e)
	}
	return res
}

// ---- servers and proxies of the test's own ----

// startDynalite runs a dynalite of the test's own, in memory, and returns its
// endpoint. The Kinesis example's lease table name is fixed
// (sinkd-taxi-kinesis-leases) and leases are keyed by shard id alone, so on
// the shared dynalite every run of the example would read the leases (and
// checkpoints) of the runs before it.
func startDynalite(t *testing.T, stackDir string) string {
	t.Helper()
	addr := freePort(t)
	_, port, _ := net.SplitHostPort(addr)
	serve, err := filepath.Abs(filepath.Join("..", "..", "scripts", "stack", "serve.js"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", serve, "dynalite", port)
	cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(stackDir, "node", "node_modules"))
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dynalite: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return "http://" + addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("dynalite on %s did not come up: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// slowProxy stands between sinkd and the object store and delays every
// request by its current delay (0: passes straight through). A request whose
// client gave up while it waited is not forwarded; one forwarded is finished.
// The Host header is kept, so SigV4 signatures still verify.
type slowProxy struct {
	url       string
	delay     atomic.Int64 // nanoseconds
	partsOnly atomic.Bool  // delay part uploads only
	held      atomic.Int64 // requests delayed so far
	dropped   atomic.Int64 // requests whose client left while they waited
}

func newSlowProxy(t *testing.T, target string) *slowProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &slowProxy{url: "http://" + ln.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = log.New(io.Discard, "", 0) // sinkd going away mid-request is the point
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		isPart := r.Method == http.MethodPut && r.URL.Query().Has("partNumber")
		if d := time.Duration(p.delay.Load()); d > 0 && (isPart || !p.partsOnly.Load()) {
			p.held.Add(1)
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				p.dropped.Add(1)
				return
			}
		}
		// Once forwarded, a request runs to its end on the server even if
		// sinkd exits meanwhile: S3 applies a CompleteMultipartUpload
		// whole or not at all, whereas MinIO, told of the client's
		// disconnect, can stop one halfway (its parts gone, no object),
		// which says nothing about sinkd.
		rp.ServeHTTP(w, r.WithContext(context.WithoutCancel(r.Context())))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}

// errExit reports whether err is an exit with the given code.
func errExit(err error, code int) bool {
	var exit *exec.ExitError
	return errors.As(err, &exit) && exit.ExitCode() == code
}
