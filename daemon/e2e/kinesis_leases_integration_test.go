//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/sinkd/sinkd/taxi"
)

// shippedKinesis runs config/examples/taxi-kinesis.yaml as it is: only the
// SINKD_* endpoint variables and HOSTNAME (the instance id) are set, so every
// setting is the shipped default (lease table, failover_time 30s,
// shard_sync_interval 30s, poll_interval 1s, checkpoint 10s, files rolled
// after 5 min without a record). Each run gets its own bucket and stream.
type shippedKinesis struct {
	*kinesisRun
	addrs map[string]string // instance → its HTTP address, of its last start
}

func newShippedKinesis(t *testing.T, name string) *shippedKinesis {
	k := newKinesisRun(t, name)
	bucket := k.topic // e2e-<name>-<id>: a valid, unique bucket name
	createBucket(t, k.env, bucket)
	k.env.S3Bucket = bucket
	k.prefix = "taxi-kinesis/"                 // the example's destinations and checkpoint store
	k.leaseTable = "sinkd-taxi-kinesis-leases" // the example's (leases are keyed by stream)
	return &shippedKinesis{kinesisRun: k, addrs: map[string]string{}}
}

func (s *shippedKinesis) start(instance string) *proc {
	s.t.Helper()
	_, here, _, _ := runtime.Caller(0)
	example := filepath.Join(filepath.Dir(here), "..", "..", "config", "examples", "taxi-kinesis.yaml")
	env := s.env
	env.Vars = maps.Clone(s.env.Vars)
	s.addrs[instance] = freePort(s.t)
	for k, v := range map[string]string{
		"HOSTNAME": instance, "SINKD_KINESIS_STREAM": s.topic, "SINKD_S3_BUCKET": s.env.S3Bucket,
		"SINKD_HTTP_ADDR": s.addrs[instance], "SINKD_OPENSEARCH_URL": "",
		"SINKD_KINESIS_ENDPOINT": s.env.KinesisEndpoint, "SINKD_DYNAMODB_ENDPOINT": s.env.DynamoDBEndpoint, "SINKD_S3_ENDPOINT": s.env.S3Endpoint,
	} {
		env.Vars[k] = v
	}
	return startSinkd(s.t, env, s.dir, instance, example)
}

// lagView is one scrape of an instance's lag series.
type lagView struct {
	at                 time.Time
	pending, pendingMs float64 // sinkd_source_partitions_pending, sum of sinkd_source_pending_millis_behind_latest
	behind             float64 // sum of sinkd_source_millis_behind_latest
	records            float64 // sinkd_source_records_total
}

func (s *shippedKinesis) scrape(instance string) lagView {
	addr := s.addrs[instance]
	return lagView{
		at: time.Now(), pending: metric(s.t, addr, "sinkd_source_partitions_pending"),
		pendingMs: metric(s.t, addr, "sinkd_source_pending_millis_behind_latest"),
		behind:    metric(s.t, addr, "sinkd_source_millis_behind_latest"), records: metric(s.t, addr, "sinkd_source_records_total"),
	}
}

func (v lagView) zero() bool { return v.pending == 0 && v.pendingMs == 0 && v.behind == 0 }

