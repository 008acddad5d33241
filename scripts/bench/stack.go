package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/scripts/stack/stackenv"
	"github.com/sinkd/sinkd/store"
	"github.com/sinkd/sinkd/taxi"
)

// seed makes every benchmark read the same trips.
const seed = 8

// input is a preloaded topic or stream.
type input struct {
	name    string
	events  int64
	bytes   int64 // values only
	preload time.Duration
	reused  bool // preloaded for an earlier scenario of this run
}

// kafkaInput preloads topics on the stack's broker and reads group lag.
type kafkaInput struct {
	env    stackenv.Env
	log    *slog.Logger
	client *kgo.Client
	adm    *kadm.Client
	topics map[[2]int]input // by {partitions, events}
}

func newKafkaInput(env stackenv.Env, log *slog.Logger) (*kafkaInput, error) {
	client, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(env.KafkaBrokers, ",")...), kgo.DialTimeout(5*time.Second))
	if err != nil {
		return nil, err
	}
	return &kafkaInput{env: env, log: log, client: client, adm: kadm.NewClient(client), topics: map[[2]int]input{}}, nil
}

// topic returns a topic with partitions partitions holding events trips,
// preloading a new one unless this run already did. Scenarios that read the
// same input share it, each with its own consumer group: preloading two
// million events takes longer than reading them.
func (k *kafkaInput) topic(ctx context.Context, partitions int32, events int) (input, error) {
	key := [2]int{int(partitions), events}
	if in, ok := k.topics[key]; ok {
		in.reused = true
		return in, nil
	}
	name := fmt.Sprintf("bench-p%d-%d", partitions, time.Now().UnixNano()%1e12)
	k.log.Info("preloading topic", "topic", name, "partitions", partitions, "events", events)
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	sink, err := taxi.NewKafkaSink(ctx, strings.Split(k.env.KafkaBrokers, ","), name, partitions)
	if err != nil {
		return input{}, err
	}
	defer sink.Close()
	st, err := taxi.WriteTopic(ctx, sink, taxi.NewGenerator(seed, taxi.DefaultStart()), events, 0)
	if err != nil {
		return input{}, fmt.Errorf("preloading %s: %w", name, err)
	}
	in := input{name: name, events: st.Events, bytes: st.Bytes, preload: st.Elapsed}
	k.topics[key] = in
	k.log.Info("preloaded", "topic", name, "seconds", st.Elapsed.Seconds(), "events_per_second", int(st.PerSecond()))
	return in, nil
}

// committedLag sums the group's committed lag over the topic's partitions;
// a partition without a commit yet is an error, not lag 0.
func (k *kafkaInput) committedLag(ctx context.Context, group, topic string) (int64, error) {
	lags, err := k.adm.Lag(ctx, group)
	if err != nil {
		return -1, err
	}
	gl, ok := lags[group]
	if !ok {
		return -1, fmt.Errorf("group %s not described", group)
	}
	if err := gl.Error(); err != nil {
		return -1, err
	}
	ps, ok := gl.Lag[topic]
	if !ok {
		return -1, fmt.Errorf("group %s has no commits on %s yet", group, topic)
	}
	var total int64
	for p, l := range ps {
		if l.Err != nil {
			return -1, l.Err
		}
		if l.Commit.At < 0 {
			return -1, fmt.Errorf("partition %d not committed yet", p)
		}
		total += l.Lag
	}
	return total, nil
}

// close deletes the topics this run preloaded: the broker keeps them in memory.
func (k *kafkaInput) close(ctx context.Context) {
	var names []string
	for _, in := range k.topics {
		names = append(names, in.name)
	}
	if len(names) > 0 {
		if _, err := k.adm.DeleteTopics(ctx, names...); err != nil {
			k.log.Warn("deleting benchmark topics", "topics", names, "err", err)
		}
	}
	k.client.Close()
}

// kinesisInput creates and preloads streams on kinesalite.
type kinesisInput struct {
	env     stackenv.Env
	log     *slog.Logger
	client  *kinesis.Client
	streams []string
}

func newKinesisInput(ctx context.Context, env stackenv.Env, log *slog.Logger) (*kinesisInput, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(env.Region),
		awsconfig.WithCredentialsProvider(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: env.AccessKey, SecretAccessKey: env.SecretKey}, nil
		})))
	if err != nil {
		return nil, err
	}
	client := kinesis.NewFromConfig(cfg, func(o *kinesis.Options) { o.BaseEndpoint = aws.String(env.KinesisEndpoint) })
	return &kinesisInput{env: env, log: log, client: client}, nil
}

// stream creates an empty stream with the given shards.
func (k *kinesisInput) stream(ctx context.Context, id string, shards int32) (string, error) {
	name := "bench-" + id
	sink, err := taxi.NewKinesisSink(ctx, name, k.env.KinesisEndpoint, k.env.Region, shards, true)
	if err != nil {
		return "", err
	}
	sink.Close()
	k.streams = append(k.streams, name)
	return name, nil
}

// preload writes events trips, KPL-aggregated (100 a record) as a producer
// at this rate would send them.
func (k *kinesisInput) preload(ctx context.Context, stream string, events int) (input, error) {
	k.log.Info("preloading stream", "stream", stream, "events", events)
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	sink, err := taxi.NewKinesisSink(ctx, stream, k.env.KinesisEndpoint, k.env.Region, 0, true)
	if err != nil {
		return input{}, err
	}
	defer sink.Close()
	st, err := taxi.WriteTopic(ctx, sink, taxi.NewGenerator(seed, taxi.DefaultStart()), events, 0)
	if err != nil {
		return input{}, fmt.Errorf("preloading %s: %w", stream, err)
	}
	return input{name: stream, events: st.Events, bytes: st.Bytes, preload: st.Elapsed}, nil
}

