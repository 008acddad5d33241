package opensearch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/sinkd/sinkd/internal/awsconf"
	"github.com/sinkd/sinkd/internal/backoff"
)

const (
	// maxResponseBytes bounds what is read of an answer: a bulk response for
	// a 5 MiB request is far smaller.
	maxResponseBytes = 64 << 20
	// maxRetryAfter caps a server's Retry-After so that one odd header cannot
	// stall the pipeline for hours.
	maxRetryAfter    = time.Minute
	headerContentSHA = "X-Amz-Content-Sha256"
)

// AuthError is a request the cluster refused with 401 or 403: retrying cannot
// help, so it is permanent.
type AuthError struct {
	Status  int
	SigV4   bool   // the request was signed with AWS SigV4
	Service string // SigV4 service, es or aoss
	Body    string
}

func (e *AuthError) Error() string {
	switch {
	case e.SigV4:
		return fmt.Sprintf("opensearch: HTTP %d: the AWS SigV4 signature or credentials were rejected (service %q): check the credential chain, region and service: %s", e.Status, e.Service, e.Body)
	case e.Status == http.StatusUnauthorized:
		return fmt.Sprintf("opensearch: HTTP 401: the credentials were rejected: check username and password: %s", e.Body)
	}
	return fmt.Sprintf("opensearch: HTTP %d: the credentials were rejected or lack permission: %s", e.Status, e.Body)
}

// StatusError is an answer that retrying the same request cannot change.
type StatusError struct {
	Op     string
	Status int
	Body   string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("opensearch: %s: HTTP %d: %s", e.Op, e.Status, e.Body)
}

type tooLargeError struct {
	bytes int64
	body  string
}

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("request of %d bytes refused as too large (HTTP 413): %s", e.bytes, e.body)
}

// transientError is a failure worth retrying later: the cluster is
// overloaded or unreachable.
type transientError struct {
	status int
	err    error
	body   string
}

func (e *transientError) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	return fmt.Sprintf("HTTP %d: %s", e.status, e.body)
}

func isPermanent(err error) bool {
	var auth *AuthError
	var status *StatusError
	return errors.As(err, &auth) || errors.As(err, &status)
}

// api is the HTTP side: URLs, auth, retries of whole requests.
type api struct {
	base     string
	client   *retryablehttp.Client
	user     string
	password string
	sigv4    *signer
}

type signer struct {
	creds   aws.CredentialsProvider
	v4      *v4.Signer
	region  string
	service string
}

func newAPI(ctx context.Context, cfg Config, o options, m *metrics) (*api, error) {
	a := &api{base: strings.TrimSuffix(cfg.URL, "/"), user: cfg.Username, password: cfg.Password}
	hc := &http.Client{}
	var next http.RoundTripper
	if o.httpClient != nil {
		*hc = *o.httpClient
		next = hc.Transport
		if next == nil {
			next = http.DefaultTransport
		}
	} else {
		t := cleanhttp.DefaultPooledTransport()
		t.MaxIdleConnsPerHost = cfg.Concurrency + 2
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("opensearch: ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("opensearch: ca_file %s holds no PEM certificate", cfg.CAFile)
			}
			t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		next = t
	}
	if hc.Timeout == 0 {
		hc.Timeout = cfg.Timeout.D()
	}
	if cfg.SigV4 != nil {
		s, err := newSigner(ctx, *cfg.SigV4, o.logger)
		if err != nil {
			return nil, err
		}
		a.sigv4 = s
	}
	hc.Transport = &roundTripper{next: next, signer: a.sigv4, metrics: m}

	c := retryablehttp.NewClient()
	c.HTTPClient = hc
	c.Logger = o.logger
	c.RetryMax = cfg.MaxRetries // 0: the writer's own backoff is the only retry
	c.RetryWaitMin, c.RetryWaitMax = o.backoffMin, o.backoffMax
	c.CheckRetry = func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		retry, perr := retryablehttp.DefaultRetryPolicy(ctx, resp, err)
		if retry && ctx.Err() == nil {
			m.retries.WithLabelValues(requestRetryReason(resp)).Inc()
		}
		return retry, perr
	}
	jitter := backoff.Policy{Base: o.backoffMin, Max: o.backoffMax}
	c.Backoff = func(lo, hi time.Duration, attempt int, resp *http.Response) time.Duration {
		if resp != nil && resp.Header.Get("Retry-After") != "" {
			return retryAfter(lo, hi, attempt, resp)
		}
		return jitter.Delay(attempt)
	}
	// Keep the last answer when retries run out, to classify it ourselves.
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	a.client = c
	return a, nil
}

