package dlq_test

// In package dlq_test: --config goes through the config package, which
// imports dlq, so an in-package test cannot load a configuration.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	_ "github.com/sinkd/sinkd/config" // sets dlq.LoadConfig
	"github.com/sinkd/sinkd/dlq"
)

// TestDLQToolsTakeTheConfig: with --config, inspect reads the pipeline's
// dead-letter topic with its SASL settings, and redrive writes to the
// pipeline's source topic with the source's.
func TestDLQToolsTakeTheConfig(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "src", "dead"),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "sinkd", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := strings.Join(c.ListenAddrs(), ",")
	auth := kgo.SASL(scram.Auth{User: "sinkd", Pass: "s3cret"}.AsSha256Mechanism())

	// Three letters in the dead-letter topic, written with the sink itself.
	producer, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), auth, kgo.DefaultProduceTopic("dead"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		l := dlq.KafkaLetterForTest(int64(i+1), dlq.StageDecode)
		r := dlq.KafkaRecordForTest(l, "dead")
		if err := producer.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	producer.Close()

	cfg := filepath.Join(t.TempDir(), "p.yaml")
	yaml := fmt.Sprintf(`pipeline: p
source:
  kafka:
    brokers: %[1]s
    topics: [src]
    group: g
    sasl: {mechanism: scram-sha-256, username: sinkd, password: s3cret}
schema:
  fields: [{name: id, type: int64}]
routes:
  - name: r
    parquet: {destination: "file:///tmp/sinkd-dlq-config-test", path: "x"}
dlq:
  kafka:
    topic: dead
`, brokers)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	if code := dlq.Inspect(ctx, []string{"--config", cfg}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "3 letters") {
		t.Fatalf("inspect --config: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := dlq.Redrive(ctx, []string{"--config", cfg, "--rate", "0"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "redriven 3 to kafka:src (acknowledged)") {
		t.Fatalf("redrive --config: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	// Without the credentials the same broker refuses: the config supplied them.
	out.Reset()
	errOut.Reset()
	short, cancelShort := context.WithTimeout(ctx, 20*time.Second)
	defer cancelShort()
	if code := dlq.Inspect(short, []string{"--kafka-brokers", brokers, "--topic", "dead"}, &out, &errOut); code == 0 {
		t.Errorf("inspect without SASL succeeded against a SASL broker: the test proves nothing\n%s", out.String())
	}
}
