package dlq

// These tests run against franz-go's kfake, a Kafka protocol server started
// in-process on loopback; they need no external stack.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/record"
)

func newCluster(t *testing.T, opts ...kfake.Opt) (*kfake.Cluster, string) {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.SeedTopics(3, "dlq", "trips")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, strings.Join(c.ListenAddrs(), ",")
}

func newKafkaSink(t *testing.T, brokers string, o Options) Sink {
	t.Helper()
	sink, err := NewKafka(t.Context(), KafkaConfig{Brokers: conf.StringList{brokers}, Topic: "dlq"}, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sink.Close(ctx)
	})
	return sink
}

// topicLetters reads every letter of a topic, failing on records that are
// not letters.
func topicLetters(t *testing.T, brokers, topic string) []*Letter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*Letter
	var warn bytes.Buffer
	if err := readKafka(ctx, []string{brokers}, topic, conf.TLS{}, conf.SASL{}, &warn, func(l *Letter) error { out = append(out, l); return nil }); err != nil {
		t.Fatal(err)
	}
	if warn.Len() > 0 {
		t.Fatalf("non-letters in %s: %s", topic, warn.String())
	}
	return out
}

// topicRecords reads every record of a topic as the pipeline would see it.
func topicRecords(t *testing.T, brokers, topic string, want int) []*record.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*record.Record
	deadline := time.Now().Add(3 * time.Second)
	// Poll until want records arrived, then a little longer to catch extras.
	for len(out) < want || time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			rec := &record.Record{Source: record.Kafka, Key: r.Key, Value: r.Value,
				Partition: record.PartitionID{Stream: r.Topic, Partition: r.Partition},
				Position:  record.Position{Offset: r.Offset}, Timestamp: r.Timestamp}
			for _, h := range r.Headers {
				rec.Headers = append(rec.Headers, record.Header{Key: h.Key, Value: h.Value})
			}
			out = append(out, rec)
		})
		if time.Now().After(deadline.Add(20 * time.Second)) {
			t.Fatalf("read %d records of %s, want %d", len(out), topic, want)
		}
	}
	return out
}

func TestKafkaSinkSendFlushReadBack(t *testing.T) {
	_, brokers := newCluster(t)
	reg := prometheus.NewRegistry()
	sink := newKafkaSink(t, brokers, Options{Pipeline: "taxi", Version: "test", Registerer: reg, MaxBuffered: 8})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var sent []*Letter
	for i := range 50 { // more than MaxBuffered: Send must wait for acks, not fail
		l := kafkaLetter(int64(i), StageDecode)
		l.Pipeline, l.Version = "", ""
		if i%5 == 0 {
			l = kinesisLetter(fmt.Sprintf("4959033827149025660855969253836157109592157598913658%04d", i), int64(i))
		}
		if err := sink.Send(ctx, l); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, l)
	}
	if err := sink.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := metricValue(t, reg, "sinkd_dlq_buffered_letters", nil); got != 0 {
		t.Errorf("buffered gauge %v after Flush", got)
	}
	if got := metricValue(t, reg, "sinkd_dlq_records_total", map[string]string{"stage": "decode", "reason": "type_mismatch"}); got != 40 {
		t.Errorf("decode/type_mismatch counted %v, want 40", got)
	}

	got := topicLetters(t, brokers, "dlq")
	byID := map[string]*Letter{}
	for _, l := range got {
		if byID[l.ID()] != nil {
			t.Errorf("letter %s twice", l.ID())
		}
		byID[l.ID()] = l
	}
	if len(byID) != len(sent) {
		t.Fatalf("read %d letters, want %d", len(byID), len(sent))
	}
	for _, want := range sent {
		l := byID[want.ID()]
		if l == nil {
			t.Fatalf("letter %s missing", want.ID())
		}
		assertSameLetter(t, l, stamped(want, Options{Pipeline: "taxi", Version: "test"}))
	}

	// Inspect reads the same topic; its JSON output is the file format.
	var out, errOut bytes.Buffer
	if code := Inspect(ctx, []string{"--kafka-brokers", brokers, "--topic", "dlq", "--stage", "opensearch", "--json"}, &out, &errOut); code != 0 {
		t.Fatalf("inspect exit %d: %s", code, errOut.String())
	}
	if n := strings.Count(out.String(), "\n"); n != 10 {
		t.Errorf("inspect --stage opensearch printed %d letters, want 10", n)
	}
}

