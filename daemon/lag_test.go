package daemon

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sinkd/sinkd/config"
)

// scrape returns the value of every series of a metric, by partition label.
func scrape(t *testing.T, addr, metric string) map[string]float64 {
	t.Helper()
	series, err := metricSeries(addr, metric)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for labels, v := range series {
		_, part, ok := strings.Cut(labels, `partition="`)
		if !ok {
			continue
		}
		part, _, _ = strings.Cut(part, `"`)
		out[part] = v
	}
	return out
}

// sumMetric adds up every series of a metric on addr's /metrics; 0 when
// nothing answers.
func sumMetric(addr, metric string) float64 {
	series, _ := metricSeries(addr, metric)
	var sum float64
	for _, v := range series {
		sum += v
	}
	return sum
}

// metricSeries returns every series of a metric on addr's /metrics, by its
// label set ("" for none).
func metricSeries(addr, metric string) (map[string]float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		// The value follows the last space: label values may hold spaces.
		end := strings.LastIndexByte(line, ' ')
		labels, isMetric := strings.CutPrefix(line[:max(end, 0)], metric)
		if end < 0 || !isMetric || (labels != "" && labels[0] != '{') {
			continue
		}
		v, err := strconv.ParseFloat(line[end+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", line, err)
		}
		out[labels] = v
	}
	return out, sc.Err()
}

func post(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Post(url, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %s", url, resp.Status)
	}
}

// TestLagMetrics pauses consumption while K records arrive and reads
// sinkd_source_lag_records = K exactly per partition, and a millis-behind
// figure within 1.5 s of the true age of the oldest unprocessed record; both
// return to 0 after catch-up, and stay 0 on an idle partition.
func TestLagMetrics(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	addr, admin := freeAddr(t), freeAddr(t)
	dir := t.TempDir()
	cfg, err := config.Parse("lag.yaml", []byte(fmt.Sprintf(`pipeline: lag
http: {addr: "%s", admin: {addr: "%s"}}
source: {kafka: {brokers: %s, topics: [in], group: g}}
schema:
  fields:
    - {name: trip_id, type: int64, required: true}
routes:
  - name: r
    parquet: {destination: "file://%s/lake", path: "all", event_time: {source: broker}, inactivity: 1s}
checkpoint: {interval: 500ms}
dlq: {file: %s/dlq.jsonl}
`, addr, admin, strings.Join(cluster.ListenAddrs(), ","), dir, dir)))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic("in"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	produce := func(partition int32, n int) {
		for i := 0; i < n; i++ {
			r := &kgo.Record{Partition: partition, Value: []byte(fmt.Sprintf(`{"trip_id":%d}`, i))}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for p := int32(0); p < 3; p++ {
		produce(p, 20)
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var pl *Pipeline
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- run(runCtx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), options{}, func(p *Pipeline) { pl = p; close(ready) })
	}()
	<-ready
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor("catch-up", func() bool { return pl.Caught(ctx) })

	post(t, "http://"+admin+"/admin/pause")
	firstUnprocessed := time.Now()
	const k0, k1 = 150, 100
	produce(0, k0)
	produce(1, k1)
	var lag map[string]float64
	waitFor("lag = K", func() bool {
		lag = scrape(t, addr, "sinkd_source_lag_records")
		return lag["0"] == k0 && lag["1"] == k1
	})
	if lag["2"] != 0 {
		t.Errorf("idle partition 2 lag = %v, want 0", lag["2"])
	}
	// Let the backlog age, then compare with its true age.
	time.Sleep(2 * time.Second)
	trueAge := float64(time.Since(firstUnprocessed).Milliseconds())
	behind := scrape(t, addr, "sinkd_source_millis_behind_latest")
	for _, part := range []string{"0", "1"} {
		if math.Abs(behind[part]-trueAge) > 1500 {
			t.Errorf("partition %s: millis behind %v, true age of the oldest unprocessed record %v (tolerance 1500)", part, behind[part], trueAge)
		}
	}
	if behind["2"] != 0 {
		t.Errorf("idle partition 2 millis behind = %v, want 0", behind["2"])
	}
	t.Logf("paused: lag %v, millis behind %v (true age %.0f ms)", lag, behind, trueAge)

	post(t, "http://"+admin+"/admin/resume")
	waitFor("lag and millis behind back to 0", func() bool {
		lag, behind := scrape(t, addr, "sinkd_source_lag_records"), scrape(t, addr, "sinkd_source_millis_behind_latest")
		for _, part := range []string{"0", "1", "2"} {
			if lag[part] != 0 || behind[part] != 0 {
				return false
			}
		}
		return true
	})
	waitFor("durable lag back to 0", func() bool {
		d := scrape(t, addr, "sinkd_source_durable_lag_records")
		return d["0"] == 0 && d["1"] == 0 && d["2"] == 0 && len(d) == 3
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
