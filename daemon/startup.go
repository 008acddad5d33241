package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go"
	"gopkg.in/yaml.v3"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/internal/awsconf"
	"github.com/sinkd/sinkd/internal/cli"
	"github.com/sinkd/sinkd/store"
)

// The start-up policy for the pipeline's sinks and lease table (S3,
// OpenSearch, DynamoDB), the same as the source's (awaitSource): before the
// pipeline is built, every dependency must answer. Until then sinkd retries
// with a bounded backoff, logs what does not answer (what, where, what to
// do) at once and then every 30 s, serves /readyz 503 saying so, and tells
// systemd the same in STATUS= without READY=1. Exiting would only turn an
// outage into a restart loop that says less. It exits, with code 78 so that
// systemd does not restart it, only where waiting cannot help: a bucket that
// does not exist, credentials the service rejects (an access key it does not
// know, a wrong secret, a wrong password), a bucket in another region.
// Permission denials are waited out: they are fixed in a policy, outside
// this process, without a restart.

const (
	// probeTimeout bounds one round of checks of one dependency.
	probeTimeout = 10 * time.Second
	// startupWarnEvery bounds how often a dependency still down is logged.
	startupWarnEvery = 30 * time.Second
	// startupBackoffMax bounds the wait between rounds.
	startupBackoffMax = 15 * time.Second
)

// dependency is one endpoint the pipeline needs at start.
type dependency struct {
	what  string                          // names it for operators: kind, endpoint, bucket or table, region
	hint  string                          // what to check while it does not answer
	probe func(ctx context.Context) error // nil when it answers; a *fatalStartError when waiting cannot help
}

// fatalStartError is a start-up failure that retrying cannot mend.
type fatalStartError struct {
	what, hint string
	err        error
}

func (e *fatalStartError) Error() string {
	return fmt.Sprintf("%s: %v; %s", e.what, e.err, e.hint)
}

func (e *fatalStartError) Unwrap() error { return e.err }

// exitCode is the process's exit code for run's error: configuration for a
// dependency that cannot work as configured, a runtime failure otherwise.
func exitCode(err error) int {
	var fatal *fatalStartError
	switch {
	case err == nil:
		return cli.ExitOK
	case errors.As(err, &fatal):
		return cli.ExitConfig
	default:
		return cli.ExitFailure
	}
}

// awaitDependencies returns once every dependency of cfg answers, nil also
// when ctx ends first (a SIGTERM while waiting has nothing to drain), or a
// *fatalStartError.
func awaitDependencies(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	deps := startupDependencies(cfg, log)
	if len(deps) == 0 {
		return nil
	}
	var (
		mu      sync.Mutex
		waiting []string // what /readyz says, one line per dependency
	)
	for _, d := range deps {
		waiting = append(waiting, "checking "+d.what)
	}
	stopHTTP, err := serveWaiting(cfg, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return waiting
	})
	if err != nil {
		return err
	}
	defer stopHTTP()

	since := make([]time.Time, len(deps))
	logged := make([]time.Time, len(deps))
	errs := make([]error, len(deps))
	wait := time.Second
	for {
		var wg sync.WaitGroup
		for i, d := range deps {
			if errs[i] == nil && !since[i].IsZero() {
				continue // answered in an earlier round
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				pctx, cancel := context.WithTimeout(ctx, probeTimeout)
				defer cancel()
				errs[i] = d.probe(pctx)
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			return nil
		}
		now := time.Now()
		var lines []string
		for i, d := range deps {
			err := errs[i]
			var fatal *fatalStartError
			if errors.As(err, &fatal) {
				log.Error("cannot start: "+d.what+" cannot work as configured", "dependency", d.what, "err", fatal.err, "hint", fatal.hint)
				sdNotify("STATUS=cannot start: " + d.what + ": " + fatal.err.Error())
				return fatal
			}
			if err == nil {
				if !since[i].IsZero() && !logged[i].IsZero() {
					log.Info("the dependency answers", "dependency", d.what, "waited", now.Sub(since[i]).Round(time.Second))
					logged[i] = time.Time{}
				}
				if since[i].IsZero() {
					since[i] = now // answered at once
				}
				continue
			}
			if since[i].IsZero() {
				since[i] = now
			}
			if now.Sub(logged[i]) >= startupWarnEvery {
				log.Warn("waiting for "+d.what+": it does not answer; retrying", "dependency", d.what, "err", err,
					"waiting", now.Sub(since[i]).Round(time.Second), "hint", d.hint)
				logged[i] = now
			}
			lines = append(lines, "waiting for "+d.what+": "+oneLine(err))
		}
		mu.Lock()
		waiting = lines
		mu.Unlock()
		if len(lines) == 0 {
			return nil
		}
		// EXTEND_TIMEOUT_USEC keeps systemd's TimeoutStartSec from killing a
		// process that says what it waits for (and would be restarted into
		// the same wait); WATCHDOG=1 because the process is alive.
		sdNotify("STATUS=" + strings.Join(lines, "; ") + "\nEXTEND_TIMEOUT_USEC=" + fmt.Sprint((2 * (startupBackoffMax + probeTimeout)).Microseconds()) + "\nWATCHDOG=1")
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil
		}
		wait = min(2*wait, startupBackoffMax)
	}
}

