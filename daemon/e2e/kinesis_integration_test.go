//go:build integration

package e2e

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestKinesisCrashExactlyOnce: trips flow into 4 shards while sinkd is
// SIGKILLed at least 8 times, some right after a manifest was written; every
// trip must end up in exactly one committed row. Without a lease table the
// restart points live only in the manifests.
func TestKinesisCrashExactlyOnce(t *testing.T) {
	k := newKinesisRun(t, "kcrash")
	k.targetFile = "1MiB"
	k.fileAge = "1500ms"
	k.createStream(4)
	var produced func()
	k.killRepeatedly(t, "kcrash-1", 9, func() { produced = k.produceKinesis(40_000, 0, 52, 1000, false, nil) })
	produced()
	p := k.start("kcrash-1")
	p.waitRunning(t)
	k.waitCommitted(3*time.Minute, p)
	p.stop(t, time.Minute)
	k.verify("trips")
}

// killRepeatedly starts and SIGKILLs an instance kills times: every third
// kill right after a manifest was written (inside the checkpoint, before
// uploads are completed), every third a random while (under 1.5 s) after a
// file committed, with files open again, and the others at random moments.
// produce starts the producer once the first run is up, so that records flow
// through all kills however long start-up takes on a loaded machine.
func (k *kinesisRun) killRepeatedly(t *testing.T, instance string, kills int, produce func()) {
	t.Helper()
	seed := time.Now().UnixNano()
	t.Logf("kill schedule seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	inCheckpoint := 0
	for i := 0; i < kills; i++ {
		p := k.start(instance)
		if i == 0 {
			p.waitRunning(t)
			produce()
		}
		// One kill in three waits for a committed file: with random sleeps
		// alone, a loaded machine once committed files in only two of seven
		// runs (CI), too little work to prove anything.
		switch i % 3 {
		case 1:
			if p.waitLine("manifest written", 40*time.Second) {
				time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
				inCheckpoint++
			}
		case 2:
			p.waitCommit(40 * time.Second)
			time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
		default:
			time.Sleep(time.Duration(2500+rng.IntN(3000)) * time.Millisecond)
		}
		if p.exited() {
			t.Fatalf("sinkd exited by itself before kill %d: %v; log tail:\n%s", i+1, p.err, tail(p.logFile.Name(), 15))
		}
		p.kill(t)
	}
	commits, files, aborted, recoveries := k.logCounts(instance)
	t.Logf("%d SIGKILLs, %d inside a checkpoint: %d checkpoints committed %d files, %d recoveries, %d open uploads aborted",
		kills, inCheckpoint, commits, files, recoveries, aborted)
	// The kills must have hit a pipeline at work: files committed between
	// kills, and files open at a kill that recovery then aborted.
	if inCheckpoint < kills/3 || commits < 3 || recoveries < kills-2 || aborted < 1 {
		t.Fatalf("the killed runs did too little work to prove anything")
	}
}

// TestKinesisThrottling: a proxy answers a quarter of the GetRecords calls
// with ProvisionedThroughputExceeded and some with ExpiredIterator; sinkd
// backs off, re-acquires iterators from its last position, counts the
// throttles, and loses and duplicates nothing.
func TestKinesisThrottling(t *testing.T) {
	k := newKinesisRun(t, "kthrottle")
	k.createStream(2)
	proxy := newFaultProxy(t, k.env.KinesisEndpoint, 4, 7)
	k.endpoint = proxy.url
	k.httpAddr = freePort(t)
	produced := k.produceKinesis(20_000, 0, 53, 1000, false, nil)
	p := k.start("kthrottle-1")
	p.waitRunning(t)
	produced()
	k.waitCommitted(2*time.Minute, p)
	throttles := metric(t, k.httpAddr, "sinkd_kinesis_throttles_total")
	expired := metric(t, k.httpAddr, "sinkd_kinesis_expired_iterators_total")
	t.Logf("proxy: %d GetRecords calls, %d throttled, %d expired; sinkd counted %.0f throttles, %.0f expired iterators",
		proxy.calls.Load(), proxy.throttled.Load(), proxy.expired.Load(), throttles, expired)
	if proxy.throttled.Load() < 10 || proxy.expired.Load() < 5 {
		t.Fatalf("too few faults injected to prove anything")
	}
	// A fault answered while the metric was read may not be counted yet.
	if throttles < float64(proxy.throttled.Load()-2) || throttles > float64(proxy.throttled.Load()) {
		t.Errorf("sinkd counted %.0f throttles; the proxy sent %d", throttles, proxy.throttled.Load())
	}
	if expired < float64(proxy.expired.Load()-2) || expired > float64(proxy.expired.Load()) {
		t.Errorf("sinkd counted %.0f expired iterators; the proxy sent %d", expired, proxy.expired.Load())
	}
	p.stop(t, time.Minute)
	k.verify("trips")
}

// TestKinesisKPLCrash: trips arrive KPL-aggregated (up to 100 per Kinesis
// record) while sinkd is SIGKILLed; manifests then hold restart points inside
// aggregates (sub-sequence > 0), and still every trip lands exactly once. One
// aggregate, first in its shard, is corrupt (bad MD5): it goes whole to the dead
// letters as stage kpl, class kpl_checksum.
func TestKinesisKPLCrash(t *testing.T) {
	k := newKinesisRun(t, "kkpl")
	k.targetFile = "1MiB"
	k.fileAge = "1500ms"
	k.createStream(2)
	corrupt := k.putCorruptAggregate()
	var produced func()
	k.killRepeatedly(t, "kkpl-1", 7, func() { produced = k.produceKinesis(25_000, 0, 54, 1000, true, nil) })
	produced()
	p := k.start("kkpl-1")
	p.waitRunning(t)
	k.waitCommitted(2*time.Minute, p)
	p.stop(t, time.Minute)
	k.verify("trips")
	if n := k.restartsInsideAggregates(); n == 0 {
		t.Errorf("no manifest has a restart point inside an aggregate: the kills did not test sub-sequence positions")
	} else {
		t.Logf("%d manifest restart points lie inside an aggregate", n)
	}
	letters := k.fileLetters("kkpl-1")
	ids := map[string]bool{}
	for _, l := range letters {
		if l.Stage == "kpl" && l.Class == "kpl_checksum" && bytes.Equal(l.Record.Value, corrupt) {
			ids[l.ID()] = true
		} else {
			t.Errorf("unexpected dead letter %s: stage %s class %s", l.ID(), l.Stage, l.Class)
		}
	}
	if len(ids) != 1 {
		t.Fatalf("the corrupt aggregate is in %d distinct dead letters, want 1", len(ids))
	}
}

// TestKinesisFailover: two instances share 4 shards through a lease table;
// one is SIGKILLed, and the other takes its shards within failover_time,
// resuming from the checkpoints and manifests of the dead one: every trip
// lands exactly once.
func TestKinesisFailover(t *testing.T) {
	k := newKinesisRun(t, "kfail")
	k.leaseTable = "sinkd-leases-" + k.topic
	k.failover = "8s"
	const failover = 8 * time.Second
	k.createStream(4)
	produced := k.produceKinesis(40_000, 0, 56, 1000, false, nil)
	a, b := k.start("kfail-a"), k.start("kfail-b")
	deadline := time.Now().Add(45 * time.Second)
	for owners := k.leaseOwners(); owners["kfail-a"] != 2 || owners["kfail-b"] != 2; owners = k.leaseOwners() {
		if time.Now().After(deadline) {
			t.Fatalf("leases not balanced 2/2 within 45 s: %v", owners)
		}
		if a.exited() || b.exited() {
			t.Fatalf("an instance exited by itself (logs %s, %s)", a.logFile.Name(), b.logFile.Name())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !a.waitCommit(30 * time.Second) {
		t.Fatal("kfail-a committed no file before the kill")
	}
	time.Sleep(500 * time.Millisecond)
	a.kill(t)
	killed := time.Now()
	for owners := k.leaseOwners(); owners["kfail-b"] != 4; owners = k.leaseOwners() {
		if time.Since(killed) > 3*failover {
			t.Fatalf("kfail-b holds %d leases %s after the kill", owners["kfail-b"], time.Since(killed))
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(killed)
	t.Logf("kfail-b held all 4 leases %s after kfail-a was killed (failover_time %s)", took.Round(time.Millisecond), failover)
	if took > failover {
		t.Errorf("takeover took %s, more than failover_time %s", took, failover)
	}
	produced()
	k.waitCommitted(2*time.Minute, b)
	b.stop(t, time.Minute)
	// The killed instance's open files are its own to abort: when its id
	// comes back, recovery cleans them up.
	a2 := k.start("kfail-a")
	a2.waitRunning(t)
	time.Sleep(2 * time.Second)
	a2.stop(t, time.Minute)
	k.verify("trips")
}

// TestKinesisResharding: while events flow, a shard splits and then one of
// its children merges with the other original shard. Children are read only
// once their parents are read to their end and committed (the lease table
// says SHARD_END; without one, the instance remembers it), so, besides
// exactly-once, events of one partition key keep their order: within each
// bucket, a key's trips appear in the committed files, taken in commit order
// and row order, in the order they were produced (trip ids increase in
// production order; 50 keys share the trips).
func TestKinesisResharding(t *testing.T) {
	t.Run("lease table", func(t *testing.T) { testResharding(t, true) })
	t.Run("no lease table", func(t *testing.T) { testResharding(t, false) })
}

func testResharding(t *testing.T, leaseTable bool) {
	k := newKinesisRun(t, "kreshard")
	if leaseTable {
		k.leaseTable = "sinkd-leases-" + k.topic
	}
	k.createStream(2)
	const keys = 50
	produced := k.produceKinesis(30_000, 0, 57, 1000, false, func(id int64) string { return "k" + strconv.FormatInt(id%keys, 10) })
	p := k.start("kreshard-1")
	p.waitRunning(t)
	time.Sleep(8 * time.Second)
	k.reshard(true)
	time.Sleep(8 * time.Second)
	k.reshard(false)
	produced()
	k.waitCommitted(2*time.Minute, p)
	p.stop(t, time.Minute)
	k.verify("trips")

	ended, childrenRead := 0, map[string]bool{}
	b, err := os.ReadFile(p.logFile.Name())
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		var m struct {
			Msg       string `json:"msg"`
			Partition string `json:"partition"`
		}
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		switch {
		case strings.Contains(m.Msg, "SHARD_END"):
			ended++
		case m.Msg == "partition assigned" && !strings.HasSuffix(m.Partition, "-000000000000") && !strings.HasSuffix(m.Partition, "-000000000001"):
			childrenRead[m.Partition] = true
		}
	}
	t.Logf("%d shards read to SHARD_END; child shards read: %d", ended, len(childrenRead))
	if ended < 3 || len(childrenRead) < 3 {
		t.Fatalf("want the 3 closed shards read to their end and the 3 children read")
	}

	last := map[string]int64{} // bucket and key → last trip id seen
	checked := 0
	for _, file := range k.committedFiles() {
		bucket := file[:strings.LastIndexByte(file, '/')]
		for _, id := range k.tripIDs(file) {
			bk := bucket + "|" + strconv.FormatInt(id%keys, 10)
			if prev, ok := last[bk]; ok && id < prev {
				t.Fatalf("key %d in %s: trip %d committed after trip %d (file %s)", id%keys, bucket, id, prev, file)
			}
			last[bk] = id
			checked++
		}
	}
	t.Logf("order checked for %d rows in %d bucket-key sequences", checked, len(last))
}
