// Over 500 lines on purpose: one concern, measuring one sinkd process during a
// benchmark run (/proc sampling, metric scraping, the watch loop), all feeding
// the one measure function.

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one running sinkd, sampled from /proc every 100 ms.
type proc struct {
	cmd     *exec.Cmd
	logPath string
	tck     float64
	done    chan struct{}
	err     error // cmd.Wait's, valid once done is closed

	mu       sync.Mutex
	peakKiB  int64   // VmHWM
	cpuTicks float64 // utime + stime, latest sample
}

// profileRuns makes every measured run write a CPU profile of its whole
// life (cpuProfileName, in the run's directory): -cpu-profile.
var profileRuns bool

const cpuProfileName = "cpu.pprof"

func startSinkd(bin, cfgPath, logPath string, tck float64, profile bool) (*proc, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := []string{"run", "--config", cfgPath}
	if profile {
		args = append(args, "--cpu-profile", filepath.Join(filepath.Dir(cfgPath), cpuProfileName))
	}
	cmd := exec.Command(bin, args...)
	// The run's own directory: a default that names a relative path (a
	// spool directory, say) lands there and goes with it, not in the checkout.
	cmd.Dir = filepath.Dir(cfgPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting sinkd: %w", err)
	}
	p := &proc{cmd: cmd, logPath: logPath, tck: tck, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	go p.sample()
	return p, nil
}

func (p *proc) sample() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	pid := p.cmd.Process.Pid
	for {
		p.readProc(pid)
		select {
		case <-p.done:
			return
		case <-t.C:
		}
	}
}

func (p *proc) readProc(pid int) {
	stat, err1 := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	status, err2 := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	p.mu.Lock()
	defer p.mu.Unlock()
	if err1 == nil {
		if ticks, err := cpuTicks(stat); err == nil {
			p.cpuTicks = ticks
		}
	}
	if err2 == nil {
		p.peakKiB = max(p.peakKiB, vmHWM(status))
	}
}

// cpuSeconds is the process's user plus system CPU time so far. It samples
// /proc right away, so that the figure is current, not 100 ms old.
func (p *proc) cpuSeconds() float64 {
	p.readProc(p.cmd.Process.Pid)
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cpuTicks / p.tck
}

// finalCPUSeconds is the CPU time of the whole process once it has exited.
func (p *proc) finalCPUSeconds() float64 {
	<-p.done
	if st := p.cmd.ProcessState; st != nil {
		return (st.UserTime() + st.SystemTime()).Seconds()
	}
	return p.cpuSeconds()
}

func (p *proc) peakRSSMiB() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return float64(p.peakKiB) / 1024
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits for the drain; sinkd must exit 0.
func (p *proc) stop(within time.Duration) error {
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("sinkd exited with %v after SIGTERM", p.err)
		}
		return nil
	case <-time.After(within):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("sinkd did not drain within %s; killed", within)
	}
}

// cpuTicks parses utime + stime (fields 14 and 15) from /proc/PID/stat. The
// command name (field 2) may hold spaces and parentheses, so fields are
// counted after its last ')'.
func cpuTicks(stat []byte) (float64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat line")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 13 {
		return 0, fmt.Errorf("stat line has %d fields after the name", len(f))
	}
	utime, err := strconv.ParseFloat(f[11], 64)
	if err != nil {
		return 0, err
	}
	stime, err := strconv.ParseFloat(f[12], 64)
	if err != nil {
		return 0, err
	}
	return utime + stime, nil
}

// vmHWM is the peak resident set size in KiB from /proc/PID/status.
func vmHWM(status []byte) int64 {
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// machineBusyTicks is the time all CPUs spent on anything but idling, from
// the first line of /proc/stat; 0 when it cannot be read.
func machineBusyTicks() float64 {
	return busyTicks(statCPULine())
}

// machineActiveTicks is machineBusyTicks plus the time the CPUs idled
// waiting for I/O (iowait, field 5); 0 when /proc/stat cannot be read.
func machineActiveTicks() float64 {
	return activeTicks(statCPULine())
}

// activeTicks is busyTicks of a "cpu" line plus its iowait.
func activeTicks(line string) float64 {
	busy := busyTicks(line)
	if busy == 0 {
		return 0
	}
	iowait, _ := strconv.ParseFloat(strings.Fields(line)[5], 64)
	return busy + iowait
}

// statCPULine is the first line of /proc/stat, all CPUs together.
func statCPULine() string {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return line
}

// busyTicks sums user, nice, system, irq, softirq and steal of a "cpu" line
// of /proc/stat (idle and iowait are fields 4 and 5).
func busyTicks(line string) float64 {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var busy float64
	for i, v := range f[1:9] {
		if i == 3 || i == 4 {
			continue
		}
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0
		}
		busy += n
	}
	return busy
}