// oneLine keeps an error on one line for /readyz and systemd's status.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// serveWaiting serves, while sinkd waits for its dependencies, /healthz (the
// process is alive and doing what it should), /readyz (503 with what it
// waits for), and the status page and /status with that as the state and
// the effective configuration, on the HTTP address; the pipeline's server
// takes the address over afterwards. /metrics is not served yet: a failed
// scrape (up == 0) is the truth until the pipeline runs.
func serveWaiting(cfg *config.Config, waiting func() []string) (func(), error) {
	if cfg.HTTP.Addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return nil, fmt.Errorf("http.addr %s: %w", cfg.HTTP.Addr, err)
	}
	state := func() string {
		lines := waiting()
		if len(lines) == 0 {
			return "starting the pipeline"
		}
		return strings.Join(lines, "\n")
	}
	snapshot := func() Status {
		return Status{
			Pipeline: cfg.Pipeline, Instance: unsafeInstance.ReplaceAllString(cfg.InstanceID, "-"), Version: Version,
			Time: time.Now().UTC(), State: state(), Config: maskedConfig(cfg),
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, state(), http.StatusServiceUnavailable)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(snapshot())
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		s := snapshot()
		c, _ := yaml.Marshal(s.Config)
		_ = statusPage.Execute(w, struct {
			Status
			ConfigYAML string
		}{s, string(c)})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

// startupDependencies lists what cfg's pipeline needs at start besides its
// source (awaitSource's): every S3 bucket, every OpenSearch cluster, the
// Kinesis lease table.
func startupDependencies(cfg *config.Config, log *slog.Logger) []dependency {
	var deps []dependency
	seen := map[string]bool{}
	var urls []string
	for _, r := range cfg.Routes {
		if r.Parquet != nil {
			urls = append(urls, r.Parquet.Destination)
		}
	}
	urls = append(urls, cfg.Checkpoint.Store)
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "s3" || u.Host == "" || seen["s3://"+u.Host] {
			continue // file:// stores are local; a bad URL is the pipeline's to report
		}
		seen["s3://"+u.Host] = true
		deps = append(deps, s3Dependency(cfg.S3, raw, u.Host, log))
	}
	for _, r := range cfg.Routes {
		if o := r.OpenSearch; o.Enabled() && !seen[o.URL] {
			seen[o.URL] = true
			deps = append(deps, openSearchDependency(*o))
		}
	}
	if k := cfg.Source.Kinesis; k != nil && k.LeaseTable != "" {
		deps = append(deps, dynamoDBDependency(*k, log))
	}
	return deps
}

func endpointOrAWS(endpoint string) string {
	if endpoint == "" {
		return "AWS"
	}
	return endpoint
}

func regionText(region string) string {
	if region != "" {
		return region
	}
	if r := os.Getenv("AWS_REGION"); r != "" {
		return r + " from AWS_REGION"
	}
	return "from the AWS environment"
}

// s3Dependency lists the bucket's in-progress uploads under a prefix that
// holds none: the request recovery makes first, so the same permission,
// and cheap.
func s3Dependency(c config.S3, rawURL, bucket string, log *slog.Logger) dependency {
	what := fmt.Sprintf("s3 bucket %s at %s (region %s)", bucket, endpointOrAWS(c.Endpoint), regionText(c.Region))
	d := dependency{
		what: what,
		hint: "check that s3.endpoint is reachable from this host (address, port, TLS, proxy, DNS) and that the bucket's region is s3.region",
	}
	var st store.Store
	var prefix string
	d.probe = func(ctx context.Context) error {
		if st == nil {
			var err error
			if st, prefix, err = store.Open(ctx, rawURL, c, store.WithLogger(log)); err != nil {
				return err
			}
		}
		_, err := st.ListUploads(ctx, prefix+"_sinkd-startup-probe/")
		return classifyS3(what, err)
	}
	return d
}