// waitRecords waits until the instances together have processed n records.
func (s *shippedKinesis) waitRecords(n float64, within time.Duration, procs ...*proc) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	var got float64
	for time.Now().Before(deadline) {
		got = 0
		for _, p := range procs {
			if p.exited() {
				s.t.Fatalf("sinkd %s exited by itself: %v; log tail:\n%s", p.instance, p.err, tail(p.logFile.Name(), 20))
			}
			got += s.scrape(p.instance).records
		}
		if got >= n {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	s.t.Fatalf("%.0f records processed after %s, want %.0f", got, within, n)
}

// verifyShipped checks both routes of the example: every trip exactly once
// in the committed files of trips, every yellow and green one exactly once in
// by-location, and no multipart upload left in progress.
func (s *shippedKinesis) verifyShipped() {
	s.t.Helper()
	ctx := context.Background()
	st, _ := s.store()
	for _, route := range []string{"trips", "by-location"} {
		want := map[int64]bool{}
		s.mu.Lock()
		for id, v := range s.inputs {
			var trip struct {
				Type string `json:"type"`
			}
			if err := json.Unmarshal(v, &trip); err != nil {
				s.t.Fatal(err)
			}
			if route == "trips" || trip.Type == "yellow" || trip.Type == "green" {
				want[id] = true
			}
		}
		s.mu.Unlock()
		keys, err := st.List(ctx, "taxi-kinesis/"+route+"/")
		if err != nil {
			s.t.Fatal(err)
		}
		seen := map[int64]int{}
		files := 0
		for _, key := range keys {
			if !strings.HasSuffix(key, ".parquet") {
				continue
			}
			files++
			for _, id := range s.tripIDs(key) {
				seen[id]++
			}
		}
		missing, dups, extra := 0, 0, 0
		for id := range want {
			switch seen[id] {
			case 0:
				missing++
			case 1:
			default:
				dups++
			}
		}
		for id := range seen {
			if !want[id] {
				extra++
			}
		}
		s.t.Logf("route %s: %d committed files, %d trips expected: %d missing, %d duplicated, %d unexpected", route, files, len(want), missing, dups, extra)
		if missing+dups+extra > 0 {
			s.t.Fatalf("route %s: exactly-once violated", route)
		}
	}
	if uploads := uploadsInProgress(s.t, s.env, "taxi-kinesis/"); len(uploads) > 0 {
		s.t.Fatalf("%d multipart uploads left in progress (first: %s)", len(uploads), uploads[0].Key)
	}
}

// produceFrom produces n good trips with trip_ids from first on, at rate
// events/s, in the background; wait returns when all are sent.
func (s *shippedKinesis) produceFrom(first int64, n, rate int) (wait func()) {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		done <- func() error {
			sink, err := taxi.NewKinesisSink(ctx, s.topic, s.env.KinesisEndpoint, s.env.Region, 0, false)
			if err != nil {
				return err
			}
			defer sink.Close()
			g := taxi.NewGenerator(first, taxi.DefaultStart(), taxi.WithFirstID(first))
			begin := time.Now()
			for i := 0; i < n; i++ {
				v, kind := g.Event(0)
				id, _ := g.Last()
				s.remember(id, v, kind)
				if err := sink.Send(ctx, []byte(strconv.FormatInt(id, 10)), v); err != nil {
					return err
				}
				if i%200 == 199 {
					if err := sink.Flush(ctx); err != nil {
						return err
					}
					if ahead := time.Duration(i+1)*time.Second/time.Duration(rate) - time.Since(begin); ahead > 0 {
						time.Sleep(ahead)
					}
				}
			}
			return sink.Flush(ctx)
		}()
	}()
	return func() {
		s.t.Helper()
		if err := <-done; err != nil {
			s.t.Fatal(err)
		}
	}
}

// logEvent is a line of sinkd's JSON log.
type logEvent struct {
	Time      time.Time `json:"time"`
	Msg       string    `json:"msg"`
	Shard     string    `json:"shard"`
	Shards    []string  `json:"shards"`
	Partition string    `json:"partition"`
}

func logEvents(t *testing.T, p *proc) []logEvent {
	t.Helper()
	b, err := os.ReadFile(p.logFile.Name())
	if err != nil {
		t.Fatal(err)
	}
	var out []logEvent
	for _, line := range strings.Split(string(b), "\n") {
		var e logEvent
		if json.Unmarshal([]byte(line), &e) == nil && e.Msg != "" {
			out = append(out, e)
		}
	}
	return out
}

