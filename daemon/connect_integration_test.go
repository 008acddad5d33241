//go:build integration

package daemon

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sinkd/sinkd/scripts/stack/stackenv"
)

// TestValidateConnect checks the endpoints of taxi-kafka.yaml against a Kafka
// broker and the stack's MinIO: all good (the dead-letter topic can be
// created), then a missing source topic and a missing bucket, each named.
func TestValidateConnect(t *testing.T) {
	env := stackenv.Load(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "connect-trips"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	cfg, _ := filepath.Abs("../config/examples/taxi-kafka.yaml")
	base := []string{
		"SINKD_KAFKA_BROKERS=" + strings.Join(cluster.ListenAddrs(), ","),
		"SINKD_S3_ENDPOINT=" + env.S3Endpoint,
		"SINKD_DLQ_TOPIC=connect-dlq",
		"AWS_ACCESS_KEY_ID=" + env.AccessKey, "AWS_SECRET_ACCESS_KEY=" + env.SecretKey, "AWS_REGION=" + env.Region,
	}
	good := append(base, "SINKD_KAFKA_TOPIC=connect-trips", "SINKD_S3_BUCKET="+env.S3Bucket)
	r := sinkd(t, "", good, "validate", "--connect", cfg)
	if r.code != 0 {
		t.Fatalf("validate --connect: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"ok    kafka source", "topics connect-trips exist",
		"ok    dead-letter topic connect-dlq: does not exist yet; sinkd may create it",
		"ok    object store s3://" + env.S3Bucket, "conditional writes (If-None-Match) work",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	bucket := fmt.Sprintf("no-such-bucket-%d", time.Now().UnixNano())
	bad := append(base, "SINKD_KAFKA_TOPIC=no-such-topic", "SINKD_S3_BUCKET="+bucket)
	r = sinkd(t, "", bad, "validate", "--connect", cfg)
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL  kafka source") || !strings.Contains(r.stdout, "topic no-such-topic does not exist") ||
		!strings.Contains(r.stdout, "FAIL  object store s3://"+bucket) {
		t.Errorf("validate --connect with a missing topic and bucket: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
