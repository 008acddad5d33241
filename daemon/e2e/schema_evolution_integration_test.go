//go:build integration

package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	hamba "github.com/hamba/avro/v2"
	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/sr"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/sinkd/sinkd/schema/protobuf"
	"github.com/sinkd/sinkd/schema/registry/srfake"
	"github.com/sinkd/sinkd/scripts/readers/duckdb"
	"github.com/sinkd/sinkd/taxi"
)

// The trip of these tests: a nested fare, a list of stops; version 2 adds a
// top-level surcharge.
const (
	evoAvroV1 = `{"type":"record","name":"Trip","namespace":"taxi","fields":[
 {"name":"trip_id","type":"long"},
 {"name":"type","type":"string"},
 {"name":"pickup_at","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"fare","type":{"type":"record","name":"Fare","fields":[
   {"name":"amount","type":"double"},{"name":"tip","type":"double"},{"name":"total","type":"double"}]}},
 {"name":"stops","type":{"type":"array","items":{"type":"record","name":"Stop","fields":[
   {"name":"zone","type":"int"},{"name":"wait_s","type":"int"}]}}}]}`
	evoProtoV1 = `syntax = "proto3";
package taxi;
import "google/protobuf/timestamp.proto";
message Trip {
  int64 trip_id = 1;
  string type = 2;
  google.protobuf.Timestamp pickup_at = 3;
  Fare fare = 4;
  repeated Stop stops = 5;
  message Fare { double amount = 1; double tip = 2; double total = 3; }
  message Stop { int32 zone = 1; int32 wait_s = 2; }
}
`
	evoJSONV1 = `
    - {name: trip_id, type: int64, required: true}
    - {name: type, type: string, required: true}
    - {name: pickup_at, type: timestamp, unit: micros, required: true}
    - name: fare
      type: struct
      required: true
      fields: [{name: amount, type: double, required: true}, {name: tip, type: double, required: true}, {name: total, type: double, required: true}]
    - name: stops
      type: list
      required: true
      items: {type: struct, required: true, fields: [{name: zone, type: int32, required: true}, {name: wait_s, type: int32, required: true}]}`
)

var (
	evoAvroV2  = strings.Replace(evoAvroV1, `]}}}]}`, `]}}},{"name":"surcharge","type":["null","double"],"default":null}]}`, 1)
	evoProtoV2 = strings.Replace(evoProtoV1, "repeated Stop stops = 5;", "repeated Stop stops = 5;\n  optional double surcharge = 6;", 1)
	evoJSONV2  = evoJSONV1 + "\n    - {name: surcharge, type: double}"
)

// evoTrip is one produced trip and what a reader must find for it.
type evoTrip struct {
	id        int64
	typ       string
	pickup    time.Time
	fare      [3]float64
	stops     [][2]int32
	surcharge *float64 // nil: written with version 1
}

func (tr evoTrip) json() map[string]any {
	stops := make([]any, len(tr.stops))
	for i, s := range tr.stops {
		stops[i] = map[string]any{"zone": s[0], "wait_s": s[1]}
	}
	m := map[string]any{
		"trip_id": tr.id, "type": tr.typ, "pickup_at": tr.pickup.Format(time.RFC3339Nano),
		"fare":  map[string]any{"amount": tr.fare[0], "tip": tr.fare[1], "total": tr.fare[2]},
		"stops": stops,
	}
	if tr.surcharge != nil {
		m["surcharge"] = *tr.surcharge
	}
	return m
}

func makeTrip(rng *rand.Rand, id int64, v2 bool) evoTrip {
	day := time.Date(2018, 1, 1+int(id%3), 0, 0, 0, 0, time.UTC)
	tr := evoTrip{id: id, typ: []string{"yellow", "green"}[id%2],
		pickup: day.Add(time.Duration(rng.IntN(86400e6)) * time.Microsecond),
		fare:   [3]float64{float64(rng.IntN(400)) / 4, float64(rng.IntN(40)) / 8, 0}}
	tr.fare[2] = tr.fare[0] + tr.fare[1]
	for j := range rng.IntN(4) {
		tr.stops = append(tr.stops, [2]int32{int32(rng.IntN(265)), int32(j * 30)})
	}
	if v2 {
		s := float64(rng.IntN(12)) / 4
		tr.surcharge = &s
	}
	return tr
}

