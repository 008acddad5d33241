// Command sinkd archives Kafka and Kinesis streams into Parquet on S3 and
// OpenSearch. See README.md.
package main

import (
	"context"
	"os"

	"github.com/sinkd/sinkd/daemon"
)

func main() {
	os.Exit(daemon.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
