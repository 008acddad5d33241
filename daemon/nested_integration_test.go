//go:build integration

package daemon

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sinkd/sinkd/scripts/readers/duckdb"
)

// TestNestedJSONPipeline runs the real pipeline on nested JSON: buckets and a
// route condition by nested path, nested values read back by DuckDB, and bad
// nested values dead-lettered with the path of the field at fault.
func TestNestedJSONPipeline(t *testing.T) {
	if err := duckdb.Available(); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	yaml := fmt.Sprintf(`pipeline: t
http: {addr: "127.0.0.1:0"}
source: {kafka: {brokers: BROKERS, topics: [in], group: g}}
schema:
  fields:
    - {name: trip_id, type: int64, required: true}
    - name: pickup
      type: struct
      required: true
      fields: [{name: at, type: timestamp, required: true}, {name: zone, type: int32}]
    - name: fare
      type: struct
      fields:
        - {name: amount, type: decimal, precision: 10, scale: 2}
        - {name: extras, type: list, items: {type: decimal, precision: 10, scale: 2}}
    - name: stops
      type: list
      items:
        type: struct
        fields: [{name: zone, type: int32, required: true}, {name: wait_s, type: int32}]
    - name: payment
      type: struct
      fields: [{name: type, type: string}, {name: card, type: struct, fields: [{name: last4, type: string}]}]
    - {name: meta, type: json}
routes:
  - name: paid
    when: {field: payment.type, in: [card, cash]}
    parquet:
      destination: file://%[1]s/lake
      path: pay={payment.type}/pz={pickup.zone:%%03d}/dt={@time:yyyy-MM-dd}
      event_time: {field: pickup.at}
checkpoint: {interval: 200ms}
dlq: {file: %[1]s/dlq.jsonl}
`, dir)

	type trip struct {
		value   string
		payment string
		want    map[string]any // fare, stops, card as DuckDB's to_json gives them
	}
	var good []trip
	var recs []*kgo.Record
	for i := 1; i <= 200; i++ {
		payment := []string{"card", "cash", "voucher"}[i%3]
		var stops []string
		var wantStops []any
		for j := range i % 4 {
			stops = append(stops, fmt.Sprintf(`{"zone":%d,"wait_s":%d}`, i+j, j*30))
			wantStops = append(wantStops, map[string]any{"zone": float64(i + j), "wait_s": float64(j * 30)})
		}
		var fare string
		var wantFare any
		if i%5 != 0 {
			fare = fmt.Sprintf(`,"fare":{"amount":"%d.25","extras":[0.5,null]}`, i)
			wantFare = map[string]any{"amount": float64(i) + 0.25, "extras": []any{0.5, nil}}
		}
		card := ""
		var wantCard any
		if payment == "card" {
			card = fmt.Sprintf(`,"card":{"last4":"%04d"}`, i)
			wantCard = map[string]any{"last4": fmt.Sprintf("%04d", i)}
		}
		v := fmt.Sprintf(`{"trip_id":%d,"pickup":{"at":"2018-01-0%dT00:21:05Z","zone":%d}%s,"stops":[%s],"payment":{"type":%q%s},"meta":{"src":"t%d"}}`,
			i, 1+i%3, i%4, fare, strings.Join(stops, ","), payment, card, i)
		recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte(v)})
		if payment != "voucher" {
			if wantStops == nil {
				wantStops = []any{}
			}
			good = append(good, trip{value: v, payment: payment, want: map[string]any{"fare": wantFare, "stops": wantStops, "card": wantCard}})
		}
	}
	bad := map[string]string{
		`{"trip_id":1001,"pickup":{"at":"2018-01-01T00:00:00Z"},"payment":{"type":"card","card":{"last4":1234}}}`:                           `schema/type_mismatch field "payment.card.last4": expected string, got number 1234`,
		`{"trip_id":1002,"pickup":{"at":"2018-01-01T00:00:00Z"},"stops":[{"zone":1},{"wait_s":3}]}`:                                         `schema/missing_required field "stops[1].zone"`,
		`{"trip_id":1003,"payment":{"type":"card"}}`:                                                                                        `schema/missing_required field "pickup"`,
		`{"trip_id":1004,"pickup":{"at":"2018-01-01T00:00:00Z"},"fare":{"extras":[1.005]}}`:                                                 `schema/out_of_range field "fare.extras[0]"`,
		`{"trip_id":1005,"pickup":{"at":"2018-01-01T00:00:00Z"},"payment":{"type":"cash"}}`:                                                 `bucket/missing_field pickup.zone`,
		`{"trip_id":1006,"pickup":{"at":"2018-01-01T00:00:00Z","zone":1},"meta":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`: `decode/too_deep`,
	}
	for v := range bad {
		recs = append(recs, &kgo.Record{Value: []byte(v)})
	}

	runInProcess(t, yaml, recs)

	letters := readLetters(t, filepath.Join(dir, "dlq.jsonl"))
	if len(letters) != len(bad) {
		t.Errorf("%d dead letters, want %d: %+v", len(letters), len(bad), letters)
	}
	for _, l := range letters {
		found := false
		for _, want := range bad {
			stageClass, msg, _ := strings.Cut(want, " ")
			if l.Stage+"/"+l.Class == stageClass && strings.Contains(l.Message, msg) {
				found = true
			}
		}
		if !found {
			t.Errorf("unexpected dead letter %s/%s: %s", l.Stage, l.Class, l.Message)
		}
	}

	rows := duckdb.Query(t, fmt.Sprintf(`SELECT trip_id, pay AS bucket_payment, pz AS bucket_zone, payment.type AS ptype, pickup.zone AS pzone,
		to_json(fare)::VARCHAR AS fare, to_json(stops)::VARCHAR AS stops, to_json(payment.card)::VARCHAR AS card, meta::VARCHAR AS meta
		FROM read_parquet('%s/lake/**/*.parquet', hive_partitioning = true, hive_types_autocast = false) ORDER BY trip_id`, dir))
	if len(rows) != len(good) {
		t.Fatalf("DuckDB reads %d rows, want %d (vouchers are routed nowhere)", len(rows), len(good))
	}
	for i, r := range rows {
		g := good[i]
		if r["ptype"] != g.payment || r["bucket_payment"] != g.payment || r["bucket_zone"] != fmt.Sprintf("%03d", r["pzone"]) {
			t.Errorf("row %v: bucket payment=%v zone=%v, payment.type %v pickup.zone %v", r["trip_id"], r["bucket_payment"], r["bucket_zone"], r["ptype"], r["pzone"])
		}
		for col, want := range g.want {
			var got any
			if s, ok := r[col].(string); ok {
				if err := json.Unmarshal([]byte(s), &got); err != nil {
					t.Fatal(err)
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("trip %v %s: DuckDB reads %v, want %v", r["trip_id"], col, r[col], want)
			}
		}
		if want := fmt.Sprintf(`{"src":"t%d"}`, r["trip_id"]); r["meta"] != want {
			t.Errorf("trip %v meta %v, want %s", r["trip_id"], r["meta"], want)
		}
	}
}
