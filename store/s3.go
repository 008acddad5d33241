package store

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/sinkd/sinkd/internal/awsconf"
)

const (
	// defaultRequestTimeout bounds one S3 call, retries included, when the
	// configuration sets no request_timeout.
	defaultRequestTimeout = 30 * time.Second
	// maxAttempts bounds the SDK's standard retryer (first try included).
	maxAttempts = 5
	// defaultRegion is used when neither the configuration nor the AWS
	// environment names one, as S3-compatible servers such as MinIO expect.
	defaultRegion = "us-east-1"
)

type s3Store struct {
	client       *s3.Client
	bucket       string
	timeout      time.Duration
	pageSize     int32
	sse          types.ServerSideEncryption
	kmsKeyID     *string
	storageClass types.StorageClass
	metrics      *s3Metrics // nil without WithMetrics
	raw          *rawS3     // the small requests of every file, without the SDK (s3raw.go); nil: the SDK
}

func newS3Store(ctx context.Context, bucket string, cfg S3Config, o options) (*s3Store, error) {
	s := &s3Store{
		bucket:       bucket,
		timeout:      cfg.RequestTimeout.D(),
		pageSize:     o.pageSize,
		storageClass: types.StorageClass(cfg.StorageClass),
	}
	if s.timeout <= 0 {
		s.timeout = defaultRequestTimeout
	}
	switch cfg.SSE {
	case "":
	case string(types.ServerSideEncryptionAes256):
		s.sse = types.ServerSideEncryptionAes256
	case string(types.ServerSideEncryptionAwsKms):
		s.sse = types.ServerSideEncryptionAwsKms
		if cfg.KMSKeyID != "" {
			s.kmsKeyID = aws.String(cfg.KMSKeyID)
		}
	default:
		return nil, fmt.Errorf("store: s3 sse %q: want AES256 or aws:kms", cfg.SSE)
	}
	if cfg.KMSKeyID != "" && s.sse != types.ServerSideEncryptionAwsKms {
		return nil, fmt.Errorf("store: s3 kms_key_id needs sse: aws:kms")
	}
	if o.registerer != nil {
		m, err := newS3Metrics(o.registerer)
		if err != nil {
			return nil, err
		}
		s.metrics = m
	}

	awsCfg, err := awsconf.Load(ctx, awsconf.Options{
		Region: cfg.Region,
		// S3-compatible servers such as MinIO expect one, and S3 itself
		// answers a wrong region with a redirect naming the right one.
		DefaultRegion: defaultRegion,
		// One attempt is bounded by the whole call's timeout (call).
		Timeout: s.timeout,
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) { so.MaxAttempts = maxAttempts })
		},
		Logger: o.logger,
		// Every request a writer may have in flight at once (parts,
		// completions, the small parts and creations bounded like them)
		// finds an open connection afterwards, instead of a new handshake.
		IdleConnsPerHost: idleConns(cfg),
	})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s.client = s3.NewFromConfig(awsCfg, func(so *s3.Options) {
		if cfg.Endpoint != "" {
			so.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		so.UsePathStyle = cfg.PathStyle
		// Flexible checksums are not implemented alike by every S3-compatible
		// server; Content-MD5 on every write protects the bytes instead.
		so.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		so.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	s.raw = newRawS3(ctx, s.client, bucket)
	return s, nil
}

// idleConns is the connections to keep open: uploads, and twice the
// latency-bound requests (creations and small parts, then completions).
func idleConns(cfg S3Config) int {
	return cfg.UploadConcurrency + 2*cfg.CompleteConcurrency
}

// callRaw is call for a request rawS3 sends.
func (s *s3Store) callRaw(ctx context.Context, op string, fn func(ctx context.Context, attempts *int) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	start := time.Now()
	var attempts int
	err := fn(ctx, &attempts)
	s.metrics.observe(op, time.Since(start), attempts, err)
	return err
}

// call runs one S3 request under the per-request timeout (which covers its
// retries) and records its duration, retries and failure.
func (s *s3Store) call(ctx context.Context, op string, fn func(ctx context.Context, opts func(*s3.Options)) error) (attempts int, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	start := time.Now()
	err = fn(ctx, countAttempts(&attempts))
	s.metrics.observe(op, time.Since(start), attempts, err)
	return attempts, err
}

// countAttempts adds a step inside the SDK's retry loop that counts the
// attempts one call makes.
func countAttempts(n *int) func(*s3.Options) {
	return func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			return stack.Finalize.Insert(middleware.FinalizeMiddlewareFunc("sinkdCountAttempts",
				func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
					*n++
					return next.HandleFinalize(ctx, in)
				}), "Retry", middleware.After)
		})
	}
}

