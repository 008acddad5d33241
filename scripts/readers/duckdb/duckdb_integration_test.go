//go:build integration

package duckdb

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

// trip has the column kinds sinkd writes: a plain int64, a millisecond
// timestamp, decimals stored as INT32 (precision up to 9) and as INT64 (up to
// 18) as the Parquet spec has them, an optional string.
type trip struct {
	TripID         int64     `parquet:"trip_id"`
	PickupDatetime time.Time `parquet:"pickup_datetime,timestamp(millisecond)"`
	AmountCents    int32     `parquet:"amount,decimal(2:9)"`
	TotalCents     int64     `parquet:"total,decimal(2:18)"`
	Note           *string   `parquet:"note,optional"`
}

type partitionFile struct {
	path  string // relative to the dataset root, Hive-style
	typ   string
	dt    string
	trips []trip
}

func ptr(s string) *string { return &s }

func testDataset() []partitionFile {
	day1 := time.Date(2018, 1, 1, 8, 15, 30, 250_000_000, time.UTC)
	day2 := time.Date(2018, 1, 2, 23, 59, 59, 999_000_000, time.UTC)
	return []partitionFile{
		{
			path: "type=yellow/dt=2018-01-01/a.parquet", typ: "yellow", dt: "2018-01-01",
			trips: []trip{
				{TripID: 1, PickupDatetime: day1, AmountCents: 1234, TotalCents: 1234, Note: ptr("airport")},
				{TripID: 2, PickupDatetime: day1.Add(time.Minute), AmountCents: -550, TotalCents: -99_999_999_999_999_999},
				{TripID: 3, PickupDatetime: day1.Add(time.Hour), AmountCents: 999_999_999, TotalCents: 99_999_999_999_999_999, Note: ptr("")},
			},
		},
		{
			path: "type=green/dt=2018-01-02/b.parquet", typ: "green", dt: "2018-01-02",
			trips: []trip{
				{TripID: 4, PickupDatetime: day2, AmountCents: 1, TotalCents: 100},
				{TripID: 5, PickupDatetime: day2.Add(-time.Second), AmountCents: 0, TotalCents: 0, Note: ptr("cash")},
			},
		},
	}
}

// decimal is the float64 a Go test gets for a decimal with this unscaled
// value and scale: query.js prints DuckDB's exact decimal text, which the
// decoder parses.
func decimal(unscaled int64, scale int) float64 {
	digits := strconv.FormatInt(unscaled, 10)
	sign := ""
	if unscaled < 0 {
		sign, digits = "-", digits[1:]
	}
	if len(digits) <= scale {
		digits = strings.Repeat("0", scale-len(digits)+1) + digits
	}
	text := sign + digits[:len(digits)-scale] + "." + digits[len(digits)-scale:]
	f, err := strconv.ParseFloat(text, 64)
	if err != nil {
		panic(err)
	}
	return f
}

func writeDataset(t *testing.T, root string, files []partitionFile) {
	t.Helper()
	for _, f := range files {
		path := filepath.Join(root, filepath.FromSlash(f.path))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := parquet.WriteFile(path, f.trips); err != nil {
			t.Fatalf("writing %s: %v", path, err)
		}
	}
}

func TestHivePartitionedParquet(t *testing.T) {
	root := t.TempDir()
	files := testDataset()
	writeDataset(t, root, files)
	source := fmt.Sprintf("read_parquet('%s/**/*.parquet', hive_partitioning = true)", root)

	t.Run("partition columns and counts", func(t *testing.T) {
		got := Query(t, "SELECT type, dt, count(*) AS n FROM "+source+" GROUP BY ALL ORDER BY type, dt")
		var want []map[string]any
		for _, f := range files {
			want = append(want, map[string]any{"type": f.typ, "dt": f.dt, "n": int64(len(f.trips))})
		}
		sortByType(want)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("partitions:\n got %#v\nwant %#v", got, want)
		}
	})

	t.Run("logical types", func(t *testing.T) {
		got := Query(t, `SELECT typeof(pickup_datetime) AS ts, typeof(amount) AS amount, typeof(total) AS total, typeof(note) AS note
			FROM `+source+` LIMIT 1`)
		// parquet-go marks timestamps as UTC-adjusted, which DuckDB reads as
		// TIMESTAMPTZ; a plain BIGINT here would mean the annotation was lost.
		want := []map[string]any{{"ts": "TIMESTAMP WITH TIME ZONE", "amount": "DECIMAL(9,2)", "total": "DECIMAL(18,2)", "note": "VARCHAR"}}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("column types:\n got %v\nwant %v", got, want)
		}
	})

	t.Run("values", func(t *testing.T) {
		got := Query(t, "SELECT trip_id, pickup_datetime, amount, total, note, type, dt FROM "+source+" ORDER BY trip_id")
		var want []map[string]any
		for _, f := range files {
			for _, tr := range f.trips {
				var note any
				if tr.Note != nil {
					note = *tr.Note
				}
				want = append(want, map[string]any{
					"trip_id":         tr.TripID,
					"pickup_datetime": tr.PickupDatetime.UTC().Format(time.RFC3339Nano),
					"amount":          decimal(int64(tr.AmountCents), 2),
					"total":           decimal(tr.TotalCents, 2),
					"note":            note,
					"type":            f.typ,
					"dt":              f.dt,
				})
			}
		}
		if len(got) != len(want) {
			t.Fatalf("got %d rows, want %d: %v", len(got), len(want), got)
		}
		for i := range want {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Errorf("row %d:\n got %#v\nwant %#v", i, got[i], want[i])
			}
		}
	})
}

