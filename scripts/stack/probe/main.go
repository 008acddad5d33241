// Command probe checks that one server of the local stack answers a real
// request, and prepares what the stack promises (the S3 bucket). stack.sh runs
// it in a loop until it succeeds, so a single call makes a single attempt.
//
//	probe s3 ENDPOINT BUCKET   list buckets, create BUCKET if missing
//	probe kinesis ENDPOINT     list streams
//	probe dynamodb ENDPOINT    list tables
//	probe kafka BROKERS        fetch cluster metadata
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// attemptTimeout bounds one probe; the caller retries.
const attemptTimeout = 3 * time.Second

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
	defer cancel()
	if err := probe(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

func probe(ctx context.Context, args []string) error {
	if len(args) < 2 {
		return errors.New("usage: probe s3|kinesis|dynamodb|kafka ENDPOINT [BUCKET]")
	}
	kind, endpoint := args[0], args[1]
	switch kind {
	case "s3":
		if len(args) != 3 {
			return errors.New("usage: probe s3 ENDPOINT BUCKET")
		}
		return probeS3(ctx, endpoint, args[2])
	case "kinesis":
		_, err := kinesis.NewFromConfig(awsConfig(), func(o *kinesis.Options) {
			o.BaseEndpoint = aws.String(endpoint)
		}).ListStreams(ctx, &kinesis.ListStreamsInput{})
		return err
	case "dynamodb":
		_, err := dynamodb.NewFromConfig(awsConfig(), func(o *dynamodb.Options) {
			o.BaseEndpoint = aws.String(endpoint)
		}).ListTables(ctx, &dynamodb.ListTablesInput{})
		return err
	case "kafka":
		return probeKafka(ctx, strings.Split(endpoint, ","))
	default:
		return fmt.Errorf("unknown server kind %q", kind)
	}
}

// awsConfig is the stack's static configuration: MinIO checks the
// credentials, kinesalite and dynalite accept any.
func awsConfig() aws.Config {
	return aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("minioadmin", "minioadmin", ""),
		// The caller retries whole probes; SDK retries would only blur the timeout.
		RetryMaxAttempts: 1,
	}
}

func probeS3(ctx context.Context, endpoint, bucket string) error {
	client := s3.NewFromConfig(awsConfig(), func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
	})
	if _, err := client.ListBuckets(ctx, &s3.ListBucketsInput{}); err != nil {
		return err
	}
	_, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	var owned *s3types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	return nil
}

func probeKafka(ctx context.Context, brokers []string) error {
	client, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DialTimeout(time.Second))
	if err != nil {
		return err
	}
	defer client.Close()
	meta, err := kadm.NewClient(client).BrokerMetadata(ctx)
	if err != nil {
		return err
	}
	if len(meta.Brokers) == 0 {
		return errors.New("cluster reports no brokers")
	}
	return nil
}