func contentMD5(body []byte) *string {
	sum := md5.Sum(body)
	return aws.String(base64.StdEncoding.EncodeToString(sum[:]))
}

func (s *s3Store) CreateUpload(ctx context.Context, key string, meta map[string]string) (string, error) {
	if s.raw != nil {
		var id string
		err := s.callRaw(ctx, "CreateMultipartUpload", func(ctx context.Context, attempts *int) (err error) {
			id, err = s.raw.createUpload(ctx, s, key, meta, attempts)
			return err
		})
		if err != nil {
			return "", fmt.Errorf("store: create upload %s: %w", key, err)
		}
		return id, nil
	}
	var out *s3.CreateMultipartUploadOutput
	_, err := s.call(ctx, "CreateMultipartUpload", func(ctx context.Context, opts func(*s3.Options)) (err error) {
		out, err = s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
			Bucket:               &s.bucket,
			Key:                  &key,
			Metadata:             meta,
			ServerSideEncryption: s.sse,
			SSEKMSKeyId:          s.kmsKeyID,
			StorageClass:         s.storageClass,
		}, opts)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("store: create upload %s: %w", key, err)
	}
	return aws.ToString(out.UploadId), nil
}

func (s *s3Store) UploadPart(ctx context.Context, key, uploadID string, number int32, body []byte) (Part, error) {
	if s.raw != nil {
		var etag string
		err := s.callRaw(ctx, "UploadPart", func(ctx context.Context, attempts *int) (err error) {
			etag, err = s.raw.uploadPart(ctx, key, uploadID, number, body, attempts)
			return err
		})
		if err != nil {
			return Part{}, fmt.Errorf("store: upload part %d of %s: %w", number, key, notFound(err))
		}
		return Part{Number: number, ETag: etag, Size: int64(len(body))}, nil
	}
	var out *s3.UploadPartOutput
	_, err := s.call(ctx, "UploadPart", func(ctx context.Context, opts func(*s3.Options)) (err error) {
		out, err = s.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket:        &s.bucket,
			Key:           &key,
			UploadId:      &uploadID,
			PartNumber:    aws.Int32(number),
			Body:          bytes.NewReader(body),
			ContentLength: aws.Int64(int64(len(body))),
			ContentMD5:    contentMD5(body),
		}, opts)
		return err
	})
	if err != nil {
		return Part{}, fmt.Errorf("store: upload part %d of %s: %w", number, key, notFound(err))
	}
	return Part{Number: number, ETag: aws.ToString(out.ETag), Size: int64(len(body))}, nil
}

