//go:build integration

package e2e

import (
	"errors"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestCrashExactlyOnce: 200,000 trips in 6 partitions; sinkd is SIGKILLed at
// least 8 times at random moments, some right after a manifest was written
// (inside the checkpoint, before uploads are completed and offsets committed),
// while files roll by size and age and checkpoints run every second. Every
// trip must end up in exactly one committed row, equal to its input.
func TestCrashExactlyOnce(t *testing.T) {
	h := newHarness(t, "crash")
	h.targetFile = "2MiB"
	h.fileAge = "1500ms"
	// A restarted instance takes its partitions back at once.
	h.static = true
	// Records keep arriving through the whole kill phase (~40 s), so that
	// every kill lands on a pipeline at work.
	produced := h.produceAsync(200_000, 6, 0, 42, 5000)
	seed := time.Now().UnixNano()
	t.Logf("kill schedule seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	const kills = 9
	inCheckpoint := 0
	for i := 0; i < kills; i++ {
		p := h.start("crash-1")
		if i%3 == 1 {
			// Wait for a commit point, then kill inside the checkpoint.
			if p.waitLine("manifest written", time.Minute) {
				time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
				inCheckpoint++
			}
		} else {
			time.Sleep(time.Duration(1500+rng.IntN(4000)) * time.Millisecond)
		}
		if p.exited() {
			t.Fatalf("sinkd exited by itself before kill %d: %v; log tail:\n%s", i+1, p.err, tail(p.logFile.Name(), 15))
		}
		p.kill(t)
	}
	if inCheckpoint < 2 {
		t.Fatalf("only %d kills landed inside a checkpoint", inCheckpoint)
	}
	commits, files, aborted, recoveries := h.logCounts("crash-1")
	t.Logf("%d SIGKILLs, %d of them inside a checkpoint; before the last run: %d checkpoints committed %d files, %d recoveries, %d open uploads aborted",
		kills, inCheckpoint, commits, files, recoveries, aborted)
	// The kills must have hit a pipeline at work: files committed between
	// kills, and files open at a kill that recovery then aborted.
	if commits < 3 || aborted < 1 || recoveries < 3 {
		t.Fatalf("the killed runs did too little work to prove anything")
	}
	produced()
	h.finalRun("crash-1", 5*time.Minute)
}

// TestRebalanceExactlyOnce: two instances share the group, a third joins and
// one of the first two is killed mid-run.
func TestRebalanceExactlyOnce(t *testing.T) {
	h := newHarness(t, "rebalance")
	// ~40 s of arrivals: the join and the kill both happen mid-stream.
	produced := h.produceAsync(200_000, 6, 0, 43, 5000)
	a, b := h.start("rb-a"), h.start("rb-b")
	time.Sleep(8 * time.Second)
	c := h.start("rb-c")
	time.Sleep(10 * time.Second)
	a.kill(t)
	produced()
	b.waitRunning(t)
	c.waitRunning(t)
	h.waitDrained(5*time.Minute, b, c)
	b.stop(t, time.Minute)
	c.stop(t, time.Minute)
	// The killed instance's open files are its own to abort: when its
	// instance id comes back, recovery cleans them up.
	a2 := h.start("rb-a")
	a2.waitRunning(t)
	a2.stop(t, time.Minute)
	h.verify("trips")
}

// TestObjectStoreOutage: MinIO is stopped for 30 s mid-run. sinkd keeps
// running, holds memory within its budget, loses and duplicates nothing.
func TestObjectStoreOutage(t *testing.T) {
	h := newHarness(t, "outage")
	h.budget = "64MiB"
	// Records keep arriving before, during and after the outage.
	produced := h.produceAsync(200_000, 6, 0, 44, 4000)
	p := h.start("outage-1")
	if !p.waitLine("manifest written", time.Minute) {
		t.Fatalf("no checkpoint before the outage (log %s)", p.logFile.Name())
	}
	stack := filepath.Join(h.env.Dir, "..", "..", "scripts", "stack", "stack.sh")
	if out, err := exec.Command("bash", stack, "stop", "minio").CombinedOutput(); err != nil {
		t.Fatalf("stopping minio: %v\n%s", err, out)
	}
	restarted := false
	defer func() {
		if !restarted {
			_ = exec.Command("bash", stack, "start", "minio").Run()
		}
	}()
	time.Sleep(30 * time.Second)
	if p.exited() {
		t.Fatalf("sinkd exited during the outage: %v (log %s)", p.err, p.logFile.Name())
	}
	if out, err := exec.Command("bash", stack, "start", "minio").CombinedOutput(); err != nil {
		t.Fatalf("starting minio: %v\n%s", err, out)
	}
	restarted = true
	produced()
	h.waitDrained(5*time.Minute, p)
	p.stop(t, time.Minute)
	const budgetMiB, overheadMiB = 64, 100
	t.Logf("peak RSS %.1f MiB (budget %d MiB + %d MiB overhead allowed)", p.PeakRSSMiB(), budgetMiB, overheadMiB)
	if p.PeakRSSMiB() > budgetMiB+overheadMiB {
		t.Errorf("peak RSS %.1f MiB exceeds the budget of %d MiB plus %d MiB", p.PeakRSSMiB(), budgetMiB, overheadMiB)
	}
	h.verify("trips")
}

// TestDrainOnSIGTERM: SIGTERM during a heavy run stops reading, closes every
// open file, takes a final checkpoint and exits 0; no multipart upload is left
// in progress at that moment, and a second run finishes the topic exactly once.
func TestDrainOnSIGTERM(t *testing.T) {
	h := newHarness(t, "drain")
	produced := h.produceAsync(150_000, 6, 0, 45, 10_000)
	p := h.start("drain-1")
	p.waitRunning(t)
	if !p.waitLine(`"uploads":`, time.Minute) {
		t.Fatal("no checkpoint before the drain")
	}
	time.Sleep(3 * time.Second)
	began := time.Now()
	p.stop(t, 70*time.Second)
	t.Logf("drained and exited 0 in %s", time.Since(began).Round(time.Millisecond))
	if uploads := uploadsInProgress(t, h.env, h.prefix); len(uploads) != 0 {
		t.Fatalf("%d multipart uploads left in progress after the drain (first %s)", len(uploads), uploads[0].Key)
	}
	produced()
	h.finalRun("drain-1", 3*time.Minute)
}

// TestSecondSIGTERMExitsAtOnce: with the object store down the drain cannot
// finish; a second SIGTERM then exits at once (code 1) without a final
// checkpoint, nothing partial is committed, and the next run still delivers
// every record exactly once. (Two signals sent back to back can merge into
// one, so the second is sent once the first is being handled.)
func TestSecondSIGTERMExitsAtOnce(t *testing.T) {
	h := newHarness(t, "sigterm2")
	produced := h.produceAsync(100_000, 6, 0, 46, 10_000)
	p := h.start("sig-1")
	p.waitRunning(t)
	if !p.waitLine(`"uploads":`, time.Minute) {
		t.Fatal("no checkpoint before the signals")
	}
	stack := filepath.Join(h.env.Dir, "..", "..", "scripts", "stack", "stack.sh")
	if out, err := exec.Command("bash", stack, "stop", "minio").CombinedOutput(); err != nil {
		t.Fatalf("stopping minio: %v\n%s", err, out)
	}
	minioUp := false
	startMinio := func() {
		if out, err := exec.Command("bash", stack, "start", "minio").CombinedOutput(); err != nil {
			t.Fatalf("starting minio: %v\n%s", err, out)
		}
		minioUp = true
	}
	defer func() {
		if !minioUp {
			startMinio()
		}
	}()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if !p.waitLine("signal received: draining", 10*time.Second) {
		t.Fatal("the first SIGTERM was not taken as a drain")
	}
	time.Sleep(time.Second)
	if p.exited() {
		t.Fatalf("the drain finished with the object store down: %v", p.err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Fatal("a second SIGTERM did not exit at once")
	}
	var exit *exec.ExitError
	if !errors.As(p.err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit = %v, want code 1", p.err)
	}
	startMinio()
	produced()
	h.finalRun("sig-1", 3*time.Minute)
}
