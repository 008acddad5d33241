//go:build integration

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/scripts/stack/stackenv"
	"github.com/sinkd/sinkd/store"
)

// s3API is a plain S3 client for the stack's object store, for what the
// store package does not do: create buckets, read an upload's parts.
func s3API(env stackenv.Env) *s3.Client {
	return s3.New(s3.Options{
		Region: env.Region, BaseEndpoint: aws.String(env.S3Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(env.AccessKey, env.SecretKey, ""),
	})
}

func createBucket(t *testing.T, env stackenv.Env, bucket string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s3API(env).CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("creating bucket %s: %v", bucket, err)
	}
}

// uploadsInProgress returns the multipart uploads under prefix in
// env.S3Bucket that the store lists (as sinkd's recovery sees them) and that
// still exist.
//
// MinIO answers a whole-bucket ListMultipartUploads, the store's listing, from
// an in-memory cache that only a successful CompleteMultipartUpload or
// AbortMultipartUpload clears (cmd/erasure-server-pool.go, mpCache). When the
// client of a completion goes away (a SIGKILL, a request timeout) after MinIO
// has moved the upload's metadata to the object but before the call returns,
// the object is complete, the upload is gone, and its cache entry stays listed
// until MinIO restarts or 24 h pass: an abort finds no upload (which S3 and
// MinIO answer with success) and cannot clear it. ListParts reads the upload
// itself; an entry it answers with NoSuchUpload holds no parts and costs
// nothing, so it is logged and not counted. On S3 a listed upload exists.
func uploadsInProgress(t testing.TB, env stackenv.Env, prefix string) []store.Upload {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, _, err := store.Open(ctx, "s3://"+env.S3Bucket, config.S3{
		Endpoint: env.S3Endpoint, Region: env.Region, PathStyle: true, RequestTimeout: config.Duration(30 * time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	listed, err := st.ListUploads(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	api := s3API(env)
	var live []store.Upload
	for _, u := range listed {
		// A timeout per request: a failed drain can leave thousands listed.
		rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := api.ListParts(rctx, &s3.ListPartsInput{
			Bucket: aws.String(env.S3Bucket), Key: aws.String(u.Key), UploadId: aws.String(u.UploadID), MaxParts: aws.Int32(1),
		})
		cancel()
		var apiErr smithy.APIError
		switch {
		case err == nil:
			live = append(live, u)
		case errors.As(err, &apiErr) && apiErr.ErrorCode() == "NoSuchUpload":
			t.Logf("upload %s of %s is listed but does not exist (MinIO's listing cache after a completion cut short): not counted", u.UploadID, u.Key)
		default:
			t.Fatalf("reading the parts of upload %s of %s: %v", u.UploadID, u.Key, err)
		}
	}
	return live
}

// TestUploadsInProgressCountsRealUploadsOnly: the filter every exactly-once
// test ends with must count an upload that holds parts, and must not count
// the entry MinIO leaves listed when a completion's client goes away. The
// entry is provoked as a SIGKILL does it: the completion's request is cut off
// a few hundred microseconds to a few milliseconds in (about one try in ten
// leaves one, on the stack's MinIO).
func TestUploadsInProgressCountsRealUploadsOnly(t *testing.T) {
	env := stackenv.Load(t)
	env.Setenv(t) // the store's credentials, as every test's sinkd gets them
	ctx := context.Background()
	api := s3API(env)
	prefix := "e2e/phantom-" + time.Now().UTC().Format("150405.000000") + "/"
	part := make([]byte, 2<<20)
	upload := func(key string) (string, []types.CompletedPart) {
		t.Helper()
		cu, err := api.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &env.S3Bucket, Key: &key})
		if err != nil {
			t.Fatal(err)
		}
		up, err := api.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: &env.S3Bucket, Key: &key, UploadId: cu.UploadId, PartNumber: aws.Int32(1), Body: bytes.NewReader(part),
		})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(cu.UploadId), []types.CompletedPart{{PartNumber: aws.Int32(1), ETag: up.ETag}}
	}

	realKey := prefix + "open.parquet"
	realID, _ := upload(realKey)
	t.Cleanup(func() {
		_, _ = api.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &env.S3Bucket, Key: &realKey, UploadId: &realID})
	})

	phantom := ""
	for try := 0; try < 400 && phantom == ""; try++ {
		key := fmt.Sprintf("%scut-%03d.parquet", prefix, try)
		id, parts := upload(key)
		cut, cancel := context.WithTimeout(ctx, time.Duration(250+try%40*250)*time.Microsecond)
		_, err := api.CompleteMultipartUpload(cut, &s3.CompleteMultipartUploadInput{
			Bucket: &env.S3Bucket, Key: &key, UploadId: &id, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		})
		cancel()
		if err == nil {
			continue
		}
		// What recovery does next: complete again, then abort what is listed.
		_, _ = api.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket: &env.S3Bucket, Key: &key, UploadId: &id, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		})
		if _, err := api.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &env.S3Bucket, Key: &key, UploadId: &id}); err != nil {
			t.Fatalf("abort of %s: %v", key, err)
		}
		out, err := api.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &env.S3Bucket})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range out.Uploads {
			if aws.ToString(u.Key) == key && aws.ToString(u.UploadId) == id {
				phantom = key
				t.Logf("try %d: %s is listed in progress after its completion was cut off and it was aborted", try+1, key)
			}
		}
	}
	if phantom == "" {
		t.Fatalf("400 cut-off completions left no listed upload behind: this store does not show what the filter is for")
	}

	got := uploadsInProgress(t, env, prefix)
	if len(got) != 1 || got[0].Key != realKey || got[0].UploadID != realID {
		t.Fatalf("uploadsInProgress = %v, want only the open upload %s %s", got, realKey, realID)
	}
}
