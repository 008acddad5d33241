// Command kafkabroker runs franz-go's kfake Kafka cluster as a standalone
// process on loopback, so that tests, the demo and third-party clients (kcat)
// can talk to a Kafka-protocol server on a machine where no real Kafka can be
// installed. scripts/stack/stack.sh builds and starts it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	if err := run(); err != nil {
		slog.Error("kafkabroker", "err", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		host       = flag.String("host", "127.0.0.1", "address to listen on; loopback keeps the broker private to this machine")
		port       = flag.Int("port", 19092, "port of the first broker; broker i listens on port+i")
		brokers    = flag.Int("brokers", 1, "number of brokers in the cluster")
		partitions = flag.Int("partitions", 4, "partitions of auto-created topics")
		dataDir    = flag.String("data", "", "directory to persist the log in (empty: memory only, lost on exit)")
		seed       = flag.String("topics", "", "comma-separated topics to create at start with -partitions partitions")
		verbose    = flag.Bool("v", false, "log broker activity")
	)
	flag.Parse()
	if *brokers < 1 {
		return fmt.Errorf("-brokers must be at least 1, got %d", *brokers)
	}

	ports := make([]int, *brokers)
	for i := range ports {
		ports[i] = *port + i
	}
	level := kfake.LogLevelWarn
	if *verbose {
		level = kfake.LogLevelInfo
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(*brokers),
		kfake.Ports(ports...),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(*partitions),
		kfake.WithLogger(kfake.BasicLogger(os.Stderr, level)),
		// kfake formats its listen address itself; this pins the host so the
		// broker never listens on other interfaces whatever kfake's default.
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			_, p, err := net.SplitHostPort(address)
			if err != nil {
				return nil, err
			}
			return net.Listen(network, net.JoinHostPort(*host, p))
		}),
	}
	if *dataDir != "" {
		opts = append(opts, kfake.DataDir(*dataDir))
	}
	if *seed != "" {
		opts = append(opts, kfake.SeedTopics(int32(*partitions), strings.Split(*seed, ",")...))
	}

	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	slog.Info("kafkabroker listening", "addrs", strings.Join(cluster.ListenAddrs(), ","), "data", *dataDir)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	slog.Info("kafkabroker stopping")
	// Close persists the log when -data is set, so a restart finds every
	// acknowledged record and committed offset again.
	cluster.Close()
	return nil
}
