package daemon

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/schema/protobuf"
	"github.com/sinkd/sinkd/schema/registry"
	"github.com/sinkd/sinkd/schema/registry/srfake"
)

const protoTrips = `syntax = "proto3";
package taxi;
message Trip {
  int64 trip_id = 1;
  string type = 2;
  Fare fare = 3;
  repeated int32 stops = 4;
}
message Fare { double amount = 1; }
`

// TestProtobufThroughRegistry runs the real pipeline on Protobuf records
// serialised through a schema registry (the stand-in), encoded by
// protobuf-go: the Parquet schema is derived from the subject, paths use its
// fields, and each bad input is one dead letter with its reason.
func TestProtobufThroughRegistry(t *testing.T) {
	reg := httptest.NewServer(srfake.New("", ""))
	defer reg.Close()
	admin, err := sr.NewClient(sr.URLs(reg.URL))
	if err != nil {
		t.Fatal(err)
	}
	ss, err := admin.CreateSchema(context.Background(), "in-value", sr.Schema{Schema: protoTrips, Type: sr.TypeProtobuf})
	if err != nil {
		t.Fatal(err)
	}
	fd, err := protobuf.Compile(context.Background(), protoTrips, nil)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := protobuf.Message(fd, nil)
	wire := func(index []byte, payload []byte) []byte {
		b := []byte{0, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[1:], uint32(ss.ID))
		return append(append(b, index...), payload...)
	}
	var recs []*kgo.Record
	for i := range 300 {
		m := dynamicpb.NewMessage(md)
		js := fmt.Sprintf(`{"tripId":%d,"type":%q,"stops":[%d]}`, i, []string{"yellow", "green"}[i%2], i)
		if i%4 != 0 {
			js = fmt.Sprintf(`{"tripId":%d,"type":%q,"fare":{"amount":%g}}`, i, []string{"yellow", "green"}[i%2], float64(i)/2)
		}
		if err := protojson.Unmarshal([]byte(js), m); err != nil {
			t.Fatal(err)
		}
		payload, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Value: wire([]byte{0}, payload)})
	}
	good := recs[1].Value[6:]
	bad := map[string][]byte{
		"decode/unknown_schema_id":  append([]byte{0, 0, 0, 3, 231, 0}, good...),
		"decode/bad_message_index":  wire([]byte{2, 6}, good), // [3]: no such message
		"decode/malformed_protobuf": wire([]byte{0}, good[:len(good)-1]),
		// trip_id (field 1) as a length-delimited value: the wrong wire type.
		"decode/malformed_protobuf wire type": wire([]byte{0}, protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte("x"))),
	}
	for _, v := range bad {
		recs = append(recs, &kgo.Record{Value: v})
	}
	dir := t.TempDir()
	yaml := fmt.Sprintf(`pipeline: t
http: {addr: "127.0.0.1:0"}
source: {kafka: {brokers: BROKERS, topics: [in], group: g}}
schema:
  format: protobuf
  registry: {url: %q, subject: in-value}
routes:
  - name: r
    parquet:
      destination: file://%[2]s/lake
      path: type={type}
checkpoint: {interval: 200ms}
dlq: {file: %[2]s/dlq.jsonl}
`, reg.URL, dir)
	runInProcess(t, yaml, recs)

	got := map[string]int{}
	for _, l := range readLetters(t, filepath.Join(dir, "dlq.jsonl")) {
		got[l.Stage+"/"+l.Class]++
		t.Logf("%s/%s: %s", l.Stage, l.Class, l.Message)
	}
	want := map[string]int{"decode/unknown_schema_id": 1, "decode/bad_message_index": 1, "decode/malformed_protobuf": 2}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("dead letters %v, want %v", got, want)
	}
	if rows, _ := countRows(t, filepath.Join(dir, "lake")); rows != 300 {
		t.Errorf("committed rows = %d, want 300", rows)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "lake", "type=green", "*.parquet")); len(files) == 0 {
		t.Errorf("no file under type=green: the path template did not read the derived field")
	}
}

// TestIncompatibleSchema: a record written with a schema that cannot be
// merged into the file schema (trip_id turned into a string) is a dead letter
// by default, and ends the run with an error naming the field with
// on_incompatible: stop.
func TestIncompatibleSchema(t *testing.T) {
	reg := httptest.NewServer(srfake.New("", ""))
	defer reg.Close()
	admin, err := sr.NewClient(sr.URLs(reg.URL))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	v1, err := admin.CreateSchema(ctx, "in-value", sr.Schema{Schema: protoTrips, Type: sr.TypeProtobuf})
	if err != nil {
		t.Fatal(err)
	}
	const changed = `syntax = "proto3"; package taxi; message Trip { string trip_id = 1; string type = 2; }`
	v2, err := admin.CreateSchema(ctx, "other-value", sr.Schema{Schema: changed, Type: sr.TypeProtobuf})
	if err != nil {
		t.Fatal(err)
	}
	frame := func(id int, payload []byte) []byte {
		b := []byte{0, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[1:], uint32(id))
		return append(append(b, 0), payload...)
	}
	ok := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 7)
	bad := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte("seven"))
	recs := []*kgo.Record{{Value: frame(v1.ID, ok)}, {Value: frame(v2.ID, bad)}, {Value: frame(v1.ID, ok)}}
	for _, stop := range []bool{false, true} {
		dir := t.TempDir()
		yaml := fmt.Sprintf(`pipeline: t
http: {addr: "127.0.0.1:0"}
source: {kafka: {brokers: BROKERS, topics: [in], group: g}}
schema:
  format: protobuf
  registry: {url: %q, subject: in-value, on_incompatible: %s}
routes:
  - name: r
    parquet: {destination: "file://%[3]s/lake", path: "t={type}"}
checkpoint: {interval: 200ms}
dlq: {file: %[3]s/dlq.jsonl}
`, reg.URL, map[bool]string{false: "dead_letter", true: "stop"}[stop], dir)
		if !stop {
			runInProcess(t, yaml, recs)
			letters := readLetters(t, filepath.Join(dir, "dlq.jsonl"))
			if len(letters) != 1 || letters[0].Class != "incompatible_schema" || !strings.Contains(letters[0].Message, "trip_id: int64 in the file schema, string in the writer's") {
				t.Errorf("dead letters %+v, want one incompatible_schema naming trip_id", letters)
			}
			if rows, _ := countRows(t, filepath.Join(dir, "lake")); rows != 2 {
				t.Errorf("committed rows = %d, want 2", rows)
			}
			continue
		}
		err := runExpectingError(t, yaml, recs)
		var ie *registry.IncompatibleError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), "trip_id") {
			t.Errorf("on_incompatible: stop: %v, want an IncompatibleError naming trip_id", err)
		}
	}
}

// runExpectingError runs the pipeline on records until it ends by itself.
func runExpectingError(t *testing.T, yaml string, records []*kgo.Record) error {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic("in"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, r := range records {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: r.Value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	cfg, err := config.Parse("test.yaml", []byte(strings.ReplaceAll(yaml, "BROKERS", strings.Join(cluster.ListenAddrs(), ","))))
	if err != nil {
		t.Fatal(err)
	}
	err = run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), options{}, nil)
	if ctx.Err() != nil {
		t.Fatal("the run did not end by itself")
	}
	return err
}