func sortByType(rows []map[string]any) {
	for i := 1; i < len(rows); i++ {
		for j := i; j > 0 && rows[j]["type"].(string) < rows[j-1]["type"].(string); j-- {
			rows[j], rows[j-1] = rows[j-1], rows[j]
		}
	}
}

// A failing query must surface DuckDB's own message, or tests built on this
// harness could not tell a missing file from a wrong count.
func TestRunReportsDuckDBErrors(t *testing.T) {
	tests := []struct {
		name string
		sql  string
		want string
	}{
		{name: "no files", sql: fmt.Sprintf("SELECT * FROM read_parquet('%s/*.parquet')", t.TempDir()), want: "No files found"},
		{name: "syntax", sql: "SELEKT 1", want: "syntax error"},
		{name: "not parquet", sql: fmt.Sprintf("SELECT * FROM read_parquet('%s')", notParquet(t)), want: "parquet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), queryTimeout)
			defer cancel()
			rows, err := Run(ctx, tt.sql)
			if err == nil {
				t.Fatalf("Run(%q) = %v, want an error", tt.sql, rows)
			}
			if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tt.want)) {
				t.Fatalf("Run(%q) error = %v, want one mentioning %q", tt.sql, err, tt.want)
			}
		})
	}
}

func notParquet(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "x.parquet")
	if err := os.WriteFile(path, []byte("not a parquet file"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAvailable(t *testing.T) {
	if err := Available(); err != nil {
		t.Fatal(err)
	}
}

// TestValueConversion pins what query.js and the decoder make of each SQL
// type, end to end through DuckDB.
func TestValueConversion(t *testing.T) {
	tests := []struct {
		expr string
		want any
	}{
		{"42::INTEGER", int64(42)},
		{"9007199254740993::BIGINT", int64(9007199254740993)},
		{"(-9223372036854775807 - 1)::BIGINT", int64(-9223372036854775808)},
		{"18446744073709551615::UBIGINT", "18446744073709551615"},
		{"0::DECIMAL(9,2)", 0.0},
		{"-5.5::DECIMAL(9,2)", -5.5},
		{"12.34::DECIMAL(18,2)", 12.34},
		{"7::DECIMAL(9,0)", int64(7)},
		{"1::DOUBLE", 1.0},
		{"0.25::FLOAT", 0.25},
		{"'nan'::DOUBLE", "NaN"},
		{"TIMESTAMP '2018-01-01 01:02:03.456789'", "2018-01-01T01:02:03.456789Z"},
		{"TIMESTAMP_MS '2018-01-01 01:02:03.456'", "2018-01-01T01:02:03.456Z"},
		{"TIMESTAMP_NS '2018-01-01 01:02:03.000000001'", "2018-01-01T01:02:03.000000001Z"},
		{"TIMESTAMP '1969-12-31 23:59:59.5'", "1969-12-31T23:59:59.5Z"},
		{"TIMESTAMPTZ '2018-01-01 01:02:03+02'", "2017-12-31T23:02:03Z"},
		{"DATE '2018-01-01'", "2018-01-01"},
		{"'x\"y'::VARCHAR", `x"y`},
		{"true", true},
		{"NULL::DECIMAL(9,2)", nil},
		{"[1, NULL]::BIGINT[]", []any{int64(1), nil}},
		{"{'a': 1.5::DOUBLE, 'b': 2::BIGINT}", map[string]any{"a": 1.5, "b": int64(2)}},
	}
	// One query for all cases: each query starts a node process.
	var cols []string
	for i, tt := range tests {
		cols = append(cols, fmt.Sprintf("%s AS c%d", tt.expr, i))
	}
	rows := Query(t, "SELECT "+strings.Join(cols, ", "))
	if len(rows) != 1 {
		t.Fatalf("got %d rows, want 1: %v", len(rows), rows)
	}
	for i, tt := range tests {
		if got := rows[0][fmt.Sprintf("c%d", i)]; !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s = %#v, want %#v", tt.expr, got, tt.want)
		}
	}
}
