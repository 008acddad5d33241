//go:build integration

package parquetsink

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/scripts/readers/duckdb"
)

// nestedTrip is one record of TestDuckDBReadsNestedAssembledFiles and what a
// reader must return for it.
type nestedTrip struct {
	value string
	fare  any // to_json of the fare struct
	stops any
	attrs any
	big   string // a decimal(38,4) and a UUID: fixed-length byte arrays
	uid   string
}

func makeNestedTrips(n int) []nestedTrip {
	trips := make([]nestedTrip, n)
	for i := range trips {
		t := nestedTrip{
			big: fmt.Sprintf("%d%028d.%04d", i+1, i*7919, i%10000),
			uid: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i*31),
		}
		v := map[string]any{"trip_id": i, "big": t.big, "uid": t.uid}
		if i%5 != 0 {
			extras := []any{}
			for j := range i % 3 {
				extras = append(extras, float64(j)+0.5)
			}
			v["fare"] = map[string]any{"tip": float64(i) / 4, "extras": extras}
			t.fare = map[string]any{"tip": float64(i) / 4, "extras": extras}
		}
		if i%7 != 3 {
			stops := []any{}
			for j := range i % 4 {
				tags := []any{}
				for k := range (i + j) % 3 {
					tags = append(tags, fmt.Sprintf("t%d-%d", i, k))
				}
				stops = append(stops, map[string]any{"zone": float64(j), "tags": tags})
			}
			v["stops"] = stops
			t.stops = stops
		}
		if i%2 == 0 {
			attrs := map[string]any{}
			for j := range i % 3 {
				attrs[fmt.Sprintf("k%d", j)] = float64(i * j)
			}
			v["attrs"] = attrs
			t.attrs = attrs
		}
		b, _ := json.Marshal(v)
		t.value = string(b)
		trips[i] = t
	}
	return trips
}

// TestDuckDBReadsNestedAssembledFiles writes nested rows (lists of structs
// holding lists, a map, an optional struct) through the real Writer, two
// buckets sharing one encoder, so that rows are staged, batched and
// assembled from many small row groups; DuckDB must read every nested value
// back as it went in.
func TestDuckDBReadsNestedAssembledFiles(t *testing.T) {
	if err := duckdb.Available(); err != nil {
		t.Fatal(err)
	}
	s, err := schema.New([]conf.Field{
		{Name: "trip_id", Type: "int64", Required: true},
		{Name: "fare", Type: "struct", Fields: []conf.Field{
			{Name: "tip", Type: "double"},
			{Name: "extras", Type: "list", Items: &conf.Field{Type: "double"}},
		}},
		{Name: "stops", Type: "list", Items: &conf.Field{Type: "struct", Fields: []conf.Field{
			{Name: "zone", Type: "int32", Required: true},
			{Name: "tags", Type: "list", Items: &conf.Field{Type: "string"}},
		}}},
		{Name: "attrs", Type: "map", Values: &conf.Field{Type: "int64"}},
		{Name: "big", Type: "decimal", Precision: 38, Scale: 4},
		{Name: "uid", Type: "uuid"},
	})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *Options) {
		o.Schema = s.Parquet()
		o.MaxEncoders = 1
		o.Config.RowGroupSize = 16 << 10
		o.Config.PageSize = 2 << 10
	})
	trips := makeNestedTrips(3000)
	d := s.NewDecoder()
	var row parquet.Row
	ctx := context.Background()
	for i, trip := range trips {
		if row, err = d.Decode([]byte(trip.value), row); err != nil {
			t.Fatalf("%s: %v", trip.value, err)
		}
		if err := f.w.Write(ctx, []byte(fmt.Sprintf("b=%d", i%2)), row, rec(0, int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.w.RollPartitions(nil, "test"); err != nil {
		t.Fatal(err)
	}
	f.commit(t)
	dir := t.TempDir()
	for key, body := range f.readFiles(t) {
		path := filepath.Join(dir, filepath.FromSlash(key))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rows := duckdb.Query(t, fmt.Sprintf(`SELECT trip_id, to_json(fare)::VARCHAR AS fare, to_json(stops)::VARCHAR AS stops, to_json(attrs)::VARCHAR AS attrs,
		big::VARCHAR AS big, uid::VARCHAR AS uid
		FROM read_parquet('%s/**/*.parquet') ORDER BY trip_id`, dir))
	groups := duckdb.Query(t, fmt.Sprintf(`SELECT count(DISTINCT (file_name, row_group_id)) AS n FROM parquet_metadata('%s/**/*.parquet')`, dir))
	if n, _ := groups[0]["n"].(int64); n < 4 {
		t.Errorf("%d row groups: the test means to assemble files from many", n)
	}
	if len(rows) != len(trips) {
		t.Fatalf("DuckDB reads %d rows, want %d", len(rows), len(trips))
	}
	bad := 0
	for i, r := range rows {
		if r["trip_id"] != int64(i) {
			t.Fatalf("row %d has trip_id %v", i, r["trip_id"])
		}
		if (r["big"] != trips[i].big || r["uid"] != trips[i].uid) && bad < 10 {
			bad++
			t.Errorf("trip %d: DuckDB reads big %v uid %v, want %s %s", i, r["big"], r["uid"], trips[i].big, trips[i].uid)
		}
		for col, want := range map[string]any{"fare": trips[i].fare, "stops": trips[i].stops, "attrs": trips[i].attrs} {
			var got any
			if s, ok := r[col].(string); ok {
				if err := json.Unmarshal([]byte(s), &got); err != nil {
					t.Fatal(err)
				}
			}
			if !reflect.DeepEqual(normalize(got), normalize(want)) && bad < 10 {
				bad++
				t.Errorf("trip %d %s: DuckDB reads %v, want %v (input %s)", i, col, r[col], want, strings.TrimSpace(trips[i].value))
			}
		}
	}
}

// normalize makes JSON numbers comparable whatever their Go type.
func normalize(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}
