//go:build integration

package schema

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/scripts/readers/duckdb"
)

// writeParquet decodes values with s and writes them to one Parquet file in
// dir, the way the Parquet sink hands decoded rows to parquet-go.
func writeParquet(t *testing.T, s *Schema, dir string, values ...string) string {
	t.Helper()
	path := filepath.Join(dir, "rows.parquet")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := parquet.NewWriter(f, s.Parquet())
	d := s.NewDecoder()
	var row parquet.Row
	for _, v := range values {
		if row, err = d.Decode([]byte(v), row); err != nil {
			t.Fatalf("decode %s: %v", v, err)
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
	return path
}

// TestDuckDBSeesColumnsInSchemaOrder checks what a reader's SELECT * shows:
// the configured order, trip_id first, not the names sorted.
func TestDuckDBSeesColumnsInSchemaOrder(t *testing.T) {
	if err := duckdb.Available(); err != nil {
		t.Skip(err)
	}
	s := taxiSchema(t)
	path := writeParquet(t, s, t.TempDir(),
		`{"trip_id":1,"type":"yellow","pickup_datetime":"2018-01-01T00:21:05Z","pickup_location_id":41}`)
	rows := duckdb.Query(t, fmt.Sprintf(`SELECT column_name FROM (DESCRIBE SELECT * FROM read_parquet('%s'))`, path))
	fields := taxiFields()
	if len(rows) != len(fields) {
		t.Fatalf("DuckDB sees %d columns, want %d: %v", len(rows), len(fields), rows)
	}
	for i, r := range rows {
		if r["column_name"] != fields[i].Name {
			t.Errorf("column %d is %v, want %s", i+1, r["column_name"], fields[i].Name)
		}
	}
}

// nestedFields is a trip with a nested fare, a list of stops (structs), a map
// and a struct two deep, optional at every level.
func nestedFields() []conf.Field {
	return []conf.Field{
		{Name: "trip_id", Type: "int64", Required: true},
		{Name: "fare", Type: "struct", Fields: []conf.Field{
			{Name: "amount", Type: "decimal", Precision: 10, Scale: 2},
			{Name: "tip", Type: "double"},
			{Name: "extras", Type: "list", Items: &conf.Field{Type: "double"}},
		}},
		{Name: "stops", Type: "list", Items: &conf.Field{Type: "struct", Fields: []conf.Field{
			{Name: "zone", Type: "int32", Required: true},
			{Name: "tags", Type: "list", Items: &conf.Field{Type: "string"}},
		}}},
		{Name: "attrs", Type: "map", Values: &conf.Field{Type: "int64"}},
		{Name: "payment", Type: "struct", Fields: []conf.Field{
			{Name: "type", Type: "string"},
			{Name: "card", Type: "struct", Fields: []conf.Field{{Name: "last4", Type: "string"}}},
		}},
		{Name: "note", Type: "string"},
	}
}

// nestedCases are values and what a reader must give back for their nested
// columns, as DuckDB's to_json prints them.
var nestedCases = []struct{ value, fare, stops, attrs, payment string }{
	{`{"trip_id":1,"fare":{"amount":"12.50","tip":1.5,"extras":[0.5,1]},"stops":[{"zone":4,"tags":["a","b"]},{"zone":5}],"attrs":{"x":1,"y":2},"payment":{"type":"card","card":{"last4":"1234"}},"note":"n"}`,
		`{"amount":12.5,"tip":1.5,"extras":[0.5,1.0]}`, `[{"zone":4,"tags":["a","b"]},{"zone":5,"tags":null}]`, `{"x":1,"y":2}`, `{"type":"card","card":{"last4":"1234"}}`},
	{`{"trip_id":2}`, `null`, `null`, `null`, `null`},
	{`{"trip_id":3,"fare":{},"stops":[],"attrs":{},"payment":{"card":null}}`,
		`{"amount":null,"tip":null,"extras":null}`, `[]`, `{}`, `{"type":null,"card":null}`},
	{`{"trip_id":4,"fare":{"extras":[null,2]},"stops":[{"zone":1,"tags":[]},{"zone":2,"tags":[null,"c"]},{"zone":3,"tags":null}],"attrs":{"k":null},"payment":{"card":{}}}`,
		`{"amount":null,"tip":null,"extras":[null,2.0]}`, `[{"zone":1,"tags":[]},{"zone":2,"tags":[null,"c"]},{"zone":3,"tags":null}]`, `{"k":null}`, `{"type":null,"card":{"last4":null}}`},
}

// TestDuckDBReadsNestedValues writes nested rows and reads them back with
// DuckDB, which shares no code with parquet-go: every level of every column
// (null struct, empty list, null element, null map value) must come back as
// it went in.
func TestDuckDBReadsNestedValues(t *testing.T) {
	if err := duckdb.Available(); err != nil {
		t.Skip(err)
	}
	s, err := New(nestedFields())
	if err != nil {
		t.Fatal(err)
	}
	var values []string
	for _, c := range nestedCases {
		values = append(values, c.value)
	}
	path := writeParquet(t, s, t.TempDir(), values...)
	rows := duckdb.Query(t, fmt.Sprintf(`SELECT trip_id, to_json(fare)::VARCHAR AS fare, to_json(stops)::VARCHAR AS stops,
		to_json(attrs)::VARCHAR AS attrs, to_json(payment)::VARCHAR AS payment, note
		FROM read_parquet('%s') ORDER BY trip_id`, path))
	if len(rows) != len(nestedCases) {
		t.Fatalf("%d rows, want %d", len(rows), len(nestedCases))
	}
	for i, c := range nestedCases {
		r := rows[i]
		if r["trip_id"] != int64(i+1) {
			t.Errorf("row %d: trip_id %v", i, r["trip_id"])
		}
		for col, want := range map[string]string{"fare": c.fare, "stops": c.stops, "attrs": c.attrs, "payment": c.payment} {
			got, _ := r[col].(string)
			if r[col] == nil {
				got = "null"
			}
			if !sameJSON(t, got, want) {
				t.Errorf("trip %d %s: DuckDB reads %s, want %s", i+1, col, got, want)
			}
		}
	}
	// The schema is the standard one: LIST and MAP annotations, columns in
	// declared order.
	cols := duckdb.Query(t, fmt.Sprintf(`SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('%s'))`, path))
	wantTypes := []string{"BIGINT", "STRUCT(amount DECIMAL(10,2), tip DOUBLE, extras DOUBLE[])", "STRUCT(\"zone\" INTEGER, tags VARCHAR[])[]",
		"MAP(VARCHAR, BIGINT)", "STRUCT(\"type\" VARCHAR, card STRUCT(last4 VARCHAR))", "VARCHAR"}
	for i, c := range cols {
		if i < len(wantTypes) && c["column_type"] != wantTypes[i] {
			t.Errorf("column %v is %v, want %s", c["column_name"], c["column_type"], wantTypes[i])
		}
	}
}

func sameJSON(t *testing.T, a, b string) bool {
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Errorf("%s: %v", a, err)
		return false
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Errorf("%s: %v", b, err)
		return false
	}
	return reflect.DeepEqual(x, y)
}

// TestDuckDBReadsWideTypes checks the bytes of wide decimals, times, UUIDs and
// JSON text against DuckDB's reading of them.
func TestDuckDBReadsWideTypes(t *testing.T) {
	if err := duckdb.Available(); err != nil {
		t.Skip(err)
	}
	s, err := New([]conf.Field{
		{Name: "id", Type: "int32"},
		{Name: "d38", Type: "decimal", Precision: 38, Scale: 10},
		{Name: "d22", Type: "decimal", Precision: 22, Scale: 2},
		{Name: "t", Type: "time"},
		{Name: "u", Type: "uuid"},
		{Name: "j", Type: "json"},
		{Name: "l", Type: "list", Items: &conf.Field{Type: "decimal", Precision: 30, Scale: 3}},
	})
	if err != nil {
		t.Fatal(err)
	}
	path := writeParquet(t, s, t.TempDir(),
		`{"id":1,"d38":"1234567890123456789012345678.0123456789","d22":"-12345678901234567890.12","t":"13:45:07.123456","u":"123e4567-e89b-12d3-a456-426614174000","j":{"a":[1,"x"]},"l":["1.5","-999999999999999999999999999.999"]}`,
		`{"id":2,"d38":"-9999999999999999999999999999.9999999999","d22":0,"t":"00:00:00","u":"FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF","j":"text","l":[]}`,
		`{"id":3}`)
	rows := duckdb.Query(t, fmt.Sprintf(`SELECT id, d38::VARCHAR AS d38, d22::VARCHAR AS d22, t::VARCHAR AS t, u::VARCHAR AS u, j::VARCHAR AS j,
		l::VARCHAR AS l, typeof(d38) AS d38_type, typeof(t) AS t_type, typeof(u) AS u_type, typeof(j) AS j_type
		FROM read_parquet('%s') ORDER BY id`, path))
	want := []map[string]any{
		{"id": int64(1), "d38": "1234567890123456789012345678.0123456789", "d22": "-12345678901234567890.12", "t": "13:45:07.123456",
			"u": "123e4567-e89b-12d3-a456-426614174000", "j": `{"a":[1,"x"]}`, "l": "[1.500, -999999999999999999999999999.999]",
			"d38_type": "DECIMAL(38,10)", "t_type": "TIME", "u_type": "UUID", "j_type": "JSON"},
		{"id": int64(2), "d38": "-9999999999999999999999999999.9999999999", "d22": "0.00", "t": "00:00:00",
			"u": "ffffffff-ffff-ffff-ffff-ffffffffffff", "j": `"text"`, "l": "[]",
			"d38_type": "DECIMAL(38,10)", "t_type": "TIME", "u_type": "UUID", "j_type": "JSON"},
		{"id": int64(3), "d38": nil, "d22": nil, "t": nil, "u": nil, "j": nil, "l": nil,
			"d38_type": "DECIMAL(38,10)", "t_type": "TIME", "u_type": "UUID", "j_type": "JSON"},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("DuckDB reads\n%v\nwant\n%v", rows, want)
	}
}