// TestSchemaEvolutionExactlyOnce is issue 14's end-to-end test: taxi trips
// with a nested fare and a list of stops, produced as Avro and as Protobuf
// through a schema registry (and as nested JSON, whose field is added to the
// configuration and reloaded by SIGHUP), then a field is added mid-run, while
// a real `sinkd run` is SIGKILLed again and again. Every trip
// must be read back by DuckDB exactly once with its nested values, rows
// written before the change null in the new column, and each bucket gets at
// most one extra file at the change. Settings are the defaults: files roll
// only at the schema change and at the final drain.
func TestSchemaEvolutionExactlyOnce(t *testing.T) {
	if err := duckdb.Available(); err != nil {
		t.Skip(err)
	}
	for _, format := range []string{"avro", "protobuf", "json"} {
		t.Run(format, func(t *testing.T) { runEvolution(t, format) })
	}
}

func runEvolution(t *testing.T, format string) {
	h := newHarness(t, "evo-"+format[:4])
	metrics := freeLoopbackAddr(t)
	subject := h.topic + "-value"
	// The registry: srfake on loopback, unless a real one is given.
	regURL := os.Getenv("SINKD_SCHEMA_REGISTRY_URL")
	if regURL == "" && format != "json" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: srfake.New("", ""), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		regURL = "http://" + ln.Addr().String()
	}
	var admin *sr.Client
	if format != "json" {
		var err error
		opts := []sr.ClientOpt{sr.URLs(regURL)}
		if u := os.Getenv("SINKD_SCHEMA_REGISTRY_USER"); u != "" {
			opts = append(opts, sr.BasicAuth(u, os.Getenv("SINKD_SCHEMA_REGISTRY_PASSWORD")))
		}
		if admin, err = sr.NewClient(opts...); err != nil {
			t.Fatal(err)
		}
	}
	register := func(text string) int {
		t.Helper()
		s := sr.Schema{Schema: text}
		if format == "protobuf" {
			s.Type = sr.TypeProtobuf
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ss, err := admin.CreateSchema(ctx, subject, s)
		if err != nil {
			t.Fatal(err)
		}
		return ss.ID
	}
	var encode func(tr evoTrip, id int, v2 bool) []byte
	fields := evoJSONV1
	switch format {
	case "avro":
		s1, s2 := hamba.MustParse(evoAvroV1), hamba.MustParse(evoAvroV2)
		encode = func(tr evoTrip, id int, v2 bool) []byte {
			stops := make([]map[string]any, len(tr.stops))
			for i, s := range tr.stops {
				stops[i] = map[string]any{"zone": s[0], "wait_s": s[1]}
			}
			m := map[string]any{"trip_id": tr.id, "type": tr.typ, "pickup_at": tr.pickup,
				"fare": map[string]any{"amount": tr.fare[0], "tip": tr.fare[1], "total": tr.fare[2]}, "stops": stops}
			s := s1
			if v2 {
				s = s2
				m["surcharge"] = *tr.surcharge
			}
			b, err := hamba.Marshal(s, m)
			if err != nil {
				t.Fatal(err)
			}
			return append(wireHeader(id), b...)
		}
	case "protobuf":
		m1, m2 := evoMessage(t, evoProtoV1), evoMessage(t, evoProtoV2)
		encode = func(tr evoTrip, id int, v2 bool) []byte {
			md := m1
			js := tr.json()
			if v2 {
				md = m2
			}
			b, _ := json.Marshal(js)
			m := dynamicpb.NewMessage(md)
			if err := protojson.Unmarshal(b, m); err != nil {
				t.Fatal(err)
			}
			out, err := proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			// The first message of the schema: message indexes [0], one 0 byte.
			return append(append(wireHeader(id), 0), out...)
		}
	default:
		encode = func(tr evoTrip, _ int, _ bool) []byte {
			b, _ := json.Marshal(tr.json())
			return b
		}
	}
	writeConfig := func() string {
		schemaYAML := "  format: json\n  fields:" + fields
		if format != "json" {
			schemaYAML = fmt.Sprintf("  format: %s\n  registry: {url: %q, subject: %q}", format, regURL, subject)
		}
		cfg := fmt.Sprintf(`pipeline: evo
instance_id: evo-1
http: {addr: %q}
source:
  kafka: {brokers: %q, topics: [%s], group: %s}
schema:
%s
routes:
  - name: trips
    parquet:
      destination: s3://%s/%slake
      path: type={type}/dt={pickup_at:yyyy-MM-dd}
      event_time: {field: pickup_at}
s3: {endpoint: %q, path_style: true}
checkpoint: {store: "s3://%s/%s_sinkd"}
dlq: {file: %q}
`, metrics, h.env.KafkaBrokers, h.topic, h.group, schemaYAML, h.env.S3Bucket, h.prefix, h.env.S3Endpoint,
			h.env.S3Bucket, h.prefix, filepath.Join(h.dir, "dlq.jsonl"))
		p := filepath.Join(h.dir, "evo.yaml")
		if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	const perVersion, partitions = 3000, 3
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 14))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	sink, err := taxi.NewKafkaSink(ctx, strings.Split(h.env.KafkaBrokers, ","), h.topic, partitions)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	var trips []evoTrip
	produce := func(from, n int, id int, v2 bool, rate int) error {
		begin := time.Now()
		for i := range n {
			tr := makeTrip(rng, int64(from+i), v2)
			trips = append(trips, tr)
			if err := sink.Send(ctx, []byte(strconv.FormatInt(tr.id, 10)), encode(tr, id, v2)); err != nil {
				return err
			}
			if rate > 0 && i%100 == 99 {
				if ahead := time.Duration(i+1)*time.Second/time.Duration(rate) - time.Since(begin); ahead > 0 {
					time.Sleep(ahead)
				}
			}
		}
		return sink.Flush(ctx)
	}

	// Version 1: produced, then read by runs killed a few seconds in.
	id1 := 0
	if format != "json" {
		id1 = register(map[string]string{"avro": evoAvroV1, "protobuf": evoProtoV1}[format])
	}
	if err := produce(1, perVersion, id1, false, 0); err != nil {
		t.Fatal(err)
	}
	cfgPath := writeConfig()
	start := func() *proc {
		p := startSinkd(t, h.env, h.dir, "evo-1", cfgPath)
		t.Cleanup(func() {
			if !p.exited() {
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		})
		return p
	}
	for range 2 {
		p := start()
		p.waitRunning(t)
		time.Sleep(time.Duration(1000+rng.IntN(2000)) * time.Millisecond)
		if p.exited() {
			t.Fatalf("sinkd exited by itself: %v; log tail:\n%s", p.err, tail(p.logFile.Name(), 15))
		}
		p.kill(t)
	}

	// Version 2, while sinkd runs: a field added.
	id2 := 0
	p := start()
	p.waitRunning(t)
	// Version 1 read into open files first, so that the change has files
	// to roll.
	waitFetchedAll(t, metrics, partitions, 2*time.Minute, p)
	if format == "json" {
		// JSON's schema is the configuration: the field is added there and
		// reloaded (SIGHUP drains the run) before producers send it.
		fields = evoJSONV2
		cfgPath = writeConfig()
		_ = p.cmd.Process.Signal(syscall.SIGHUP)
		if !p.waitLine("configuration reloaded", time.Minute) {
			t.Fatalf("no reload logged; log tail:\n%s", tail(p.logFile.Name(), 20))
		}
	} else {
		// Registered once the run has derived its schema from version 1.
		id2 = register(map[string]string{"avro": evoAvroV2, "protobuf": evoProtoV2}[format])
	}
	done := make(chan error, 1)
	go func() { done <- produce(perVersion+1, perVersion, id2, true, 1500) }()
	changed := format == "json"
	if !changed {
		// The first version-2 record drains the run and restarts the
		// pipeline with the merged schema; kill soon after.
		changed = p.waitLine("the schema changed", time.Minute)
		if !changed {
			t.Fatalf("no schema change logged; log tail:\n%s", tail(p.logFile.Name(), 20))
		}
		time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
	} else {
		time.Sleep(time.Duration(1000+rng.IntN(1000)) * time.Millisecond)
	}
	p.kill(t)
	p = start()
	p.waitRunning(t)
	time.Sleep(time.Duration(1000+rng.IntN(1500)) * time.Millisecond)
	p.kill(t)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// The last run reads everything and drains.
	p = start()
	p.waitRunning(t)
	waitFetchedAll(t, metrics, partitions, 3*time.Minute, p)
	p.stop(t, time.Minute)

	if b, _ := os.ReadFile(filepath.Join(h.dir, "dlq.jsonl")); len(bytes.TrimSpace(b)) > 0 {
		t.Errorf("dead letters: %s", b)
	}
	h.verifyEvolution(trips)
}

