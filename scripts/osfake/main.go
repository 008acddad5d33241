// Command osfake serves the strict in-memory OpenSearch fake on a loopback
// port, for benchmarks and manual runs. Faults can be changed while it runs:
//
//	curl -XPUT 127.0.0.1:9200/_fake/faults -d '{"item_reject_429":0.3,"request_503":0.05}'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sinkd/sinkd/writers/opensearch/osfake"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "osfake:", err)
		os.Exit(1)
	}
}

func run() error {
	port := flag.Int("port", 9200, "TCP port on 127.0.0.1 (0 picks a free one)")
	user := flag.String("user", "", "require basic auth with this user")
	password := flag.String("password", "", "password for -user")
	sigv4 := flag.String("sigv4", "", "require SigV4: ACCESS_KEY:SECRET_KEY:REGION:SERVICE (service es or aoss)")
	flag.Parse()

	var opts []osfake.Option
	if *user != "" {
		opts = append(opts, osfake.WithBasicAuth(*user, *password))
	}
	if *sigv4 != "" {
		f := strings.Split(*sigv4, ":")
		if len(f) != 4 {
			return errors.New("-sigv4 wants ACCESS_KEY:SECRET_KEY:REGION:SERVICE")
		}
		opts = append(opts, osfake.WithSigV4(f[0], f[1], f[2], f[3]))
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: osfake.New(opts...), ReadHeaderTimeout: 10 * time.Second}
	slog.Info("osfake listening", "url", "http://"+ln.Addr().String())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}
