// Package registry reads records serialised through a Confluent-compatible
// schema registry: the wire format (a zero magic byte, the schema id as four
// big-endian bytes, for Protobuf the message indexes, then the payload),
// writer schemas fetched by id with franz-go's sr client and cached, the
// Parquet schema derived from a subject's latest schema, and schema
// evolution (input.go).
package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/internal/backoff"
	"github.com/sinkd/sinkd/schema"
)

// Classes of records that cannot be read, for dead letters (schema.Error).
const (
	ClassBadMagic        = "bad_magic_byte"
	ClassTruncatedHeader = "truncated_header"
	ClassUnknownSchemaID = "unknown_schema_id"
	ClassSchemaMismatch  = "schema_mismatch"
	// ClassBadMessageIndex is a Protobuf record whose message indexes are
	// malformed or name no message of its schema.
	ClassBadMessageIndex = "bad_message_index"
)

// Options configure a Client.
type Options struct {
	URL                string
	Username, Password string
	TLS                *tls.Config
	// Timeout bounds one request; Attempts and Backoff bound the retries of
	// a request that fails for want of the registry (not for an unknown id).
	Timeout  time.Duration
	Attempts int
	Backoff  time.Duration
	// MaxCached bounds the writer schemas kept by id.
	MaxCached int
}

// Client fetches schemas by id and caches them.
type Client struct {
	sr    *sr.Client
	o     Options
	mu    sync.Mutex
	cache map[int]sr.Schema

	// transport holds the idle connections Close drops.
	transport *http.Transport
}

// OutageError is a registry that could not be reached or answered with a
// server error after every attempt: the record is not at fault, so it must be
// retried later, never dead-lettered, and no position past it committed.
type OutageError struct{ Err error }

func (e *OutageError) Error() string { return "schema registry unavailable: " + e.Err.Error() }
func (e *OutageError) Unwrap() error { return e.Err }

// NewClient returns a client; defaults: 10 s timeout, 5 attempts, 200 ms
// backoff doubling (equal jitter, capped at 32 times Backoff), 10,000 cached
// schemas.
func NewClient(o Options) (*Client, error) {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Attempts < 1 {
		o.Attempts = 5
	}
	if o.Backoff <= 0 {
		o.Backoff = 200 * time.Millisecond
	}
	if o.MaxCached < 1 {
		o.MaxCached = 10000
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = o.TLS
	opts := []sr.ClientOpt{sr.URLs(o.URL), sr.HTTPClient(&http.Client{Timeout: o.Timeout, Transport: transport})}
	if o.Username != "" {
		opts = append(opts, sr.BasicAuth(o.Username, o.Password))
	}
	cl, err := sr.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	return &Client{sr: cl, o: o, transport: transport, cache: map[int]sr.Schema{}}, nil
}

// Close drops the client's idle connections (and the goroutines that keep
// them); a later call opens new ones.
func (c *Client) Close() { c.transport.CloseIdleConnections() }

// retry runs call until it succeeds, fails for good (a 4xx answer), or every
// attempt is used (an OutageError).
func (c *Client) retry(ctx context.Context, call func(context.Context) error) error {
	wait := backoff.Policy{Base: c.o.Backoff, Max: 32 * c.o.Backoff}
	var last error
	for attempt := 0; attempt < c.o.Attempts; attempt++ {
		if attempt > 0 {
			if err := wait.Wait(ctx, attempt-1); err != nil {
				return &OutageError{err}
			}
		}
		rctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
		last = call(rctx)
		cancel()
		var re *sr.ResponseError
		if last == nil || (errors.As(last, &re) && re.StatusCode >= 400 && re.StatusCode < 500) {
			return last
		}
	}
	return &OutageError{last}
}

// SchemaByID returns the schema with id. An id the registry does not know is
// a *schema.Error of class unknown_schema_id.
func (c *Client) SchemaByID(ctx context.Context, id int) (sr.Schema, error) {
	c.mu.Lock()
	s, ok := c.cache[id]
	c.mu.Unlock()
	if ok {
		return s, nil
	}
	err := c.retry(ctx, func(ctx context.Context) error {
		var err error
		s, err = c.sr.SchemaByID(ctx, id)
		return err
	})
	var re *sr.ResponseError
	if errors.As(err, &re) && (re.ErrorCode == 40403 || re.StatusCode == http.StatusNotFound) {
		return s, &schema.Error{Class: ClassUnknownSchemaID, Expected: "a schema id the registry knows", Got: "id " + strconv.Itoa(id)}
	}
	if err != nil {
		return s, err
	}
	c.mu.Lock()
	if len(c.cache) >= c.o.MaxCached {
		for k := range c.cache { // any one: ids in use come back at once
			delete(c.cache, k)
			break
		}
	}
	c.cache[id] = s
	c.mu.Unlock()
	return s, nil
}

// Latest returns the latest schema of subject and its id.
func (c *Client) Latest(ctx context.Context, subject string) (sr.SubjectSchema, error) {
	var ss sr.SubjectSchema
	err := c.retry(ctx, func(ctx context.Context) error {
		var err error
		ss, err = c.sr.SchemaByVersion(ctx, subject, -1)
		return err
	})
	return ss, err
}

// Version returns version of subject (a Protobuf schema's reference).
func (c *Client) Version(ctx context.Context, subject string, version int) (sr.SubjectSchema, error) {
	var ss sr.SubjectSchema
	err := c.retry(ctx, func(ctx context.Context) error {
		var err error
		ss, err = c.sr.SchemaByVersion(ctx, subject, version)
		return err
	})
	return ss, err
}

// SplitWire reads the wire-format header of value.
func SplitWire(value []byte) (id int, payload []byte, err *schema.Error) {
	switch {
	case len(value) > 0 && value[0] != 0:
		return 0, nil, &schema.Error{Class: ClassBadMagic, Expected: "the magic byte 0 of the schema registry's wire format", Got: fmt.Sprintf("byte 0x%02x", value[0])}
	case len(value) < 5:
		return 0, nil, &schema.Error{Class: ClassTruncatedHeader, Expected: "a 5-byte header (magic byte and schema id)", Got: strconv.Itoa(len(value)) + " bytes"}
	}
	return int(binary.BigEndian.Uint32(value[1:5])), value[5:], nil
}

func tlsConfig(c config.TLS) (*tls.Config, error) {
	if !c.Enabled && c.CAFile == "" && c.CertFile == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.InsecureSkipVerify}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", c.CAFile)
		}
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// maxOutageWait caps the wait between attempts while the registry is down.
const maxOutageWait = 30 * time.Second

// DecodeWait is Decode that waits out registry outages: it tries again, with
// a growing pause, until the registry answers or ctx ends, calling onOutage
// before each pause. The pipeline stops reading meanwhile (nothing past the
// record is committed) instead of dead-lettering good records or exiting.
func (in *Input) DecodeWait(ctx context.Context, value []byte, row parquet.Row, onOutage func(error)) (parquet.Row, error) {
	wait := backoff.Policy{Base: time.Second, Max: maxOutageWait}
	for attempt := 0; ; attempt++ {
		out, err := in.Decode(ctx, value, row)
		var oe *OutageError
		if !errors.As(err, &oe) {
			return out, err
		}
		if onOutage != nil {
			onOutage(err)
		}
		if err := wait.Wait(ctx, attempt); err != nil {
			return row[:0], err
		}
	}
}