func (s *s3Store) CompleteUpload(ctx context.Context, key, uploadID string, parts []Part) error {
	if err := checkParts(parts); err != nil {
		return err
	}
	want, err := multipartETag(parts)
	if err != nil {
		return err
	}
	completed := make([]types.CompletedPart, len(parts))
	for i, p := range parts {
		completed[i] = types.CompletedPart{PartNumber: aws.Int32(p.Number), ETag: aws.String(p.ETag)}
	}
	if s.raw != nil {
		err = s.callRaw(ctx, "CompleteMultipartUpload", func(ctx context.Context, attempts *int) error {
			return s.raw.completeUpload(ctx, key, uploadID, parts, attempts)
		})
	} else {
		_, err = s.call(ctx, "CompleteMultipartUpload", func(ctx context.Context, opts func(*s3.Options)) error {
			_, err := s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
				Bucket:          &s.bucket,
				Key:             &key,
				UploadId:        &uploadID,
				MultipartUpload: &types.CompletedMultipartUpload{Parts: completed},
			}, opts)
			return err
		})
	}
	if err == nil {
		return nil
	}
	code := apiCode(err)
	if code != "NoSuchUpload" && code != "InvalidPart" {
		return fmt.Errorf("store: complete %s: %w", key, err)
	}
	// The upload is gone (completed earlier: a retry after a crash or a lost
	// response; or aborted), or its parts are (MinIO, while an earlier
	// attempt whose response timed out still moves them into place): done
	// if the object there is the one these parts make.
	etag, herr := s.headETag(ctx, key)
	switch {
	case herr == nil && unquoteETag(etag) == want:
		return nil
	case code == "InvalidPart" && errors.Is(herr, ErrNotFound):
		// A wrong ETag is a caller's mistake; a part that is not there
		// (never sent, or moved away by a completion that then failed) is a
		// file the store no longer has.
		if missing, lerr := s.missingPart(ctx, key, uploadID, parts); lerr != nil {
			return fmt.Errorf("store: complete %s: %w (listing its parts: %w)", key, err, lerr)
		} else if missing != "" {
			return fmt.Errorf("store: complete %s: %s: %w (%w)", key, missing, ErrNotFound, err)
		}
		return fmt.Errorf("store: complete %s: %w", key, err)
	case code == "InvalidPart":
		return fmt.Errorf("store: complete %s: %w", key, err)
	case herr != nil:
		return fmt.Errorf("store: complete %s: upload %s is gone: %w", key, uploadID, herr)
	}
	return fmt.Errorf("store: complete %s: upload %s is gone and the object there has ETag %s, not the %s its parts make", key, uploadID, etag, want)
}

// missingPart names the first of parts the upload does not hold, or says the
// upload itself is gone; "" when it holds them all (with whatever ETags).
func (s *s3Store) missingPart(ctx context.Context, key, uploadID string, parts []Part) (string, error) {
	held := make(map[int32]bool)
	pages := s3.NewListPartsPaginator(s.client, &s3.ListPartsInput{Bucket: &s.bucket, Key: &key, UploadId: &uploadID})
	for pages.HasMorePages() {
		var out *s3.ListPartsOutput
		_, err := s.call(ctx, "ListParts", func(ctx context.Context, opts func(*s3.Options)) (err error) {
			out, err = pages.NextPage(ctx, opts)
			return err
		})
		if isNotFound(err) {
			return fmt.Sprintf("upload %s is gone", uploadID), nil
		}
		if err != nil {
			return "", err
		}
		for _, p := range out.Parts {
			held[aws.ToInt32(p.PartNumber)] = true
		}
	}
	for _, p := range parts {
		if !held[p.Number] {
			return fmt.Sprintf("upload %s has no part %d", uploadID, p.Number), nil
		}
	}
	return "", nil
}

func (s *s3Store) headETag(ctx context.Context, key string) (string, error) {
	var out *s3.HeadObjectOutput
	_, err := s.call(ctx, "HeadObject", func(ctx context.Context, opts func(*s3.Options)) (err error) {
		out, err = s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key}, opts)
		return err
	})
	if err != nil {
		return "", notFound(err)
	}
	return aws.ToString(out.ETag), nil
}

func (s *s3Store) AbortUpload(ctx context.Context, key, uploadID string) error {
	_, err := s.call(ctx, "AbortMultipartUpload", func(ctx context.Context, opts func(*s3.Options)) error {
		_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
			Bucket: &s.bucket, Key: &key, UploadId: &uploadID,
		}, opts)
		return err
	})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("store: abort upload %s of %s: %w", uploadID, key, err)
	}
	return nil
}

