package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyauth "github.com/aws/smithy-go/auth"
	"github.com/aws/smithy-go/encoding/httpbinding"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// A file smaller than one part costs three S3 requests (create, upload,
// complete), and with thousands of buckets a short run writes thousands of
// such files. Through the SDK each request runs a middleware stack that is
// built anew per call (endpoint rules, auth scheme resolution, user agent,
// retry and checksum middleware): measured at about 250 µs of CPU per
// request, several times the HTTP exchange itself. rawS3 sends those three
// requests itself: the endpoint is resolved once with the SDK's own rules,
// requests are signed with the SDK's SigV4 signer, and errors come back in
// the SDK's error types so that everything above (not-found and
// condition checks, retries, metrics) reads them alike. Everything else
// (listings, conditional puts, recovery) stays on the SDK.
type rawS3 struct {
	base        url.URL // the bucket's endpoint, path included for path style
	signingName string
	region      string
	creds       aws.CredentialsProvider // nil: anonymous
	client      interface {
		Do(*http.Request) (*http.Response, error)
	}
	signer *v4.Signer
	// unsigned: over TLS the payload need not be hashed for the signature
	// (the SDK does the same); Content-MD5 still protects it.
	unsigned bool
}

// newRawS3 returns nil (use the SDK) for anything but a plain SigV4 S3
// endpoint: S3 Express, access points and other schemes keep the SDK.
func newRawS3(ctx context.Context, client *s3.Client, bucket string) *rawS3 {
	o := client.Options()
	if o.HTTPClient == nil || strings.Contains(bucket, ":") {
		return nil
	}
	params := s3.EndpointParameters{
		Bucket:                         aws.String(bucket),
		Region:                         aws.String(o.Region),
		UseFIPS:                        aws.Bool(o.EndpointOptions.UseFIPSEndpoint == aws.FIPSEndpointStateEnabled),
		UseDualStack:                   aws.Bool(o.EndpointOptions.UseDualStackEndpoint == aws.DualStackEndpointStateEnabled),
		Endpoint:                       o.BaseEndpoint,
		ForcePathStyle:                 aws.Bool(o.UsePathStyle),
		Accelerate:                     aws.Bool(o.UseAccelerate),
		DisableMultiRegionAccessPoints: aws.Bool(o.DisableMultiRegionAccessPoints),
		UseArnRegion:                   aws.Bool(o.UseARNRegion),
	}
	resolver := o.EndpointResolverV2
	if resolver == nil {
		resolver = s3.NewDefaultEndpointResolverV2()
	}
	ep, err := resolver.ResolveEndpoint(ctx, params)
	if err != nil || (ep.URI.Scheme != "http" && ep.URI.Scheme != "https") || len(ep.Headers) > 0 {
		return nil
	}
	r := &rawS3{base: ep.URI, region: o.Region, signingName: "s3", creds: o.Credentials, client: untimedClient(o.HTTPClient)}
	if opts, ok := smithyauth.GetAuthOptions(&ep.Properties); ok {
		if len(opts) == 0 || (opts[0].SchemeID != "sigv4" && opts[0].SchemeID != "aws.auth#sigv4") {
			return nil
		}
		if name, ok := smithyhttp.GetSigV4SigningName(&opts[0].SignerProperties); ok {
			r.signingName = name
		}
		if region, ok := smithyhttp.GetSigV4SigningRegion(&opts[0].SignerProperties); ok {
			r.region = region
		}
	}
	r.base.Path = strings.TrimSuffix(r.base.Path, "/")
	r.base.RawPath = ""
	r.unsigned = r.base.Scheme == "https"
	r.signer = v4.NewSigner(func(so *v4.SignerOptions) {
		// S3 signs the path as it is sent, not escaped a second time.
		so.DisableURIPathEscaping = true
	})
	return r
}