func (k *kinesisInput) close(ctx context.Context) {
	for _, s := range k.streams {
		if _, err := k.client.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String(s)}); err != nil {
			k.log.Warn("deleting benchmark stream", "stream", s, "err", err)
		}
	}
}

// s3Output counts what sinkd committed and deletes it afterwards. It lists
// with the SDK directly: the store's List gives keys without sizes, and a run
// on a build that rolls a file per record leaves tens of thousands of objects,
// which DeleteObjects removes a thousand a request.
type s3Output struct {
	st     store.Store // for the multipart uploads left open
	client *s3.Client
	bucket string
}

func newS3Output(ctx context.Context, env stackenv.Env) (*s3Output, error) {
	st, _, err := store.Open(ctx, "s3://"+env.S3Bucket, config.S3{
		Endpoint: env.S3Endpoint, Region: env.Region, PathStyle: true,
		RequestTimeout: config.Duration(30 * time.Second),
	})
	if err != nil {
		return nil, err
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(env.Region),
		awsconfig.WithCredentialsProvider(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: env.AccessKey, SecretAccessKey: env.SecretKey}, nil
		})))
	if err != nil {
		return nil, err
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(env.S3Endpoint)
		o.UsePathStyle = true
	})
	return &s3Output{st: st, client: client, bucket: env.S3Bucket}, nil
}

// object is one listed object.
type object struct {
	key  string
	size int64
}

// list returns every object under prefix, each page with its own timeout.
func (o *s3Output) list(ctx context.Context, prefix string) ([]object, error) {
	var out []object
	p := s3.NewListObjectsV2Paginator(o.client, &s3.ListObjectsV2Input{Bucket: aws.String(o.bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		page, err := p.NextPage(pctx)
		cancel()
		if err != nil {
			return out, err
		}
		for _, obj := range page.Contents {
			out = append(out, object{key: aws.ToString(obj.Key), size: aws.ToInt64(obj.Size)})
		}
	}
	return out, nil
}

// committed is what a run left in the lake: its Parquet files, their bytes,
// and the distinct bucket paths they are in.
type committed struct {
	files, buckets int
	bytes          int64
}

func (o *s3Output) countFiles(ctx context.Context, prefix string) (committed, error) {
	objs, err := o.list(ctx, prefix)
	if err != nil {
		return committed{}, err
	}
	var c committed
	dirs := map[string]bool{}
	for _, obj := range objs {
		if strings.HasSuffix(obj.key, ".parquet") {
			c.files++
			c.bytes += obj.size
			dirs[path.Dir(obj.key)] = true
		}
	}
	c.buckets = len(dirs)
	return c, nil
}

// deletePrefix deletes every object and aborts every upload under prefix.
func (o *s3Output) deletePrefix(ctx context.Context, prefix string) error {
	objs, err := o.list(ctx, prefix)
	if err != nil {
		return err
	}
	var errs []error
	for batch := range slices.Chunk(objs, 1000) {
		ids := make([]types.ObjectIdentifier, len(batch))
		for i, obj := range batch {
			ids[i] = types.ObjectIdentifier{Key: aws.String(obj.key)}
		}
		dctx, cancel := context.WithTimeout(ctx, time.Minute)
		out, err := o.client.DeleteObjects(dctx, &s3.DeleteObjectsInput{
			Bucket: aws.String(o.bucket), Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
		})
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range out.Errors {
			errs = append(errs, fmt.Errorf("deleting %s: %s", aws.ToString(e.Key), aws.ToString(e.Message)))
		}
	}
	uploads, err := o.st.ListUploads(ctx, prefix)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	// A run stopped mid-drain can leave thousands of uploads; S3 aborts them
	// one a request, so eight at a time.
	jobs := make(chan store.Upload)
	abortErrs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range abortErrs {
		wg.Go(func() {
			for u := range jobs {
				if err := o.st.AbortUpload(ctx, u.Key, u.UploadID); err != nil && abortErrs[i] == nil {
					abortErrs[i] = err
				}
			}
		})
	}
	for _, u := range uploads {
		jobs <- u
	}
	close(jobs)
	wg.Wait()
	return errors.Join(append(errs, abortErrs...)...)
}

// osFake is the project's OpenSearch fake, one per scenario so that its
// documents do not outlive it.
type osFake struct {
	cmd  *exec.Cmd
	url  string
	done chan struct{}
}

func startOSFake(ctx context.Context, bin, logPath string) (*osFake, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := strings.Cut(addr, ":")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-port", port)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting osfake: %w", err)
	}
	f := &osFake{cmd: cmd, url: "http://" + addr, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(f.done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if up(ctx, f.url) {
			return f, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.stop()
	return nil, fmt.Errorf("osfake did not answer at %s within 10s: %s", f.url, strings.Join(tail(logPath, 5), " | "))
}

// up reports whether something accepts connections at url's address.
func up(ctx context.Context, url string) bool {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// cpuSeconds is the fake's user plus system CPU time so far: it is a child
// of this program, not of sinkd, so sinkd's figure never includes it.
func (f *osFake) cpuSeconds(tck float64) float64 {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", f.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	ticks, err := cpuTicks(stat)
	if err != nil {
		return 0
	}
	return ticks / tck
}

func (f *osFake) stop() {
	_ = f.cmd.Process.Signal(os.Interrupt)
	select {
	case <-f.done:
	case <-time.After(10 * time.Second):
		_ = f.cmd.Process.Kill()
		<-f.done
	}
}
