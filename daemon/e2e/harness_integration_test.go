//go:build integration

// Package e2e runs sinkd as a child process against the local stack of real
// servers and checks, record by record, what lands on the other side.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/scripts/stack/stackenv"
	"github.com/sinkd/sinkd/store"
	"github.com/sinkd/sinkd/taxi"
)

var sinkdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sinkd-e2e-bin")
	if err != nil {
		panic(err)
	}
	sinkdBin = filepath.Join(dir, "sinkd")
	build := exec.Command("go", "build", "-o", sinkdBin, "github.com/sinkd/sinkd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building sinkd:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type harness struct {
	t      *testing.T
	env    stackenv.Env
	name   string
	dir    string
	prefix string // key prefix in the test bucket, unique per run
	topic  string
	group  string
	mu     sync.Mutex
	inputs map[int64][]byte // trip_id → the JSON value produced
	bad    int
	// badInputs are the bad events produced, by trip_id (their record key).
	badInputs map[int64]badInput
	// Settings the tests vary.
	budget     string
	targetFile string
	fileAge    string
	static     bool // Kafka static membership
	extraRoute string
	// Dead letters go to the Kafka topic dlqTopic when it is set (on
	// dlqBrokers, default the source's brokers), else to a file.
	dlqTopic      string
	dlqBrokers    string
	maxRecordSize string // max_record_size when set
}

// badInput is one bad event as produced: its kind and a digest of its bytes
// (oversized events are too large to keep by the hundred).
type badInput struct {
	kind   taxi.BadKind
	digest [sha256.Size]byte
}

