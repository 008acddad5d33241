package daemon

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"testing"

	hamba "github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sinkd/sinkd/schema/registry/srfake"
)

const avroTrips = `{"type":"record","name":"Trip","namespace":"taxi","fields":[
 {"name":"trip_id","type":"long"},
 {"name":"type","type":{"type":"enum","name":"Kind","symbols":["yellow","green"]}},
 {"name":"fare","type":["null",{"type":"record","name":"Fare","fields":[{"name":"amount","type":"double"}]}],"default":null},
 {"name":"stops","type":{"type":"array","items":"int"}}]}`

type avroFare struct {
	Amount float64 `avro:"amount"`
}

type avroTrip struct {
	TripID int64     `avro:"trip_id"`
	Type   string    `avro:"type"`
	Fare   *avroFare `avro:"fare"`
	Stops  []int32   `avro:"stops"`
}

// TestAvroThroughRegistry runs the real pipeline on Avro records serialised
// through a schema registry (the stand-in), produced by an independent
// encoder (hamba/avro): the Parquet schema is derived from the subject, paths
// use its fields, and records at fault are dead-lettered with their reason.
func TestAvroThroughRegistry(t *testing.T) {
	reg := httptest.NewServer(srfake.New("", ""))
	defer reg.Close()
	admin, err := sr.NewClient(sr.URLs(reg.URL))
	if err != nil {
		t.Fatal(err)
	}
	ss, err := admin.CreateSchema(context.Background(), "in-value", sr.Schema{Schema: avroTrips})
	if err != nil {
		t.Fatal(err)
	}
	wire := func(id int, payload []byte) []byte {
		b := []byte{0, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[1:], uint32(id))
		return append(b, payload...)
	}
	ws := hamba.MustParse(avroTrips)
	var recs []*kgo.Record
	for i := range 300 {
		v := avroTrip{TripID: int64(i), Type: []string{"yellow", "green"}[i%2], Stops: make([]int32, i%3)}
		if i%4 != 0 {
			v.Fare = &avroFare{Amount: float64(i) / 2}
		}
		payload, err := hamba.Marshal(ws, v)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Value: wire(ss.ID, payload)})
	}
	good, _ := hamba.Marshal(ws, avroTrip{TripID: 1, Type: "yellow"})
	bad := map[string][]byte{
		"decode/unknown_schema_id": wire(999, good),
		"decode/bad_magic_byte":    append([]byte{7}, wire(ss.ID, good)[1:]...),
		"decode/truncated_header":  {0, 0},
		"decode/malformed_avro":    wire(ss.ID, good[:len(good)-1]),
	}
	for _, v := range bad {
		recs = append(recs, &kgo.Record{Value: v})
	}

	dir := t.TempDir()
	yaml := fmt.Sprintf(`pipeline: t
http: {addr: "127.0.0.1:0"}
source: {kafka: {brokers: BROKERS, topics: [in], group: g}}
schema:
  format: avro
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
	}
	for k := range bad {
		if got[k] != 1 {
			t.Errorf("%s: %d dead letters, want 1 (all: %v)", k, got[k], got)
		}
	}
	if rows, _ := countRows(t, filepath.Join(dir, "lake")); rows != 300 {
		t.Errorf("committed rows = %d, want 300", rows)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "lake", "type=yellow", "*.parquet")); len(files) == 0 {
		t.Errorf("no file under type=yellow: the path template did not read the derived enum field")
	}
}
