// Package stackenv gives integration tests the endpoints of the local stack of
// real servers that scripts/stack/stack.sh starts (MinIO, kinesalite, dynalite,
// a kfake broker). It reads the env file the script writes.
package stackenv

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Env holds the stack's endpoints and credentials.
type Env struct {
	KafkaBrokers     string // host:port[,host:port]
	S3Endpoint       string // http://127.0.0.1:port
	S3Bucket         string // a bucket the script created
	KinesisEndpoint  string
	DynamoDBEndpoint string
	Region           string
	AccessKey        string
	SecretKey        string
	Dir              string // the stack's cache directory (binaries, data, pids)
	Vars             map[string]string
}

// File is where stack.sh writes the environment: $SINKD_STACK_ENV, or
// .cache/stack/env at the module root.
func File() (string, error) {
	if f := os.Getenv("SINKD_STACK_ENV"); f != "" {
		return f, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, ".cache", "stack", "env"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}

// Load reads the stack environment, failing the test (not skipping it) when the
// stack is not running: integration tests must never pass by not running.
func Load(t testing.TB) Env {
	t.Helper()
	env, err := Read()
	if err != nil {
		t.Fatalf("local stack not available (%v): run `make stack-up` or `make test`", err)
	}
	return env
}

// Read parses the env file.
func Read() (Env, error) {
	path, err := File()
	if err != nil {
		return Env{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return Env{}, err
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "export "))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		vars[k] = strings.Trim(v, `"'`)
	}
	if err := sc.Err(); err != nil {
		return Env{}, err
	}
	return Env{
		KafkaBrokers:     vars["SINKD_KAFKA_BROKERS"],
		S3Endpoint:       vars["SINKD_S3_ENDPOINT"],
		S3Bucket:         vars["SINKD_S3_BUCKET"],
		KinesisEndpoint:  vars["SINKD_KINESIS_ENDPOINT"],
		DynamoDBEndpoint: vars["SINKD_DYNAMODB_ENDPOINT"],
		Region:           vars["AWS_REGION"],
		AccessKey:        vars["AWS_ACCESS_KEY_ID"],
		SecretKey:        vars["AWS_SECRET_ACCESS_KEY"],
		Dir:              vars["SINKD_STACK_DIR"],
		Vars:             vars,
	}, nil
}

// Setenv exports the stack's variables into the test's environment, so that
// code reading SINKD_* and AWS_* (config expansion, the SDK) sees the stack.
func (e Env) Setenv(t testing.TB) {
	t.Helper()
	for k, v := range e.Vars {
		t.Setenv(k, v)
	}
}
