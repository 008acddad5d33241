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
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/scripts/stack/stackenv"
	"github.com/sinkd/sinkd/taxi"
	"github.com/sinkd/sinkd/writers/store"
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

// s3Output counts what sinkd committed and deletes it afterwards.
type s3Output struct {
	st store.Store
}

func newS3Output(ctx context.Context, env stackenv.Env) (*s3Output, error) {
	st, _, err := store.Open(ctx, "s3://"+env.S3Bucket, config.S3{
		Endpoint: env.S3Endpoint, Region: env.Region, PathStyle: true,
		RequestTimeout: config.Duration(30 * time.Second),
	})
	if err != nil {
		return nil, err
	}
	return &s3Output{st: st}, nil
}

// countFiles counts committed Parquet files and the distinct bucket paths
// they are in.
func (o *s3Output) countFiles(ctx context.Context, prefix string) (files, buckets int, err error) {
	keys, err := o.st.List(ctx, prefix)
	if err != nil {
		return 0, 0, err
	}
	dirs := map[string]bool{}
	for _, k := range keys {
		if strings.HasSuffix(k, ".parquet") {
			files++
			dirs[path.Dir(k)] = true
		}
	}
	return files, len(dirs), nil
}

// deletePrefix deletes every object and aborts every upload under prefix,
// eight requests at a time.
func (o *s3Output) deletePrefix(ctx context.Context, prefix string) error {
	keys, err := o.st.List(ctx, prefix)
	if err != nil {
		return err
	}
	uploads, err := o.st.ListUploads(ctx, prefix)
	if err != nil {
		return err
	}
	jobs := make(chan func() error)
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			for job := range jobs {
				if err := job(); err != nil && errs[i] == nil {
					errs[i] = err
				}
			}
		})
	}
	for _, k := range keys {
		jobs <- func() error { return o.st.Delete(ctx, k) }
	}
	for _, u := range uploads {
		jobs <- func() error { return o.st.AbortUpload(ctx, u.Key, u.UploadID) }
	}
	close(jobs)
	wg.Wait()
	return errors.Join(errs...)
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
