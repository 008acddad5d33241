// Package awsconf is the one place sinkd loads AWS configuration: the S3
// store, the Kinesis source and its lease table, the Kinesis dead-letter
// sink, OpenSearch SigV4 signing, MSK IAM authentication and the taxi
// producer all start from Load.
//
// What it adds to the SDK's default chain (environment, shared files and
// profiles, web identity, container credentials, then the EC2 instance
// role):
//   - every HTTP call bounded by a timeout, and loading itself too;
//   - the SDK's own log lines (such as IMDS's "falling back to IMDSv1") go
//     to log/slog, structured and level-mapped, instead of to stderr;
//   - the instance metadata service (IMDS) is never asked when the
//     environment already holds static credentials, so a machine that is
//     given keys does not also probe 169.254.169.254;
//   - a clear error when no region is known and the endpoint is AWS itself.
package awsconf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/smithy-go/logging"
)

// ErrNoRegion means neither the configuration nor the SDK's chain named a
// region, and the endpoint is AWS itself.
var ErrNoRegion = errors.New("no AWS region")

// EmulatorRegion is given to local emulators (kinesalite, dynalite, MinIO),
// which accept any region.
const EmulatorRegion = "us-east-1"

// DefaultTimeout bounds loading and each HTTP call when Options.Timeout is 0.
const DefaultTimeout = 30 * time.Second

// Options says how to load one client's configuration.
type Options struct {
	// Region, when not "", wins over the environment and shared files.
	Region string
	// DefaultRegion is used when nothing names a region (EmulatorRegion for
	// an emulator or S3's global endpoint); "" makes a missing region
	// ErrNoRegion.
	DefaultRegion string
	// CredentialsOnly: the caller needs credentials and no region (MSK IAM
	// signs for the region in the broker's host name).
	CredentialsOnly bool
	// Timeout bounds loading and every HTTP call of the clients built from
	// the result; 0 is DefaultTimeout.
	Timeout time.Duration
	// Retryer replaces the SDK's standard retryer when not nil.
	Retryer func() aws.Retryer
	// Logger receives the SDK's log lines; nil is slog.Default().
	Logger *slog.Logger
	// IdleConnsPerHost is how many connections to one host stay open
	// between requests; 0 keeps the SDK's 10. A client with more requests
	// in flight than this closes connections after use and dials new ones,
	// each a TCP and TLS handshake.
	IdleConnsPerHost int
}

// Load returns the AWS configuration for o.
func Load(ctx context.Context, o Options) (aws.Config, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithHTTPClient(awshttp.NewBuildableClient().WithTimeout(o.Timeout).WithTransportOptions(func(t *http.Transport) {
			if o.IdleConnsPerHost > 0 {
				t.MaxIdleConnsPerHost = o.IdleConnsPerHost
				t.MaxIdleConns = max(t.MaxIdleConns, o.IdleConnsPerHost)
			}
		})),
		awsconfig.WithLogger(NewLogger(log)),
		awsconfig.WithClientLogMode(clientLogMode(log)),
	}
	if o.Region != "" {
		opts = append(opts, awsconfig.WithRegion(o.Region))
	}
	if o.Retryer != nil {
		opts = append(opts, awsconfig.WithRetryer(o.Retryer))
	}
	if staticEnvCredentials() {
		opts = append(opts, awsconfig.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	}
	c, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("aws config: %w", err)
	}
	if c.Region == "" && !o.CredentialsOnly {
		if o.DefaultRegion == "" {
			return aws.Config{}, ErrNoRegion
		}
		c.Region = o.DefaultRegion
	}
	return c, nil
}

// staticEnvCredentials says whether the environment holds the keys the SDK
// takes first. The SDK's chain stops there anyway; disabling IMDS makes that
// a guarantee rather than an ordering detail of the chain.
func staticEnvCredentials() bool {
	id := os.Getenv("AWS_ACCESS_KEY_ID")
	if id == "" {
		id = os.Getenv("AWS_ACCESS_KEY")
	}
	secret := os.Getenv("AWS_SECRET_ACCESS_KEY")
	if secret == "" {
		secret = os.Getenv("AWS_SECRET_KEY")
	}
	return id != "" && secret != ""
}

// clientLogMode turns on the SDK's retry lines only when sinkd logs at
// debug; request and response bodies are never logged (they hold data and
// signatures).
func clientLogMode(log *slog.Logger) aws.ClientLogMode {
	if log.Enabled(context.Background(), slog.LevelDebug) {
		return aws.LogRetries
	}
	return 0
}

// NewLogger adapts log to the SDK's logger: its WARN lines become slog
// warnings, everything else debug, each with component=aws-sdk.
func NewLogger(log *slog.Logger) logging.Logger {
	return sdkLogger{log.With("component", "aws-sdk")}
}

type sdkLogger struct{ log *slog.Logger }

func (l sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	lvl := slog.LevelDebug
	if c == logging.Warn {
		lvl = slog.LevelWarn
	}
	ctx := context.Background()
	if !l.log.Enabled(ctx, lvl) {
		return
	}
	l.log.Log(ctx, lvl, fmt.Sprintf(format, v...))
}
