//go:build integration

package stackenv_test

// Smoke tests of the local stack: each server is real and does what sinkd's
// integration tests rely on. A failure here means the stack, not sinkd, is
// broken, which is worth knowing before reading any other failure.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kintypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sinkd/sinkd/scripts/stack/stackenv"
)

// unique returns a name no other test run uses, so runs never see each
// other's leftovers.
func unique(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + "-" + hex.EncodeToString(b)
}

func awsConfig(env stackenv.Env) aws.Config {
	return aws.Config{
		Region:      env.Region,
		Credentials: credentials.NewStaticCredentialsProvider(env.AccessKey, env.SecretKey, ""),
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestEnvFileIsComplete(t *testing.T) {
	env := stackenv.Load(t)
	for _, key := range []string{
		"SINKD_KAFKA_BROKERS", "SINKD_KAFKA_TOPIC", "SINKD_S3_ENDPOINT", "SINKD_S3_BUCKET",
		"SINKD_KINESIS_ENDPOINT", "SINKD_KINESIS_STREAM", "SINKD_DYNAMODB_ENDPOINT",
		"SINKD_DLQ_TOPIC", "SINKD_DLQ_STREAM", "AWS_REGION", "AWS_ACCESS_KEY_ID",
		"AWS_SECRET_ACCESS_KEY", "SINKD_STACK_DIR",
	} {
		if env.Vars[key] == "" {
			t.Errorf("env file lacks %s", key)
		}
	}
	if _, err := os.Stat(env.Dir); err != nil {
		t.Errorf("SINKD_STACK_DIR: %v", err)
	}
}

// TestServersListenOnLoopbackOnly reads the kernel's socket tables: every
// listening socket on a stack port must be bound to a loopback address.
func TestServersListenOnLoopbackOnly(t *testing.T) {
	env := stackenv.Load(t)
	ports := map[int]bool{}
	for _, endpoint := range []string{env.S3Endpoint, env.KinesisEndpoint, env.DynamoDBEndpoint, "tcp://" + env.KafkaBrokers} {
		_, hostport, _ := strings.Cut(endpoint, "://")
		_, port, err := net.SplitHostPort(hostport)
		if err != nil {
			t.Fatalf("endpoint %q: %v", endpoint, err)
		}
		n, _ := strconv.Atoi(port)
		ports[n] = false
	}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		for _, l := range listeningSockets(t, table) {
			if _, ok := ports[l.port]; !ok {
				continue
			}
			ports[l.port] = true
			if !l.ip.IsLoopback() {
				t.Errorf("port %d listens on %s, want loopback only", l.port, l.ip)
			}
		}
	}
	for port, seen := range ports {
		if !seen {
			t.Errorf("nothing listens on port %d", port)
		}
	}
}

type listener struct {
	ip   net.IP
	port int
}

// listeningSockets parses /proc/net/tcp or tcp6: addresses are hex, IPv4 in
// host byte order, IPv6 as four host-order 32-bit words; state 0A is LISTEN.
func listeningSockets(t *testing.T, table string) []listener {
	t.Helper()
	f, err := os.Open(table)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []listener
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "0A" {
			continue
		}
		addr, portHex, _ := strings.Cut(fields[1], ":")
		raw, err := hex.DecodeString(addr)
		if err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		for i := 0; i+4 <= len(raw); i += 4 {
			raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
		}
		port, err := strconv.ParseInt(portHex, 16, 32)
		if err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		out = append(out, listener{ip: net.IP(raw), port: int(port)})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func newS3(env stackenv.Env) *s3.Client {
	return s3.NewFromConfig(awsConfig(env), func(o *s3.Options) {
		o.BaseEndpoint = aws.String(env.S3Endpoint)
		o.UsePathStyle = true
	})
}

// deleteAtEnd keeps the shared bucket free of smoke-test objects.
func deleteAtEnd(t *testing.T, client *s3.Client, bucket, key string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	})
}