func classifyS3(what string, err error) error {
	if err == nil {
		return nil
	}
	fatal := func(hint string) error { return &fatalStartError{what: what, hint: hint, err: err} }
	var ae smithy.APIError
	code := ""
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	switch code {
	case "NoSuchBucket":
		return fatal("the bucket does not exist: create it (sinkd does not create buckets) or fix the destination URL; sinkd exits rather than wait, as no retry can create it")
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "InvalidClientTokenId":
		return fatal("the service rejects the credentials: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the instance or pod role sinkd runs with; they are read once at start, so fix them and start sinkd again")
	case "PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException":
		return fatal("the bucket is in another region: set s3.region (or AWS_REGION) to the bucket's region")
	case "AccessDenied", "AllAccessDisabled":
		return fmt.Errorf("%w (the credentials may not list the bucket's multipart uploads: grant s3:ListBucketMultipartUploads, s3:ListBucket, s3:PutObject, s3:GetObject, s3:AbortMultipartUpload on the bucket; sinkd keeps trying)", err)
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusMovedPermanently {
		return fatal("the bucket is in another region: set s3.region (or AWS_REGION) to the bucket's region")
	}
	return err
}

// openSearchDependency asks the cluster for its info (GET /), as the
// writer's start does, with the same credentials and CA.
func openSearchDependency(o config.OpenSearch) dependency {
	what := "opensearch " + redact(o.URL)
	d := dependency{
		what: what,
		hint: "check that the cluster is up and reachable from this host at the route's opensearch.url (address, port, TLS, proxy, DNS)",
	}
	var client *http.Client
	d.probe = func(ctx context.Context) error {
		if client == nil {
			t := http.DefaultTransport.(*http.Transport).Clone()
			if o.CAFile != "" {
				pem, err := os.ReadFile(o.CAFile)
				if err != nil {
					return &fatalStartError{what: what, hint: "opensearch.ca_file must name a readable PEM file", err: err}
				}
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pem) {
					return &fatalStartError{what: what, hint: "opensearch.ca_file must hold a PEM certificate", err: errors.New("no PEM certificate in " + o.CAFile)}
				}
				t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			}
			client = &http.Client{Transport: t, Timeout: probeTimeout}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(o.URL, "/")+"/", nil)
		if err != nil {
			return &fatalStartError{what: what, hint: "fix opensearch.url", err: err}
		}
		if o.Username != "" {
			req.SetBasicAuth(o.Username, o.Password)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		switch {
		case o.SigV4 != nil:
			// This request is not signed; any answer shows the endpoint is
			// up, and the writer's own start checks the signature.
			return nil
		case resp.StatusCode == http.StatusUnauthorized:
			return &fatalStartError{what: what, hint: "check opensearch.username and opensearch.password; they are read once at start, so fix them and start sinkd again",
				err: errors.New("the cluster rejects the credentials (HTTP 401)")}
		case resp.StatusCode == http.StatusForbidden:
			return errors.New("HTTP 403: the user may not read the cluster's info (cluster:monitor/main); grant it in the cluster's security roles; sinkd keeps trying")
		case resp.StatusCode >= 500:
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	}
	return d
}

// dynamoDBDependency describes the lease table: it need not exist (sinkd
// creates it), but DynamoDB must answer and accept the credentials.
func dynamoDBDependency(k config.Kinesis, log *slog.Logger) dependency {
	what := fmt.Sprintf("dynamodb lease table %s at %s (region %s)", k.LeaseTable, endpointOrAWS(k.DynamoDBEndpoint), regionText(k.Region))
	d := dependency{
		what: what,
		hint: "check that source.kinesis.dynamodb_endpoint (or DynamoDB in source.kinesis.region) is reachable from this host (address, port, TLS, proxy, DNS)",
	}
	var db *dynamodb.Client
	d.probe = func(ctx context.Context) error {
		if db == nil {
			o := awsconf.Options{Region: k.Region, Timeout: probeTimeout, Logger: log}
			if k.Endpoint != "" || k.DynamoDBEndpoint != "" {
				o.DefaultRegion = awsconf.EmulatorRegion
			}
			c, err := awsconf.Load(ctx, o)
			if errors.Is(err, awsconf.ErrNoRegion) {
				return &fatalStartError{what: what, hint: "set source.kinesis.region or AWS_REGION", err: err}
			}
			if err != nil {
				return err
			}
			c.RetryMaxAttempts = 1 // the rounds here are the retries
			db = dynamodb.NewFromConfig(c, func(o *dynamodb.Options) {
				if k.DynamoDBEndpoint != "" {
					o.BaseEndpoint = aws.String(k.DynamoDBEndpoint)
				}
			})
		}
		_, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(k.LeaseTable)})
		var ae smithy.APIError
		if err == nil || !errors.As(err, &ae) {
			return err
		}
		switch ae.ErrorCode() {
		case "ResourceNotFoundException":
			return nil // created at start
		case "UnrecognizedClientException", "InvalidSignatureException", "MissingAuthenticationTokenException", "InvalidClientTokenId", "ExpiredTokenException":
			return &fatalStartError{what: what, err: err,
				hint: "DynamoDB rejects the credentials: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the instance or pod role sinkd runs with; they are read once at start, so fix them and start sinkd again"}
		case "AccessDeniedException":
			return fmt.Errorf("%w (grant dynamodb:DescribeTable, CreateTable, Scan, PutItem, UpdateItem and DeleteItem on the table; sinkd keeps trying)", err)
		}
		return err
	}
	return d
}
