//go:build integration

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// These tests run the shipped example, config/examples/taxi-kafka.yaml, with
// its defaults (session_timeout 45s, static membership, checkpoint every 10s);
// only endpoints, names and key prefixes are made unique per run, and the
// instance id comes from $HOSTNAME as in a pod.

// exampleConfig writes the example for one instance; it returns the path and
// the instance's metrics address. tweak, when given, edits the YAML text.
func (h *harness) exampleConfig(instance string, tweak func(string) string) (path, httpAddr string) {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "config", "examples", "taxi-kafka.yaml"))
	if err != nil {
		h.t.Fatal(err)
	}
	httpAddr = freeLoopbackAddr(h.t)
	cfg := strings.NewReplacer(
		"${SINKD_KAFKA_TOPIC:-taxi-trips}", h.topic,
		"${SINKD_DLQ_TOPIC:-sinkd-dlq}", h.topic+"-dlq",
		"${SINKD_HTTP_ADDR:-127.0.0.1:9464}", httpAddr,
		"${SINKD_OPENSEARCH_URL}", "",
		"group: sinkd-taxi-kafka", "group: "+h.group,
		// The trips route lands where verify reads.
		"/taxi-kafka/trips", "/"+h.prefix+"lake",
		"/taxi-kafka/", "/"+h.prefix,
	).Replace(string(b))
	if tweak != nil {
		cfg = tweak(cfg)
	}
	path = filepath.Join(h.dir, instance+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		h.t.Fatal(err)
	}
	return path, httpAddr
}

