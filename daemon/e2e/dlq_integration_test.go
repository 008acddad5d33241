//go:build integration

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sinkd/sinkd/dlq"
	"github.com/sinkd/sinkd/taxi"
)

// failureOf is where and how each kind of bad event must fail: the stage and
// class its dead letter carries.
var failureOf = map[taxi.BadKind]struct {
	stage dlq.Stage
	class string
}{
	taxi.MalformedJSON:   {dlq.StageDecode, "malformed_json"},
	taxi.TruncatedJSON:   {dlq.StageDecode, "malformed_json"},
	taxi.NotUTF8:         {dlq.StageDecode, "not_utf8"},
	taxi.BOM:             {dlq.StageDecode, "malformed_json"},
	taxi.WrongType:       {dlq.StageSchema, "type_mismatch"},
	taxi.MissingRequired: {dlq.StageSchema, "missing_required"},
	taxi.NullRequired:    {dlq.StageSchema, "null_required"},
	taxi.OutOfRange:      {dlq.StageSchema, "out_of_range"},
	taxi.DuplicateKey:    {dlq.StageSchema, "duplicate_key"},
	taxi.DeepNesting:     {dlq.StageDecode, "too_deep"},
	taxi.Empty:           {dlq.StageDecode, "empty"},
	taxi.Oversized:       {dlq.StageOversize, "oversize"},
}