func runRedrive(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code = Redrive(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestKafkaRedrive(t *testing.T) {
	_, brokers := newCluster(t)
	sink := newKafkaSink(t, brokers, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	decode := []*Letter{kafkaLetter(1, StageDecode), kafkaLetter(2, StageDecode), kafkaLetter(3, StageDecode)}
	decode[1].RedriveCount = 2
	decode[2].RedriveCount = 3 // at the limit
	mapping := kinesisLetter("4959033827149025660855969253836157109592157598913658889", 0)
	for _, l := range append(decode, decode[0], mapping) { // decode[0] twice: a replayed duplicate
		if err := sink.Send(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	selectDecode := []string{"--kafka-brokers", brokers, "--topic", "dlq", "--stage", "decode", "--to-topic", "trips", "--rate", "1000"}

	t.Run("refuses the dead-letter topic", func(t *testing.T) {
		code, _, stderr := runRedrive(t, "--kafka-brokers", brokers, "--topic", "dlq", "--to-topic", "dlq")
		if code != 2 || !strings.Contains(stderr, "refusing") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
	})

	t.Run("dry run writes nothing", func(t *testing.T) {
		code, stdout, stderr := runRedrive(t, append(selectDecode, "--dry-run")...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if !strings.Contains(stdout, "would redrive 2 to kafka:trips; skipped 1 at --max-redrives, 1 duplicate ids, 0 truncated") {
			t.Errorf("summary:\n%s", stdout)
		}
		if recs := topicRecords(t, brokers, "trips", 0); len(recs) != 0 {
			t.Fatalf("dry run wrote %d records", len(recs))
		}
	})

	t.Run("writes originals with a redrive count", func(t *testing.T) {
		code, stdout, stderr := runRedrive(t, selectDecode...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if !strings.Contains(stdout, "redriven 2 to kafka:trips") {
			t.Errorf("summary:\n%s", stdout)
		}
		recs := topicRecords(t, brokers, "trips", 2)
		if len(recs) != 2 {
			t.Fatalf("%d records in trips, want 2", len(recs))
		}
		counts := map[int]bool{}
		for _, r := range recs {
			want := decode[0].Record
			if !bytes.Equal(r.Value, want.Value) || !bytes.Equal(r.Key, want.Key) {
				t.Errorf("redriven record %q/%q is not the original %q/%q", r.Key, r.Value, want.Key, want.Value)
			}
			for _, h := range r.Headers {
				if strings.HasPrefix(h.Key, headerPrefix) {
					t.Errorf("envelope header %s leaked into the redriven record", h.Key)
				}
			}
			if r.Headers[0].Key != "trace" || string(r.Headers[0].Value) != "abc" {
				t.Errorf("original headers not kept: %v", r.Headers)
			}
			counts[RedriveCount(r)] = true
		}
		if !counts[1] || !counts[3] {
			t.Errorf("redrive counts %v, want 1 and 3", counts)
		}
	})
}

// TestKafkaRedriveStopsAtLimit plays the whole loop: a record keeps failing,
// is dead-lettered with the count its header carries, and is redriven, until
// the count reaches --max-redrives.
func TestKafkaRedriveStopsAtLimit(t *testing.T) {
	_, brokers := newCluster(t, kfake.SeedTopics(1, "dlq-0", "dlq-1", "dlq-2", "trips-0", "trips-1"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rec := kafkaLetter(7, StageDecode).Record
	const limit = 2
	for round := 0; ; round++ {
		// The pipeline dead-letters the record, carrying its redrive count.
		l := kafkaLetter(0, StageDecode)
		l.Record = rec
		l.RedriveCount = RedriveCount(rec)
		if l.RedriveCount != round {
			t.Fatalf("round %d: record carries redrive count %d", round, l.RedriveCount)
		}
		dlqTopic := fmt.Sprintf("dlq-%d", round)
		sink, err := NewKafka(t.Context(), KafkaConfig{Brokers: conf.StringList{brokers}, Topic: dlqTopic}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := sink.Send(ctx, l); err != nil {
			t.Fatal(err)
		}
		if err := sink.Close(ctx); err != nil {
			t.Fatal(err)
		}
		target := fmt.Sprintf("trips-%d", round)
		code, stdout, stderr := runRedrive(t, "--kafka-brokers", brokers, "--topic", dlqTopic, "--to-topic", target, "--max-redrives", fmt.Sprint(limit))
		if code != 0 {
			t.Fatalf("round %d: exit %d: %s", round, code, stderr)
		}
		if round == limit {
			if !strings.Contains(stdout, "redriven 0") || !strings.Contains(stdout, "skipped 1 at --max-redrives") {
				t.Fatalf("round %d: letter at the limit not skipped:\n%s", round, stdout)
			}
			return
		}
		recs := topicRecords(t, brokers, target, 1)
		if len(recs) != 1 {
			t.Fatalf("round %d: %d records redriven", round, len(recs))
		}
		rec = recs[0]
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestKafkaOutage stops the broker under the sink, shows that Flush blocks
// (and Send blocks once the buffer is full) while it is down, and that every
// letter arrives exactly once after it restarts on the same port.
func TestKafkaOutage(t *testing.T) {
	port, dir := freePort(t), t.TempDir()
	start := func() *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.Ports(port), kfake.DataDir(dir), kfake.SeedTopics(3, "dlq"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cluster := start()
	brokers := fmt.Sprintf("127.0.0.1:%d", port)
	reg := prometheus.NewRegistry()
	const bound = 30
	sink := newKafkaSink(t, brokers, Options{Registerer: reg, MaxBuffered: bound})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	var want []string
	send := func(from, n int) {
		for i := from; i < from+n; i++ {
			l := kafkaLetter(int64(i), StageParquet)
			if err := sink.Send(ctx, l); err != nil {
				t.Fatal(err)
			}
			want = append(want, l.ID())
		}
	}
	send(0, 10)
	if err := sink.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	cluster.Close()
	send(10, bound)
	full, cancelFull := context.WithTimeout(ctx, 300*time.Millisecond)
	err := sink.Send(full, kafkaLetter(999, StageParquet))
	cancelFull()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send into a full buffer with the broker down: %v, want a deadline error", err)
	}
	flushed := make(chan error, 1)
	go func() { flushed <- sink.Flush(ctx) }()
	select {
	case err := <-flushed:
		t.Fatalf("Flush returned %v while the broker was down", err)
	case <-time.After(2 * time.Second):
	}
	if got := metricValue(t, reg, "sinkd_dlq_buffered_letters", nil); got != bound {
		t.Errorf("buffered gauge %v during the outage, want %d", got, bound)
	}

	cluster = start()
	defer cluster.Close()
	if err := <-flushed; err != nil {
		t.Fatalf("Flush after the broker came back: %v", err)
	}
	got := topicLetters(t, brokers, "dlq")
	seen := map[string]int{}
	for _, l := range got {
		seen[l.ID()]++
	}
	for _, id := range want {
		if seen[id] != 1 {
			t.Errorf("letter %s present %d times", id, seen[id])
		}
	}
	if len(seen) != len(want) {
		t.Errorf("%d distinct letters in the topic, want %d", len(seen), len(want))
	}
}