func newHarness(t *testing.T, name string) *harness {
	env := stackenv.Load(t)
	env.Setenv(t)
	id := name + "-" + strconv.FormatInt(time.Now().UnixNano()%1e10, 36)
	dir := t.TempDir()
	if keep := os.Getenv("SINKD_E2E_KEEP"); keep != "" {
		// Keep configs and logs for a post-mortem.
		dir = filepath.Join(keep, id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &harness{
		t: t, env: env, name: name, dir: dir,
		prefix: "e2e/" + id + "/", topic: "e2e-" + id, group: "sinkd-" + id,
		inputs: map[int64][]byte{}, badInputs: map[int64]badInput{}, budget: "128MiB", targetFile: "8MiB", fileAge: "4s",
	}
}

// config is a crash-stress configuration, not a tuning of defaults: small
// files (target_file_size, max_file_age), 1 MiB row groups and 1 s
// checkpoints make every kill land among many files and checkpoints in every
// state of the protocol. Session timeout, open-file cap, inactivity and drain
// timeout are sinkd's defaults.
func (h *harness) config(instance string) string {
	cfg := fmt.Sprintf(`pipeline: e2e
instance_id: %[1]s
http: {addr: "127.0.0.1:0"}
log: {level: debug, format: json}
source:
  kafka:
    brokers: %[2]s
    topics: [%[3]s]
    group: %[4]s
    start: earliest
    static_membership: %[14]t
schema:
  format: json
  fields:%[5]s
routes:
  - name: trips
    parquet:
      destination: s3://%[6]s/%[7]slake
      path: type={type}/dt={pickup_datetime:yyyy-MM-dd}
      event_time: {field: pickup_datetime}
      compression: none
      row_group_size: 1MiB
      target_file_size: %[10]s
      max_file_age: %[13]s
%[11]s
s3:
  endpoint: %[8]s
  path_style: true
  part_size: 5MiB
  request_timeout: 5s
checkpoint:
  interval: 1s
  timeout: 20s
  store: s3://%[6]s/%[7]s_sinkd
memory:
  budget: %[9]s
%[12]s
%[15]s`, instance, h.env.KafkaBrokers, h.topic, h.group, taxi.FieldsYAML, h.env.S3Bucket, h.prefix, h.env.S3Endpoint,
		h.budget, h.targetFile, h.extraRoute, h.dlqSection(instance), h.fileAge, h.static, h.topLevelExtras())
	path := filepath.Join(h.dir, instance+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		h.t.Fatal(err)
	}
	return path
}

func (h *harness) dlqSection(instance string) string {
	if h.dlqTopic == "" {
		return "dlq:\n  file: " + filepath.Join(h.dir, "dlq-"+instance+".jsonl")
	}
	s := "dlq:\n  kafka:\n    topic: " + h.dlqTopic
	if h.dlqBrokers != "" {
		s += "\n    brokers: " + h.dlqBrokers
	}
	return s
}

func (h *harness) topLevelExtras() string {
	if h.maxRecordSize == "" {
		return ""
	}
	return "max_record_size: " + h.maxRecordSize + "\n"
}

// produceAsync produces at about rate events/s in the background, so that
// kills land while records flow; wait returns when all are sent.
func (h *harness) produceAsync(n int, partitions int32, badRatio float64, seed int64, rate int) (wait func()) {
	h.t.Helper()
	// The topic must exist before sinkd subscribes.
	if err := h.produceAt(0, partitions, 0, seed, 0); err != nil {
		h.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.produceAt(n, partitions, badRatio, seed, rate) }()
	return func() {
		if err := <-done; err != nil {
			h.t.Fatal(err)
		}
	}
}

// produceAt writes n taxi trips (a share bad) at about rate events/s (0: as
// fast as possible) and remembers every good one by trip_id.
func (h *harness) produceAt(n int, partitions int32, badRatio float64, seed int64, rate int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sink, err := taxi.NewKafkaSink(ctx, strings.Split(h.env.KafkaBrokers, ","), h.topic, partitions)
	if err != nil {
		return err
	}
	defer sink.Close()
	g := taxi.NewGenerator(seed, taxi.DefaultStart())
	begin := time.Now()
	for i := 0; i < n; i++ {
		v, kind := g.Event(badRatio)
		id, _ := g.Last()
		h.remember(id, v, kind)
		if err := sink.Send(ctx, []byte(strconv.FormatInt(id, 10)), v); err != nil {
			return err
		}
		if rate > 0 && i%500 == 499 {
			if ahead := time.Duration(i+1)*time.Second/time.Duration(rate) - time.Since(begin); ahead > 0 {
				time.Sleep(ahead)
			}
		}
	}
	return sink.Flush(ctx)
}

// remember records a produced trip for verify: a good one by its value, a
// bad one (kind != "") by its kind and digest.
func (h *harness) remember(id int64, v []byte, kind taxi.BadKind) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if kind != "" {
		h.bad++
		h.badInputs[id] = badInput{kind: kind, digest: sha256.Sum256(v)}
	} else {
		h.inputs[id] = v
	}
}

// proc is one running sinkd.
type proc struct {
	cmd      *exec.Cmd
	instance string
	lines    chan string
	done     chan struct{}
	err      error
	mu       sync.Mutex
	peakRSS  int64 // KiB, from /proc/PID/status VmHWM
	logFile  *os.File
}

func (h *harness) start(instance string) *proc {
	h.t.Helper()
	return startSinkd(h.t, h.env, h.dir, instance, h.config(instance))
}

// startSinkd runs `sinkd run` on a config file and watches it: its log goes
// to DIR/INSTANCE.log and to the lines channel, its exit and peak RSS are kept.
func startSinkd(t *testing.T, env stackenv.Env, dir, instance, configPath string, flags ...string) *proc {
	t.Helper()
	cmd := exec.Command(sinkdBin, append([]string{"run", "--config", configPath}, flags...)...)
	cmd.Env = os.Environ()
	for k, v := range env.Vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	logFile, err := os.OpenFile(filepath.Join(dir, instance+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, instance: instance, lines: make(chan string, 1024), done: make(chan struct{}), logFile: logFile}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logFile, line)
			select {
			case p.lines <- line:
			default: // nobody is watching closely; the file keeps everything
			}
		}
	}()
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				return
			case <-t.C:
				if kb := vmHWM(cmd.Process.Pid); kb > 0 {
					p.mu.Lock()
					p.peakRSS = max(p.peakRSS, kb)
					p.mu.Unlock()
				}
			}
		}
	}()
	return p
}

