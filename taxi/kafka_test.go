package taxi

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// newCluster starts an in-process kfake cluster: the real Kafka protocol on
// loopback.
func newCluster(t *testing.T) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// consume reads n records of topic from the start.
func consume(t *testing.T, brokers []string, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of %d records: %v", len(out), n, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		out = append(out, fs.Records()...)
	}
	if len(out) != n {
		t.Fatalf("read %d records, want %d", len(out), n)
	}
	return out
}

func TestKafkaSinkDeliversEveryTripOnceInOrder(t *testing.T) {
	brokers := newCluster(t)
	ctx := context.Background()
	sink, err := NewKafkaSink(ctx, brokers, "trips", 6)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()

	const n = 10_000
	newGen := func() *Generator { return NewGenerator(9, time.Time{}, WithFirstID(700), WithOversize(20_000)) }
	st, err := WriteTopic(ctx, sink, newGen(), n, 0.05)
	if err != nil {
		t.Fatal(err)
	}
	if st.Events != n || st.Bad < n/25 || st.Bad > n/15 {
		t.Errorf("stats %+v", st)
	}

	// What was sent, regenerated from the seed.
	want := map[int64][]byte{}
	g := newGen()
	for range n {
		v, _ := g.Event(0.05)
		id, _ := g.Last()
		want[id] = v
	}

	seen := map[int64]bool{}
	last := map[int32]int64{}
	var bytesRead int64
	for _, r := range consume(t, brokers, "trips", n) {
		id, err := strconv.ParseInt(string(r.Key), 10, 64)
		if err != nil {
			t.Fatalf("key %q is not a trip_id", r.Key)
		}
		if seen[id] {
			t.Fatalf("trip %d delivered twice", id)
		}
		seen[id] = true
		if !bytes.Equal(r.Value, want[id]) {
			t.Fatalf("trip %d: value differs from what was generated", id)
		}
		if id <= last[r.Partition] {
			t.Fatalf("partition %d: trip %d after %d", r.Partition, id, last[r.Partition])
		}
		last[r.Partition] = id
		bytesRead += int64(len(r.Value))
	}
	for id := int64(700); id < 700+n; id++ {
		if !seen[id] {
			t.Fatalf("trip %d missing", id)
		}
	}
	if len(last) != 6 {
		t.Errorf("records spread over %d partitions, want 6", len(last))
	}
	if bytesRead != st.Bytes {
		t.Errorf("read %d bytes, sent %d", bytesRead, st.Bytes)
	}
}

func TestProduceFlags(t *testing.T) {
	brokers := strings.Join(newCluster(t), ",")
	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stderr string // substring
		stdout string
	}{
		{name: "help", args: []string{"--help"}, code: 0, stdout: "--speedup"},
		{name: "no destination", args: []string{"--count", "1"}, code: 2, stderr: "no destination"},
		{name: "both destinations", args: []string{"--kafka-brokers", brokers, "--kinesis-stream", "s"}, code: 2, stderr: "exclusive"},
		{name: "both in environment", env: map[string]string{"SINKD_KAFKA_BROKERS": brokers, "SINKD_KINESIS_STREAM": "s"}, code: 2, stderr: "choose"},
		{name: "explicit stream beats env brokers", env: map[string]string{"SINKD_KAFKA_BROKERS": brokers}, args: []string{"--kinesis-stream", "s", "--topic", "t"}, code: 2, stderr: "--topic applies to Kafka"},
		{name: "kpl with kafka", args: []string{"--kafka-brokers", brokers, "--kpl"}, code: 2, stderr: "--kpl applies to Kinesis"},
		{name: "rate and speedup", args: []string{"--kafka-brokers", brokers, "--rate", "10", "--speedup", "5"}, code: 2, stderr: "exclusive"},
		{name: "negative rate", args: []string{"--kafka-brokers", brokers, "--rate", "-1"}, code: 2, stderr: "negative"},
		{name: "negative count", args: []string{"--kafka-brokers", brokers, "--count", "-5"}, code: 2, stderr: "--count"},
		{name: "bad ratio over 1", args: []string{"--kafka-brokers", brokers, "--bad-ratio", "1.5"}, code: 2, stderr: "--bad-ratio"},
		{name: "bad start", args: []string{"--kafka-brokers", brokers, "--start", "yesterday"}, code: 2, stderr: "--start"},
		{name: "stray argument", args: []string{"--kafka-brokers", brokers, "now"}, code: 2, stderr: "unexpected argument"},
		{name: "unknown flag", args: []string{"--kafka-brokers", brokers, "--fast"}, code: 2, stderr: "not defined"},
		{name: "not a number", args: []string{"--kafka-brokers", brokers, "--count", "many"}, code: 2, stderr: "invalid value"},
		{name: "unreachable broker", args: []string{"--kafka-brokers", "127.0.0.1:1", "--count", "10"}, code: 1, stderr: "sinkd produce:"},
		{name: "produces", args: []string{"--kafka-brokers", brokers, "--topic", "flags", "--count", "300", "--bad-ratio", "0.1"}, code: 0, stderr: "300 events ("},
		{name: "topic from env", env: map[string]string{"SINKD_KAFKA_BROKERS": brokers, "SINKD_KAFKA_TOPIC": "envtopic"}, args: []string{"--count", "5"}, code: 0, stderr: "to kafka topic envtopic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"SINKD_KAFKA_BROKERS", "SINKD_KAFKA_TOPIC", "SINKD_KINESIS_STREAM", "SINKD_KINESIS_ENDPOINT"} {
				t.Setenv(k, tt.env[k])
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var stdout, stderr bytes.Buffer
			code := Produce(ctx, tt.args, &stdout, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.stderr) || !strings.Contains(stdout.String(), tt.stdout) {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout.String(), stderr.String())
			}
			if strings.Contains(stderr.String(), "\r") {
				t.Error("progress line written to a non-terminal")
			}
		})
	}
}