// untimedClient is the SDK's HTTP client without its timeout: given a
// timeout and a transport it does not know (the SDK wraps its own), net/http
// starts a timer and a goroutine for every request, a tenth of the CPU of a
// small request. Every request rawS3 sends runs under the deadline of
// s3Store.callRaw instead. The transport is a copy of the SDK's, with its
// settings and a connection pool of its own. Redirects are followed as the
// SDK follows them: 307 and 308 only.
func untimedClient(c s3.HTTPClient) s3.HTTPClient {
	bc, ok := c.(*awshttp.BuildableClient)
	if !ok {
		return c
	}
	return &http.Client{
		Transport: bc.GetTransport(),
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if s := req.Response.StatusCode; (s != http.StatusTemporaryRedirect && s != http.StatusPermanentRedirect) || len(via) >= 10 {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
}

// request is one S3 request: method, key, query and headers, and a body
// sent as is (nil for none).
type rawRequest struct {
	method string
	key    string
	query  string
	header http.Header
	body   []byte
}

// do sends req with retries (the SDK's standard policy: up to maxAttempts,
// exponential backoff with jitter, on throttling, 5xx and broken
// connections) and returns the status, headers and body of the final answer.
// Any answer that is not 2xx, and a 200 whose body is an S3 <Error>, comes
// back as an error the SDK would have returned.
func (r *rawS3) do(ctx context.Context, req rawRequest, attempts *int) (http.Header, []byte, error) {
	var payloadHash string
	if r.unsigned {
		payloadHash = "UNSIGNED-PAYLOAD"
	} else {
		sum := sha256.Sum256(req.body)
		payloadHash = hex.EncodeToString(sum[:])
	}
	escaped := httpbinding.EscapePath(req.key, false)
	for attempt := 1; ; attempt++ {
		*attempts = attempt
		hdr, body, err := r.once(ctx, req, escaped, payloadHash)
		if err == nil || attempt >= maxAttempts || ctx.Err() != nil || !retryable(err) {
			return hdr, body, err
		}
		// Exponential backoff with full jitter, at most 20 s, as the SDK's
		// standard retryer.
		backoff := time.Duration(rand.Float64() * float64(min(20*time.Second, time.Second<<min(attempt, 5))))
		select {
		case <-ctx.Done():
			return nil, nil, err
		case <-time.After(backoff):
		}
	}
}

func (r *rawS3) once(ctx context.Context, req rawRequest, escapedKey, payloadHash string) (http.Header, []byte, error) {
	u := r.base
	u.Path = r.base.Path + "/" + req.key
	u.RawPath = r.base.EscapedPath() + "/" + escapedKey
	u.RawQuery = req.query
	var body io.Reader = http.NoBody
	if req.body != nil {
		body = bytes.NewReader(req.body)
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, u.String(), body)
	if err != nil {
		return nil, nil, err
	}
	// http.NewRequest parses the URL again, which may normalise the
	// escaping: the path sent must be the one signed.
	hr.URL.Path, hr.URL.RawPath = u.Path, u.RawPath
	for k, v := range req.header {
		hr.Header[k] = v
	}
	hr.ContentLength = int64(len(req.body))
	hr.Header.Set("X-Amz-Content-Sha256", payloadHash)
	if r.creds != nil {
		creds, err := r.creds.Retrieve(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("retrieving credentials: %w", err)
		}
		if creds.HasKeys() {
			if err := r.signer.SignHTTP(ctx, creds, hr, payloadHash, r.signingName, r.region, time.Now()); err != nil {
				return nil, nil, err
			}
		}
	}
	resp, err := r.client.Do(hr)
	if err != nil {
		return nil, nil, &smithy.OperationError{ServiceID: "S3", OperationName: req.method, Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, &smithy.OperationError{ServiceID: "S3", OperationName: req.method, Err: err}
	}
	if resp.StatusCode/100 == 2 && !isErrorBody(data) {
		return resp.Header, data, nil
	}
	var e struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	_ = xml.Unmarshal(data, &e)
	if e.Code == "" {
		e.Code = http.StatusText(resp.StatusCode)
		if resp.StatusCode == http.StatusNotFound {
			e.Code = "NotFound"
		}
	}
	fault := smithy.FaultClient
	if resp.StatusCode >= 500 || resp.StatusCode/100 == 2 {
		fault = smithy.FaultServer
	}
	return nil, nil, &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: resp},
			Err:      &smithy.GenericAPIError{Code: e.Code, Message: e.Message, Fault: fault},
		},
		RequestID: resp.Header.Get("X-Amz-Request-Id"),
	}
}