func wireHeader(id int) []byte {
	b := []byte{0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(id))
	return b
}

func evoMessage(t *testing.T, text string) protoreflect.MessageDescriptor {
	fd, err := protobuf.Compile(context.Background(), text, nil)
	if err != nil {
		t.Fatal(err)
	}
	md, err := protobuf.Message(fd, nil)
	if err != nil {
		t.Fatal(err)
	}
	return md
}

// verifyEvolution copies the committed files out of the store and reads them
// with DuckDB as one table (union_by_name): every trip once, its nested
// values as produced, version-1 rows null in surcharge; at most two files
// per bucket (one before the change, one after), and files of both schemas.
func (h *harness) verifyEvolution(trips []evoTrip) {
	t := h.t
	ctx := context.Background()
	st, prefix := h.store()
	keys, err := st.List(ctx, prefix+"lake/")
	if err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(h.dir, "lake")
	perBucket := map[string]int{}
	withNew, withoutNew := 0, 0
	for _, key := range keys {
		if !strings.HasSuffix(key, ".parquet") {
			continue
		}
		body, err := st.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(key, prefix+"lake/")
		perBucket[path.Dir(rel)]++
		f, err := parquet.OpenFile(bytes.NewReader(body), int64(len(body)))
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if _, ok := f.Schema().Lookup("surcharge"); ok {
			withNew++
		} else {
			withoutNew++
		}
		dst := filepath.Join(local, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d files in %d buckets: %d with the new column, %d without; per bucket %v", withNew+withoutNew, len(perBucket), withNew, withoutNew, perBucket)
	for b, n := range perBucket {
		if n > 2 {
			t.Errorf("bucket %s has %d files: more than one extra at the change", b, n)
		}
	}
	if withoutNew == 0 {
		t.Errorf("no file of the first schema: the change did not roll files mid-run")
	}
	rows := duckdb.Query(t, fmt.Sprintf(`SELECT trip_id, type, pickup_at, to_json(fare)::VARCHAR AS fare, to_json(stops)::VARCHAR AS stops, surcharge
		FROM read_parquet('%s/**/*.parquet', union_by_name = true, hive_partitioning = false) ORDER BY trip_id`, local))
	want := map[int64]evoTrip{}
	for _, tr := range trips {
		want[tr.id] = tr
	}
	seen := map[int64]bool{}
	bad := 0
	for _, r := range rows {
		id := r["trip_id"].(int64)
		if seen[id] {
			bad++
			t.Errorf("trip %d read twice", id)
			continue
		}
		seen[id] = true
		tr, ok := want[id]
		if !ok {
			bad++
			t.Errorf("trip %d was never produced", id)
			continue
		}
		exp := tr.json()
		var fare, stops any
		_ = json.Unmarshal([]byte(r["fare"].(string)), &fare)
		_ = json.Unmarshal([]byte(r["stops"].(string)), &stops)
		var wantFare, wantStops any
		b, _ := json.Marshal(exp["fare"])
		_ = json.Unmarshal(b, &wantFare)
		b, _ = json.Marshal(exp["stops"])
		_ = json.Unmarshal(b, &wantStops)
		pickup, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(r["pickup_at"]))
		var wantSurcharge any
		if tr.surcharge != nil {
			wantSurcharge = *tr.surcharge
		}
		if r["type"] != tr.typ || !pickup.Equal(tr.pickup) || !reflect.DeepEqual(fare, wantFare) || !reflect.DeepEqual(stops, wantStops) || !reflect.DeepEqual(r["surcharge"], wantSurcharge) {
			bad++
			if bad < 5 {
				t.Errorf("trip %d: DuckDB reads %v, want %v", id, r, exp)
			}
		}
	}
	for id := range want {
		if !seen[id] {
			bad++
			if bad < 10 {
				t.Errorf("trip %d is in no committed file", id)
			}
		}
	}
	t.Logf("DuckDB read %d rows for %d trips", len(rows), len(want))
	if bad > 0 {
		t.Fatalf("%d trips missing, duplicated or differing", bad)
	}
}
