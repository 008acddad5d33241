//go:build integration

package schema_test

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	hamba "github.com/hamba/avro/v2"
	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/schema/avro"
	"github.com/sinkd/sinkd/scripts/readers/duckdb"
)

// widenV1 and widenV2 are one subject's schema before and after the two
// widenings schema evolution merges, at the top level and nested: int to
// long, float to double.
const (
	widenV1 = `{"type":"record","name":"T","fields":[{"name":"id","type":"long"},
	  {"name":"n","type":"int"},{"name":"x","type":"float"},
	  {"name":"fare","type":{"type":"record","name":"F","fields":[{"name":"tip","type":"float"}]}},
	  {"name":"zones","type":{"type":"array","items":"int"}}]}`
	widenV2 = `{"type":"record","name":"T","fields":[{"name":"id","type":"long"},
	  {"name":"n","type":"long"},{"name":"x","type":"double"},
	  {"name":"fare","type":{"type":"record","name":"F","fields":[{"name":"tip","type":"double"}]}},
	  {"name":"zones","type":{"type":"array","items":"long"}}]}`
)

type widenFare1 struct {
	Tip float32 `avro:"tip"`
}
type widenRow1 struct {
	ID    int64      `avro:"id"`
	N     int32      `avro:"n"`
	X     float32    `avro:"x"`
	Fare  widenFare1 `avro:"fare"`
	Zones []int32    `avro:"zones"`
}
type widenFare2 struct {
	Tip float64 `avro:"tip"`
}
type widenRow2 struct {
	ID    int64      `avro:"id"`
	N     int64      `avro:"n"`
	X     float64    `avro:"x"`
	Fare  widenFare2 `avro:"fare"`
	Zones []int64    `avro:"zones"`
}

// writeAvroFile decodes payloads, each with the decoder of its writer
// schema, and writes them as one Parquet file of s, as the Parquet sink
// does.
func writeAvroFile(t *testing.T, path string, s *schema.Schema, payloads [][]byte, decoders []*schema.AvroDecoder) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := parquet.NewWriter(f, s.Parquet())
	var row parquet.Row
	for i, p := range payloads {
		if row, err = decoders[i].Decode(p, row); err != nil {
			t.Fatal(err)
		}
		if _, err := w.WriteRows([]parquet.Row{row}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDuckDBReadsWidenedFiles writes a file with version 1 of a schema, then,
// after int→long and float→double (merged as schema evolution merges them),
// a file with the merged schema holding version-1 and version-2 records, as
// the sink does after a schema change. DuckDB reads both together with
// union_by_name: one table, the wide types, every value as written (a float
// as the double it widens to). If the widening wrote a file DuckDB cannot
// union with the old one (a changed column path, a type without a common
// supertype, a value converted wrongly), the query fails or a value differs.
func TestDuckDBReadsWidenedFiles(t *testing.T) {
	if err := duckdb.Available(); err != nil {
		t.Skip(err)
	}
	f1, err := avro.Fields(widenV1)
	if err != nil {
		t.Fatal(err)
	}
	f2, err := avro.Fields(widenV2)
	if err != nil {
		t.Fatal(err)
	}
	merged, err := schema.Merge(f1, f2)
	if err != nil {
		t.Fatal(err)
	}
	s1, err := schema.New(f1)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := schema.New(merged)
	if err != nil {
		t.Fatal(err)
	}
	dec := func(s *schema.Schema, writer string) *schema.AvroDecoder {
		d, err := s.NewAvroDecoder(writer)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	enc := func(writer string, v any) []byte {
		b, err := hamba.Marshal(hamba.MustParse(writer), v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	old := []widenRow1{
		{ID: 1, N: math.MaxInt32, X: 0.1, Fare: widenFare1{Tip: 1.25}, Zones: []int32{math.MinInt32, 7}},
		{ID: 2, N: math.MinInt32, X: -3.4e38, Fare: widenFare1{Tip: 1e-7}, Zones: []int32{}},
	}
	later := widenRow1{ID: 3, N: -5, X: 6.5, Fare: widenFare1{Tip: 0.3}, Zones: []int32{41}}
	wide := widenRow2{ID: 4, N: 1 << 40, X: 0.1, Fare: widenFare2{Tip: math.MaxFloat64}, Zones: []int64{-1 << 50, 3}}

	dir := t.TempDir()
	before, after := filepath.Join(dir, "before.parquet"), filepath.Join(dir, "after.parquet")
	v1 := dec(s1, widenV1)
	writeAvroFile(t, before, s1, [][]byte{enc(widenV1, old[0]), enc(widenV1, old[1])}, []*schema.AvroDecoder{v1, v1})
	writeAvroFile(t, after, s2, [][]byte{enc(widenV1, later), enc(widenV2, wide)},
		[]*schema.AvroDecoder{dec(s2, widenV1), dec(s2, widenV2)})

	rows := duckdb.Query(t, fmt.Sprintf(`SELECT id, n, x, fare.tip AS tip, zones, typeof(n) AS nt, typeof(x) AS xt,
		typeof(fare) AS ft, typeof(zones) AS zt
		FROM read_parquet(['%s', '%s'], union_by_name = true) ORDER BY id`, before, after))
	types := map[string]any{"nt": "BIGINT", "xt": "DOUBLE", "ft": "STRUCT(tip DOUBLE)", "zt": "BIGINT[]"}
	row := func(id int64, n int64, x, tip float64, zones ...any) map[string]any {
		r := map[string]any{"id": id, "n": n, "x": x, "tip": tip, "zones": zones}
		for k, v := range types {
			r[k] = v
		}
		return r
	}
	want := []map[string]any{
		row(1, math.MaxInt32, float64(float32(0.1)), 1.25, int64(math.MinInt32), int64(7)),
		row(2, math.MinInt32, float64(float32(-3.4e38)), float64(float32(1e-7))),
		row(3, -5, 6.5, float64(float32(0.3)), int64(41)),
		row(4, 1<<40, 0.1, math.MaxFloat64, int64(-1<<50), int64(3)),
	}
	want[1]["zones"] = []any{}
	if len(rows) != len(want) {
		t.Fatalf("DuckDB reads %d rows, want %d: %v", len(rows), len(want), rows)
	}
	for i := range want {
		if !reflect.DeepEqual(rows[i], want[i]) {
			t.Errorf("row %d:\nDuckDB reads %v\nwant         %v", i+1, rows[i], want[i])
		}
	}
}
