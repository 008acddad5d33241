package daemon

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestCDCDebeziumPipeline runs the real pipeline on Debezium change events
// (JsonConverter, some with the schema wrapper): creates and updates land
// with __op and __source_ts_ms, deletes go to their own route by __op,
// tombstones are skipped and an event without op is a dead letter.
func TestCDCDebeziumPipeline(t *testing.T) {
	dir := t.TempDir()
	yaml := fmt.Sprintf(`pipeline: t
http: {addr: "127.0.0.1:0"}
source: {kafka: {brokers: BROKERS, topics: [in], group: g}}
schema:
  cdc: {envelope: debezium}
  fields:
    - {name: id, type: int64, required: true}
    - {name: email, type: string}
routes:
  - name: changes
    when: {field: __op, in: [c, u, r]}
    parquet:
      destination: file://%[1]s/lake
      path: table=customers/dt={@time:yyyy-MM-dd}
      event_time: {field: __source_ts_ms}
  - name: deletes
    when: {field: __op, in: [d]}
    parquet:
      destination: file://%[1]s/deletes
      path: table=customers
checkpoint: {interval: 200ms}
dlq: {file: %[1]s/dlq.jsonl}
`, dir)
	var recs []*kgo.Record
	for i := range 100 {
		v := fmt.Sprintf(`{"before":null,"after":{"id":%d,"email":"u%d@x"},"source":{"ts_ms":%d},"op":"c"}`, i, i, 1514766065000+int64(i)*1000)
		if i%10 == 0 {
			v = fmt.Sprintf(`{"schema":{"type":"struct"},"payload":{"before":{"id":%d},"after":{"id":%d,"email":"v%d@x"},"source":{"ts_ms":1514766065000},"op":"u"}}`, i, i, i)
		}
		recs = append(recs, &kgo.Record{Value: []byte(v)})
	}
	for i := range 5 {
		recs = append(recs,
			&kgo.Record{Value: []byte(fmt.Sprintf(`{"before":{"id":%d,"email":"gone"},"after":null,"source":{"ts_ms":1514766070000},"op":"d"}`, 1000+i))},
			&kgo.Record{Value: nil}) // the tombstone after a delete
	}
	recs = append(recs, &kgo.Record{Value: []byte(`{"after":{"id":1}}`)})
	runInProcess(t, yaml, recs)

	letters := readLetters(t, filepath.Join(dir, "dlq.jsonl"))
	if len(letters) != 1 || letters[0].Class != "bad_envelope" {
		t.Errorf("dead letters %+v, want one bad_envelope", letters)
	}
	ops := map[string]int{}
	for _, sub := range []string{"lake", "deletes"} {
		files, _ := filepath.Glob(filepath.Join(dir, sub, "table=customers", "*", "*.parquet"))
		more, _ := filepath.Glob(filepath.Join(dir, sub, "table=customers", "*.parquet"))
		for _, path := range append(files, more...) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			f, err := parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatal(err)
			}
			for _, rg := range f.RowGroups() {
				rows := rg.Rows()
				buf := make([]parquet.Row, 64)
				for {
					n, err := rows.ReadRows(buf)
					for _, r := range buf[:n] { // id, email, __op, __source_ts_ms
						ops[sub+"/"+r[2].String()]++
						if r[3].IsNull() {
							t.Errorf("%s: no source timestamp in %v", sub, r)
						}
					}
					if err != nil {
						break
					}
				}
				rows.Close()
			}
		}
	}
	if want := map[string]int{"lake/c": 90, "lake/u": 10, "deletes/d": 5}; fmt.Sprint(ops) != fmt.Sprint(want) {
		t.Errorf("rows by route and op %v, want %v", ops, want)
	}
}
