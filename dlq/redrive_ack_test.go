package dlq

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// TestRedriveReportsOnlyAcknowledgedWrites: a redrive that writes nothing
// (missing topic, unreachable broker) says so and exits non-zero; it never
// prints "redriven 3".
func TestRedriveReportsOnlyAcknowledgedWrites(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "trips"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	path := writeFile(t, kafkaLetter(1, StageDecode), kafkaLetter(2, StageDecode), kafkaLetter(3, StageSchema))
	brokers := strings.Join(c.ListenAddrs(), ",")
	for _, tc := range []struct {
		name, brokers, topic, err string
	}{
		{"missing topic", brokers, "no-such-topic", "does not exist"},
		{"unreachable broker", "127.0.0.1:1", "trips", "127.0.0.1:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := Redrive(context.Background(), []string{"--file", path, "--to-kafka-brokers", tc.brokers, "--to-topic", tc.topic, "--rate", "0"}, &out, &errOut)
			if code == 0 {
				t.Errorf("exit 0 although nothing was written; stdout %q", out.String())
			}
			if strings.Contains(out.String(), "redriven 3") {
				t.Errorf("claims %q", out.String())
			}
			if !strings.Contains(errOut.String(), tc.err) {
				t.Errorf("stderr lacks %q: %q", tc.err, errOut.String())
			}
		})
	}
	var out, errOut bytes.Buffer
	if code := Redrive(context.Background(), []string{"--file", path, "--to-kafka-brokers", brokers, "--to-topic", "trips", "--rate", "0"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "redriven 3 to kafka:trips (acknowledged)") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}