// startExample starts `sinkd run` on the example with HOSTNAME=instance, so
// that instance_id (and so the group instance id) is derived as in a pod.
func (h *harness) startExample(instance string, tweak func(string) string) (*proc, string) {
	h.t.Helper()
	path, addr := h.exampleConfig(instance, tweak)
	h.t.Setenv("HOSTNAME", instance)
	p := startSinkd(h.t, h.env, h.dir, instance, path)
	// A failed test must not leave an instance running in the shared group.
	h.t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p, addr
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitAssigned waits until the process has logged n "partition assigned"
// lines since it started (it has taken the partitions over) and returns when.
func (p *proc) waitAssigned(n int, within time.Duration) (time.Time, bool) {
	deadline := time.After(within)
	seen := 0
	for {
		select {
		case line := <-p.lines:
			if strings.Contains(line, `"msg":"partition assigned"`) {
				if seen++; seen == n {
					return time.Now(), true
				}
			}
		case <-p.done:
			return time.Time{}, false
		case <-deadline:
			return time.Time{}, false
		}
	}
}

// TestKafkaStaticRestartWithin10s: one instance of the example, SIGKILLed
// six times a few seconds apart while records arrive, must own all six
// partitions again within 10 s of every restart, at the default session
// timeout (45 s). A dynamic member would wait for the killed member's session
// to expire. Every trip then lands exactly once.
func TestKafkaStaticRestartWithin10s(t *testing.T) {
	h := newHarness(t, "static")
	createTopic(t, h.env.KafkaBrokers, h.topic+"-dlq")
	const partitions = 6
	produced := h.produceAsync(60_000, partitions, 0, 51, 2000)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	const kills = 6
	var worst time.Duration
	for i := 0; i <= kills; i++ {
		began := time.Now()
		p, addr := h.startExample("static-1", nil)
		at, ok := p.waitAssigned(partitions, 30*time.Second)
		if !ok {
			p.kill(t)
			t.Fatalf("run %d: the restarted instance did not get its %d partitions within 30 s; log tail:\n%s", i+1, partitions, tail(p.logFile.Name(), 20))
		}
		took := at.Sub(began)
		worst = max(worst, took)
		t.Logf("run %d: all %d partitions taken over %s after start", i+1, partitions, took.Round(time.Millisecond))
		if took > 10*time.Second {
			p.kill(t)
			t.Fatalf("run %d: partitions came back %s after start, want within 10 s", i+1, took.Round(time.Millisecond))
		}
		if i == kills {
			// The last run reads everything and drains on SIGTERM.
			produced()
			waitFetchedAll(t, addr, partitions, 3*time.Minute, p)
			p.stop(t, time.Minute)
			break
		}
		time.Sleep(time.Duration(1000+rng.IntN(3000)) * time.Millisecond)
		p.kill(t)
	}
	t.Logf("slowest takeover after a restart: %s", worst.Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if unread, err := h.unread(ctx); err != nil || unread != 0 {
		t.Fatalf("after the drain the group has %d records after its commits (err %v), want 0", unread, err)
	}
	h.verify("trips")
}

// TestKafkaStaticLeaveOnStop: a static member that stops cleanly leaves the
// group, so the other instance takes its partitions at once instead of after
// the 45 s session timeout.
func TestKafkaStaticLeaveOnStop(t *testing.T) {
	h := newHarness(t, "leave")
	createTopic(t, h.env.KafkaBrokers, h.topic+"-dlq")
	const partitions = 6
	produced := h.produceAsync(6_000, partitions, 0, 52, 0)
	produced()
	a, _ := h.startExample("leave-a", nil)
	if _, ok := a.waitAssigned(partitions, 30*time.Second); !ok {
		t.Fatalf("a did not take the partitions; log tail:\n%s", tail(a.logFile.Name(), 20))
	}
	b, _ := h.startExample("leave-b", nil)
	// b's share arrives in the second rebalance of a cooperative join,
	// once a has checkpointed what it gives up.
	h.waitOwnersSplit(t, "leave-a", "leave-b", partitions, time.Minute)
	stopped := time.Now()
	a.stop(t, time.Minute)
	deadline := time.Now().Add(40 * time.Second)
	for h.ownedBy(t, "leave-b") < partitions {
		if time.Now().After(deadline) {
			t.Fatalf("b did not get a's partitions within 40 s of a's clean stop (a's log tail:\n%s)", tail(a.logFile.Name(), 10))
		}
		time.Sleep(250 * time.Millisecond)
	}
	took := time.Since(stopped)
	t.Logf("b owned all %d partitions %s after a's stop began", partitions, took.Round(time.Millisecond))
	if took > 15*time.Second {
		t.Fatalf("handover took %s; a clean stop must leave the group, not wait for the session timeout", took)
	}
	b.stop(t, time.Minute)
}

// TestKafkaLagSeenThroughDeadMember: two instances share the topic; one is
// SIGKILLed mid-stream and holds its partitions (as a static member) until its
// 45 s session expires. Meanwhile the survivor's own fetched lag reads 0, but
// the group lag it exports (every partition, max by partition) stays above 0
// for as long as any record is unread, the pending gauge may flag the dead
// member's partitions when their commits go stale before the broker moves
// them, and both fall to 0 once everything is read.
func TestKafkaLagSeenThroughDeadMember(t *testing.T) {
	h := newHarness(t, "deadlag")
	createTopic(t, h.env.KafkaBrokers, h.topic+"-dlq")
	const partitions = 6
	// Not a default moved to pass: what is asserted (the exported group lag
	// never reads 0 while records are unread) holds at any inactivity, and
	// the default makes it easier, since commits then trail further. What
	// inactivity sets is when the group's committed offsets reach the end
	// of the topic, which is where the test ends (lag 0 once everything is
	// durable): 3 s after the last record instead of the default's 5 min
	// (or a drain), which would add 5 min to the test for nothing it checks.
	quick := func(cfg string) string {
		cfg = strings.Replace(cfg, "      # inactivity: 5m ", "      inactivity: 3s # ", 1)
		return strings.Replace(cfg, "      compression: zstd\n", "      compression: zstd\n      inactivity: 3s\n", 1)
	}
	produced := h.produceAsync(50_000, partitions, 0, 53, 2500)
	a, _ := h.startExample("dead-a", quick)
	b, bAddr := h.startExample("dead-b", quick)
	h.waitMembers(t, 2, time.Minute)
	h.waitOwnersSplit(t, "dead-a", "dead-b", partitions, time.Minute)
	time.Sleep(2 * time.Second)
	a.kill(t)
	killed := time.Now()
	produced()

	var (
		ownedZeroWhileUnread int
		sawPending           bool
		samples              int
		reachedZero          time.Time
	)
	deadline := time.Now().Add(4 * time.Minute)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("group lag did not reach 0 within 4 min of the kill")
		}
		if b.exited() {
			t.Fatalf("the survivor exited: %v", b.err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		before, err1 := h.unread(ctx)
		m, err2 := scrape(ctx, bAddr)
		after, err3 := h.unread(ctx)
		cancel()
		if err1 != nil || err2 != nil || err3 != nil {
			t.Logf("sample skipped: %v %v %v", err1, err2, err3)
			time.Sleep(500 * time.Millisecond)
			continue
		}
		samples++
		group := m.sumMaxByPartition("sinkd_source_group_lag_records")
		owned := m.sumMaxByPartition("sinkd_source_lag_records")
		pending := m.sum("sinkd_source_partitions_pending")
		if pending > 0 {
			sawPending = true
		}
		if owned == 0 && after > 0 {
			ownedZeroWhileUnread++
		}
		// With production over, unread records only decrease, and the
		// exported view is at most a refresh old: it can read higher
		// than the truth, never 0 while records remain.
		if before > 0 && after > 0 && group == 0 {
			t.Fatalf("%s after the kill: exported group lag 0 while %d..%d records are unread (fetched lag %v, pending %v)",
				time.Since(killed).Round(time.Millisecond), after, before, owned, pending)
		}
		if group > 0 && after > 0 && samples%10 == 0 {
			t.Logf("%s after the kill: %d unread, group lag %v, fetched lag %v, pending %v", time.Since(killed).Round(time.Second), after, group, owned, pending)
		}
		if before == 0 && after == 0 {
			if reachedZero.IsZero() {
				reachedZero = time.Now()
			}
			// Everything is durable: the exported view must follow
			// within a few refreshes and a checkpoint.
			if group == 0 && pending == 0 {
				break
			}
			if time.Since(reachedZero) > 30*time.Second {
				t.Fatalf("everything is read, but 30 s later the survivor still exports group lag %v, pending %v", group, pending)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("%d samples; the survivor's own fetched lag read 0 over unread records in %d of them; pending seen: %v; all read %s after the kill",
		samples, ownedZeroWhileUnread, sawPending, time.Since(killed).Round(time.Second))
	// Pending is not asserted here: the dead member's commits turn stale
	// (session_timeout after its last checkpoint) about when the broker
	// expires its session and the survivor takes the partitions over, so
	// the window can be empty. TestBacklogsThroughDeadMember in
	// source/kafka covers the rule itself.
	b.stop(t, time.Minute)
	// The killed instance's open uploads are its own to abort when it
	// comes back.
	a2, _ := h.startExample("dead-a", quick)
	a2.waitRunning(t)
	a2.stop(t, time.Minute)
	h.verify("trips")
}

// unread is the group's lag as the broker sees it: end offsets minus
// committed offsets (minus 0, the log start, where nothing is committed).
func (h *harness) unread(ctx context.Context) (int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(h.env.KafkaBrokers, ",")...))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	commits, err := adm.FetchOffsetsForTopics(ctx, h.group, h.topic)
	if err != nil {
		return 0, err
	}
	ends, err := adm.ListEndOffsets(ctx, h.topic)
	if err != nil {
		return 0, err
	}
	var total int64
	var errs error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = o.Err
			return
		}
		var at int64
		if c, ok := commits.Lookup(o.Topic, o.Partition); ok && c.Err == nil && c.At > 0 {
			at = c.At
		}
		total += max(o.Offset-at, 0)
	})
	return total, errs
}