// logCounts counts, over an instance's whole log (all its runs), the
// checkpoints that committed files and the uploads recoveries aborted.
func (h *harness) logCounts(instance string) (commits, committedFiles, aborted, recoveries int) {
	b, err := os.ReadFile(filepath.Join(h.dir, instance+".log"))
	if err != nil {
		h.t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		var m struct {
			Msg     string `json:"msg"`
			Uploads int    `json:"uploads"`
			Count   int    `json:"count"`
		}
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		switch {
		case m.Msg == "checkpoint: manifest written" && m.Uploads > 0:
			commits++
			committedFiles += m.Uploads
		case strings.HasPrefix(m.Msg, "aborted uploads"):
			aborted += m.Count
		case m.Msg == "recovered from manifest":
			recoveries++
		}
	}
	return
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

func (p *proc) PeakRSSMiB() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return float64(p.peakRSS) / 1024
}

func (p *proc) kill(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and expects a clean drain and exit 0.
func (p *proc) stop(t *testing.T, within time.Duration) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("sinkd %s exited with %v after SIGTERM; log tail:\n%s", p.instance, p.err, tail(p.logFile.Name(), 25))
		}
	case <-time.After(within):
		_ = p.cmd.Process.Kill()
		t.Fatalf("sinkd %s did not drain within %s", p.instance, within)
	}
}

// exited reports an unexpected exit (sinkd must never stop by itself).
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitRunning waits until the process has installed its signal handlers and
// recovered (its "sinkd running" line).
func (p *proc) waitRunning(t *testing.T) {
	t.Helper()
	if !p.waitLine("sinkd running", time.Minute) {
		t.Fatalf("sinkd %s did not come up; log tail:\n%s", p.instance, tail(p.logFile.Name(), 20))
	}
}

// waitLine waits for a log line containing s.
func (p *proc) waitLine(s string, within time.Duration) bool {
	return p.waitLineMatching(regexp.MustCompile(regexp.QuoteMeta(s)), within)
}

// waitLineMatching waits for a log line re matches.
func (p *proc) waitLineMatching(re *regexp.Regexp, within time.Duration) bool {
	deadline := time.After(within)
	for {
		select {
		case line := <-p.lines:
			if re.MatchString(line) {
				return true
			}
		case <-p.done:
			return false
		case <-deadline:
			return false
		}
	}
}

// groupLag is the group's committed lag summed over partitions (-1 while a
// partition has no commit yet).
func (h *harness) groupLag(ctx context.Context) int64 {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(h.env.KafkaBrokers, ",")...))
	if err != nil {
		return -1
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	lags, err := adm.Lag(ctx, h.group)
	if err != nil {
		return -1
	}
	ends, err := adm.ListEndOffsets(ctx, h.topic)
	if err != nil {
		return -1
	}
	var total int64
	counted := 0
	for _, gl := range lags {
		if gl.Error() != nil {
			return -1
		}
		for _, ps := range gl.Lag {
			for _, l := range ps {
				if l.Commit.At < 0 {
					return -1
				}
				total += l.Lag
				counted++
			}
		}
	}
	// A group that has not joined or committed yet has no lag to report,
	// which is not the same as none.
	if counted < len(ends[h.topic]) || counted == 0 {
		return -1
	}
	return total
}

