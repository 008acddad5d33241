package dlq

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/sinkd/sinkd/config/conf"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Timeouts of every Kafka client of the package: no request waits forever
// on a broker that stopped answering.
const (
	kafkaDialTimeout     = 5 * time.Second
	kafkaRequestOverhead = 10 * time.Second
	kafkaProduceTimeout  = 10 * time.Second
	kafkaRetryTimeout    = 30 * time.Second
)

// kafkaClientOpts are the connection options shared by the sink and the
// CLI's readers and writers.
func kafkaClientOpts(brokers []string, t conf.TLS, s conf.SASL) ([]kgo.Opt, error) {
	var seeds []string
	for _, b := range brokers {
		for _, p := range strings.Split(b, ",") {
			if p = strings.TrimSpace(p); p != "" {
				seeds = append(seeds, p)
			}
		}
	}
	if len(seeds) == 0 {
		return nil, errors.New("no Kafka brokers")
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.DialTimeout(kafkaDialTimeout),
		kgo.RequestTimeoutOverhead(kafkaRequestOverhead),
		kgo.RetryTimeout(kafkaRetryTimeout),
	}
	if t.Enabled {
		tc, err := tlsConfig(t)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	switch strings.ToLower(s.Mechanism) {
	case "":
	case "plain":
		opts = append(opts, kgo.SASL(plain.Auth{User: s.Username, Pass: s.Password}.AsMechanism()))
	case "scram-sha-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: s.Username, Pass: s.Password}.AsSha256Mechanism()))
	case "scram-sha-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: s.Username, Pass: s.Password}.AsSha512Mechanism()))
	case "aws-msk-iam":
		opts = append(opts, kgo.SASL(aws.ManagedStreamingIAM(mskAuth)))
	default:
		return nil, fmt.Errorf("unknown SASL mechanism %q", s.Mechanism)
	}
	return opts, nil
}

// mskAuth signs MSK IAM authentication with the default AWS credential chain.
func mskAuth(ctx context.Context) (aws.Auth, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return aws.Auth{}, err
	}
	c, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return aws.Auth{}, err
	}
	return aws.Auth{AccessKey: c.AccessKeyID, SecretKey: c.SecretAccessKey, SessionToken: c.SessionToken}, nil
}

func tlsConfig(t conf.TLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca: no certificate in %s", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// KafkaClientOpts are the connection options (brokers, timeouts, TLS, SASL
// including MSK IAM) that sinkd's clients share; `sinkd tap` reads with them.
func KafkaClientOpts(brokers []string, t conf.TLS, s conf.SASL) ([]kgo.Opt, error) {
	return kafkaClientOpts(brokers, t, s)
}
