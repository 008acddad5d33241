package dlq

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A missing dead-letter topic is created, as Kafka Connect does, with the
// configured partitions and replication; create: false forbids it, and then a
// missing topic is a clear start-up error rather than an endless retry.
func TestDeadLetterTopicCreatedWhenMissing(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "present"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	no := false
	_, err = NewKafka(t.Context(), KafkaConfig{Brokers: c.ListenAddrs(), Topic: "absent", Create: &no, Partitions: -1, ReplicationFactor: -1}, Options{})
	if err == nil || !strings.Contains(err.Error(), `"absent" does not exist, and dlq.kafka.create is false`) {
		t.Fatalf("create: false: err = %v, want a clear missing-topic error", err)
	}

	for _, tc := range []struct {
		topic      string
		partitions int32
		want       int
	}{
		{"dlq-default", -1, -1},
		{"dlq-three", 3, 3},
	} {
		s, err := NewKafka(t.Context(), KafkaConfig{Brokers: c.ListenAddrs(), Topic: tc.topic, Partitions: tc.partitions, ReplicationFactor: -1}, Options{})
		if err != nil {
			t.Fatalf("%s: %v", tc.topic, err)
		}
		// The letter is acknowledged: the topic really exists.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := s.Send(ctx, kafkaLetter(1, StageDecode)); err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(ctx); err != nil {
			t.Fatalf("%s: flush: %v", tc.topic, err)
		}
		cancel()
		_ = s.Close(t.Context())
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
		if err != nil {
			t.Fatal(err)
		}
		topics, err := kadm.NewClient(cl).ListTopics(t.Context(), tc.topic)
		cl.Close()
		if err != nil || topics[tc.topic].Err != nil {
			t.Fatalf("%s not created: %v %v", tc.topic, err, topics[tc.topic].Err)
		}
		if n := len(topics[tc.topic].Partitions); tc.want > 0 && n != tc.want {
			t.Errorf("%s: %d partitions, want %d", tc.topic, n, tc.want)
		}
	}

	// The broker refuses (a replication factor above its broker count): the
	// error says what to set.
	_, err = NewKafka(t.Context(), KafkaConfig{Brokers: c.ListenAddrs(), Topic: "dlq-refused", Partitions: 1, ReplicationFactor: 3}, Options{})
	if err == nil || !strings.Contains(err.Error(), "dlq.kafka.replication_factor") {
		t.Fatalf("refused creation: err = %v, want one naming dlq.kafka.replication_factor", err)
	}
}
