package dlq

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sinkd/sinkd/record"
)

var t0 = time.Date(2018, 1, 1, 0, 21, 5, 123456789, time.UTC)

func kafkaLetter(offset int64, stage Stage) *Letter {
	return &Letter{
		Record: &record.Record{
			Source:    record.Kafka,
			Partition: record.PartitionID{Stream: "trips", Partition: 3},
			Position:  record.Position{Offset: offset},
			Key:       []byte("trip-1234567"),
			Value:     []byte(`{"trip_id":1234567,"type":"yellow","fare_amount":"4.5"}`),
			Headers:   []record.Header{{Key: "trace", Value: []byte("abc")}, {Key: "bin", Value: []byte{0, 1, 2, 255}}},
			Timestamp: t0,
		},
		Stage:        stage,
		Class:        "type_mismatch",
		Message:      `field fare_amount: expected double, got string "4.5"`,
		Attempts:     1,
		FirstFailure: t0.Add(time.Second),
		LastFailure:  t0.Add(2 * time.Second),
		Pipeline:     "taxi",
		Version:      "v0.1.0",
	}
}

func kinesisLetter(seq string, sub int64) *Letter {
	return &Letter{
		Record: &record.Record{
			Source:    record.Kinesis,
			Partition: record.PartitionID{Stream: "trips", Shard: "shardId-000000000001"},
			Position:  record.Position{Seq: seq, Sub: sub},
			Key:       []byte("pk-7"),
			Value:     []byte{0xf3, 0x89, 'x', '\n', 0},
			Timestamp: t0,
		},
		Stage:        StageOpenSearch,
		Class:        "mapper_parsing_exception",
		Message:      "failed to parse field [fare_amount] of type [double]",
		Attempts:     4,
		FirstFailure: t0,
		LastFailure:  t0.Add(time.Minute),
		Details:      map[string]string{"index": "trips-yellow", "id": "1234567", "status": "400"},
		RedriveCount: 2,
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	noKey := kafkaLetter(0, StageDecode)
	noKey.Record.Key = nil
	noKey.Record.Headers = nil
	noKey.Record.Value = []byte{}
	noKey.LastFailure = time.Time{}
	truncated := kafkaLetter(9, StageOversize)
	truncated.OriginalSize = 5 << 20

	cases := map[string]*Letter{
		"kafka decode":        kafkaLetter(42, StageDecode),
		"kinesis opensearch":  kinesisLetter("49590338271490256608559692538361571095921575989136588898", 0),
		"kinesis kpl sub":     kinesisLetter("49590338271490256608559692538361571095921575989136588898", 17),
		"empty key and value": noKey,
		"truncated oversize":  truncated,
	}
	for name, l := range cases {
		t.Run(name+"/kafka", func(t *testing.T) {
			kr := kafkaRecord(l, "dlq")
			if !bytes.Equal(kr.Value, l.Record.Value) || !bytes.Equal(kr.Key, l.Record.Key) {
				t.Fatalf("kafka record key/value are not the original bytes")
			}
			if got := header(kr, HeaderID); got != l.ID() {
				t.Fatalf("id header %q, want %q", got, l.ID())
			}
			got, err := FromKafka(kr)
			if err != nil {
				t.Fatal(err)
			}
			assertSameLetter(t, got, l)
		})
		t.Run(name+"/json", func(t *testing.T) {
			b, err := ToJSON(l)
			if err != nil {
				t.Fatal(err)
			}
			got, err := FromJSON(b)
			if err != nil {
				t.Fatal(err)
			}
			assertSameLetter(t, got, l)
		})
	}
}

func header(kr *kgo.Record, key string) string {
	for _, h := range kr.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func assertSameLetter(t *testing.T, got, want *Letter) {
	t.Helper()
	if got.ID() != want.ID() {
		t.Errorf("id %s, want %s", got.ID(), want.ID())
	}
	g, w := got.Record, want.Record
	if g.Source != w.Source || g.Partition != w.Partition || g.Position != w.Position || !g.Timestamp.Equal(w.Timestamp) {
		t.Errorf("coordinates %s %v, want %s %v", g.Coordinates(), g.Timestamp, w.Coordinates(), w.Timestamp)
	}
	if !bytes.Equal(g.Key, w.Key) || !bytes.Equal(g.Value, w.Value) {
		t.Errorf("key/value %q/%q, want %q/%q", g.Key, g.Value, w.Key, w.Value)
	}
	if len(g.Headers) != len(w.Headers) {
		t.Fatalf("headers %v, want %v", g.Headers, w.Headers)
	}
	for i := range g.Headers {
		if g.Headers[i].Key != w.Headers[i].Key || !bytes.Equal(g.Headers[i].Value, w.Headers[i].Value) {
			t.Errorf("header %d: %v, want %v", i, g.Headers[i], w.Headers[i])
		}
	}
	if got.Stage != want.Stage || got.Class != want.Class || got.Message != want.Message ||
		got.Attempts != want.Attempts || got.RedriveCount != want.RedriveCount ||
		got.Pipeline != want.Pipeline || got.Version != want.Version || got.OriginalSize != want.OriginalSize {
		t.Errorf("metadata\n got %+v\nwant %+v", got, want)
	}
	if !got.FirstFailure.Equal(want.FirstFailure) || !got.LastFailure.Equal(want.LastFailure) {
		t.Errorf("failure times %v..%v, want %v..%v", got.FirstFailure, got.LastFailure, want.FirstFailure, want.LastFailure)
	}
	if len(got.Details) != len(want.Details) {
		t.Errorf("details %v, want %v", got.Details, want.Details)
	}
	for k, v := range want.Details {
		if got.Details[k] != v {
			t.Errorf("detail %s=%q, want %q", k, got.Details[k], v)
		}
	}
}

func TestFromKafkaRejectsPlainRecords(t *testing.T) {
	if _, err := FromKafka(&kgo.Record{Value: []byte("{}")}); err == nil {
		t.Fatal("a record without envelope headers decoded as a letter")
	}
	if _, err := FromJSON([]byte(`{"trip_id":1}`)); err == nil {
		t.Fatal("a JSON object without an id decoded as a letter")
	}
	kr := kafkaRecord(kafkaLetter(1, StageDecode), "dlq")
	for i := range kr.Headers {
		if kr.Headers[i].Key == HeaderPosition {
			kr.Headers[i].Value = []byte("not-a-number")
		}
	}
	if _, err := FromKafka(kr); err == nil {
		t.Fatal("a malformed offset decoded without error")
	}
}

func TestIDDeterministicAndDistinct(t *testing.T) {
	const seq = "49590338271490256608559692538361571095921575989136588898"
	base := kafkaLetter(42, StageDecode)
	if a, b := base.ID(), kafkaLetter(42, StageDecode).ID(); a != b {
		t.Fatalf("same failure, different ids %s %s", a, b)
	}
	// Attempts, times, messages and redrive counts change on a replay; the
	// id must not.
	replayed := kafkaLetter(42, StageDecode)
	replayed.Attempts, replayed.Message, replayed.LastFailure, replayed.RedriveCount = 9, "other words", time.Now(), 1
	if base.ID() != replayed.ID() {
		t.Fatal("id depends on attempt data")
	}

	variants := map[string]*Letter{
		"base":          base,
		"stage":         kafkaLetter(42, StageSchema),
		"offset":        kafkaLetter(43, StageDecode),
		"kinesis seq":   kinesisLetter(seq, 0),
		"kinesis sub 1": kinesisLetter(seq, 1),
		"kinesis sub 2": kinesisLetter(seq, 2),
		"kinesis next":  kinesisLetter(seq[:len(seq)-1]+"9", 0),
	}
	other := kafkaLetter(42, StageDecode)
	other.Record.Partition.Partition = 4
	variants["partition"] = other
	other = kafkaLetter(42, StageDecode)
	other.Record.Partition.Stream = "trips2"
	variants["stream"] = other
	other = kinesisLetter(seq, 0)
	other.Details = map[string]string{"index": "trips-green"}
	variants["opensearch index"] = other
	other = kinesisLetter(seq, 0)
	other.Record.Partition.Shard = "shardId-000000000002"
	variants["shard"] = other

	seen := map[string]string{}
	for name, l := range variants {
		id := l.ID()
		if len(id) != 32 {
			t.Errorf("%s: id %q is not 32 hex digits", name, id)
		}
		if prev, dup := seen[id]; dup {
			t.Errorf("%s and %s share id %s", name, prev, id)
		}
		seen[id] = name
	}

	// Only the OpenSearch index among details is part of the id.
	a, b := kafkaLetter(42, StageDecode), kafkaLetter(42, StageDecode)
	b.Details = map[string]string{"index": "x", "status": "400"}
	if a.ID() != b.ID() {
		t.Error("details changed the id of a non-opensearch letter")
	}
}

func TestReasonIsBounded(t *testing.T) {
	cases := []struct{ class, want string }{
		{"type_mismatch", "type_mismatch"},
		{"missing_field", "missing_field"},
		{"mapper_parsing_exception", "mapper_parsing_exception"},
		{"oversize", "oversize"},
		{"malformed_json", "malformed_json"},
		{"not_utf8", "not_utf8"},
		{"missing_required", "missing_required"},
		{"", ReasonOther},
		{"Type_Mismatch", ReasonOther},
		{"field trip_id at offset 1234 is bad", ReasonOther},
	}
	for _, c := range cases {
		if got := Reason(c.class); got != c.want {
			t.Errorf("Reason(%q) = %q, want %q", c.class, got, c.want)
		}
	}
	for _, s := range []Stage{StageDecode, StageSchema, StageRoute, StageBucket, StageParquet, StageOpenSearch, StageOversize, StageKPL} {
		if stageLabel(s) != string(s) {
			t.Errorf("stage %s not kept as a label", s)
		}
	}
	if stageLabel("whatever") != ReasonOther {
		t.Error("unknown stage not clamped")
	}
}

func TestRedriveCount(t *testing.T) {
	cases := []struct {
		name    string
		headers []record.Header
		want    int
	}{
		{"none", nil, 0},
		{"one", []record.Header{{Key: HeaderRedrive, Value: []byte("1")}}, 1},
		{"last wins", []record.Header{{Key: HeaderRedrive, Value: []byte("1")}, {Key: "x"}, {Key: HeaderRedrive, Value: []byte("3")}}, 3},
		{"garbage", []record.Header{{Key: HeaderRedrive, Value: []byte("lots")}}, 0},
		{"negative", []record.Header{{Key: HeaderRedrive, Value: []byte("-2")}}, 0},
	}
	for _, c := range cases {
		if got := RedriveCount(&record.Record{Headers: c.headers}); got != c.want {
			t.Errorf("%s: RedriveCount = %d, want %d", c.name, got, c.want)
		}
	}
}

func TestFitValue(t *testing.T) {
	big := kafkaLetter(1, StageOversize)
	big.Record.Value = bytes.Repeat([]byte("x"), 3<<20)
	for name, c := range map[string]struct {
		limit int
		size  func(*Letter) int
	}{
		"kafka":   {kafkaRecordLimit, kafkaSize},
		"kinesis": {kinesisRecordLimit, jsonSize},
	} {
		got := fitValue(big, c.limit, c.size)
		if s := c.size(got); s > c.limit {
			t.Errorf("%s: %d bytes after fitting, limit %d", name, s, c.limit)
		}
		if got.OriginalSize != 3<<20 || !got.Truncated() {
			t.Errorf("%s: original size %d", name, got.OriginalSize)
		}
		if len(got.Record.Value) < c.limit/2 || !bytes.HasPrefix(big.Record.Value, got.Record.Value) {
			t.Errorf("%s: kept %d bytes, not a large prefix", name, len(got.Record.Value))
		}
		if len(big.Record.Value) != 3<<20 {
			t.Fatalf("%s: fitting modified the caller's letter", name)
		}
		if got.ID() != big.ID() {
			t.Errorf("%s: truncation changed the id", name)
		}
	}
	small := kafkaLetter(1, StageDecode)
	if fitValue(small, kafkaRecordLimit, kafkaSize) != small {
		t.Error("a small letter was copied")
	}
}

func TestPreview(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{"a":1}`, `{"a":1}`},
		{"a\x00b\nc\xff", "a.b.c."},
		{strings.Repeat("é", 130), strings.Repeat("é", 120) + "…"},
	}
	for _, c := range cases {
		if got := preview([]byte(c.in)); got != c.want {
			t.Errorf("preview(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// stamped is l as a sink with these options writes it.
func stamped(l *Letter, o Options) *Letter {
	return o.stamp(l)
}