// waitDrained waits until the group's committed offsets reach the end of
// every partition: every record is durable somewhere.
func (h *harness) waitDrained(within time.Duration, procs ...*proc) {
	h.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, p := range procs {
			if p.exited() {
				h.t.Fatalf("sinkd %s exited by itself: %v (log: %s)", p.instance, p.err, p.logFile.Name())
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		lag := h.groupLag(ctx)
		cancel()
		if lag == 0 {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	h.t.Fatalf("group %s did not drain within %s", h.group, within)
}

func (h *harness) store() (store.Store, string) {
	h.t.Helper()
	st, _, err := store.Open(context.Background(), "s3://"+h.env.S3Bucket, config.S3{
		Endpoint: h.env.S3Endpoint, Region: h.env.Region, PathStyle: true, RequestTimeout: config.Duration(30 * time.Second),
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return st, h.prefix
}

// verify reads every committed Parquet file of the route and checks that each
// good input is in exactly one row, equal to its input, and that no upload
// is left in progress.
// finalRun starts one more instance, lets it read everything and drain, and
// checks that every trip is committed exactly once: how each fault test ends.
func (h *harness) finalRun(instance string, within time.Duration) {
	p := h.start(instance)
	p.waitRunning(h.t)
	h.waitDrained(within, p)
	p.stop(h.t, time.Minute)
	h.verify("trips")
}

func (h *harness) verify(route string) {
	h.t.Helper()
	h.verifyWithout(route, nil)
}

// verifyWithout is verify for an archive that lost the trips in lost: each
// of them must be in no file.
func (h *harness) verifyWithout(route string, lost map[int64]bool) {
	h.t.Helper()
	ctx := context.Background()
	st, prefix := h.store()
	s, err := schema.New(mustTaxiFields(h.t))
	if err != nil {
		h.t.Fatal(err)
	}
	dec := s.NewDecoder()
	idField, _ := s.Lookup("trip_id")
	keys, err := st.List(ctx, prefix+"lake/")
	if err != nil {
		h.t.Fatal(err)
	}
	seen := map[int64]string{}
	files, dups, mismatches := 0, 0, 0
	for _, key := range keys {
		if !strings.HasSuffix(key, ".parquet") {
			continue
		}
		files++
		body, err := st.Get(ctx, key)
		if err != nil {
			h.t.Fatal(err)
		}
		f, err := parquet.OpenFile(bytes.NewReader(body), int64(len(body)))
		if err != nil {
			h.t.Fatalf("%s is not a readable Parquet file: %v", key, err)
		}
		for _, rg := range f.RowGroups() {
			rows := rg.Rows()
			buf := make([]parquet.Row, 256)
			for {
				n, err := rows.ReadRows(buf)
				for _, row := range buf[:n] {
					id := row[idField.Column].Int64()
					if prev, ok := seen[id]; ok {
						dups++
						if dups < 5 {
							h.t.Errorf("trip_id %d is in %s and in %s", id, prev, key)
						}
						continue
					}
					seen[id] = key
					if lost[id] {
						h.t.Errorf("trip_id %d of the lost file is in %s", id, key)
					}
					in, ok := h.inputs[id]
					if !ok {
						h.t.Errorf("trip_id %d in %s was never produced as a good event", id, key)
						continue
					}
					want, err := dec.Decode(in, nil)
					if err != nil {
						h.t.Fatal(err)
					}
					if !rowsEqual(row, want) {
						mismatches++
						if mismatches < 5 {
							h.t.Errorf("trip_id %d: row %v differs from input %s", id, row, in)
						}
					}
				}
				if err != nil {
					break
				}
			}
			rows.Close()
		}
	}
	missing := 0
	for id := range h.inputs {
		if _, ok := seen[id]; !ok && !lost[id] {
			missing++
			if missing < 5 {
				h.t.Errorf("trip_id %d is in no committed file", id)
			}
		}
	}
	uploads := uploadsInProgress(h.t, h.env, prefix)
	h.t.Logf("verified %d committed files: %d rows for %d good inputs (%d lost by the store); %d missing, %d duplicated, %d differing; %d uploads in progress",
		files, len(seen), len(h.inputs), len(lost), missing, dups, mismatches, len(uploads))
	if missing+dups+mismatches > 0 {
		h.t.Fatalf("exactly-once violated: %d missing, %d duplicated, %d differing", missing, dups, mismatches)
	}
	if len(uploads) > 0 {
		h.t.Fatalf("%d multipart uploads left in progress under %s (first: %s)", len(uploads), prefix, uploads[0].Key)
	}
}

func rowsEqual(a, b parquet.Row) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Column() != b[i].Column() || a[i].DefinitionLevel() != b[i].DefinitionLevel() || !parquet.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func mustTaxiFields(t *testing.T) []config.Field {
	t.Helper()
	cfg, err := config.Parse("fields.yaml", []byte(fmt.Sprintf(`pipeline: x
source: {kafka: {brokers: "127.0.0.1:9", topics: [x], group: x}}
schema:
  format: json
  fields:%s
routes:
  - name: r
    parquet: {destination: "file:///tmp/x", path: "{type}"}
`, taxi.FieldsYAML)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Schema.Fields
}
