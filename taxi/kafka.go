package taxi

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Sink is a destination stream for events. Send may buffer; Flush returns once
// everything sent is acknowledged, or with the first failure.
type Sink interface {
	// Send queues one record. The sink owns key and value afterwards. An
	// error from an earlier asynchronous send may surface here.
	Send(ctx context.Context, key, value []byte) error
	Flush(ctx context.Context) error
	Close()
}

// setupTimeout bounds topic and stream creation and readiness.
const setupTimeout = 60 * time.Second

// KafkaSink produces to one Kafka topic with franz-go: batched, asynchronous,
// idempotent, acks from all in-sync replicas. The default partitioner hashes
// the key like Kafka's own clients, so one trip_id always lands in one
// partition.
type KafkaSink struct {
	client *kgo.Client

	mu  sync.Mutex
	err error // first failed delivery
}

// NewKafkaSink connects to brokers and, when partitions > 0, creates topic with
// that many partitions unless it exists.
func NewKafkaSink(ctx context.Context, brokers []string, topic string, partitions int32) (*KafkaSink, error) {
	client, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), // also the default, which idempotence requires
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.MaxBufferedBytes(64<<20),
		kgo.DialTimeout(5*time.Second),
		kgo.ProduceRequestTimeout(10*time.Second),
		kgo.RecordDeliveryTimeout(60*time.Second), // bounds the client's retries
	)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	if partitions > 0 {
		ctx, cancel := context.WithTimeout(ctx, setupTimeout)
		defer cancel()
		_, err := kadm.NewClient(client).CreateTopic(ctx, partitions, -1, nil, topic)
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			client.Close()
			return nil, fmt.Errorf("create topic %s: %w", topic, err)
		}
	}
	return &KafkaSink{client: client}, nil
}

func (s *KafkaSink) Send(ctx context.Context, key, value []byte) error {
	if err := s.failure(); err != nil {
		return err
	}
	// franz-go fails a buffered record whose context ends, but a record once
	// sent must be delivered even when the caller stops sending (an interrupt),
	// so the record does not carry ctx's cancellation. Produce blocks while
	// MaxBufferedBytes are in flight, the backpressure that bounds memory;
	// RecordDeliveryTimeout bounds that wait.
	s.client.Produce(context.WithoutCancel(ctx), &kgo.Record{Key: key, Value: value}, s.delivered)
	return nil
}

func (s *KafkaSink) delivered(r *kgo.Record, err error) {
	if err == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = fmt.Errorf("produce key %s to %s: %w", r.Key, r.Topic, err)
	}
}

func (s *KafkaSink) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *KafkaSink) Flush(ctx context.Context) error {
	if err := s.client.Flush(ctx); err != nil {
		return fmt.Errorf("kafka flush: %w", err)
	}
	return s.failure()
}

func (s *KafkaSink) Close() { s.client.Close() }
