package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// fakeSinkdAddr, when set, makes the test binary a stand-in for a slow sinkd:
// it listens on that address after half a second (so the first scrapes are
// refused, as with a real sinkd starting up), reports 10 records read and 25
// rows written (the counters move at different steps) forever and exits 0 on
// SIGTERM.
const fakeSinkdAddr = "BENCH_FAKE_SINKD_ADDR"

func TestMain(m *testing.M) {
	if addr := os.Getenv(fakeSinkdAddr); addr != "" {
		os.Exit(fakeSinkd(addr))
	}
	os.Exit(m.Run())
}

func fakeSinkd(addr string) int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	time.Sleep(500 * time.Millisecond)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "sinkd_source_records_total 10")
		fmt.Fprintln(w, `sinkd_parquet_rows_total{route="trips"} 25`)
		fmt.Fprintln(w, "sinkd_parquet_open_files 3")
	}), ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(ln) }()
	<-term
	_ = srv.Close()
	return 0
}

// A sinkd that runs but reads too slowly is stopped at the time limit and
// reported as slow, with the rows it had written, even though the scrapes
// before it listened failed; its spool is not reported, not 0.
func TestMeasureStopsSlowRun(t *testing.T) {
	defer func(g time.Duration) { readGrace = g }(readGrace)
	readGrace = 3 * time.Second
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakeSinkdAddr, addr)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "run.yaml")
	if err := os.WriteFile(cfg, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	never := func(context.Context, *watch) (bool, error) { return false, nil }
	m := measure(context.Background(), self, cfg, addr, filepath.Join(dir, "sinkd.log"), clockTicks(), 1000, never)

	if !m.slow || m.partialRead != 25 || m.partialTime < readGrace {
		t.Errorf("slow %v, read %v in %s; want slow, 25 rows written in at least %s (err %q)", m.slow, m.partialRead, m.partialTime, readGrace, m.err)
	}
	if m.exit != "" {
		t.Errorf("exit after SIGTERM: %q, want a clean one", m.exit)
	}
	if !m.scraped || m.spool.reported || m.maxOpenFiles != 3 {
		t.Errorf("scraped %v, spool %+v, max open files %v; want scraped, spool not reported, 3", m.scraped, m.spool, m.maxOpenFiles)
	}
}
