//go:build integration

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kintypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/checkpoint"
	"github.com/sinkd/sinkd/dlq"
	"github.com/sinkd/sinkd/source/kinesis/kpl"
	"github.com/sinkd/sinkd/taxi"
)

// kinesisRun is a harness whose sinkd reads a Kinesis stream (the harness's
// topic name) instead of a Kafka topic.
type kinesisRun struct {
	*harness
	endpoint   string // where sinkd reads the stream (a proxy, in the throttling test)
	leaseTable string // "" = one instance without a lease table
	failover   string
	httpAddr   string           // sinkd's HTTP address; "" = any free port
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
	if k.httpAddr != "" {
		cfg = strings.Replace(cfg, `http: {addr: "127.0.0.1:0"}`, `http: {addr: "`+k.httpAddr+`"}`, 1)
	}
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		k.t.Fatal(err)
	}
	return path
}

// start runs sinkd on the Kinesis config; the process is watched like the
// harness's own (log file, lines, exit).
func (k *kinesisRun) start(instance string) *proc {
	k.t.Helper()
	return startSinkd(k.t, k.env, k.dir, instance, k.kinesisConfig(instance))
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
		k.remember(id, v, kind)
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
	var rows int64
	cached := func(key string) bool {
		n, ok := k.manifests[key]
		rows += n
		return ok
	}
	err := k.readManifests(ctx, cached, func(key string, m *checkpoint.Manifest) {
		var n int64
		for _, u := range m.Uploads {
			n += u.Rows
		}
		k.manifests[key] = n
		rows += n
	})
	return rows, err
}

// readManifests calls fn with every manifest under the run's prefix, except
// those skip reports done already (skip may be nil).
func (k *kinesisRun) readManifests(ctx context.Context, skip func(key string) bool, fn func(key string, m *checkpoint.Manifest)) error {
	st, prefix := k.store()
	keys, err := st.List(ctx, prefix)
	if err != nil {
		return err
	}
	for _, key := range keys {
		if !strings.Contains(key, "/manifests/") || !strings.HasSuffix(key, ".json") || (skip != nil && skip(key)) {
			continue
		}
		body, err := st.Get(ctx, key)
		if err != nil {
			return err
		}
		var m checkpoint.Manifest
		if err := json.Unmarshal(body, &m); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		fn(key, &m)
	}
	return nil
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

// faultProxy stands between sinkd and kinesalite and answers a share of the
// GetRecords calls itself: every throttleEvery-th with
// ProvisionedThroughputExceededException, every expireEvery-th with
// ExpiredIteratorException, as Kinesis does.
type faultProxy struct {
	url                    string
	calls                  atomic.Int64
	throttled, expired     atomic.Int64
	throttleEvery, expireN int64
}

func newFaultProxy(t *testing.T, target string, throttleEvery, expireEvery int64) *faultProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &faultProxy{url: "http://" + ln.Addr().String(), throttleEvery: throttleEvery, expireN: expireEvery}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".GetRecords") {
			n := f.calls.Add(1)
			switch {
			case n%f.throttleEvery == 0:
				f.throttled.Add(1)
				fail(w, "ProvisionedThroughputExceededException", "Rate exceeded for shard")
				return
			case n%f.expireN == 0:
				f.expired.Add(1)
				fail(w, "ExpiredIteratorException", "Iterator expired")
				return
			}
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return f
}

func fail(w http.ResponseWriter, errType, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(http.StatusBadRequest)
	fmt.Fprintf(w, `{"__type":%q,"message":%q}`, errType, msg)
}

// freePort returns a loopback address nothing listens on (for sinkd's HTTP
// server, to scrape its metrics).
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// metric returns the sum of a metric's samples on sinkd's /metrics.
func metric(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok && (strings.HasPrefix(rest, "{") || strings.HasPrefix(rest, " ")) {
			f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
			if len(f) > 0 {
				v, _ := strconv.ParseFloat(f[0], 64)
				sum += v
			}
		}
	}
	return sum
}

// putCorruptAggregate writes one KPL aggregate whose MD5 trailer does not
// match and returns its bytes.
func (k *kinesisRun) putCorruptAggregate() []byte {
	k.t.Helper()
	data, err := kpl.Aggregate([]kpl.UserRecord{{PartitionKey: "c", Data: []byte(`{"corrupt":1}`)}, {PartitionKey: "c", Data: []byte(`{"corrupt":2}`)}})
	if err != nil {
		k.t.Fatal(err)
	}
	data[len(data)-1] ^= 0xff
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := k.client(ctx).PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String(k.topic), PartitionKey: aws.String("c"), Data: data}); err != nil {
		k.t.Fatal(err)
	}
	return data
}

// restartsInsideAggregates counts the manifest restart points that fall
// after the first user record of an aggregate.
func (k *kinesisRun) restartsInsideAggregates() int {
	k.t.Helper()
	n := 0
	err := k.readManifests(context.Background(), nil, func(_ string, m *checkpoint.Manifest) {
		for _, ps := range m.Partitions {
			if ps.Restart.Sub > 0 {
				n++
			}
		}
	})
	if err != nil {
		k.t.Fatal(err)
	}
	return n
}