func (s *s3Store) ListUploads(ctx context.Context, prefix string) ([]Upload, error) {
	// MinIO reads ListMultipartUploads' prefix as an exact object name, so the
	// prefix is applied here instead: correct on every server, at the price of
	// listing the bucket's other uploads (few, and only at recovery).
	in := &s3.ListMultipartUploadsInput{Bucket: &s.bucket}
	if s.pageSize > 0 {
		in.MaxUploads = aws.Int32(s.pageSize)
	}
	pages := s3.NewListMultipartUploadsPaginator(s.client, in)
	var uploads []Upload
	for pages.HasMorePages() {
		var out *s3.ListMultipartUploadsOutput
		_, err := s.call(ctx, "ListMultipartUploads", func(ctx context.Context, opts func(*s3.Options)) (err error) {
			out, err = pages.NextPage(ctx, opts)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("store: list uploads %s: %w", prefix, err)
		}
		for _, u := range out.Uploads {
			if !strings.HasPrefix(aws.ToString(u.Key), prefix) {
				continue
			}
			uploads = append(uploads, Upload{
				Key: aws.ToString(u.Key), UploadID: aws.ToString(u.UploadId), Initiated: aws.ToTime(u.Initiated),
			})
		}
	}
	return uploads, nil
}

func (s *s3Store) PutIfAbsent(ctx context.Context, key string, body []byte) error {
	attempts, err := s.call(ctx, "PutObject", func(ctx context.Context, opts func(*s3.Options)) error {
		_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket:               &s.bucket,
			Key:                  &key,
			Body:                 bytes.NewReader(body),
			ContentLength:        aws.Int64(int64(len(body))),
			ContentMD5:           contentMD5(body),
			IfNoneMatch:          aws.String("*"),
			ServerSideEncryption: s.sse,
			SSEKMSKeyId:          s.kmsKeyID,
			StorageClass:         s.storageClass,
		}, opts)
		return err
	})
	if err == nil {
		return nil
	}
	if !isConditionFailed(err) {
		return fmt.Errorf("store: put %s: %w", key, err)
	}
	if attempts > 1 {
		// An earlier attempt may have written the object and lost the answer:
		// then the object there is our body, and the put succeeded.
		if got, gerr := s.Get(ctx, key); gerr == nil && bytes.Equal(got, body) {
			return nil
		}
	}
	return fmt.Errorf("store: put %s: %w", key, ErrExists)
}

func (s *s3Store) Get(ctx context.Context, key string) ([]byte, error) {
	var data []byte
	_, err := s.call(ctx, "GetObject", func(ctx context.Context, opts func(*s3.Options)) error {
		out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key}, opts)
		if err != nil {
			return err
		}
		defer out.Body.Close()
		// The body is read inside the call so that the timeout covers it.
		data, err = io.ReadAll(out.Body)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: get %s: %w", key, notFound(err))
	}
	return data, nil
}

func (s *s3Store) List(ctx context.Context, prefix string) ([]string, error) {
	in := &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix}
	if s.pageSize > 0 {
		in.MaxKeys = aws.Int32(s.pageSize)
	}
	pages := s3.NewListObjectsV2Paginator(s.client, in)
	var keys []string
	for pages.HasMorePages() {
		var out *s3.ListObjectsV2Output
		_, err := s.call(ctx, "ListObjectsV2", func(ctx context.Context, opts func(*s3.Options)) (err error) {
			out, err = pages.NextPage(ctx, opts)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("store: list %s: %w", prefix, err)
		}
		for _, o := range out.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	sort.Strings(keys) // S3 sorts too; S3-compatible servers should, but need not
	return keys, nil
}

func (s *s3Store) Delete(ctx context.Context, key string) error {
	_, err := s.call(ctx, "DeleteObject", func(ctx context.Context, opts func(*s3.Options)) error {
		_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key}, opts)
		return err
	})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("store: delete %s: %w", key, err)
	}
	return nil
}

// metadata returns an object's user metadata (tests).
func (s *s3Store) metadata(ctx context.Context, key string) (map[string]string, error) {
	var out *s3.HeadObjectOutput
	_, err := s.call(ctx, "HeadObject", func(ctx context.Context, opts func(*s3.Options)) (err error) {
		out, err = s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key}, opts)
		return err
	})
	if err != nil {
		return nil, notFound(err)
	}
	return out.Metadata, nil
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// isNotFound reports S3's answers for a missing object or upload.
func isNotFound(err error) bool {
	switch apiCode(err) {
	case "NoSuchKey", "NoSuchUpload", "NotFound":
		return true
	}
	return httpStatus(err) == http.StatusNotFound
}

// notFound adds ErrNotFound to S3's not-found answers.
func notFound(err error) error {
	if isNotFound(err) {
		return fmt.Errorf("%w (%w)", ErrNotFound, err)
	}
	return err
}

// isConditionFailed reports that If-None-Match found an object: 412, or 409
// when a concurrent conditional write to the same key won the race.
func isConditionFailed(err error) bool {
	switch apiCode(err) {
	case "PreconditionFailed", "ConditionalRequestConflict":
		return true
	}
	return httpStatus(err) == http.StatusPreconditionFailed
}
