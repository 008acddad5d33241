// Package duckdb lets tests and tools check sinkd's Parquet output with
// DuckDB, a standard reader that shares no code with our writers: it runs SQL
// through scripts/readers/query.js (DuckDB's Node API, installed from npm by
// scripts/readers/install.sh into .cache/readers/).
//
// Only local files can be read (DuckDB's S3 support is an extension that it
// would download at run time): copy objects out of S3 into a directory first,
// keeping their keys, and point read_parquet at it, for example
//
//	SELECT type, dt, count(*) AS n
//	FROM read_parquet('/tmp/out/trips/**/*.parquet', hive_partitioning = true)
//	GROUP BY ALL
//
// Each row maps column names to values whose Go type depends only on the
// column's SQL type: integer columns give int64 (UBIGINT and HUGEINT values
// beyond int64 give their exact decimal string); DECIMAL with a scale, FLOAT
// and DOUBLE give float64 (a DECIMAL parsed from DuckDB's exact text;
// DECIMAL(p,0) gives int64); timestamps give RFC 3339 strings in UTC with
// every stored fractional digit; DATE gives "2006-01-02"; VARCHAR string;
// BOOLEAN bool; lists []any; structs map[string]any; NULL nil.
package duckdb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// queryTimeout bounds one Query from a test.
	queryTimeout = 2 * time.Minute
	// installTimeout bounds a cold install (an npm download of ~70 MB).
	installTimeout = 5 * time.Minute
	// waitDelay is how long a killed command's output pipes may stay open.
	waitDelay = 5 * time.Second
	// scriptsRel is where query.js and install.sh live, from the repository
	// root, slash-separated.
	scriptsRel = "scripts/readers"
)

// Query runs sql in a fresh in-memory DuckDB and returns its rows, installing
// DuckDB first when needed. Any failure fails the test with DuckDB's message.
func Query(t testing.TB, sql string) []map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), queryTimeout)
	defer cancel()
	rows, err := Run(ctx, sql)
	if err != nil {
		t.Fatalf("duckdb query failed: %v\nquery: %s", err, sql)
	}
	return rows
}

// Available installs DuckDB when needed and reports why it cannot be used
// (no node or npm on PATH, not inside the repository, install failed).
func Available() error {
	ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
	defer cancel()
	dir, err := scriptsDir()
	if err != nil {
		return err
	}
	return install(ctx, dir)
}

// Run is Query for code outside tests: ctx bounds both the install and the
// query.
func Run(ctx context.Context, sql string) ([]map[string]any, error) {
	dir, err := scriptsDir()
	if err != nil {
		return nil, err
	}
	installCtx, cancel := context.WithTimeout(ctx, installTimeout)
	defer cancel()
	if err := install(installCtx, dir); err != nil {
		return nil, err
	}
	out, err := run(ctx, "node", filepath.Join(dir, "query.js"), sql)
	if err != nil {
		return nil, err
	}
	return decodeRows(out)
}

func install(ctx context.Context, dir string) error {
	if _, err := run(ctx, "bash", filepath.Join(dir, "install.sh")); err != nil {
		return fmt.Errorf("installing duckdb: %w", err)
	}
	return nil
}

// run runs a command in its own process group, so that cancelling ctx also
// ends what it started (npm, node), and returns its stdout. A failure carries
// the command's stderr.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w (%w)", ctxErr, err)
		}
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, fmt.Errorf("%s: %w: %s", filepath.Base(args[0]), err, msg)
		}
		return nil, fmt.Errorf("%s: %w", filepath.Base(args[0]), err)
	}
	return stdout.Bytes(), nil
}

// scriptsDir finds scripts/readers by walking up from the working directory,
// which go test sets to the package under test, so any package in the
// repository (and a tool started anywhere inside it) finds it.
func scriptsDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		candidate := filepath.Join(dir, filepath.FromSlash(scriptsRel))
		if _, err := os.Stat(filepath.Join(candidate, "query.js")); err == nil {
			return candidate, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no %s/query.js in the working directory or above it: run from inside the sinkd repository", scriptsRel)
		}
		dir = parent
	}
}

// decodeRows parses query.js's output, a JSON array of row objects.
func decodeRows(out []byte) ([]map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	var rows []map[string]any
	if err := dec.Decode(&rows); err != nil {
		return nil, fmt.Errorf("decoding query.js output: %w", err)
	}
	if rows == nil {
		return nil, errors.New("query.js printed no result array")
	}
	for _, row := range rows {
		for k, v := range row {
			row[k] = normalize(v)
		}
	}
	return rows, nil
}

// normalize turns JSON numbers into int64 when they are integers and float64
// when they have a point or an exponent, in nested lists and structs too, so
// tests compare against plain Go literals. An integer beyond int64 (UBIGINT,
// HUGEINT) stays its exact decimal text rather than a rounded float.
func normalize(v any) any {
	switch v := v.(type) {
	case json.Number:
		text := string(v)
		if !strings.ContainsAny(text, ".eE") {
			if i, err := strconv.ParseInt(text, 10, 64); err == nil {
				return i
			}
			return text
		}
		if f, err := v.Float64(); err == nil {
			return f
		}
		return text
	case []any:
		for i := range v {
			v[i] = normalize(v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = normalize(v[k])
		}
	}
	return v
}