func TestMinIOMultipartUpload(t *testing.T) {
	env := stackenv.Load(t)
	ctx := testContext(t)
	client := newS3(env)
	key := unique(t, "smoke/multipart") + ".bin"
	deleteAtEnd(t, client, env.S3Bucket, key)

	created, err := client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String(env.S3Bucket), Key: aws.String(key),
	})
	if err != nil {
		t.Fatalf("create multipart upload: %v", err)
	}
	// Parts other than the last must be at least 5 MiB, so two parts prove
	// the server enforces nothing stricter than S3 and assembles in order.
	parts := [][]byte{bytes.Repeat([]byte("a"), 5<<20), []byte("tail")}
	var completed []s3types.CompletedPart
	for i, body := range parts {
		n := int32(i + 1)
		out, err := client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: aws.String(env.S3Bucket), Key: aws.String(key), UploadId: created.UploadId,
			PartNumber: aws.Int32(n), Body: bytes.NewReader(body),
		})
		if err != nil {
			t.Fatalf("upload part %d: %v", n, err)
		}
		completed = append(completed, s3types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n)})
	}

	if !listsUpload(ctx, t, client, env.S3Bucket, key, *created.UploadId) {
		t.Fatalf("ListMultipartUploads does not show in-progress upload %s", *created.UploadId)
	}
	if _, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(env.S3Bucket), Key: aws.String(key)}); err == nil {
		t.Fatal("object visible before its multipart upload was completed")
	}

	if _, err := client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(env.S3Bucket), Key: aws.String(key), UploadId: created.UploadId,
		MultipartUpload: &s3types.CompletedMultipartUpload{Parts: completed},
	}); err != nil {
		t.Fatalf("complete multipart upload: %v", err)
	}
	if listsUpload(ctx, t, client, env.S3Bucket, key, *created.UploadId) {
		t.Fatal("completed upload still listed as in progress")
	}

	got, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(env.S3Bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get object: %v", err)
	}
	defer got.Body.Close()
	body, err := io.ReadAll(got.Body)
	if err != nil {
		t.Fatal(err)
	}
	if want := bytes.Join(parts, nil); !bytes.Equal(body, want) {
		t.Fatalf("object has %d bytes, want the %d bytes of both parts in order", len(body), len(want))
	}
}

func listsUpload(ctx context.Context, t *testing.T, client *s3.Client, bucket, key, uploadID string) bool {
	t.Helper()
	out, err := client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{
		Bucket: aws.String(bucket), Prefix: aws.String(key),
	})
	if err != nil {
		t.Fatalf("list multipart uploads: %v", err)
	}
	for _, u := range out.Uploads {
		if aws.ToString(u.Key) == key && aws.ToString(u.UploadId) == uploadID {
			return true
		}
	}
	return false
}

// TestMinIOConditionalPut checks the primitive sinkd's checkpoint manifest
// relies on: a put with If-None-Match: * succeeds once and only once.
func TestMinIOConditionalPut(t *testing.T) {
	env := stackenv.Load(t)
	ctx := testContext(t)
	client := newS3(env)
	key := unique(t, "smoke/manifest") + ".json"
	deleteAtEnd(t, client, env.S3Bucket, key)

	put := func(body string) error {
		_, err := client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(env.S3Bucket), Key: aws.String(key),
			Body: strings.NewReader(body), IfNoneMatch: aws.String("*"),
		})
		return err
	}
	if err := put("first"); err != nil {
		t.Fatalf("first conditional put: %v", err)
	}
	err := put("second")
	var resp *smithyhttp.ResponseError
	if !errors.As(err, &resp) || resp.HTTPStatusCode() != http.StatusPreconditionFailed {
		t.Fatalf("second conditional put: got %v, want HTTP 412 Precondition Failed", err)
	}

	got, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(env.S3Bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Body.Close()
	if body, _ := io.ReadAll(got.Body); string(body) != "first" {
		t.Fatalf("object holds %q after the rejected put, want %q", body, "first")
	}
}

func TestKinesaliteStreamRoundTrip(t *testing.T) {
	env := stackenv.Load(t)
	ctx := testContext(t)
	client := kinesis.NewFromConfig(awsConfig(env), func(o *kinesis.Options) {
		o.BaseEndpoint = aws.String(env.KinesisEndpoint)
	})
	stream := unique(t, "smoke")

	if _, err := client.CreateStream(ctx, &kinesis.CreateStreamInput{
		StreamName: aws.String(stream), ShardCount: aws.Int32(1),
	}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = client.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String(stream)})
	})
	waiter := kinesis.NewStreamExistsWaiter(client, func(o *kinesis.StreamExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 50*time.Millisecond, 500*time.Millisecond
	})
	desc, err := waiter.WaitForOutput(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(stream)}, 20*time.Second)
	if err != nil {
		t.Fatalf("wait for stream: %v", err)
	}
	if n := len(desc.StreamDescription.Shards); n != 1 {
		t.Fatalf("stream has %d shards, want 1", n)
	}

	want := []string{`{"trip_id":1}`, `{"trip_id":2}`}
	for _, data := range want {
		if _, err := client.PutRecord(ctx, &kinesis.PutRecordInput{
			StreamName: aws.String(stream), PartitionKey: aws.String("k"), Data: []byte(data),
		}); err != nil {
			t.Fatalf("put record: %v", err)
		}
	}
	it, err := client.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{
		StreamName: aws.String(stream), ShardId: desc.StreamDescription.Shards[0].ShardId,
		ShardIteratorType: kintypes.ShardIteratorTypeTrimHorizon,
	})
	if err != nil {
		t.Fatalf("get shard iterator: %v", err)
	}
	out, err := client.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
	if err != nil {
		t.Fatalf("get records: %v", err)
	}
	var got []string
	for _, r := range out.Records {
		got = append(got, string(r.Data))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got records %q, want %q", got, want)
	}
}