// isErrorBody reports an S3 <Error> document: CompleteMultipartUpload may
// answer 200 and fail in its body.
func isErrorBody(b []byte) bool {
	b = bytes.TrimSpace(b)
	if bytes.HasPrefix(b, []byte("<?xml")) {
		if i := bytes.Index(b, []byte("?>")); i >= 0 {
			b = bytes.TrimSpace(b[i+2:])
		}
	}
	return bytes.HasPrefix(b, []byte("<Error>"))
}

// retryable is the SDK standard retryer's rule, for what rawS3 returns.
func retryable(err error) bool {
	var oe *smithy.OperationError
	if errors.As(err, &oe) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return true // the connection broke or timed out
	}
	switch apiCode(err) {
	case "SlowDown", "RequestTimeout", "RequestTimeTooSkewed", "Throttling", "ThrottlingException",
		"ThrottledException", "RequestThrottled", "RequestThrottledException", "TooManyRequestsException",
		"ProvisionedThroughputExceededException", "TransactionInProgressException", "RequestLimitExceeded",
		"BandwidthLimitExceeded", "LimitExceededException", "PriorRequestNotComplete", "EC2ThrottledException",
		"InternalError":
		return true
	}
	switch httpStatus(err) {
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusTooManyRequests:
		return true
	}
	return false
}

func (r *rawS3) createUpload(ctx context.Context, s *s3Store, key string, meta map[string]string, attempts *int) (string, error) {
	h := http.Header{}
	for k, v := range meta {
		h.Set("X-Amz-Meta-"+k, v)
	}
	if s.sse != "" {
		h.Set("X-Amz-Server-Side-Encryption", string(s.sse))
	}
	if s.kmsKeyID != nil {
		h.Set("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id", *s.kmsKeyID)
	}
	if s.storageClass != "" {
		h.Set("X-Amz-Storage-Class", string(s.storageClass))
	}
	_, body, err := r.do(ctx, rawRequest{method: http.MethodPost, key: key, query: "uploads", header: h}, attempts)
	if err != nil {
		return "", err
	}
	return uploadID(body)
}

// uploadID reads the UploadId of an InitiateMultipartUploadResult. A scan, not
// encoding/xml: decoding the whole document cost a quarter of a creation's
// CPU, and the element holds an opaque token.
func uploadID(body []byte) (string, error) {
	_, rest, ok := bytes.Cut(body, []byte("<UploadId>"))
	id, _, closed := bytes.Cut(rest, []byte("</UploadId>"))
	if !ok || !closed || len(id) == 0 {
		return "", fmt.Errorf("no upload id in the answer %.200q", body)
	}
	if bytes.ContainsAny(id, "&<") {
		// Escaped characters: let the XML decoder unescape them.
		var out struct {
			UploadID string `xml:"UploadId"`
		}
		if err := xml.Unmarshal(body, &out); err != nil {
			return "", fmt.Errorf("reading the upload id: %w", err)
		}
		return out.UploadID, nil
	}
	return string(id), nil
}

func (r *rawS3) uploadPart(ctx context.Context, key, uploadID string, number int32, body []byte, attempts *int) (string, error) {
	h := http.Header{}
	h.Set("Content-Md5", *contentMD5(body))
	q := "partNumber=" + strconv.Itoa(int(number)) + "&uploadId=" + url.QueryEscape(uploadID)
	hdr, _, err := r.do(ctx, rawRequest{method: http.MethodPut, key: key, query: q, header: h, body: body}, attempts)
	if err != nil {
		return "", err
	}
	etag := hdr.Get("Etag")
	if etag == "" {
		return "", errors.New("no ETag in the answer")
	}
	return etag, nil
}

func (r *rawS3) completeUpload(ctx context.Context, key, uploadID string, parts []Part, attempts *int) error {
	var b bytes.Buffer
	b.WriteString(`<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">`)
	for _, p := range parts {
		b.WriteString("<Part><ETag>")
		_ = xml.EscapeText(&b, []byte(p.ETag))
		b.WriteString("</ETag><PartNumber>")
		b.WriteString(strconv.Itoa(int(p.Number)))
		b.WriteString("</PartNumber></Part>")
	}
	b.WriteString("</CompleteMultipartUpload>")
	h := http.Header{}
	h.Set("Content-Type", "application/xml")
	_, _, err := r.do(ctx, rawRequest{method: http.MethodPost, key: key, query: "uploadId=" + url.QueryEscape(uploadID), header: h, body: b.Bytes()}, attempts)
	return err
}
