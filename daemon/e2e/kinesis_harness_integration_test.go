//go:build integration

package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/sinkd/sinkd/daemon/checkpoint"
	"github.com/sinkd/sinkd/taxi"
)

// kinesisRun is a harness whose sinkd reads a Kinesis stream (the harness's
// topic name) instead of a Kafka topic.
type kinesisRun struct {
	*harness
	endpoint   string // where sinkd reads the stream (a proxy, in the throttling test)
	leaseTable string // "" = one instance without a lease table
	failover   string
	manifests  map[string]int64 // manifest key → rows it commits (manifests never change)
}

func newKinesisRun(t *testing.T, name string) *kinesisRun {
	h := newHarness(t, name)
	return &kinesisRun{harness: h, endpoint: h.env.KinesisEndpoint, failover: "6s", manifests: map[string]int64{}}
}

// kinesisConfig is the harness's config with a Kinesis source in place of
// the Kafka one.
func (k *kinesisRun) kinesisConfig(instance string) string {
	path := k.config(instance)
	b, err := os.ReadFile(path)
	if err != nil {
		k.t.Fatal(err)
	}
	cfg := string(b)
	from, to := strings.Index(cfg, "source:\n"), strings.Index(cfg, "schema:\n")
	if from < 0 || to < from {
		k.t.Fatal("harness config has no source section to replace")
	}
	src := fmt.Sprintf(`source:
  kinesis:
    stream: %s
    endpoint: %s
    region: %s
    start: trim_horizon
    poll_interval: 200ms
    max_records: 2000
    shard_sync_interval: 2s
    failover_time: %s
    request_timeout: 5s
`, k.topic, k.endpoint, k.env.Region, k.failover)
	if k.leaseTable != "" {
		src += fmt.Sprintf("    lease_table: %s\n    dynamodb_endpoint: %s\n", k.leaseTable, k.env.DynamoDBEndpoint)
	}
	cfg = cfg[:from] + src + cfg[to:]
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		k.t.Fatal(err)
	}
	return path
}

// start runs sinkd on the Kinesis config; the process is watched like the
// harness's own (log file, lines, exit).
func (k *kinesisRun) start(instance string) *proc {
	k.t.Helper()
	cmd := exec.Command(sinkdBin, "run", "--config", k.kinesisConfig(instance))
	cmd.Env = os.Environ()
	for key, v := range k.env.Vars {
		cmd.Env = append(cmd.Env, key+"="+v)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		k.t.Fatal(err)
	}
	logFile, err := os.OpenFile(filepath.Join(k.dir, instance+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		k.t.Fatal(err)
	}
	p := &proc{cmd: cmd, instance: instance, lines: make(chan string, 1024), done: make(chan struct{}), logFile: logFile}
	if err := cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logFile, line)
			select {
			case p.lines <- line:
			default:
			}
		}
	}()
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p
}

func (k *kinesisRun) client(ctx context.Context) *kinesis.Client {
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(k.env.Region))
	if err != nil {
		k.t.Fatal(err)
	}
	return kinesis.NewFromConfig(cfg, func(o *kinesis.Options) { o.BaseEndpoint = aws.String(k.env.KinesisEndpoint) })
}

// createStream creates the stream with shards and waits until it is active.
func (k *kinesisRun) createStream(shards int32) {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := taxi.NewKinesisSink(ctx, k.topic, k.env.KinesisEndpoint, k.env.Region, shards, false); err != nil {
		k.t.Fatal(err)
	}
}

// produceKinesis produces n trips (a share bad) at about rate events/s in the
// background, KPL-aggregated when aggregate is set, keyed by keyOf(trip_id).
// The stream must exist. wait returns when all are sent.
func (k *kinesisRun) produceKinesis(n int, badRatio float64, seed int64, rate int, aggregate bool, keyOf func(int64) string) (wait func()) {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		done <- k.sendTrips(ctx, n, badRatio, seed, rate, aggregate, keyOf)
	}()
	return func() {
		k.t.Helper()
		if err := <-done; err != nil {
			k.t.Fatal(err)
		}
	}
}

func (k *kinesisRun) sendTrips(ctx context.Context, n int, badRatio float64, seed int64, rate int, aggregate bool, keyOf func(int64) string) error {
	sink, err := taxi.NewKinesisSink(ctx, k.topic, k.env.KinesisEndpoint, k.env.Region, 0, aggregate)
	if err != nil {
		return err
	}
	defer sink.Close()
	if keyOf == nil {
		keyOf = func(id int64) string { return strconv.FormatInt(id, 10) }
	}
	g := taxi.NewGenerator(seed, taxi.DefaultStart())
	begin := time.Now()
	const batch = 200
	for i := 0; i < n; i++ {
		v, kind := g.Event(badRatio)
		id, _ := g.Last()
		k.mu.Lock()
		if kind != "" {
			k.bad++
			k.badInputs[id] = badInput{kind: kind, digest: sha256.Sum256(v)}
		} else {
			k.inputs[id] = v
		}
		k.mu.Unlock()
		if err := sink.Send(ctx, []byte(keyOf(id)), v); err != nil {
			return err
		}
		if i%batch == batch-1 {
			if err := sink.Flush(ctx); err != nil {
				return err
			}
			if ahead := time.Duration(i+1)*time.Second/time.Duration(rate) - time.Since(begin); ahead > 0 {
				time.Sleep(ahead)
			}
		}
	}
	return sink.Flush(ctx)
}

// committedRows sums the rows of the files every manifest under the run's
// prefix commits: a written manifest is committed (recovery completes it).
func (k *kinesisRun) committedRows(ctx context.Context) (int64, error) {
	st, prefix := k.store()
	keys, err := st.List(ctx, prefix)
	if err != nil {
		return 0, err
	}
	var rows int64
	for _, key := range keys {
		if !strings.Contains(key, "/manifests/") || !strings.HasSuffix(key, ".json") {
			continue
		}
		if n, ok := k.manifests[key]; ok {
			rows += n
			continue
		}
		body, err := st.Get(ctx, key)
		if err != nil {
			return 0, err
		}
		var m checkpoint.Manifest
		if err := json.Unmarshal(body, &m); err != nil {
			return 0, err
		}
		var n int64
		for _, u := range m.Uploads {
			n += u.Rows
		}
		k.manifests[key] = n
		rows += n
	}
	return rows, nil
}

// waitCommitted waits until committed files hold as many rows as there are
// good inputs (verify then checks they are the right ones, once each).
func (k *kinesisRun) waitCommitted(within time.Duration, procs ...*proc) {
	k.t.Helper()
	deadline := time.Now().Add(within)
	var rows int64
	for time.Now().Before(deadline) {
		for _, p := range procs {
			if p.exited() {
				k.t.Fatalf("sinkd %s exited by itself: %v; log tail:\n%s", p.instance, p.err, tail(p.logFile.Name(), 20))
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		var err error
		rows, err = k.committedRows(ctx)
		cancel()
		k.mu.Lock()
		want := int64(len(k.inputs))
		k.mu.Unlock()
		if err == nil && rows >= want {
			return
		}
		time.Sleep(time.Second)
	}
	k.t.Fatalf("committed files hold %d rows after %s, want %d", rows, within, len(k.inputs))
}