// retryAfter honours the server's Retry-After header, within maxRetryAfter.
func retryAfter(lo, hi time.Duration, attempt int, resp *http.Response) time.Duration {
	return min(retryablehttp.DefaultBackoff(lo, hi, attempt, resp), maxRetryAfter)
}

func requestRetryReason(resp *http.Response) string {
	switch {
	case resp == nil:
		return "transport"
	case resp.StatusCode == http.StatusTooManyRequests:
		return "http_429"
	}
	return "http_5xx"
}

func newSigner(ctx context.Context, cfg SigV4, log *slog.Logger) (*signer, error) {
	if cfg.Service != "es" && cfg.Service != "aoss" {
		return nil, fmt.Errorf("opensearch: sigv4 service %q is not es or aoss", cfg.Service)
	}
	// Only credentials and the region are used: requests go through the
	// writer's own HTTP client, which has its own timeout.
	awsCfg, err := awsconf.Load(ctx, awsconf.Options{Region: cfg.Region, Timeout: 10 * time.Second, Logger: log})
	if errors.Is(err, awsconf.ErrNoRegion) {
		return nil, errors.New("opensearch: sigv4 needs a region (sigv4.region or AWS_REGION)")
	}
	if err != nil {
		return nil, fmt.Errorf("opensearch: loading AWS configuration: %w", err)
	}
	return &signer{creds: awsCfg.Credentials, v4: v4.NewSigner(), region: awsCfg.Region, service: cfg.Service}, nil
}

// roundTripper signs each attempt (a signature carries its time) and times it.
type roundTripper struct {
	next    http.RoundTripper
	signer  *signer
	metrics *metrics
}

// CloseIdleConnections passes on what http.Client.CloseIdleConnections asks:
// without it, closing the writer would leave its idle connections (and their
// goroutines) open.
func (rt *roundTripper) CloseIdleConnections() {
	if c, ok := rt.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (rt *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if rt.signer != nil {
		req = req.Clone(req.Context())
		hash := req.Header.Get(headerContentSHA)
		if hash == "" {
			return nil, errors.New("opensearch: internal: request to sign has no payload hash")
		}
		creds, err := rt.signer.creds.Retrieve(req.Context())
		if err != nil {
			return nil, fmt.Errorf("opensearch: retrieving AWS credentials: %w", err)
		}
		if err := rt.signer.v4.SignHTTP(req.Context(), creds, req, hash, rt.signer.service, rt.signer.region, time.Now()); err != nil {
			return nil, fmt.Errorf("opensearch: signing request: %w", err)
		}
	}
	start := time.Now()
	resp, err := rt.next.RoundTrip(req)
	rt.metrics.duration.Observe(time.Since(start).Seconds())
	return resp, err
}

// do sends one request with retries of the whole request and returns the
// final status and body.
// The answer is read into dst's storage when it fits.
func (a *api) do(ctx context.Context, method, path string, body retryablehttp.ReaderFunc, size int64, payloadHash, contentType string, dst []byte) (int, []byte, error) {
	var raw any
	if body != nil {
		raw = body
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, method, a.base+path, raw)
	if err != nil {
		return 0, nil, fmt.Errorf("opensearch: %w", err)
	}
	req.ContentLength = size
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	if a.user != "" {
		req.SetBasicAuth(a.user, a.password)
	}
	if a.sigv4 != nil {
		req.Header.Set(headerContentSHA, payloadHash)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil, ctx.Err()
		}
		if resp == nil {
			return 0, nil, &transientError{err: fmt.Errorf("%s %s: %w", method, path, err)}
		}
	}
	defer resp.Body.Close()
	b, err := readAll(dst[:0], io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return 0, nil, &transientError{err: fmt.Errorf("%s %s: reading the answer: %w", method, path, err)}
	}
	return resp.StatusCode, b, nil
}