// TestKinesisShippedReshardChildrenAtOnce: the shipped example (default
// settings: files roll after 5 min without a record) reads a stream that
// splits and then merges while trips flow. Each child must be taken within
// seconds of its last parent's SHARD_END, not when the parents' open files
// roll; the parents' SHARD_END reaches the lease table with the checkpoint
// that commits their last records; every trip lands exactly once.
func TestKinesisShippedReshardChildrenAtOnce(t *testing.T) {
	s := newShippedKinesis(t, "kshipres")
	s.createStream(2)
	p := s.start("kshipres-a")
	p.waitRunning(t)
	const trips = 40_000
	produced := s.produceKinesis(trips, 0, 61, 1000, false, func(id int64) string { return "k" + strconv.FormatInt(id%50, 10) })
	time.Sleep(8 * time.Second)
	s.reshard(true)
	time.Sleep(10 * time.Second)
	s.reshard(false)
	produced()
	s.waitRecords(trips, 2*time.Minute, p)
	// The gauges follow on the pipeline's tick, which a checkpoint of the
	// example's thousand open files may hold up for seconds.
	for v, since := s.scrape(p.instance), time.Now(); !v.zero(); v = s.scrape(p.instance) {
		if time.Since(since) > 30*time.Second {
			t.Errorf("every record processed, yet lag reads pending %.0f, pending millis %.0f, behind %.0f", v.pending, v.pendingMs, v.behind)
			break
		}
		time.Sleep(250 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := s.client(ctx).ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(s.topic)})
	if err != nil {
		t.Fatal(err)
	}
	ended, processed, assigned := map[string]time.Time{}, map[string]time.Time{}, map[string]time.Time{}
	for _, e := range logEvents(t, p) {
		switch {
		case strings.Contains(e.Msg, "SHARD_END"):
			ended[e.Shard] = e.Time
		case strings.Contains(e.Msg, "processed to their end"):
			for _, sh := range e.Shards {
				processed[sh] = e.Time
			}
		case e.Msg == "partition assigned":
			shard := e.Partition[strings.LastIndexByte(e.Partition, '/')+1:]
			if _, ok := assigned[shard]; !ok {
				assigned[shard] = e.Time
			}
		}
	}
	children := 0
	for _, sh := range resp.Shards {
		var last, lastRead time.Time
		parents := 0
		for _, pid := range []*string{sh.ParentShardId, sh.AdjacentParentShardId} {
			if pid == nil {
				continue
			}
			parents++
			end, ok := processed[*pid]
			if !ok || ended[*pid].IsZero() {
				t.Fatalf("parent %s of %s was never read and processed to its end", *pid, *sh.ShardId)
			}
			last, lastRead = maxTime(last, end), maxTime(lastRead, ended[*pid])
		}
		if parents == 0 {
			continue
		}
		children++
		at, ok := assigned[*sh.ShardId]
		if !ok {
			t.Fatalf("child %s was never assigned", *sh.ShardId)
		}
		wait := at.Sub(last)
		t.Logf("child %s assigned %s after its last parent was processed to its end (%s after it was read to SHARD_END)",
			*sh.ShardId, wait.Round(time.Millisecond), at.Sub(lastRead).Round(time.Millisecond))
		if wait > 10*time.Second {
			t.Errorf("child %s waited %s for its parents (files roll after 5 min: it must not wait for them)", *sh.ShardId, wait)
		}
	}
	if children != 3 {
		t.Fatalf("%d children listed, want 3 (a split and a merge)", children)
	}
	p.stop(t, 2*time.Minute)
	s.verifyShipped()
	// The drain committed the parents' last files: their leases say SHARD_END.
	owners := s.leaseCheckpoints()
	for _, sh := range resp.Shards {
		if sh.SequenceNumberRange.EndingSequenceNumber != nil && owners[*sh.ShardId] != "SHARD_END" {
			t.Errorf("closed shard %s: lease checkpoint %q after the drain, want SHARD_END", *sh.ShardId, owners[*sh.ShardId])
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// leaseCheckpoints returns the checkpoint of each shard's lease.
func (s *shippedKinesis) leaseCheckpoints() map[string]string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(s.env.Region))
	if err != nil {
		s.t.Fatal(err)
	}
	db := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(s.env.DynamoDBEndpoint) })
	out := map[string]string{}
	in := &dynamodb.ScanInput{TableName: aws.String(s.leaseTable), ConsistentRead: aws.Bool(true)}
	for {
		resp, err := db.Scan(ctx, in)
		if err != nil {
			s.t.Fatal(err)
		}
		for _, it := range resp.Items {
			key, _ := it["leaseKey"].(*ddbtypes.AttributeValueMemberS)
			cp, _ := it["checkpoint"].(*ddbtypes.AttributeValueMemberS)
			if key == nil || !strings.HasPrefix(key.Value, s.topic+"/") {
				continue
			}
			out[strings.TrimPrefix(key.Value, s.topic+"/")] = ""
			if cp != nil {
				out[strings.TrimPrefix(key.Value, s.topic+"/")] = cp.Value
			}
		}
		if len(resp.LastEvaluatedKey) == 0 {
			return out
		}
		in.ExclusiveStartKey = resp.LastEvaluatedKey
	}
}