func TestProduceSpeedup(t *testing.T) {
	brokers := newCluster(t)
	t.Setenv("SINKD_KINESIS_STREAM", "")
	const seed, speedup = 4, 10.0
	start := time.Date(2018, 3, 1, 0, 0, 0, 0, time.UTC)

	// The events whose pickups fall in the first 2 s of event time.
	g := NewGenerator(seed, start)
	var offsets []time.Duration
	first := time.Time{}
	for {
		g.Next()
		_, at := g.Last()
		if first.IsZero() {
			first = at
		}
		if at.Sub(first) > 2*time.Second {
			break
		}
		offsets = append(offsets, at.Sub(first))
	}
	span := offsets[len(offsets)-1]
	if len(offsets) < 20 {
		t.Fatalf("only %d events in 2 s of event time", len(offsets))
	}

	var stderr bytes.Buffer
	began := time.Now()
	code := Produce(context.Background(), []string{
		"--kafka-brokers", strings.Join(brokers, ","), "--topic", "replay", "--partitions", "1",
		"--seed", strconv.Itoa(seed), "--start", start.Format(time.RFC3339),
		"--count", strconv.Itoa(len(offsets)), "--speedup", strconv.FormatFloat(speedup, 'f', -1, 64),
	}, &bytes.Buffer{}, &stderr)
	took := time.Since(began)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	wantSpan := time.Duration(float64(span) / speedup)
	if took < wantSpan || took > wantSpan+time.Second {
		t.Errorf("replaying %v of event time at x%v took %v, want about %v", span, speedup, took, wantSpan)
	}

	// Each record left at its event-time offset divided by the speed-up:
	// the producer stamps records when they are sent, truncated to the
	// millisecond. Never early (beyond the truncation and the time the
	// first record took to leave, which all others are measured from).
	// Late only by scheduling: a loaded machine
	// can stall the sender for 100 ms or more (CI saw 110 ms), after which
	// the overdue records go at once, so one stall may not fail the test,
	// but lateness that is typical of the run (the median) must stay small.
	// Sending everything at the start fails the first bound; sending the
	// whole batch at the end, or pacing at x1, fails the other two.
	recs := consume(t, brokers, "replay", len(offsets))
	sent0 := recs[0].Timestamp
	late := make([]time.Duration, len(recs))
	for i, r := range recs {
		got := r.Timestamp.Sub(sent0)
		want := time.Duration(float64(offsets[i]) / speedup)
		late[i] = got - want
		if late[i] < -10*time.Millisecond || late[i] > 500*time.Millisecond {
			t.Errorf("event %d sent at +%v, want +%v", i, got, want)
		}
	}
	slices.Sort(late)
	if median := late[len(late)/2]; median > 25*time.Millisecond {
		t.Errorf("events were sent a median %v after their due time, want under 25ms", median)
	}
}

func TestProduceRate(t *testing.T) {
	brokers := strings.Join(newCluster(t), ",")
	t.Setenv("SINKD_KINESIS_STREAM", "")
	var stderr bytes.Buffer
	began := time.Now()
	// 200 events/s with a burst of 10: the other 50 take 0.25 s.
	code := Produce(context.Background(), []string{"--kafka-brokers", brokers, "--count", "60", "--rate", "200"}, &bytes.Buffer{}, &stderr)
	took := time.Since(began)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if took < 240*time.Millisecond || took > 1500*time.Millisecond {
		t.Errorf("60 events at 200/s took %v, want about 0.25 s", took)
	}
}

func TestProduceInterruptedFlushes(t *testing.T) {
	brokers := newCluster(t)
	t.Setenv("SINKD_KINESIS_STREAM", "")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var stderr bytes.Buffer
	// No --count: runs until the context ends, then delivers what it sent.
	code := Produce(ctx, []string{"--kafka-brokers", strings.Join(brokers, ","), "--topic", "endless", "--rate", "1000"}, &bytes.Buffer{}, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var sent int
	if _, err := fmt.Sscanf(stderr.String(), "sinkd produce: %d events", &sent); err != nil || sent < 100 {
		t.Fatalf("summary %q: %v", stderr.String(), err)
	}
	consume(t, brokers, "endless", sent)
}
