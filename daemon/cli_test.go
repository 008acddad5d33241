package daemon

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The command-line tests run the real binary, built once per test process.
var builtBinary struct {
	once sync.Once
	path string
	err  error
}

func sinkdBinary(t *testing.T) string {
	t.Helper()
	builtBinary.once.Do(func() {
		dir, err := os.MkdirTemp("", "sinkd-bin-")
		if err != nil {
			builtBinary.err = err
			return
		}
		builtBinary.path = filepath.Join(dir, "sinkd")
		cmd := exec.Command("go", "build", "-o", builtBinary.path, "-ldflags", "-X github.com/sinkd/sinkd/daemon.buildCommit=testcommit -X github.com/sinkd/sinkd/daemon.buildDate=2026-01-02T03:04:05Z", ".")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			builtBinary.err = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
	})
	if builtBinary.err != nil {
		t.Fatal(builtBinary.err)
	}
	return builtBinary.path
}

type result struct {
	stdout, stderr string
	code           int
}

// sinkd runs the binary in dir (the test's temporary directory when empty)
// with env added to the environment.
func sinkd(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(sinkdBinary(t), args...)
	if dir == "" {
		dir = t.TempDir()
	}
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	timer := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("sinkd %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// TestDemoNeverDeletesForeignFiles: the demo refuses a non-empty directory it
// did not create ("--dir ." in a project, "--dir ~"), and on a directory it
// created removes only its own outputs.
func TestDemoNeverDeletesForeignFiles(t *testing.T) {
	work := t.TempDir()
	precious := filepath.Join(work, "precious.txt")
	if err := os.WriteFile(precious, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{".", work} {
		r := sinkd(t, work, nil, "demo", "--events", "200", "--dir", dir)
		if r.code == 0 {
			t.Errorf("demo --dir %s in a directory with foreign files exited 0", dir)
		}
		if !strings.Contains(r.stderr, "not created by sinkd demo") {
			t.Errorf("demo --dir %s: stderr does not say why: %q", dir, r.stderr)
		}
		if b, err := os.ReadFile(precious); err != nil || string(b) != "mine" {
			t.Fatalf("demo --dir %s touched a file it did not create: %v", dir, err)
		}
	}

	out := filepath.Join(work, "out")
	for run := 1; run <= 2; run++ {
		r := sinkd(t, work, nil, "demo", "--events", "300", "--dir", "out")
		if r.code != 0 {
			t.Fatalf("demo run %d into its own directory: exit %d\n%s%s", run, r.code, r.stdout, r.stderr)
		}
		if run == 1 {
			// A file the user puts into the demo's directory survives the next run.
			if err := os.WriteFile(filepath.Join(out, "notes.txt"), []byte("mine"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(out, "notes.txt")); err != nil {
		t.Errorf("the second demo run removed a file the demo did not create: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "lake")); err != nil {
		t.Errorf("no lake after the second run: %v", err)
	}
}

// TestValidateReportsEverythingAtOnce: unset variables are named, templates
// are checked in the same pass as the rest with every placeholder problem
// and a suggestion, explicit zeros and YAML 1.1 booleans are refused, and the
// list is sorted by line.
func TestValidateReportsEverythingAtOnce(t *testing.T) {
	cfg, err := filepath.Abs("testdata/many-problems.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := sinkd(t, "", nil, "validate", "--config", cfg)
	if r.code == 0 {
		t.Fatalf("validate exited 0 on a broken file:\n%s", r.stdout)
	}
	want := []string{
		`:6: source.kafka.brokers: environment variable SINKD_TEST_UNSET_BROKERS is not set`,
		`:7: source.kafka.topics: environment variable SINKD_TEST_UNSET_TOPIC is not set: the topic to archive`,
		`:12: schema.fields[1].required: expected true or false, got "yes"`,
		`:18: routes[0].parquet.path: template "type={tpye}/dt={pickup_datetime:yyyy-QQ}/v={vendor}": at offset 5: unknown field "tpye", did you mean "type"?`,
		`:18: routes[0].parquet.path: template "type={tpye}/dt={pickup_datetime:yyyy-QQ}/v={vendor}": at offset 15: time pattern "yyyy-QQ"`,
		`:18: routes[0].parquet.path: template "type={tpye}/dt={pickup_datetime:yyyy-QQ}/v={vendor}": at offset 43: unknown field "vendor"`,
		`:19: routes[0].parquet.max_file_age: 0 is not allowed here; leave the key out for the default (15m)`,
		`:21: checkpoint.interval: 0 is not allowed here`,
		`:23: memory.max_open_files: 0 is not allowed here`,
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	next := 0
	for _, l := range lines {
		if next < len(want) && strings.Contains(l, want[next]) {
			next++
		}
	}
	if next < len(want) {
		t.Errorf("stderr lacks, in this order, %q (and what follows it in the list); got:\n%s", want[next], r.stderr)
	}
	if n := len(lines); n != len(want) {
		t.Errorf("%d problems, want %d:\n%s", n, len(want), r.stderr)
	}
}

// TestHelpConvention: every command and subcommand prints its help on stdout
// and exits 0; `sinkd help CMD` is the same as `sinkd CMD --help`.
func TestHelpConvention(t *testing.T) {
	for _, args := range [][]string{
		{"help"}, {"--help"}, {"-h"},
		{"run", "--help"}, {"validate", "-h"}, {"demo", "--help"}, {"produce", "--help"},
		{"dlq", "--help"}, {"dlq", "inspect", "--help"}, {"dlq", "redrive", "-help"},
		{"version", "--help"}, {"completion", "--help"},
		{"help", "run"}, {"help", "dlq"}, {"help", "dlq", "redrive"},
	} {
		r := sinkd(t, "", nil, args...)
		if r.code != 0 || r.stderr != "" || !strings.Contains(strings.ToLower(r.stdout), "usage") {
			t.Errorf("sinkd %s: exit %d, stdout %d bytes, stderr %q; want usage on stdout, exit 0", strings.Join(args, " "), r.code, len(r.stdout), r.stderr)
		}
	}
	if a, b := sinkd(t, "", nil, "help", "dlq", "redrive"), sinkd(t, "", nil, "dlq", "redrive", "--help"); a.stdout != b.stdout {
		t.Error("sinkd help dlq redrive differs from sinkd dlq redrive --help")
	}
	for _, args := range [][]string{{"validate", "--bogus"}, {"dlq", "inspect", "--bogus"}, {"nosuchcommand"}, {"dlq", "nosuch"}, {}, {"demo", "--events", "x"}} {
		r := sinkd(t, "", nil, args...)
		if r.code != 2 || r.stdout != "" || r.stderr == "" {
			t.Errorf("sinkd %s: exit %d, stdout %q; want exit 2 with the problem on stderr", strings.Join(args, " "), r.code, r.stdout)
		}
	}
}

// TestConfigArgumentAndExitCodes: the configuration is a positional argument
// too, configuration problems exit 78 (which the unit's
// RestartPreventExitStatus lists) and runtime failures exit 1.
func TestConfigArgumentAndExitCodes(t *testing.T) {
	good, _ := filepath.Abs("../config/examples/demo.yaml")
	bad, _ := filepath.Abs("testdata/many-problems.yaml")
	if r := sinkd(t, "", nil, "validate", good); r.code != 0 || !strings.Contains(r.stdout, "demo") {
		t.Errorf("validate FILE: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := sinkd(t, "", []string{"SINKD_CONFIG=" + good}, "validate", bad); r.code != 78 || !strings.Contains(r.stderr, "many-problems.yaml:6") {
		t.Errorf("validate FILE ignored its argument (or the exit code is wrong): exit %d\n%s", r.code, r.stderr)
	}
	if r := sinkd(t, "", nil, "validate", filepath.Join(t.TempDir(), "missing.yaml")); r.code != 78 || !strings.Contains(r.stderr, "missing.yaml") {
		t.Errorf("validate of a missing file: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := sinkd(t, "", nil, "validate", good, bad); r.code != 2 {
		t.Errorf("validate with two files: exit %d, want 2", r.code)
	}
	if r := sinkd(t, "", nil, "run", bad); r.code != 78 {
		t.Errorf("run with configuration problems: exit %d, want 78\n%s", r.code, r.stderr)
	}
	if r := sinkd(t, "", nil, "run", "--accept-lost", "manifest 7", good); r.code != 2 || !strings.Contains(r.stderr, "sinkd:v1:INSTANCE:SEQ") {
		t.Errorf("run --accept-lost with no manifest reference: exit %d, want 2\n%s", r.code, r.stderr)
	}
	// A runtime failure: the HTTP address is taken.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	env := []string{"SINKD_HTTP_ADDR=" + ln.Addr().String(), "SINKD_DEMO_DIR=" + t.TempDir(), "SINKD_KAFKA_BROKERS=127.0.0.1:1"}
	if r := sinkd(t, "", env, "run", good); r.code != 1 {
		t.Errorf("run with the HTTP address taken: exit %d, want 1\n%s", r.code, r.stderr)
	}
}

func TestVersionAndCompletion(t *testing.T) {
	r := sinkd(t, "", nil, "version")
	if r.code != 0 || !strings.Contains(r.stdout, "commit testcommit") || !strings.Contains(r.stdout, "built 2026-01-02T03:04:05Z") {
		t.Errorf("version: exit %d\n%s", r.code, r.stdout)
	}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		r := sinkd(t, "", nil, "completion", sh)
		if r.code != 0 || !strings.Contains(r.stdout, "sinkd __complete") {
			t.Errorf("completion %s: exit %d\n%s", sh, r.code, r.stdout)
		}
		if sh == "bash" {
			check := exec.Command("bash", "-n")
			check.Stdin = strings.NewReader(r.stdout)
			if out, err := check.CombinedOutput(); err != nil {
				t.Errorf("the bash completion script does not parse: %v\n%s", err, out)
			}
		}
	}
	for _, c := range []struct {
		words []string
		want  string
	}{
		{[]string{"va"}, "validate\n"},
		{[]string{"dlq", "re"}, "redrive\n"},
		{[]string{"dlq", "redrive", "--to-t"}, "--to-topic\n"},
		{[]string{"validate", "--con"}, "--config\n--connect\n"},
		{[]string{"completion", "z"}, "zsh\n"},
	} {
		if r := sinkd(t, "", nil, append([]string{"__complete"}, c.words...)...); r.stdout != c.want {
			t.Errorf("__complete %v = %q, want %q", c.words, r.stdout, c.want)
		}
	}
	// The real bash completion, end to end.
	script := sinkd(t, "", nil, "completion", "bash").stdout
	cmd := exec.Command("bash", "-c", script+"\nCOMP_WORDS=(sinkd dlq in); COMP_CWORD=2; _sinkd; echo \"${COMPREPLY[@]}\"")
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(sinkdBinary(t))+":"+os.Getenv("PATH"))
	if out, err := cmd.Output(); err != nil || strings.TrimSpace(string(out)) != "inspect" {
		t.Errorf("bash completion of 'sinkd dlq in': %q, %v", out, err)
	}
}