func TestDynaliteConditionalPut(t *testing.T) {
	env := stackenv.Load(t)
	ctx := testContext(t)
	client := dynamodb.NewFromConfig(awsConfig(env), func(o *dynamodb.Options) {
		o.BaseEndpoint = aws.String(env.DynamoDBEndpoint)
	})
	table := unique(t, "smoke-leases")

	if _, err := client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("leaseKey"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("leaseKey"), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
	}); err != nil {
		t.Fatalf("create table: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = client.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(table)})
	})
	// The waiter's default MinDelay is 20 s; dynalite is ready in milliseconds.
	waiter := dynamodb.NewTableExistsWaiter(client, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 50*time.Millisecond, 500*time.Millisecond
	})
	if err := waiter.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, 20*time.Second); err != nil {
		t.Fatalf("wait for table: %v", err)
	}

	claim := func(owner string) error {
		_, err := client.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: aws.String(table),
			Item: map[string]ddbtypes.AttributeValue{
				"leaseKey":   &ddbtypes.AttributeValueMemberS{Value: "shardId-000000000000"},
				"leaseOwner": &ddbtypes.AttributeValueMemberS{Value: owner},
			},
			ConditionExpression: aws.String("attribute_not_exists(leaseKey)"),
		})
		return err
	}
	if err := claim("worker-a"); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	var failed *ddbtypes.ConditionalCheckFailedException
	if err := claim("worker-b"); !errors.As(err, &failed) {
		t.Fatalf("second claim: got %v, want ConditionalCheckFailedException", err)
	}

	item, err := client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(table),
		Key:            map[string]ddbtypes.AttributeValue{"leaseKey": &ddbtypes.AttributeValueMemberS{Value: "shardId-000000000000"}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	if owner, _ := item.Item["leaseOwner"].(*ddbtypes.AttributeValueMemberS); owner == nil || owner.Value != "worker-a" {
		t.Fatalf("lease owner is %v after the rejected claim, want worker-a", item.Item["leaseOwner"])
	}
}

// TestKafkaConsumerGroupCommit produces to a fresh topic, consumes it in a
// group, commits, and checks that a new member of the group resumes after the
// committed offsets rather than from the start.
func TestKafkaConsumerGroupCommit(t *testing.T) {
	env := stackenv.Load(t)
	ctx := testContext(t)
	brokers := strings.Split(env.KafkaBrokers, ",")
	topic, group := unique(t, "smoke"), unique(t, "smoke-group")

	producer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.AllowAutoTopicCreation(), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	admin := kadm.NewClient(producer)
	if _, err := admin.CreateTopic(ctx, 2, 1, nil, topic); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = admin.DeleteTopics(ctx, topic)
	})

	produce := func(values ...string) {
		t.Helper()
		for _, v := range values {
			if err := producer.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatalf("produce %q: %v", v, err)
			}
		}
	}
	produce("r0", "r1", "r2", "r3")

	first := consume(ctx, t, brokers, topic, group, 4)
	if fmt.Sprint(sortedValues(first)) != "[r0 r1 r2 r3]" {
		t.Fatalf("first member consumed %v, want r0..r3", sortedValues(first))
	}

	offsets, err := admin.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("fetch committed offsets: %v", err)
	}
	var committed int64
	offsets.Each(func(o kadm.OffsetResponse) { committed += o.At })
	if committed != 4 {
		t.Fatalf("group committed offsets summing to %d, want 4", committed)
	}

	produce("r4")
	second := consume(ctx, t, brokers, topic, group, 1)
	if fmt.Sprint(sortedValues(second)) != "[r4]" {
		t.Fatalf("new member consumed %v, want only r4 (after the committed offsets)", sortedValues(second))
	}
}

// consume joins group, polls until it has want records, commits and leaves.
func consume(ctx context.Context, t *testing.T, brokers []string, topic, group string, want int) []*kgo.Record {
	t.Helper()
	client, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var got []*kgo.Record
	for len(got) < want {
		fetches := client.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records before timeout", len(got), want)
		}
		fetches.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", tp, p, err) })
		got = append(got, fetches.Records()...)
	}
	if len(got) != want {
		t.Fatalf("consumed %d records, want %d", len(got), want)
	}
	if err := client.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	return got
}

func sortedValues(records []*kgo.Record) []string {
	values := make([]string, len(records))
	for i, r := range records {
		values[i] = string(r.Value)
	}
	slices.Sort(values) // records of several partitions come in no global order
	return values
}
