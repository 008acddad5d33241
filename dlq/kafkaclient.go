package dlq

import (
	"context"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/internal/kafkaclient"
)

// Timeouts of the package's Kafka clients: no request waits forever on a
// broker that stopped answering.
const (
	// kafkaDialTimeout is shorter than the source's: a dead-letter write or
	// a tool should report an unreachable broker quickly.
	kafkaDialTimeout     = 5 * time.Second
	kafkaRequestOverhead = 10 * time.Second
	kafkaProduceTimeout  = 10 * time.Second
	kafkaRetryTimeout    = 30 * time.Second
)

// kafkaClientOpts are the connection options of the sink and of the CLI's
// readers and writers, built by the one builder the source uses too. log
// receives franz-go's lines (nil: none).
func kafkaClientOpts(brokers []string, t conf.TLS, s conf.SASL, log *slog.Logger) ([]kgo.Opt, error) {
	return kafkaclient.Opts(context.Background(), kafkaclient.Options{
		Brokers: brokers, TLS: t, SASL: s,
		DialTimeout: kafkaDialTimeout, RequestTimeout: kafkaRequestOverhead, RetryTimeout: kafkaRetryTimeout,
		Logger: log,
	})
}
