package schema

import (
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/config/conf"
)

// taxiFields is the taxi-trip schema of DESIGN §10.
func taxiFields() []conf.Field {
	return []conf.Field{
		{Name: "trip_id", Type: "int64"},
		{Name: "type", Type: "string"},
		{Name: "vendor_id", Type: "int32"},
		{Name: "pickup_datetime", Type: "timestamp", Required: true, Unit: "micros"},
		{Name: "dropoff_datetime", Type: "timestamp", Unit: "millis", Input: "millis"},
		{Name: "pickup_location_id", Type: "int32", Required: true},
		{Name: "dropoff_location_id", Type: "int32"},
		{Name: "pickup_latitude", Type: "double"},
		{Name: "pickup_longitude", Type: "double"},
		{Name: "dropoff_latitude", Type: "double"},
		{Name: "dropoff_longitude", Type: "double"},
		{Name: "passenger_count", Type: "int32"},
		{Name: "trip_distance", Type: "float"},
		{Name: "fare_amount", Type: "decimal", Precision: 10, Scale: 2},
		{Name: "tip_amount", Type: "decimal", Precision: 10, Scale: 2},
		{Name: "tolls_amount", Type: "double"},
		{Name: "total_amount", Type: "double"},
		{Name: "payment_type", Type: "string"},
		{Name: "store_and_fwd", Type: "bool"},
	}
}

func taxiSchema(t testing.TB) *Schema {
	t.Helper()
	s, err := New(taxiFields())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewColumnsFollowParquetOrder(t *testing.T) {
	s := taxiSchema(t)
	cols := s.Parquet().Columns()
	if len(cols) != len(taxiFields()) {
		t.Fatalf("%d columns, want %d", len(cols), len(taxiFields()))
	}
	for i, f := range s.Fields() {
		if f.Column != i {
			t.Errorf("field %q: Column %d at index %d", f.Name, f.Column, i)
		}
		if cols[i][0] != f.Name {
			t.Errorf("column %d is %q in Parquet, %q in Fields", i, cols[i][0], f.Name)
		}
		got, ok := s.Lookup(f.Name)
		if !ok || got.Column != i {
			t.Errorf("Lookup(%q) = %+v, %v", f.Name, got, ok)
		}
	}
	// Columns keep the configured order (parquet.Group would sort them by
	// name, putting trip_id 17th).
	if f, _ := s.Lookup("trip_id"); f.Column != 0 {
		t.Errorf("trip_id is column %d; it is configured first", f.Column)
	}
	if _, ok := s.Lookup("nope"); ok {
		t.Error("Lookup found a field that does not exist")
	}
}

func TestNewNodeTypes(t *testing.T) {
	s, err := New([]conf.Field{
		{Name: "ts", Type: "timestamp", Unit: "nanos", Required: true},
		{Name: "d", Type: "date"},
		{Name: "small", Type: "decimal", Precision: 5, Scale: 2},
		{Name: "big", Type: "decimal", Precision: 18, Scale: 4},
		{Name: "s", Type: "string", From: "json_s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		optional bool
		logical  string
		physical parquet.Kind
	}{
		{"ts", false, "TIMESTAMP(isAdjustedToUTC=true,unit=NANOS)", parquet.Int64},
		{"d", true, "DATE", parquet.Int32},
		{"small", true, "DECIMAL(5,2)", parquet.Int32},
		{"big", true, "DECIMAL(18,4)", parquet.Int64},
		{"s", true, "STRING", parquet.ByteArray},
	}
	for _, tt := range tests {
		leaf, ok := s.Parquet().Lookup(tt.name)
		if !ok {
			t.Fatalf("no column %q", tt.name)
		}
		if leaf.Node.Optional() != tt.optional {
			t.Errorf("%s: optional = %v", tt.name, leaf.Node.Optional())
		}
		if got := leaf.Node.Type().LogicalType().String(); got != tt.logical {
			t.Errorf("%s: logical type %s, want %s", tt.name, got, tt.logical)
		}
		if got := leaf.Node.Type().Kind(); got != tt.physical {
			t.Errorf("%s: physical %v, want %v", tt.name, got, tt.physical)
		}
	}
	if f, _ := s.Lookup("s"); f.From != "json_s" {
		t.Errorf("From = %q", f.From)
	}
	if f, _ := s.Lookup("ts"); f.Unit != Nanos || f.Input != DefaultInput {
		t.Errorf("ts units = %v, %v", f.Unit, f.Input)
	}
}

func TestNewRejectsBadFields(t *testing.T) {
	tests := []struct {
		name   string
		fields []conf.Field
		want   []string
	}{
		{"none", nil, []string{"no fields"}},
		{"unknown type", []conf.Field{{Name: "a", Type: "uuid4"}}, []string{`unknown type "uuid4"`}},
		{"empty name", []conf.Field{{Type: "int32"}}, []string{"empty name"}},
		{"duplicate name", []conf.Field{{Name: "a", Type: "int32"}, {Name: "a", Type: "int64", From: "b"}}, []string{`duplicate name "a"`}},
		{"duplicate key", []conf.Field{{Name: "a", Type: "int32"}, {Name: "b", From: "a", Type: "int64"}}, []string{`JSON key "a" is already read by field "a"`}},
		{"unit", []conf.Field{{Name: "t", Type: "timestamp", Unit: "seconds"}}, []string{`unknown timestamp unit "seconds"`}},
		{"input", []conf.Field{{Name: "t", Type: "timestamp", Input: "nanos"}}, []string{`unknown timestamp input "nanos"`}},
		{"precision", []conf.Field{{Name: "d", Type: "decimal", Precision: 39}}, []string{"precision 39 out of range"}},
		{"scale", []conf.Field{{Name: "d", Type: "decimal", Precision: 4, Scale: 5}}, []string{"scale 5 out of range"}},
		{"every problem", []conf.Field{{Name: "a", Type: "x"}, {Name: "b", Type: "y"}}, []string{`"x"`, `"y"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.fields)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
