// Package kafkaclient builds the connection options of every Kafka client
// sinkd makes: the source's group member and admin client, the dead-letter
// sink, the dead-letter tools (`sinkd dlq inspect|redrive`), `sinkd tap` and
// `validate --connect`. One builder, so that a cluster that one of them can
// reach (TLS, SASL PLAIN or SCRAM, MSK IAM) every one of them can.
package kafkaclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	saslaws "github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/internal/awsconf"
	"github.com/sinkd/sinkd/internal/kgolog"
)

// Defaults of the timeouts a caller leaves at zero: no request waits
// forever on a broker that stopped answering.
const (
	DefaultDialTimeout    = 10 * time.Second
	DefaultRequestTimeout = 10 * time.Second
	DefaultRetryTimeout   = 30 * time.Second
)

// Options describe one client's connection to a cluster.
type Options struct {
	// Brokers are the seed brokers; an entry may hold several separated
	// by commas (a flag or an environment variable).
	Brokers []string
	TLS     conf.TLS
	SASL    conf.SASL
	// DialTimeout bounds opening a connection (TLS and SASL included).
	DialTimeout time.Duration
	// RequestTimeout is added to a request's own timeout (franz-go's
	// RequestTimeoutOverhead): how long to wait for a broker's answer.
	RequestTimeout time.Duration
	// RetryTimeout bounds the retries of one request.
	RetryTimeout time.Duration
	// Logger receives franz-go's log lines (kgolog); nil leaves them off.
	// It also receives the AWS SDK's, for MSK IAM.
	Logger *slog.Logger
}

// Opts returns the kgo options that connect to the cluster; callers append
// what their role needs (a group, topics, acks). ctx bounds loading AWS
// configuration for MSK IAM.
func Opts(ctx context.Context, o Options) ([]kgo.Opt, error) {
	seeds := Seeds(o.Brokers)
	if len(seeds) == 0 {
		return nil, errors.New("kafka: no brokers")
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.DialTimeout(orDefault(o.DialTimeout, DefaultDialTimeout)),
		kgo.RequestTimeoutOverhead(orDefault(o.RequestTimeout, DefaultRequestTimeout)),
		kgo.RetryTimeout(orDefault(o.RetryTimeout, DefaultRetryTimeout)),
	}
	if o.Logger != nil {
		opts = append(opts, kgo.WithLogger(kgolog.New(o.Logger)))
	}
	tc, err := TLSConfig(o.TLS)
	if err != nil {
		return nil, err
	}
	if tc != nil {
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	mech, err := Mechanism(ctx, o.SASL, o.Logger)
	if err != nil {
		return nil, err
	}
	if mech != nil {
		opts = append(opts, kgo.SASL(mech))
	}
	return opts, nil
}

// Seeds splits comma-separated entries and drops empty ones.
func Seeds(brokers []string) []string {
	var seeds []string
	for _, b := range brokers {
		for _, p := range strings.Split(b, ",") {
			if p = strings.TrimSpace(p); p != "" {
				seeds = append(seeds, p)
			}
		}
	}
	return seeds
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// TLSConfig returns the TLS settings, or nil when TLS is off. franz-go sets
// the server name to each broker's host when it is empty.
func TLSConfig(t conf.TLS) (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // an explicit operator choice
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka tls ca_file %s holds no PEM certificate", t.CAFile)
		}
		tc.RootCAs = pool
	}
	// A key without a certificate (or the reverse) is an error here too, not
	// a silently anonymous client.
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Mechanism returns the SASL mechanism, or nil without one. aws-msk-iam
// signs with the AWS default credential chain (internal/awsconf), loaded once
// and cached across connections; log receives the SDK's lines (nil:
// slog.Default()).
func Mechanism(ctx context.Context, s conf.SASL, log *slog.Logger) (sasl.Mechanism, error) {
	switch strings.ToLower(s.Mechanism) {
	case "":
		return nil, nil
	case "plain":
		return plain.Auth{User: s.Username, Pass: s.Password}.AsMechanism(), nil
	case "scram-sha-256":
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha256Mechanism(), nil
	case "scram-sha-512":
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha512Mechanism(), nil
	case "aws-msk-iam":
		// The region is not needed: MSK IAM signs for the region in the
		// broker's host name.
		cfg, err := awsconf.Load(ctx, awsconf.Options{CredentialsOnly: true, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("kafka aws-msk-iam: loading AWS credentials: %w", err)
		}
		return saslaws.ManagedStreamingIAM(mskAuth(cfg.Credentials)), nil
	}
	return nil, fmt.Errorf("kafka sasl mechanism %q is not supported (plain, scram-sha-256, scram-sha-512, aws-msk-iam)", s.Mechanism)
}

// mskAuth retrieves credentials at each authentication: the provider caches
// them and refreshes them before they expire (instance roles, web identity).
func mskAuth(creds aws.CredentialsProvider) func(context.Context) (saslaws.Auth, error) {
	return func(ctx context.Context) (saslaws.Auth, error) {
		c, err := creds.Retrieve(ctx)
		if err != nil {
			return saslaws.Auth{}, fmt.Errorf("kafka aws-msk-iam: %w", err)
		}
		return saslaws.Auth{AccessKey: c.AccessKeyID, SecretKey: c.SecretAccessKey, SessionToken: c.SessionToken}, nil
	}
}
