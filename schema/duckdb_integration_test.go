//go:build integration

package schema

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/parquet-go/parquet-go"

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