// fileLetters reads the dead letters an instance wrote to its file.
func (k *kinesisRun) fileLetters(instance string) []*dlq.Letter {
	k.t.Helper()
	f, err := os.Open(filepath.Join(k.dir, "dlq-"+instance+".jsonl"))
	if err != nil {
		k.t.Fatal(err)
	}
	defer f.Close()
	var out []*dlq.Letter
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 8<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		l, err := dlq.FromJSON(sc.Bytes())
		if err != nil {
			k.t.Fatal(err)
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		k.t.Fatal(err)
	}
	return out
}

// waitCommit waits for a manifest that commits files.
func (p *proc) waitCommit(within time.Duration) bool {
	deadline := time.After(within)
	for {
		select {
		case line := <-p.lines:
			var m struct {
				Msg     string `json:"msg"`
				Uploads int    `json:"uploads"`
			}
			if json.Unmarshal([]byte(line), &m) == nil && m.Msg == "checkpoint: manifest written" && m.Uploads > 0 {
				return true
			}
		case <-p.done:
			return false
		case <-deadline:
			return false
		}
	}
}

// leaseOwners counts the shard leases each instance holds in the lease table.
func (k *kinesisRun) leaseOwners() map[string]int {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(k.env.Region))
	if err != nil {
		k.t.Fatal(err)
	}
	db := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(k.env.DynamoDBEndpoint) })
	out := map[string]int{}
	resp, err := db.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String(k.leaseTable), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return out // the table may not exist yet
	}
	for _, it := range resp.Items {
		key, _ := it["leaseKey"].(*ddbtypes.AttributeValueMemberS)
		owner, _ := it["leaseOwner"].(*ddbtypes.AttributeValueMemberS)
		// Leases are keyed "<stream>/<shard id>".
		if key != nil && owner != nil && strings.HasPrefix(key.Value, k.topic+"/shardId-") {
			out[owner.Value]++
		}
	}
	return out
}

// openShards lists the stream's open shards, by starting hash key.
func (k *kinesisRun) openShards(ctx context.Context) []kintypes.Shard {
	k.t.Helper()
	resp, err := k.client(ctx).ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(k.topic)})
	if err != nil {
		k.t.Fatal(err)
	}
	var open []kintypes.Shard
	for _, s := range resp.Shards {
		if s.SequenceNumberRange.EndingSequenceNumber == nil {
			open = append(open, s)
		}
	}
	sort.Slice(open, func(i, j int) bool {
		return hashKey(open[i].HashKeyRange.StartingHashKey).Cmp(hashKey(open[j].HashKeyRange.StartingHashKey)) < 0
	})
	return open
}

func hashKey(s *string) *big.Int {
	n, _ := new(big.Int).SetString(aws.ToString(s), 10)
	return n
}

// reshard splits the first open shard in two, or merges the first two open
// shards, and waits until the stream is active again.
func (k *kinesisRun) reshard(split bool) {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	api := k.client(ctx)
	open := k.openShards(ctx)
	var err error
	if split {
		r := open[0].HashKeyRange
		mid := new(big.Int).Add(hashKey(r.StartingHashKey), hashKey(r.EndingHashKey))
		mid.Rsh(mid, 1)
		_, err = api.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String(k.topic), ShardToSplit: open[0].ShardId, NewStartingHashKey: aws.String(mid.String())})
	} else {
		_, err = api.MergeShards(ctx, &kinesis.MergeShardsInput{StreamName: aws.String(k.topic), ShardToMerge: open[0].ShardId, AdjacentShardToMerge: open[1].ShardId})
	}
	if err != nil {
		k.t.Fatal(err)
	}
	w := kinesis.NewStreamExistsWaiter(api, func(o *kinesis.StreamExistsWaiterOptions) { o.MinDelay, o.MaxDelay = 100*time.Millisecond, time.Second })
	if err := w.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(k.topic)}, time.Minute); err != nil {
		k.t.Fatal(err)
	}
}

// committedFiles lists the committed Parquet files in commit order: by the
// manifest that committed them, then by name (a writer numbers its files in
// the order it opens them). One instance only.
func (k *kinesisRun) committedFiles() []string {
	k.t.Helper()
	type file struct {
		seq uint64
		key string
	}
	var files []file
	err := k.readManifests(context.Background(), nil, func(_ string, m *checkpoint.Manifest) {
		for _, u := range m.Uploads {
			files = append(files, file{m.Seq, u.Key})
		}
	})
	if err != nil {
		k.t.Fatal(err)
	}
	sort.Slice(files, func(i, j int) bool {
		if files[i].seq != files[j].seq {
			return files[i].seq < files[j].seq
		}
		return files[i].key < files[j].key
	})
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.key
	}
	return out
}

// tripIDs reads the trip_id column of a committed file, in row order.
func (h *harness) tripIDs(key string) []int64 {
	h.t.Helper()
	st, _ := h.store()
	body, err := st.Get(context.Background(), key)
	if err != nil {
		h.t.Fatal(err)
	}
	f, err := parquet.OpenFile(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		h.t.Fatal(err)
	}
	col, ok := f.Schema().Lookup("trip_id")
	if !ok {
		h.t.Fatalf("%s has no trip_id column", key)
	}
	var ids []int64
	for _, rg := range f.RowGroups() {
		rows := rg.Rows()
		buf := make([]parquet.Row, 256)
		for {
			n, err := rows.ReadRows(buf)
			for _, row := range buf[:n] {
				ids = append(ids, row[col.ColumnIndex].Int64())
			}
			if err != nil {
				break
			}
		}
		rows.Close()
	}
	return ids
}
