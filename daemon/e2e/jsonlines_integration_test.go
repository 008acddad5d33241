//go:build integration

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sinkd/sinkd/taxi"
)

// jsonLinesRoute adds the registered JSON-lines writer to the trips route,
// beside its Parquet destination: the writer added through the registry
// must keep the same exactly-once promise as the built-in one. It runs at the
// writer's defaults (file size, age, inactivity, open files): the group
// drains because files roll after a minute without records.
func (h *harness) jsonLinesRoute() {
	h.extraRoute = fmt.Sprintf(`    writers:
      jsonlines:
        destination: s3://%s/%slines
        path: type={type}
        event_time: {field: pickup_datetime}
`, h.env.S3Bucket, h.prefix)
}

// TestJSONLinesCrashExactlyOnce: as TestCrashExactlyOnce, with the
// JSON-lines writer beside Parquet on the same route, at the writer's
// defaults: sinkd is SIGKILLed at random moments, some inside a checkpoint;
// every trip's original bytes must end up in exactly one line of one
// committed JSON-lines file (and in exactly one Parquet row).
//
// At the defaults a JSON-lines file closes by size (64MiB), age (5 min) or a
// minute without records, so kills a few seconds apart would never meet a
// committed one, and the replay filter would go untested. So the input
// changes: after 60,000 trips of every type, green trips stop while yellow
// and fhv go on slowly. One run lives until green's file has rolled on
// inactivity and been committed, while yellow's, opened before green's last
// record, stays open and holds the restart point below it; the kills after
// that replay green records that a committed file holds, which the filter
// must skip.
func TestJSONLinesCrashExactlyOnce(t *testing.T) {
	h := newHarness(t, "jsonl")
	h.targetFile = "2MiB"
	h.fileAge = "1500ms"
	h.static = true
	h.jsonLinesRoute()
	produced := h.produceGreenGoesQuiet(60_000, 20_000, 4, 43, 5000, 200)
	seed := time.Now().UnixNano()
	t.Logf("kill schedule seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 11))
	const kills = 8
	inCheckpoint := 0
	for i := 0; i < kills; i++ {
		p := h.start("jsonl-1")
		switch {
		case i == 5:
			// The long run: until green's file is committed.
			if !h.waitCommittedLines("type=green/", 3*time.Minute) {
				t.Fatalf("green's JSON-lines file was not committed within 3 min of its last record: no inactivity roll?")
			}
			time.Sleep(time.Duration(rng.IntN(2000)) * time.Millisecond)
		case i%3 == 1:
			if p.waitLine("manifest written", time.Minute) {
				time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
				inCheckpoint++
			}
		default:
			time.Sleep(time.Duration(1500+rng.IntN(4000)) * time.Millisecond)
		}
		if p.exited() {
			t.Fatalf("sinkd exited by itself before kill %d: %v; log tail:\n%s", i+1, p.err, tail(p.logFile.Name(), 15))
		}
		p.kill(t)
	}
	if inCheckpoint < 1 {
		t.Fatalf("no kill landed inside a checkpoint")
	}
	commits, files, aborted, recoveries := h.logCounts("jsonl-1")
	t.Logf("%d SIGKILLs, %d inside a checkpoint; before the last run: %d checkpoints committed %d files, %d recoveries, %d open uploads aborted",
		kills, inCheckpoint, commits, files, recoveries, aborted)
	if commits < 3 || aborted < 1 || recoveries < 3 {
		t.Fatalf("the killed runs did too little work to prove anything")
	}
	produced()
	h.finalRun("jsonl-1", 5*time.Minute) // verifies the Parquet side and that no upload is left
	h.verifyLines()
}

// produceGreenGoesQuiet writes n trips at rate events/s, then m more at
// quietRate with the green ones left out (neither sent nor expected), so
// that green's bucket goes quiet while the others keep receiving records.
func (h *harness) produceGreenGoesQuiet(n, m int, partitions int32, seed int64, rate, quietRate int) (wait func()) {
	h.t.Helper()
	// The topic must exist before sinkd subscribes.
	if err := h.produceAt(0, partitions, 0, seed, 0); err != nil {
		h.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			sink, err := taxi.NewKafkaSink(ctx, strings.Split(h.env.KafkaBrokers, ","), h.topic, partitions)
			if err != nil {
				return err
			}
			defer sink.Close()
			g := taxi.NewGenerator(seed, taxi.DefaultStart())
			for phase, count := range []int{n, m} {
				r := []int{rate, quietRate}[phase]
				begin, sent := time.Now(), 0
				for sent < count {
					v, kind := g.Event(0)
					if phase == 1 && bytes.Contains(v, []byte(`"type":"green"`)) {
						continue
					}
					id, _ := g.Last()
					h.remember(id, v, kind)
					if err := sink.Send(ctx, []byte(strconv.FormatInt(id, 10)), v); err != nil {
						return err
					}
					sent++
					if sent%100 == 0 {
						if ahead := time.Duration(sent)*time.Second/time.Duration(r) - time.Since(begin); ahead > 0 {
							time.Sleep(ahead)
						}
					}
				}
				if err := sink.Flush(ctx); err != nil {
					return err
				}
			}
			return nil
		}()
	}()
	return func() {
		if err := <-done; err != nil {
			h.t.Fatal(err)
		}
	}
}