// TestDeadLettersExactlyOnceUnderKills: 100,000 trips of which 2% are bad, of
// every kind, flow through sinkd while it is SIGKILLed six times. Every good
// trip must be in exactly one Parquet row and every bad one in the Kafka
// dead-letter topic under one letter id, with the stage and class of its
// kind. Then the redrive tool is put to work on that topic: repaired
// type_mismatch records land in S3 exactly once, and records that keep
// failing stop at --max-redrives.
func TestDeadLettersExactlyOnceUnderKills(t *testing.T) {
	h := newHarness(t, "dlq")
	// A restarted instance takes its partitions back at once instead of
	// waiting for the killed member's session to expire.
	h.static = true
	h.dlqTopic = h.topic + "-dlq"
	createTopic(t, h.env.KafkaBrokers, h.dlqTopic)
	h.maxRecordSize = "512KiB"
	h.targetFile = "2MiB"
	h.fileAge = "1500ms"
	produced := h.produceAsync(100_000, 4, 0.02, 61, 4000)
	seed := time.Now().UnixNano()
	t.Logf("kill schedule seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 11))
	const kills = 6
	for i := range kills {
		p := h.start("dlq-1")
		if i%2 == 1 {
			// Inside a checkpoint: after the manifest, before the commit.
			p.waitLine("manifest written", 30*time.Second)
			time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
		} else {
			time.Sleep(time.Duration(2000+rng.IntN(3000)) * time.Millisecond)
		}
		if p.exited() {
			t.Fatalf("sinkd exited by itself before kill %d: %v; log tail:\n%s", i+1, p.err, tail(p.logFile.Name(), 15))
		}
		p.kill(t)
	}
	commits, files, aborted, recoveries := h.logCounts("dlq-1")
	killedLetters := len(readTopic(t, h.env.KafkaBrokers, h.dlqTopic))
	t.Logf("%d SIGKILLs; before the last run: %d checkpoints committed %d files, %d recoveries, %d open uploads aborted, %d letters on the wire",
		kills, commits, files, recoveries, aborted, killedLetters)
	if commits < 1 || recoveries < 3 || killedLetters == 0 {
		t.Fatalf("the killed runs did too little work to prove anything")
	}
	produced()
	p := h.start("dlq-1")
	p.waitRunning(t)
	h.waitDrained(3*time.Minute, p)

	letters := h.checkLetters(readLetters(t, h.env.KafkaBrokers, h.dlqTopic))

	// Repair: the redrive tool selects the type_mismatch letters (one per id,
	// whatever the duplicates on the wire) into a scratch topic; the test
	// fixes each value and produces it into the source topic, keeping the
	// key and the redrive header.
	repairTopic := h.topic + "-repair"
	createTopic(t, h.env.KafkaBrokers, repairTopic)
	out := h.redrive(t, "--stage", "schema", "--class", "type_mismatch", "--to-topic", repairTopic)
	wantRepairs := 0
	for _, b := range h.badInputs {
		if b.kind == taxi.WrongType {
			wantRepairs++
		}
	}
	if got := redrivenCount(t, out); got != wantRepairs || wantRepairs == 0 {
		t.Fatalf("redrive selected %d type_mismatch letters, want %d:\n%s", got, wantRepairs, out)
	}
	repaired := h.repair(t, readTopic(t, h.env.KafkaBrokers, repairTopic))
	t.Logf("repaired %d type_mismatch records and produced them into %s", len(repaired), h.topic)

	// Records that fail again: malformed_json letters are redriven as they
	// are, fail again with their redrive count raised, and stop at the limit.
	var malformed []int64
	for id, l := range letters {
		if l.Class == "malformed_json" {
			malformed = append(malformed, id)
		}
	}
	const maxRedrives = 2
	since := time.Now()
	for round := 1; round <= maxRedrives+1; round++ {
		args := []string{"--stage", "decode", "--class", "malformed_json", "--to-topic", h.topic, "--max-redrives", strconv.Itoa(maxRedrives)}
		if round > 1 {
			// Only the letters of the previous round: the originals stay in
			// the topic and would be redriven again (see the report).
			args = append(args, "--since", since.UTC().Format(time.RFC3339Nano))
		}
		since = time.Now()
		out := h.redrive(t, args...)
		got := redrivenCount(t, out)
		want := len(malformed)
		if round > maxRedrives {
			want = 0
			if !strings.Contains(out, fmt.Sprintf("skipped %d at --max-redrives", len(malformed))) {
				t.Errorf("round %d: want %d letters skipped at --max-redrives:\n%s", round, len(malformed), out)
			}
		}
		if got != want {
			t.Fatalf("round %d redrove %d malformed_json letters, want %d:\n%s", round, got, want, out)
		}
		h.waitDrained(time.Minute, p)
	}
	h.checkRedrives(readLetters(t, h.env.KafkaBrokers, h.dlqTopic), letters, malformed, repaired, maxRedrives)
	// The tool keeps no memory across runs: without --since, the first
	// round's letters (redrive count 0) qualify again.
	out = h.redrive(t, "--stage", "decode", "--class", "malformed_json", "--to-topic", h.topic,
		"--max-redrives", strconv.Itoa(maxRedrives), "--dry-run")
	if again := wouldRedriveLine.FindStringSubmatch(out); again != nil {
		t.Logf("a further round without --since would redrive %s letters of the %d malformed trips", again[1], len(malformed))
	}
	p.stop(t, time.Minute)
	h.verify("trips")
}

// checkLetters proves that every bad input is dead-lettered under one letter
// id with the stage and class of its kind and its bytes untouched, and that
// no good input is. It returns the first-round letters by trip_id.
func (h *harness) checkLetters(all []*dlq.Letter) map[int64]*dlq.Letter {
	h.t.Helper()
	byID := map[string]*dlq.Letter{}
	byTrip := map[int64]*dlq.Letter{}
	dups, wrong := 0, 0
	for _, l := range all {
		id := l.ID()
		if _, ok := byID[id]; ok {
			dups++
			continue
		}
		byID[id] = l
		trip := tripIDOf(h.t, l.Record.Key)
		if prev, ok := byTrip[trip]; ok {
			h.t.Errorf("trip_id %d has two letter ids: %s (%s) and %s (%s)", trip, prev.ID(), prev.Record.Coordinates(), id, l.Record.Coordinates())
			continue
		}
		byTrip[trip] = l
		in, ok := h.badInputs[trip]
		if !ok {
			wrong++
			h.t.Errorf("trip_id %d was dead-lettered (%s/%s: %s) but was produced as a good event", trip, l.Stage, l.Class, l.Message)
			continue
		}
		want := failureOf[in.kind]
		if l.Stage != want.stage || l.Class != want.class || l.Record.Partition.Stream != h.topic ||
			l.Truncated() || sha256.Sum256(l.Record.Value) != in.digest || l.RedriveCount != 0 {
			wrong++
			if wrong < 5 {
				h.t.Errorf("trip_id %d (%s): letter %s/%s from %s, %d bytes, redrive count %d; want %s/%s from topic %s with the original bytes",
					trip, in.kind, l.Stage, l.Class, l.Record.Coordinates(), len(l.Record.Value), l.RedriveCount, want.stage, want.class, h.topic)
			}
		}
	}
	missing := 0
	kinds := map[taxi.BadKind]int{}
	for trip, in := range h.badInputs {
		kinds[in.kind]++
		if _, ok := byTrip[trip]; !ok {
			missing++
			if missing < 5 {
				h.t.Errorf("bad trip_id %d (%s) has no dead letter", trip, in.kind)
			}
		}
	}
	if len(kinds) != len(failureOf) {
		h.t.Errorf("the input held %d kinds of bad events, want all %d", len(kinds), len(failureOf))
	}
	h.t.Logf("dead letters: %d on the wire, %d unique ids for %d bad inputs (%d kinds); %d duplicates by id, %d missing, %d wrong",
		len(all), len(byID), len(h.badInputs), len(kinds), dups, missing, wrong)
	if missing+wrong > 0 || len(byID) != len(h.badInputs) {
		h.t.Fatalf("dead letters not effectively once: %d missing, %d wrong, %d unique for %d bad inputs", missing, wrong, len(byID), len(h.badInputs))
	}
	return byTrip
}

// passengerWord is the wrong_type breakage of the taxi generator.
var passengerWord = regexp.MustCompile(`"passenger_count":"(\d+) passengers"`)

// repair checks what the redrive tool wrote (the original bytes, one record
// per letter id, the redrive header at 1), fixes each value and produces it
// into the source topic. The fixed trips become good inputs.
func (h *harness) repair(t *testing.T, recs []*kgo.Record) map[int64]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(h.env.KafkaBrokers, ",")...), kgo.DefaultProduceTopic(h.topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	repaired := map[int64]bool{}
	for _, r := range recs {
		trip := tripIDOf(t, r.Key)
		in, ok := h.badInputs[trip]
		switch {
		case !ok || in.kind != taxi.WrongType:
			t.Fatalf("redrive --class type_mismatch selected trip_id %d (%s)", trip, in.kind)
		case repaired[trip]:
			t.Fatalf("redrive wrote trip_id %d twice", trip)
		case sha256.Sum256(r.Value) != in.digest:
			t.Fatalf("redrive wrote trip_id %d with other bytes than the original", trip)
		case headerValue(r, dlq.HeaderRedrive) != "1":
			t.Fatalf("trip_id %d redriven with %s=%q, want 1", trip, dlq.HeaderRedrive, headerValue(r, dlq.HeaderRedrive))
		}
		fixed := passengerWord.ReplaceAll(r.Value, []byte(`"passenger_count":$1`))
		if bytes.Equal(fixed, r.Value) {
			t.Fatalf("trip_id %d: nothing to repair in %s", trip, r.Value)
		}
		repaired[trip] = true
		h.mu.Lock()
		h.inputs[trip] = fixed
		h.mu.Unlock()
		out := &kgo.Record{Key: r.Key, Value: fixed, Headers: r.Headers}
		if err := cl.ProduceSync(ctx, out).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	return repaired
}

// checkRedrives reads the dead-letter topic after the redrive rounds: each
// malformed trip failed again once per round up to the limit, with its
// redrive count raised, and never beyond; no repaired trip failed again.
func (h *harness) checkRedrives(all []*dlq.Letter, first map[int64]*dlq.Letter, malformed []int64, repaired map[int64]bool, maxRedrives int) {
	h.t.Helper()
	counts := map[int64][]int{} // trip → redrive counts of its unique letters
	seen := map[string]bool{}
	for _, l := range all {
		if seen[l.ID()] {
			continue
		}
		seen[l.ID()] = true
		trip := tripIDOf(h.t, l.Record.Key)
		counts[trip] = append(counts[trip], l.RedriveCount)
	}
	bad := 0
	for _, trip := range malformed {
		got := counts[trip]
		sort.Ints(got)
		want := make([]int, maxRedrives+1)
		for i := range want {
			want[i] = i
		}
		if !slices.Equal(got, want) {
			bad++
			if bad < 5 {
				h.t.Errorf("malformed trip_id %d: letters with redrive counts %v, want %v", trip, got, want)
			}
		}
	}
	for trip := range repaired {
		if len(counts[trip]) != 1 {
			bad++
			h.t.Errorf("repaired trip_id %d failed again: redrive counts %v", trip, counts[trip])
		}
	}
	extra := len(seen) - len(first) - maxRedrives*len(malformed)
	h.t.Logf("after redrive: %d unique letters (%d first-round, %d per round for %d malformed trips over %d rounds), %d unexpected",
		len(seen), len(first), len(malformed), len(malformed), maxRedrives, extra)
	if bad > 0 || extra != 0 {
		h.t.Fatalf("redrive: %d trips with wrong letters, %d unexpected letters", bad, extra)
	}
}

// redrive runs `sinkd dlq redrive` from the harness's dead-letter topic and
// returns its standard output and error.
func (h *harness) redrive(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	full := append([]string{"dlq", "redrive", "--kafka-brokers", h.dlqBrokersOrSource(), "--topic", h.dlqTopic,
		"--to-kafka-brokers", h.env.KafkaBrokers, "--rate", "0"}, args...)
	out, err := exec.CommandContext(ctx, sinkdBin, full...).CombinedOutput()
	if err != nil {
		t.Fatalf("sinkd %s: %v\n%s", strings.Join(full, " "), err, out)
	}
	return string(out)
}

func (h *harness) dlqBrokersOrSource() string {
	if h.dlqBrokers != "" {
		return h.dlqBrokers
	}
	return h.env.KafkaBrokers
}

var (
	redrivenLine     = regexp.MustCompile(`(?m)^redriven (\d+) to `)
	wouldRedriveLine = regexp.MustCompile(`(?m)^would redrive (\d+) to `)
)

func redrivenCount(t *testing.T, out string) int {
	t.Helper()
	m := redrivenLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary line in the redrive output:\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func headerValue(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func tripIDOf(t testing.TB, key []byte) int64 {
	t.Helper()
	id, err := strconv.ParseInt(string(key), 10, 64)
	if err != nil {
		t.Fatalf("record key %q is not a trip_id", key)
	}
	return id
}

// readLetters reads a dead-letter topic from its beginning to its end.
func readLetters(t *testing.T, brokers, topic string) []*dlq.Letter {
	t.Helper()
	recs := readTopic(t, brokers, topic)
	out := make([]*dlq.Letter, 0, len(recs))
	for _, r := range recs {
		l, err := dlq.FromKafka(r)
		if err != nil {
			t.Fatalf("%s/%d@%d: %v", r.Topic, r.Partition, r.Offset, err)
		}
		out = append(out, l)
	}
	return out
}

// readTopic reads every record of a topic up to its end offsets at the time
// of the call; a topic that does not exist is empty.
func readTopic(t *testing.T, brokers, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	seeds := strings.Split(brokers, ",")
	adm, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, topic)
	adm.Close()
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	if len(want) == 0 {
		return nil
	}
	parts := map[int32]kgo.Offset{}
	for p := range want {
		parts[p] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}),
		kgo.FetchMaxPartitionBytes(4<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: %v (still waiting for %v)", topic, ctx.Err(), want)
		}
		fs.EachError(func(_ string, p int32, err error) { t.Logf("fetching %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := want[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			out = append(out, r)
			if r.Offset == end-1 {
				delete(want, r.Partition)
			}
		})
	}
	return out
}

// createTopic creates a dead-letter topic as an operator would: sinkd's
// producers do not ask the broker to create topics.
func createTopic(t *testing.T, brokers, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 4, -1, nil, topic); err != nil {
		t.Fatalf("creating topic %s: %v", topic, err)
	}
}