// failure turns a non-2xx answer into the error that says what to do about it.
func (a *api) failure(op string, status int, body []byte) error {
	snippet := truncate(string(bytes.TrimSpace(body)), 512)
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e := &AuthError{Status: status, Body: snippet}
		if a.sigv4 != nil {
			e.SigV4, e.Service = true, a.sigv4.service
		}
		return e
	case status == http.StatusTooManyRequests || status >= 500:
		return &transientError{status: status, body: snippet}
	}
	return &StatusError{Op: op, Status: status, Body: snippet}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func bytesBody(b []byte) (retryablehttp.ReaderFunc, string) {
	sum := sha256.Sum256(b)
	return func() (io.Reader, error) { return bytes.NewReader(b), nil }, hex.EncodeToString(sum[:])
}

func (a *api) close() { a.client.HTTPClient.CloseIdleConnections() }

// ping checks that the cluster answers and accepts the credentials.
func (a *api) ping(ctx context.Context) error {
	_, hash := bytesBody(nil)
	status, b, err := a.do(ctx, http.MethodGet, "/", nil, 0, hash, "", nil)
	if err != nil {
		return fmt.Errorf("opensearch: cannot reach %s: %w", a.base, err)
	}
	if status != http.StatusOK {
		return a.failure("cluster info", status, b)
	}
	return nil
}

func (a *api) putTemplate(ctx context.Context, name string, tpl []byte) error {
	body, hash := bytesBody(tpl)
	status, b, err := a.do(ctx, http.MethodPut, "/_index_template/"+name, body, int64(len(tpl)), hash, "application/json", nil)
	if err != nil {
		return fmt.Errorf("opensearch: installing index template %s: %w", name, err)
	}
	if status != http.StatusOK {
		return a.failure("installing index template "+name, status, b)
	}
	return nil
}

// bulkPath asks the cluster to leave out of its answer what settling does
// not read (each item's _index, _id, _version, result, _shards, _seq_no…):
// that is most of an answer, and reading it was most of the writer's CPU.
// Request-level errors keep their error and status.
const bulkPath = "/_bulk?filter_path=errors,error,status,items.*.status,items.*.error"

// bulk sends the n documents of body (NDJSON, ready to send) in one _bulk
// request and leaves their results in bufs.results.
func (a *api) bulk(ctx context.Context, bufs *buffers, body []byte, n int) error {
	reader := func() (io.Reader, error) { return bytes.NewReader(body), nil }
	var hash string
	if a.sigv4 != nil {
		sum := sha256.Sum256(body)
		hash = hex.EncodeToString(sum[:])
	}
	size := int64(len(body))
	status, b, err := a.do(ctx, http.MethodPost, bulkPath, reader, size, hash, "application/x-ndjson", bufs.answer)
	if cap(b) <= 64<<20 {
		bufs.answer = b[:0] // reused by the next request
	}
	if err != nil {
		return err
	}
	switch {
	case status == http.StatusRequestEntityTooLarge:
		return &tooLargeError{bytes: size, body: truncate(string(b), 256)}
	case status != http.StatusOK:
		return a.failure("bulk", status, b)
	}
	bufs.results, err = parseBulkResponse(b, bufs.results[:0])
	if err != nil {
		return fmt.Errorf("opensearch: decoding bulk response: %w", err)
	}
	if len(bufs.results) != n {
		return fmt.Errorf("opensearch: bulk response has %d items for %d documents", len(bufs.results), n)
	}
	return nil
}

// readAll is io.ReadAll into dst's storage.
func readAll(dst []byte, r io.Reader) ([]byte, error) {
	if cap(dst) == 0 {
		dst = make([]byte, 0, 4096)
	}
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

type itemError struct {
	Type     string     `json:"type"`
	Reason   string     `json:"reason"`
	CausedBy *itemError `json:"caused_by"`
}

// describe renders the reason with its causes, which often hold the useful
// part ("For input string: ...").
func (e *itemError) describe() string {
	s := e.Reason
	for c := e.CausedBy; c != nil; c = c.CausedBy {
		s += "; caused by " + c.Type + ": " + c.Reason
	}
	return s
}
