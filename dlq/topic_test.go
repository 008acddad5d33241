package dlq

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sinkd/sinkd/config"
)

// A dead-letter topic that does not exist is a start-up error, not an
// endless retry that blocks every checkpoint.
func TestNewKafkaRefusesMissingTopic(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "present"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = NewKafka(config.DLQKafka{Brokers: c.ListenAddrs(), Topic: "absent"}, Options{})
	if err == nil || !strings.Contains(err.Error(), `"absent" does not exist`) {
		t.Fatalf("err = %v, want a clear missing-topic error", err)
	}
	s, err := NewKafka(config.DLQKafka{Brokers: c.ListenAddrs(), Topic: "present"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close(t.Context())
}