// committed reads a group's committed offsets.
func committed(ctx context.Context, brokers, group string) (map[int32]int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil && o.At >= 0 {
			out[o.Partition] = o.At
		}
	})
	return out, nil
}

// broker is a kfake broker process of our own (the stack's binary), for a
// dead-letter stream that can go down while the source stays up.
type broker struct {
	t    *testing.T
	bin  string
	port int
	data string
	cmd  *exec.Cmd
	done chan struct{}
}

func (h *harness) startBroker(data string) *broker {
	h.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	b := &broker{t: h.t, bin: filepath.Join(h.env.Dir, "bin", "kafkabroker"), port: port, data: data}
	b.start()
	h.t.Cleanup(b.stop)
	return b
}

func (b *broker) addr() string { return "127.0.0.1:" + strconv.Itoa(b.port) }

func (b *broker) start() {
	b.t.Helper()
	b.cmd = exec.Command(b.bin, "-port", strconv.Itoa(b.port), "-data", b.data, "-partitions", "4")
	b.cmd.Stdout, b.cmd.Stderr = io.Discard, os.Stderr
	if err := b.cmd.Start(); err != nil {
		b.t.Fatalf("starting %s: %v", b.bin, err)
	}
	b.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(b.cmd, b.done)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", b.addr(), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("broker on %s did not come up: %v", b.addr(), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends the broker cleanly (its log is synced on shutdown).
func (b *broker) stop() {
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(15 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
	b.cmd = nil
}

// TestDeadLetterStreamOutage: the dead-letter topic lives on a broker of its
// own, stopped for 20 s mid-run while the source stays up. While it is down,
// the group's committed offsets must never pass a bad record whose letter was
// not durable in the dead-letter topic when it went down (read from a copy of
// the stopped broker's log). sinkd keeps running, and afterwards every letter
// is there and every good trip is in S3 exactly once.
func TestDeadLetterStreamOutage(t *testing.T) {
	h := newHarness(t, "dlqdown")
	b := h.startBroker(t.TempDir())
	h.dlqBrokers, h.dlqTopic = b.addr(), "dead-letters"
	createTopic(t, b.addr(), h.dlqTopic)
	h.maxRecordSize = "512KiB"
	// Files roll quickly, so that the committed offsets follow the records
	// closely: only the dead-letter flush can hold them back.
	h.fileAge = "1s"
	produced := h.produceAsync(40_000, 4, 0.02, 62, 1000)
	p := h.start("dlqdown-1")
	if !p.waitLine("manifest written", time.Minute) {
		t.Fatalf("no checkpoint before the outage (log %s)", p.logFile.Name())
	}
	time.Sleep(3 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	beforeOutage, err := committed(ctx, h.env.KafkaBrokers, h.group)
	cancel()
	if err != nil {
		t.Fatalf("reading the group's offsets: %v", err)
	}
	b.stop()
	outageEnd := time.Now().Add(20 * time.Second)
	durable := map[int64]bool{} // trips whose letter was durable when the broker stopped
	for _, l := range h.logSnapshot(b.data, "dead-letters") {
		durable[tripIDOf(t, l.Record.Key)] = true
	}
	var samples []map[int32]int64
	for time.Now().Before(outageEnd) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := committed(ctx, h.env.KafkaBrokers, h.group)
		cancel()
		if err != nil {
			t.Fatalf("reading the group's offsets: %v", err)
		}
		samples = append(samples, c)
		if p.exited() {
			t.Fatalf("sinkd exited during the dead-letter outage: %v (log %s)", p.err, p.logFile.Name())
		}
		time.Sleep(time.Second)
	}
	b.start()
	produced()
	h.waitDrained(3*time.Minute, p)
	p.stop(t, time.Minute)

	// Where each bad record sits in the source.
	firstPending := map[int32]int64{} // per partition, the first bad record without a durable letter
	badAt := map[int32][]int64{}
	for _, r := range readTopic(t, h.env.KafkaBrokers, h.topic) {
		trip := tripIDOf(t, r.Key)
		if _, bad := h.badInputs[trip]; !bad {
			continue
		}
		badAt[r.Partition] = append(badAt[r.Partition], r.Offset)
		if first, ok := firstPending[r.Partition]; !durable[trip] && (!ok || r.Offset < first) {
			firstPending[r.Partition] = r.Offset
		}
	}
	violations := 0
	for i, s := range samples {
		for part, c := range s {
			if first, ok := firstPending[part]; ok && c > first {
				violations++
				t.Errorf("sample %d: partition %d committed at %d, past the bad record at offset %d whose letter was not durable", i, part, c, first)
			}
		}
	}
	t.Logf("dead-letter broker down %s: %d letters durable at the stop, first pending bad record per partition %v; committed before the stop %v; %d offset samples during the outage, first %v, last %v",
		20*time.Second, len(durable), firstPending, beforeOutage, len(samples), samples[0], samples[len(samples)-1])
	advanced := false
	for _, c := range beforeOutage {
		advanced = advanced || c > 0
	}
	if len(firstPending) == 0 || len(samples) < 10 || !advanced {
		t.Fatalf("the outage proved nothing: %d partitions with a pending letter, %d samples, offsets committed before: %v", len(firstPending), len(samples), beforeOutage)
	}
	if violations > 0 {
		t.Fatalf("%d committed offsets passed a dead letter that was not durable", violations)
	}
	h.checkLetters(readLetters(t, b.addr(), h.dlqTopic))
	h.verify("trips")
}

// logSnapshot reads the letters of a stopped broker's log: it copies the data
// directory, serves the copy from a broker of its own and reads topic back.
func (h *harness) logSnapshot(data, topic string) []*dlq.Letter {
	h.t.Helper()
	snap := h.t.TempDir()
	if err := os.CopyFS(snap, os.DirFS(data)); err != nil {
		h.t.Fatalf("copying the broker's log: %v", err)
	}
	b := h.startBroker(snap)
	defer b.stop()
	return readLetters(h.t, b.addr(), topic)
}

// TestDeadLettersSurviveKafkaRestart: the stack's single broker, which holds
// both the source and the dead-letter topic, is stopped for 20 s mid-run.
// sinkd must keep running, and after the broker returns every bad trip has
// its letter and every good trip is in S3 exactly once. (Should sinkd exit,
// the test fails but restarts it, as a supervisor would, to check the rest.)
func TestDeadLettersSurviveKafkaRestart(t *testing.T) {
	h := newHarness(t, "kafkadown")
	h.dlqTopic = h.topic + "-dlq"
	createTopic(t, h.env.KafkaBrokers, h.dlqTopic)
	h.maxRecordSize = "512KiB"
	produced := h.produceAsync(50_000, 4, 0.02, 63, 2000)
	p := h.start("kafkadown-1")
	if !p.waitLine("manifest written", time.Minute) {
		t.Fatalf("no checkpoint before the outage (log %s)", p.logFile.Name())
	}
	time.Sleep(3 * time.Second)
	before := len(readTopic(t, h.env.KafkaBrokers, h.dlqTopic))
	stack := filepath.Join(h.env.Dir, "..", "..", "scripts", "stack", "stack.sh")
	if out, err := exec.Command("bash", stack, "stop", "kafka").CombinedOutput(); err != nil {
		t.Fatalf("stopping kafka: %v\n%s", err, out)
	}
	restarted := false
	defer func() {
		if !restarted {
			_ = exec.Command("bash", stack, "start", "kafka").Run()
		}
	}()
	time.Sleep(20 * time.Second)
	if out, err := exec.Command("bash", stack, "start", "kafka").CombinedOutput(); err != nil {
		t.Fatalf("starting kafka: %v\n%s", err, out)
	}
	restarted = true
	// The group session is lost to the outage; give sinkd time to rejoin.
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
	}
	if p.exited() {
		// Still check that nothing was lost, restarting sinkd as its
		// supervisor would.
		t.Errorf("sinkd exited during the Kafka outage: %v; log tail:\n%s", p.err, tail(p.logFile.Name(), 3))
		p = h.start("kafkadown-1")
		p.waitRunning(t)
	}
	produced()
	h.waitDrained(3*time.Minute, p)
	p.stop(t, time.Minute)
	t.Logf("%d letters on the wire when Kafka stopped", before)
	h.checkLetters(readLetters(t, h.env.KafkaBrokers, h.dlqTopic))
	h.verify("trips")
}
