package dlq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// kafkaRecordLimit keeps a dead letter under the default broker limit
// (message.max.bytes, about 1 MB) with room for the batch overhead.
const kafkaRecordLimit = 1_000_000

// kafkaSink produces letters with franz-go: acks from all in-sync replicas,
// idempotent writes, and a retry loop of its own on top of the client's so
// that a letter the client gives up on is produced again rather than lost.
type kafkaSink struct {
	client  *kgo.Client
	topic   string
	opts    Options
	metrics *metrics
	ledger  *ledger
	log     *slog.Logger
	closed  atomic.Bool
}

// NewKafka returns a sink that writes to a Kafka topic.
func NewKafka(ctx context.Context, cfg KafkaConfig, o Options) (Sink, error) {
	if cfg.Topic == "" {
		return nil, errors.New("dlq kafka: no topic")
	}
	o = o.withDefaults()
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("dlq metrics: %w", err)
	}
	opts, err := kafkaClientOpts(cfg.Brokers, cfg.TLS, cfg.SASL, o.Logger)
	if err != nil {
		return nil, fmt.Errorf("dlq kafka: %w", err)
	}
	opts = append(opts,
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProduceRequestTimeout(kafkaProduceTimeout),
		// The ledger bounds what is outstanding; the client's own buffer must
		// be at least as large so that Produce never blocks a retry.
		kgo.MaxBufferedRecords(o.MaxBuffered+1),
		// Give failures back to the sink's loop, which counts and logs them,
		// instead of retrying silently forever inside the client.
		kgo.RecordDeliveryTimeout(time.Minute),
	)
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("dlq kafka: %w", err)
	}
	if err := checkTopic(ctx, client, cfg, o.Logger); err != nil {
		client.Close()
		return nil, err
	}
	return &kafkaSink{
		client:  client,
		topic:   cfg.Topic,
		opts:    o,
		metrics: m,
		ledger:  newLedger(o.MaxBuffered, m.buffered),
		log:     o.Logger.With("dlq", "kafka", "topic", cfg.Topic),
	}, nil
}

func (s *kafkaSink) Send(ctx context.Context, l *Letter) error {
	if s.closed.Load() {
		return errClosed
	}
	l = fitValue(s.opts.stamp(l), kafkaRecordLimit, kafkaSize)
	ticket, err := s.ledger.admit(ctx)
	if err != nil {
		return err
	}
	s.metrics.counted(l)
	s.produce(kafkaRecord(l, s.topic), ticket, 0)
	return nil
}

// produce hands one record to the client. It is not bound to the caller's
// context: once Send has accepted a letter, only an acknowledgement or
// Close ends its life.
func (s *kafkaSink) produce(r *kgo.Record, ticket uint64, attempt int) {
	s.client.Produce(context.Background(), r, func(r *kgo.Record, err error) {
		if err == nil {
			s.ledger.settle(ticket)
			return
		}
		if errors.Is(err, kgo.ErrClientClosed) {
			return // Close reports the letters left unacknowledged.
		}
		s.metrics.retries.Inc()
		delay := retryDelay(attempt)
		s.log.Warn("dead letter not acknowledged, retrying", "err", err, "attempt", attempt+1, "in", delay)
		again := &kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Headers: r.Headers}
		time.AfterFunc(delay, func() { s.produce(again, ticket, attempt+1) })
	})
}

func (s *kafkaSink) Flush(ctx context.Context) error {
	return s.ledger.wait(ctx)
}

func (s *kafkaSink) Close(ctx context.Context) error {
	s.closed.Store(true)
	err := s.Flush(ctx)
	s.client.Close()
	if err != nil {
		return fmt.Errorf("dlq kafka close: %w", err)
	}
	return nil
}

// checkTopic fails when the brokers answer that the dead-letter topic does
// not exist: otherwise every letter would be retried forever and no
// checkpoint would ever complete. Unreachable brokers are not an error here:
// sends retry until they come back.
func checkTopic(ctx context.Context, client *kgo.Client, cfg KafkaConfig, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	adm := kadm.NewClient(client)
	topics, err := adm.ListTopics(ctx, cfg.Topic)
	if err != nil {
		// Unreachable for now: the sink's own retries take over.
		log.Warn("could not look up the dead-letter topic; will retry when writing", "topic", cfg.Topic, "err", err)
		return nil
	}
	if t, ok := topics[cfg.Topic]; ok && !errors.Is(t.Err, kerr.UnknownTopicOrPartition) {
		return t.Err
	}
	if !cfg.Creates() {
		return fmt.Errorf("dlq kafka: the dead-letter topic %q does not exist, and dlq.kafka.create is false: create it, or allow sinkd to", cfg.Topic)
	}
	// Like Kafka Connect with its dead-letter topic: create it when missing.
	resp, err := adm.CreateTopic(ctx, cfg.Partitions, cfg.ReplicationFactor, nil, cfg.Topic)
	if err == nil {
		err = resp.Err
	}
	switch {
	case err == nil:
		log.Info("created the dead-letter topic", "topic", cfg.Topic, "partitions", resp.NumPartitions, "replication_factor", resp.ReplicationFactor)
		return nil
	case errors.Is(err, kerr.TopicAlreadyExists):
		return nil // another instance created it first
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed):
		return fmt.Errorf("dlq kafka: the dead-letter topic %q does not exist and these credentials may not create it (%v): create it, or grant CREATE on the topic", cfg.Topic, err)
	case errors.Is(err, kerr.InvalidReplicationFactor), errors.Is(err, kerr.InvalidPartitions):
		return fmt.Errorf("dlq kafka: creating the dead-letter topic %q: %v (set dlq.kafka.partitions and dlq.kafka.replication_factor)", cfg.Topic, err)
	}
	return fmt.Errorf("dlq kafka: creating the dead-letter topic %q: %w", cfg.Topic, err)
}
