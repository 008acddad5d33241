//go:build integration

package e2e

import (
	"math/rand/v2"
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
	produced := k.produceKinesis(40_000, 0, 52, 1000, false, nil)
	k.killRepeatedly(t, "kcrash-1", 9)
	produced()
	p := k.start("kcrash-1")
	p.waitRunning(t)
	k.waitCommitted(3*time.Minute, p)
	p.stop(t, time.Minute)
	k.verify("trips")
}

// killRepeatedly starts and SIGKILLs an instance kills times, a third of the
// kills right after a manifest was written.
func (k *kinesisRun) killRepeatedly(t *testing.T, instance string, kills int) {
	t.Helper()
	seed := time.Now().UnixNano()
	t.Logf("kill schedule seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	inCheckpoint := 0
	for i := 0; i < kills; i++ {
		p := k.start(instance)
		if i%3 == 1 {
			if p.waitLine("manifest written", 30*time.Second) {
				time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
				inCheckpoint++
			}
		} else {
			time.Sleep(time.Duration(3000+rng.IntN(2500)) * time.Millisecond)
		}
		if p.exited() {
			t.Fatalf("sinkd exited by itself before kill %d: %v; log tail:\n%s", i+1, p.err, tail(p.logFile.Name(), 15))
		}
		p.kill(t)
	}
	commits, files, aborted, recoveries := k.logCounts(instance)
	t.Logf("%d SIGKILLs, %d inside a checkpoint: %d checkpoints committed %d files, %d recoveries, %d open uploads aborted",
		kills, inCheckpoint, commits, files, recoveries, aborted)
	if inCheckpoint < 2 || commits < 3 || recoveries < 3 {
		t.Fatalf("the killed runs did too little work to prove anything")
	}
}