// loadAverage is the 1-minute load average, as text.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat's times.
func clockTicks() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && n > 0 {
			return n
		}
	}
	return 100
}

// metrics sums every sample of each metric family over its labels.
func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		var name, rest string
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				return nil, fmt.Errorf("malformed sample %q", line)
			}
			name, rest = line[:i], line[j+1:]
		} else {
			var ok bool
			if name, rest, ok = strings.Cut(line, " "); !ok {
				return nil, fmt.Errorf("malformed sample %q", line)
			}
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return nil, fmt.Errorf("sample without a value: %q", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("sample %q: %w", line, err)
		}
		out[name] += v
	}
	return out, sc.Err()
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func scrape(ctx context.Context, addr string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

func ready(ctx context.Context, addr string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// freeAddr picks a free loopback port for sinkd's HTTP server. Another
// process could take it before sinkd binds it; sinkd would then fail to
// start and the run would say so.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// The spool's metrics. A build without a spool does not export them, and a
// missing metric is "not reported", never 0.
const (
	metricSpoolBytes  = "sinkd_spool_bytes"
	metricSpoolBudget = "sinkd_spool_budget_bytes"
)

// gauge is the peak of a metric over the scrapes that reported it.
type gauge struct {
	peak     float64
	reported bool
}

func (g *gauge) observe(metrics map[string]float64, name string) {
	v, ok := metrics[name]
	if !ok {
		return
	}
	if !g.reported || v > g.peak {
		g.peak = v
	}
	g.reported = true
}

// watch is what the measuring loop knows about a run so far.
type watch struct {
	metrics       map[string]float64
	maxOpenFiles  float64
	spool         gauge // sinkd_spool_bytes
	spoolBudget   gauge // sinkd_spool_budget_bytes
	lastScrapeErr error
}

// scraped folds one scrape into the watch.
func (w *watch) scraped(metrics map[string]float64, now time.Time) {
	w.metrics = metrics
	open := metrics["sinkd_parquet_open_files"]
	w.maxOpenFiles = max(w.maxOpenFiles, open)
	w.spool.observe(metrics, metricSpoolBytes)
	w.spoolBudget.observe(metrics, metricSpoolBudget)
}

// measurement is what one run of sinkd measured.
type measurement struct {
	firstRecord  time.Duration // start → first record read
	processed    time.Duration // start → all records read
	durable      time.Duration // start → all records durable
	cpuProcessed float64       // CPU seconds at processed
	cpuDurable   float64       // CPU seconds at durable
	peakRSSMiB   float64
	maxOpenFiles float64
	scraped      bool  // at least one /metrics scrape succeeded
	spool        gauge // peak sinkd_spool_bytes over the scrapes
	spoolBudget  gauge // sinkd_spool_budget_bytes (its peak, should it change)
	// slow: sinkd kept running but had not read every record by the time
	// limit; partialRead records were read in partialTime, using partialCPU.
	slow        bool
	partialRead float64
	partialTime time.Duration
	partialCPU  float64
	dlq         float64 // dead letters sinkd counted
	fakeCPU     float64 // CPU seconds of the OpenSearch fake (a separate process) for the run, 0 without it
	otherCores  float64 // CPUs busy with everything but sinkd, start → durable
	loadBefore  string  // /proc/loadavg's 1-minute figure at start
	exit        string  // how sinkd stopped after SIGTERM: "0" or the error
	err         string
	logTail     []string
}

// readGrace is how long a run may take to read its input on top of 1 s per
// 10,000 events before measure stops it as too slow; tests shorten it.
var readGrace = 60 * time.Second

// measure runs sinkd until every one of events records is read and durable,
// then stops it with SIGTERM.
func measure(ctx context.Context, bin, cfgPath, addr, logPath string, tck float64, events int,
	durable func(context.Context, *watch) (bool, error)) measurement {
	var m measurement
	m.loadBefore = loadAverage()
	busyBefore := machineBusyTicks()
	start := time.Now()
	p, err := startSinkd(bin, cfgPath, logPath, tck, profileRuns)
	if err != nil {
		m.err = err.Error()
		return m
	}
	var w watch
	fail := func(format string, args ...any) measurement {
		m.err = fmt.Sprintf(format, args...)
		if err := p.stop(90 * time.Second); err != nil {
			m.exit = err.Error()
		}
		m.peakRSSMiB = p.peakRSSMiB()
		m.maxOpenFiles = w.maxOpenFiles
		m.spool, m.spoolBudget, m.scraped = w.spool, w.spoolBudget, w.metrics != nil
		m.logTail = tail(logPath, 15)
		return m
	}
	// Generous bounds: 10,000 events/s is far below anything sinkd should do.
	readBy := start.Add(readGrace + time.Duration(events/10_000)*time.Second)
	for {
		select {
		case <-ctx.Done():
			return fail("interrupted")
		case <-p.done:
			return fail("sinkd stopped by itself: %v: %s", p.err, lastError(logPath))
		case <-time.After(200 * time.Millisecond):
		}
		now := time.Now()
		metrics, err := scrape(ctx, addr)
		// lastScrapeErr is the latest scrape's: the first ones fail until
		// sinkd listens, and only a failure that lasts says something.
		w.lastScrapeErr = err
		if err == nil {
			w.scraped(metrics, now)
		}
		records := w.metrics["sinkd_source_records_total"]
		if m.firstRecord == 0 && records > 0 {
			m.firstRecord = now.Sub(start)
		}
		if m.processed == 0 {
			if records >= float64(events) {
				m.processed = now.Sub(start)
				m.cpuProcessed = p.cpuSeconds()
			} else if now.After(readBy) {
				if w.lastScrapeErr == nil && !p.exited() {
					// The records counter moves a fetch at a time, and a
					// slow build can spend the whole run on its first
					// fetch: rows written to Parquet show the progress.
					done := max(records, w.metrics["sinkd_parquet_rows_total"])
					m.slow = true
					m.partialRead, m.partialTime, m.partialCPU = done, now.Sub(start), p.cpuSeconds()
					return fail("too slow: %.0f of %d records read or written in %s (%s events/s)", done, events,
						now.Sub(start).Round(time.Second), thousands(done/now.Sub(start).Seconds()))
				}
				return fail("read %.0f of %d records in %s (last scrape error: %v)", records, events, now.Sub(start).Round(time.Second), w.lastScrapeErr)
			}
			continue
		}
		break
	}
	// Every record is read. Files stay open after the input ends, as in
	// production (parquet.inactivity is 5 minutes by default): SIGTERM's
	// drain commits them, so "durable after" includes the drain.
	m.maxOpenFiles = w.maxOpenFiles
	m.dlq = w.metrics["sinkd_dlq_records_total"]
	// The drain is not scraped: the spool's peak is a figure of the run.
	m.spool, m.spoolBudget, m.scraped = w.spool, w.spoolBudget, w.metrics != nil
	stopErr := p.stop(90 * time.Second)
	m.durable = time.Since(start)
	m.cpuDurable = p.finalCPUSeconds()
	if busy := machineBusyTicks(); busy > 0 && busyBefore > 0 {
		m.otherCores = ((busy-busyBefore)/tck - m.cpuDurable) / m.durable.Seconds()
	}
	m.peakRSSMiB = p.peakRSSMiB()
	if stopErr != nil {
		m.exit = stopErr.Error()
		m.logTail = tail(logPath, 15)
		m.err = "the drain after SIGTERM did not commit everything: " + stopErr.Error()
		return m
	}
	m.exit = "0"
	if left := drainLeftOpen(logPath); left != "" {
		m.err = "the drain after SIGTERM ran short of time and left " + left + " files open (read again at the next start)"
		return m
	}
	if durable != nil {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ok, err := durable(cctx, &w)
		cancel()
		if !ok {
			m.err = fmt.Sprintf("sinkd exited 0 but the committed positions trail the input (%v)", err)
		}
	}
	return m
}

// drainLeftOpen is how many files sinkd's drain left open, from its log
// ("drain: files committed" with left_open), or "" when it left none.
func drainLeftOpen(path string) string {
	for _, line := range tail(path, 50) {
		var entry struct {
			Msg      string `json:"msg"`
			LeftOpen int    `json:"left_open"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "drain: files committed" && entry.LeftOpen > 0 {
			return thousands(float64(entry.LeftOpen))
		}
	}
	return ""
}

// tail returns the last n lines of a log file.
func tail(path string, n int) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return []string{err.Error()}
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// lastError is the most telling line of a log that ended in failure: the
// "err" of the last JSON line that has one, else the last line.
func lastError(path string) string {
	lines := tail(path, 50)
	for i := len(lines) - 1; i >= 0; i-- {
		var entry struct {
			Msg string `json:"msg"`
			Err string `json:"err"`
		}
		if json.Unmarshal([]byte(lines[i]), &entry) == nil && entry.Err != "" {
			return entry.Err
		}
	}
	for i := len(lines) - 1; i >= 0; i-- {
		if s := strings.TrimSpace(lines[i]); s != "" {
			return s
		}
	}
	return "(empty log)"
}