// TestKinesisShippedKillAndRestart: two instances of the shipped example
// share 4 shards. One is SIGKILLed and restarted at once with its id: it takes
// its own leases again within 10 s of its start, without waiting out
// failover_time (30 s), and the other keeps its own. It is SIGKILLed again and
// trips keep arriving: the survivor reports the dead instance's shards as
// pending, with the age of their first unread record, until it has taken and
// read them; its lag reads 0 only once it has read every record (no record is
// processed after that). Every trip lands exactly once.
func TestKinesisShippedKillAndRestart(t *testing.T) {
	s := newShippedKinesis(t, "kshipkill")
	s.createStream(4)
	s.produceFrom(1, 8_000, 4000)()
	a, b := s.start("kshipkill-a"), s.start("kshipkill-b")
	deadline := time.Now().Add(90 * time.Second)
	for owners := s.leaseOwners(); owners["kshipkill-a"] != 2 || owners["kshipkill-b"] != 2; owners = s.leaseOwners() {
		if time.Now().After(deadline) {
			t.Fatalf("leases not balanced 2/2 within 90 s: %v", owners)
		}
		if a.exited() || b.exited() {
			t.Fatalf("an instance exited by itself (logs %s, %s)", a.logFile.Name(), b.logFile.Name())
		}
		time.Sleep(250 * time.Millisecond)
	}
	s.waitRecords(8_000, time.Minute, a, b)
	time.Sleep(11 * time.Second) // a checkpoint commits the lease positions

	// Restart with the same id: its leases are its own.
	a.kill(t)
	started := time.Now()
	a = s.start("kshipkill-a")
	for n := 0; n < 2; n++ {
		if !a.waitLine("partition assigned", max(0, 10*time.Second-time.Since(started))) {
			t.Fatalf("restarted kshipkill-a had %d of its 2 shards 10 s after its start (failover_time 30s); log tail:\n%s", n, tail(a.logFile.Name(), 20))
		}
	}
	t.Logf("restarted kshipkill-a reassigned its 2 shards %s after its start", time.Since(started).Round(time.Millisecond))
	if owners := s.leaseOwners(); owners["kshipkill-a"] != 2 || owners["kshipkill-b"] != 2 {
		t.Fatalf("after the restart: %v, want 2/2", owners)
	}

	// Dead for good: the survivor's backlog view.
	time.Sleep(2 * time.Second)
	a.kill(t)
	killed := time.Now()
	produced := s.produceFrom(8_001, 8_000, 2000)
	var views []lagView
	var producedAt time.Time
	seenPending := false
	prodDone := make(chan struct{})
	go func() { produced(); close(prodDone) }()
	for time.Since(killed) < 2*time.Minute {
		if b.exited() {
			t.Fatalf("kshipkill-b exited by itself: %v", b.err)
		}
		v := s.scrape(b.instance)
		views = append(views, v)
		select {
		case <-prodDone:
			if producedAt.IsZero() {
				producedAt = time.Now()
			}
		default:
		}
		seenPending = seenPending || v.pending > 0
		if !producedAt.IsZero() && seenPending && v.zero() && s.leaseOwners()["kshipkill-b"] == 4 {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if producedAt.IsZero() {
		t.Fatal("the producer did not finish")
	}
	detected := -1
	for i, v := range views {
		if v.pending > 0 && v.pendingMs > 0 {
			detected = i
			break
		}
	}
	if detected < 0 {
		t.Fatal("the survivor never reported the dead instance's shards as pending")
	}
	t.Logf("survivor reported %.0f shards pending, the first unread record %.1f s old, %s after the kill",
		views[detected].pending, views[detected].pendingMs/1000, views[detected].at.Sub(killed).Round(time.Millisecond))
	// Missed renewals show within three renewal intervals (9 s at the
	// default failover_time); the gauges follow on the pipeline's tick.
	if d := views[detected].at.Sub(killed); d > 30*time.Second {
		t.Errorf("pending reported %s after the kill, want within failover_time (30 s)", d)
	}
	zero := -1
	for i := detected; i < len(views); i++ {
		if views[i].zero() {
			zero = i
			break
		}
	}
	if zero < 0 {
		t.Fatal("the survivor's lag never came back to 0")
	}
	if views[zero].at.Before(producedAt) {
		t.Fatalf("lag read 0 at %s, before the producer finished at %s: the test cannot tell unread records apart", views[zero].at, producedAt)
	}
	// Lag read 0: nothing may be read after that (a second of slack for the
	// records of the last read to pass through the pipeline).
	settled := views[zero].records
	for _, v := range views[zero:] {
		if v.at.Sub(views[zero].at) > time.Second {
			break
		}
		settled = v.records
	}
	time.Sleep(3 * time.Second)
	final := s.scrape(b.instance)
	t.Logf("survivor's lag read 0 %s after the kill with %.0f records processed; %.0f processed in all", views[zero].at.Sub(killed).Round(time.Millisecond), views[zero].records, final.records)
	if final.records > settled {
		for _, v := range views[max(0, zero-8):min(len(views), zero+8)] {
			t.Logf("%s after the kill: pending %.0f, pending millis %.0f, behind %.0f, records %.0f", v.at.Sub(killed).Round(time.Millisecond), v.pending, v.pendingMs, v.behind, v.records)
		}
		t.Errorf("%.0f records were processed after lag read 0", final.records-settled)
	}
	if !final.zero() {
		t.Errorf("at the end: pending %.0f, pending millis %.0f, behind %.0f; want 0", final.pending, final.pendingMs, final.behind)
	}

	b.stop(t, 2*time.Minute)
	// The killed instance's open files are its own to abort: its id comes back.
	a = s.start("kshipkill-a")
	a.waitRunning(t)
	time.Sleep(3 * time.Second)
	a.stop(t, 2*time.Minute)
	s.verifyShipped()
}

// TestKinesisShippedCrashAfterChildStarts: the shipped example reads a
// stream whose shard splits; once the children are read while the parent's
// last records are still only in open files (its lease drained, not
// SHARD_END), sinkd is SIGKILLed. Restarted with its id, it reads the parent
// again from its last commit and the children from theirs: every trip lands
// exactly once, and the parent's SHARD_END is committed at the end.
func TestKinesisShippedCrashAfterChildStarts(t *testing.T) {
	s := newShippedKinesis(t, "kshipcrash")
	s.createStream(2)
	a := s.start("kshipcrash-a")
	a.waitRunning(t)
	const trips = 20_000
	produced := s.produceFrom(1, trips, 1000)
	time.Sleep(6 * time.Second)
	s.reshard(true)
	parentOf := func() (parent string, children []string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := s.client(ctx).ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(s.topic)})
		if err != nil {
			t.Fatal(err)
		}
		for _, sh := range resp.Shards {
			if sh.ParentShardId != nil {
				parent = *sh.ParentShardId
				children = append(children, *sh.ShardId)
			}
		}
		return parent, children
	}
	parent, children := parentOf()
	if len(children) != 2 {
		t.Fatalf("children %v after a split", children)
	}
	// Both children read, and a checkpoint has stored their positions.
	deadline := time.Now().Add(time.Minute)
	for {
		started := 0
		for _, e := range logEvents(t, a) {
			if e.Msg == "partition assigned" && slices.Contains(children, e.Partition[strings.LastIndexByte(e.Partition, '/')+1:]) {
				started++
			}
		}
		cps := s.leaseCheckpoints()
		if started == 2 && cps[children[0]] != "" && cps[children[1]] != "" {
			if cps[parent] == "SHARD_END" {
				t.Fatalf("the parent's lease says SHARD_END while its files are open (they roll after 5 min)")
			}
			t.Logf("children read and checkpointed; parent %s checkpoint %s", parent, cps[parent])
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("children not read and checkpointed within a minute (%d started, checkpoints %v)", started, cps)
		}
		time.Sleep(500 * time.Millisecond)
	}
	a.kill(t)
	a = s.start("kshipcrash-a")
	a.waitRunning(t)
	produced()
	// Read to the end: lag 0 for 3 s on end, with every shard owned again.
	settledSince := time.Time{}
	deadline = time.Now().Add(2 * time.Minute)
	for {
		if a.exited() {
			t.Fatalf("sinkd exited by itself: %v", a.err)
		}
		v := s.scrape(a.instance)
		owned := metric(t, s.addrs[a.instance], "sinkd_source_partitions_owned")
		if v.zero() && owned >= 3 {
			if settledSince.IsZero() {
				settledSince = time.Now()
			}
			if time.Since(settledSince) > 3*time.Second {
				break
			}
		} else {
			settledSince = time.Time{}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not read to the end within 2 minutes of the restart: %+v, %.0f shards owned", v, owned)
		}
		time.Sleep(250 * time.Millisecond)
	}
	a.stop(t, 2*time.Minute)
	s.verifyShipped()
	if cp := s.leaseCheckpoints()[parent]; cp != "SHARD_END" {
		t.Errorf("parent %s: lease checkpoint %q after the drain, want SHARD_END", parent, cp)
	}
}