// describe returns the group's members by instance id with the partitions
// each is assigned (empty while the group is not stable).
func (h *harness) describe(t *testing.T) (state string, owned map[string]int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(h.env.KafkaBrokers, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	gs, err := kadm.NewClient(cl).DescribeGroups(ctx, h.group)
	if err != nil {
		return "", nil
	}
	g := gs[h.group]
	owned = map[string]int{}
	for _, m := range g.Members {
		name := m.MemberID
		if m.InstanceID != nil {
			name = *m.InstanceID
		}
		n := 0
		if ca, ok := m.Assigned.AsConsumer(); ok {
			for _, tp := range ca.Topics {
				n += len(tp.Partitions)
			}
		}
		owned[name] = n
	}
	return g.State, owned
}

func (h *harness) ownedBy(t *testing.T, instance string) int {
	state, owned := h.describe(t)
	if state != "Stable" {
		return 0
	}
	return owned[instance]
}

func (h *harness) waitMembers(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		state, owned := h.describe(t)
		if state == "Stable" && len(owned) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s: state %q with %d members, want Stable with %d", h.group, state, len(owned), n)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitOwnersSplit waits until both instances own a share of the partitions.
func (h *harness) waitOwnersSplit(t *testing.T, a, b string, partitions int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		state, owned := h.describe(t)
		if state == "Stable" && owned[a] > 0 && owned[b] > 0 && owned[a]+owned[b] == partitions {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s never split its partitions between %s and %s: %v", h.group, a, b, owned)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitFetchedAll waits until the instance owns every partition and its
// fetched lag is 0 in each.
func waitFetchedAll(t *testing.T, addr string, partitions int, within time.Duration, p *proc) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if p.exited() {
			t.Fatalf("sinkd %s exited: %v", p.instance, p.err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		m, err := scrape(ctx, addr)
		cancel()
		if err == nil && m.count("sinkd_source_lag_records") == partitions && m.sum("sinkd_source_lag_records") == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sinkd %s did not read everything within %s", p.instance, within)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// metricSample is one series of a Prometheus text scrape.
type metricSample struct {
	name   string
	labels map[string]string
	value  float64
}

type scraped []metricSample

func scrape(ctx context.Context, addr string) (scraped, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	var out scraped
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		s := metricSample{labels: map[string]string{}, value: v}
		head := line[:sp]
		if i := strings.IndexByte(head, '{'); i >= 0 {
			s.name = head[:i]
			for _, kv := range strings.Split(strings.TrimSuffix(head[i+1:], "}"), ",") {
				if k, val, ok := strings.Cut(kv, "="); ok {
					s.labels[k] = strings.Trim(val, `"`)
				}
			}
		} else {
			s.name = head
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

func (m scraped) sum(name string) float64 {
	var total float64
	for _, s := range m {
		if s.name == name {
			total += s.value
		}
	}
	return total
}

func (m scraped) count(name string) int {
	n := 0
	for _, s := range m {
		if s.name == name {
			n++
		}
	}
	return n
}

// sumMaxByPartition is sum(max by (stream, partition) (name)): the
// aggregation the alert rules use across instances.
func (m scraped) sumMaxByPartition(name string) float64 {
	byPart := map[string]float64{}
	for _, s := range m {
		if s.name != name {
			continue
		}
		k := s.labels["stream"] + "/" + s.labels["partition"]
		if v, ok := byPart[k]; !ok || s.value > v {
			byPart[k] = s.value
		}
	}
	var total float64
	for _, v := range byPart {
		total += v
	}
	return total
}
