// Command sinkd archives Kafka and Kinesis streams into Parquet on S3 and
// OpenSearch. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sinkd/sinkd/daemon"
)

func main() {
	// `sinkd run` drains on the first signal and exits on the second; the
	// other commands stop what they do and flush.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := daemon.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