// waitCommittedLines waits until a committed JSON-lines file exists under
// the bucket prefix.
func (h *harness) waitCommittedLines(bucket string, within time.Duration) bool {
	st, prefix := h.store()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		keys, err := st.List(ctx, prefix+"lines/"+bucket)
		cancel()
		if err == nil && slices.ContainsFunc(keys, func(k string) bool { return strings.HasSuffix(k, ".jsonl") }) {
			return true
		}
		time.Sleep(500 * time.Millisecond)
	}
	return false
}

// verifyLines checks that every good input is exactly one line of the
// committed JSON-lines files, byte for byte.
func (h *harness) verifyLines() {
	h.t.Helper()
	ctx := context.Background()
	st, prefix := h.store()
	keys, err := st.List(ctx, prefix+"lines/")
	if err != nil {
		h.t.Fatal(err)
	}
	seen := map[int64]string{}
	files, dups, mismatches, multipart := 0, 0, 0, 0
	for _, key := range keys {
		if !strings.HasSuffix(key, ".jsonl") {
			continue
		}
		files++
		body, err := st.Get(ctx, key)
		if err != nil {
			h.t.Fatal(err)
		}
		if len(body) > 5<<20 {
			multipart++
		}
		for _, line := range bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n")) {
			var v struct {
				TripID int64 `json:"trip_id"`
			}
			if err := json.Unmarshal(line, &v); err != nil {
				h.t.Fatalf("%s: a line is not JSON: %v: %.200s", key, err, line)
			}
			if prev, ok := seen[v.TripID]; ok {
				dups++
				if dups < 5 {
					h.t.Errorf("trip_id %d is in %s and in %s", v.TripID, prev, key)
				}
				continue
			}
			seen[v.TripID] = key
			if in, ok := h.inputs[v.TripID]; !ok || !bytes.Equal(in, line) {
				mismatches++
				if mismatches < 5 {
					h.t.Errorf("trip_id %d in %s: line differs from its input", v.TripID, key)
				}
			}
		}
	}
	missing := 0
	for id := range h.inputs {
		if _, ok := seen[id]; !ok {
			missing++
			if missing < 5 {
				h.t.Errorf("trip_id %d is in no committed JSON-lines file", id)
			}
		}
	}
	h.t.Logf("verified %d committed JSON-lines files (%d of more than one part): %d lines for %d good inputs; %d missing, %d duplicated, %d differing",
		files, multipart, len(seen), len(h.inputs), missing, dups, mismatches)
	if missing+dups+mismatches > 0 {
		h.t.Fatalf("exactly-once violated in JSON lines: %d missing, %d duplicated, %d differing", missing, dups, mismatches)
	}
}

// TestJSONLinesRebalanceExactlyOnce: as TestRebalanceExactlyOnce, with the
// JSON-lines writer beside Parquet: partitions handed over at a join and
// taken from a killed instance must leave every trip in exactly one line.
func TestJSONLinesRebalanceExactlyOnce(t *testing.T) {
	h := newHarness(t, "jsonlrb")
	h.jsonLinesRoute()
	produced := h.produceAsync(120_000, 6, 0, 44, 5000)
	a, b := h.start("jrb-a"), h.start("jrb-b")
	time.Sleep(6 * time.Second)
	c := h.start("jrb-c")
	time.Sleep(8 * time.Second)
	a.kill(t)
	produced()
	b.waitRunning(t)
	c.waitRunning(t)
	h.waitDrained(5*time.Minute, b, c)
	b.stop(t, time.Minute)
	c.stop(t, time.Minute)
	// The killed instance's open files are its own to abort.
	a2 := h.start("jrb-a")
	a2.waitRunning(t)
	a2.stop(t, time.Minute)
	h.verify("trips")
	h.verifyLines()
}
