package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sinkd/sinkd/taxi"
)

// TestTap: the dry run shows, for records from a file and from Kafka, the
// route, bucket path, key and the dead-letter reason of broken ones, and
// writes and commits nothing.
func TestTap(t *testing.T) {
	dir := t.TempDir()
	good, _ := filepath.Abs("../config/examples/demo.yaml")
	g := taxi.NewGenerator(1, taxi.DefaultStart())
	values := filepath.Join(dir, "values.jsonl")
	lines := []string{string(g.Bad(taxi.Good)), string(g.Bad(taxi.MalformedJSON)), string(g.Bad(taxi.MissingRequired))}
	if err := os.WriteFile(values, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"SINKD_DEMO_DIR=" + filepath.Join(dir, "lake-dir")}
	r := sinkd(t, dir, env, "tap", good, "--file", values)
	if r.code != 0 {
		t.Fatalf("tap --file: exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{
		"@1  route by-location: path pickup_location=", "/year=2018/month=01  key file://",
		"@1  route by-type: path type=", "/by-type/type=",
		"@2  dead letter decode/malformed_json",
		"@3  dead letter schema/missing_required",
		"3 records; nothing written, nothing committed",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("tap output lacks %q:\n%s", want, r.stdout)
		}
	}

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "tap-trips"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	produceTrips(ctx, t, cluster.ListenAddrs(), "tap-trips", 2, 2, 100, 0)
	env = append(env, "SINKD_KAFKA_BROKERS="+strings.Join(cluster.ListenAddrs(), ","), "SINKD_KAFKA_TOPIC=tap-trips")
	r = sinkd(t, dir, env, "tap", good, "--n", "6")
	if r.code != 0 || !strings.Contains(r.stdout, "6 records; nothing written") || strings.Count(r.stdout, "route by-type: path type=") != 6 {
		t.Fatalf("tap from Kafka: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "lake-dir")); !os.IsNotExist(err) {
		t.Errorf("tap wrote into the lake directory: %v", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	groups, err := kadm.NewClient(cl).ListGroups(ctx)
	if err != nil || len(groups) != 0 {
		t.Errorf("tap joined or created a consumer group: %v %v", groups, err)
	}
}
