package schema

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/config/conf"
)

func readTestdata(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no testdata in %s: %v", dir, err)
	}
	files := make(map[string][]byte, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(p)] = b
	}
	return files
}

func TestDecodeBadCorpus(t *testing.T) {
	tests := map[string]struct{ class, field string }{
		"malformed_json-truncated.json":                       {ClassMalformedJSON, ""},
		"malformed_json-trailing-comma.json":                  {ClassMalformedJSON, ""},
		"malformed_json-leading-zero.json":                    {ClassMalformedJSON, ""},
		"malformed_json-two-values.json":                      {ClassMalformedJSON, ""},
		"malformed_json-bom.json":                             {ClassMalformedJSON, ""},
		"not_utf8-string.json":                                {ClassNotUTF8, ""},
		"empty.json":                                          {ClassEmpty, ""},
		"empty-whitespace.json":                               {ClassEmpty, ""},
		"not_object-array.json":                               {ClassNotObject, ""},
		"not_object-string.json":                              {ClassNotObject, ""},
		"not_object-null.json":                                {ClassNotObject, ""},
		"type_mismatch-trip_id-string.json":                   {ClassTypeMismatch, "trip_id"},
		"type_mismatch-trip_id-fraction.json":                 {ClassTypeMismatch, "trip_id"},
		"type_mismatch-type-number.json":                      {ClassTypeMismatch, "type"},
		"type_mismatch-pickup_datetime-layout.json":           {ClassTypeMismatch, "pickup_datetime"},
		"type_mismatch-pickup_datetime-feb30.json":            {ClassTypeMismatch, "pickup_datetime"},
		"type_mismatch-store_and_fwd.json":                    {ClassTypeMismatch, "store_and_fwd"},
		"type_mismatch-fare_amount.json":                      {ClassTypeMismatch, "fare_amount"},
		"type_mismatch-pickup_location_id-object.json":        {ClassTypeMismatch, "pickup_location_id"},
		"missing_required-pickup_datetime.json":               {ClassMissingRequired, "pickup_datetime"},
		"missing_required-pickup_location_id.json":            {ClassMissingRequired, "pickup_location_id"},
		"null_required-pickup_datetime.json":                  {ClassNullRequired, "pickup_datetime"},
		"out_of_range-pickup_location_id-int32.json":          {ClassOutOfRange, "pickup_location_id"},
		"out_of_range-trip_id-int64.json":                     {ClassOutOfRange, "trip_id"},
		"out_of_range-pickup_datetime-year99999.json":         {ClassOutOfRange, "pickup_datetime"},
		"out_of_range-dropoff_datetime-year99999-millis.json": {ClassOutOfRange, "dropoff_datetime"},
		"out_of_range-fare_amount-scale.json":                 {ClassOutOfRange, "fare_amount"},
		"out_of_range-fare_amount-precision.json":             {ClassOutOfRange, "fare_amount"},
		"out_of_range-trip_distance.json":                     {ClassOutOfRange, "trip_distance"},
		"duplicate_key-type.json":                             {ClassDuplicateKey, "type"},
		"too_deep.json":                                       {ClassTooDeep, ""},
		"too_deep-huge.json":                                  {ClassTooDeep, ""},
	}
	files := readTestdata(t, "bad")
	if len(files) != len(tests) {
		t.Errorf("%d files in testdata/bad, %d in the table: keep them in step", len(files), len(tests))
	}
	d := taxiSchema(t).NewDecoder()
	for name, value := range files {
		t.Run(name, func(t *testing.T) {
			want, ok := tests[name]
			if !ok {
				t.Fatalf("no expectation for %s", name)
			}
			row, err := d.Decode(value, make(parquet.Row, 0, 32))
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if de.Class != want.class || de.Field != want.field {
				t.Errorf("class %q field %q, want %q %q (%v)", de.Class, de.Field, want.class, want.field, err)
			}
			if len(row) != 0 {
				t.Errorf("failed decode returned %d values", len(row))
			}
			if len(de.Error()) > 400 {
				t.Errorf("error message is %d bytes long", len(de.Error()))
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	d := taxiSchema(t).NewDecoder()
	_, err := d.Decode([]byte(`{"trip_id":"abc","pickup_datetime":"2018-01-01T00:00:00Z","pickup_location_id":1}`), nil)
	want := `field "trip_id": expected int64 (an integer), got string "abc"`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func TestDecodeGoodCorpus(t *testing.T) {
	s := taxiSchema(t)
	d := s.NewDecoder()
	for name, value := range readTestdata(t, "good") {
		t.Run(name, func(t *testing.T) {
			row, err := d.Decode(value, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkRow(t, s, row)
		})
	}
}

// checkRow asserts one value per column, in column order, with levels that
// match the field's repetition.
func checkRow(t testing.TB, s *Schema, row parquet.Row) {
	t.Helper()
	if len(row) != len(s.Fields()) {
		t.Fatalf("%d values, want %d", len(row), len(s.Fields()))
	}
	for i, v := range row {
		f := s.Fields()[i]
		if v.Column() != i || v.RepetitionLevel() != 0 {
			t.Fatalf("value %d: column %d, repetition %d", i, v.Column(), v.RepetitionLevel())
		}
		switch {
		case f.Required && (v.IsNull() || v.DefinitionLevel() != 0):
			t.Fatalf("required %s: null=%v def=%d", f.Name, v.IsNull(), v.DefinitionLevel())
		case !f.Required && v.IsNull() && v.DefinitionLevel() != 0:
			t.Fatalf("null %s: def=%d", f.Name, v.DefinitionLevel())
		case !f.Required && !v.IsNull() && v.DefinitionLevel() != 1:
			t.Fatalf("present %s: def=%d", f.Name, v.DefinitionLevel())
		}
	}
}

// valueOf returns the value of the named column in row.
func valueOf(t *testing.T, s *Schema, row parquet.Row, name string) parquet.Value {
	t.Helper()
	f, ok := s.Lookup(name)
	if !ok {
		t.Fatalf("no field %q", name)
	}
	return row[f.Column]
}

func TestDecodeTaxiValues(t *testing.T) {
	s := taxiSchema(t)
	d := s.NewDecoder()
	files := readTestdata(t, "good")
	row, err := d.Decode(files["yellow.json"], nil)
	if err != nil {
		t.Fatal(err)
	}
	pickup := time.Date(2018, 1, 1, 0, 21, 5, 0, time.UTC)
	checks := []struct {
		name string
		got  any
		want any
	}{
		{"trip_id", valueOf(t, s, row, "trip_id").Int64(), int64(1234567)},
		{"type", string(valueOf(t, s, row, "type").ByteArray()), "yellow"},
		{"vendor_id", valueOf(t, s, row, "vendor_id").Int32(), int32(2)},
		{"pickup_datetime", valueOf(t, s, row, "pickup_datetime").Int64(), pickup.UnixMicro()},
		{"dropoff_datetime", valueOf(t, s, row, "dropoff_datetime").Int64(), pickup.Add(198 * time.Second).UnixMilli()},
		{"pickup_location_id", valueOf(t, s, row, "pickup_location_id").Int32(), int32(41)},
		{"pickup_latitude", valueOf(t, s, row, "pickup_latitude").Double(), 40.8012},
		{"trip_distance", valueOf(t, s, row, "trip_distance").Float(), float32(0.5)},
		{"fare_amount", valueOf(t, s, row, "fare_amount").Int64(), int64(450)},
		{"tip_amount", valueOf(t, s, row, "tip_amount").Int64(), int64(100)},
		{"store_and_fwd", valueOf(t, s, row, "store_and_fwd").Boolean(), false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	row, err = d.Decode(files["green-offset-fraction.json"], row)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := valueOf(t, s, row, "pickup_datetime").Int64(), pickup.Add(-21*time.Minute+21*time.Minute).UnixMicro()+123456; got != want {
		t.Errorf("pickup with offset = %d, want %d", got, want)
	}
	if got := valueOf(t, s, row, "fare_amount").Int64(); got != 1250 {
		t.Errorf("fare_amount from string = %d, want 1250", got)
	}

	row, err = d.Decode(files["fhv-nulls.json"], row)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"trip_id", "vendor_id", "payment_type", "fare_amount", "store_and_fwd"} {
		if v := valueOf(t, s, row, name); !v.IsNull() {
			t.Errorf("%s = %v, want null", name, v)
		}
	}
}

func TestDecodeConversions(t *testing.T) {
	s, err := New([]conf.Field{
		{Name: "i32", Type: "int32"},
		{Name: "i64", Type: "int64"},
		{Name: "f", Type: "float"},
		{Name: "dbl", Type: "double"},
		{Name: "b", Type: "bool"},
		{Name: "s", Type: "string", From: "S"},
		{Name: "date", Type: "date"},
		{Name: "ts_s", Type: "timestamp", Unit: "millis", Input: "seconds"},
		{Name: "ts_us", Type: "timestamp", Unit: "millis", Input: "micros"},
		{Name: "ts_ns", Type: "timestamp", Unit: "nanos", Input: "millis"},
		{Name: "dec", Type: "decimal", Precision: 18, Scale: 4},
		{Name: "dec0", Type: "decimal", Precision: 3, Scale: 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	type get func(parquet.Value) any
	i32 := func(v parquet.Value) any { return v.Int32() }
	i64 := func(v parquet.Value) any { return v.Int64() }
	tests := []struct {
		json  string
		field string
		get   get
		want  any    // when class is ""
		class string // expected error class
	}{
		{`"i32":-2147483648`, "i32", i32, int32(math.MinInt32), ""},
		{`"i32":2147483647`, "i32", i32, int32(math.MaxInt32), ""},
		{`"i32":2147483648`, "i32", nil, nil, ClassOutOfRange},
		{`"i32":1e3`, "i32", i32, int32(1000), ""},
		{`"i32":2.0`, "i32", i32, int32(2), ""},
		{`"i32":2.5`, "i32", nil, nil, ClassTypeMismatch},
		{`"i32":"2"`, "i32", nil, nil, ClassTypeMismatch},
		{`"i32":true`, "i32", nil, nil, ClassTypeMismatch},
		{`"i64":-9223372036854775808`, "i64", i64, int64(math.MinInt64), ""},
		{`"i64":9223372036854775807`, "i64", i64, int64(math.MaxInt64), ""},
		{`"i64":-9223372036854775809`, "i64", nil, nil, ClassOutOfRange},
		{`"i64":1e19`, "i64", nil, nil, ClassOutOfRange},
		{`"i64":0.0000`, "i64", i64, int64(0), ""},
		{`"i64":-0`, "i64", i64, int64(0), ""},
		{`"f":1.5`, "f", func(v parquet.Value) any { return v.Float() }, float32(1.5), ""},
		{`"f":1e39`, "f", nil, nil, ClassOutOfRange},
		{`"dbl":-2.25e-3`, "dbl", func(v parquet.Value) any { return v.Double() }, -2.25e-3, ""},
		{`"dbl":1e309`, "dbl", nil, nil, ClassOutOfRange},
		{`"dbl":"1.5"`, "dbl", nil, nil, ClassTypeMismatch},
		{`"b":true`, "b", func(v parquet.Value) any { return v.Boolean() }, true, ""},
		{`"b":0`, "b", nil, nil, ClassTypeMismatch},
		{`"S":"caf\u00e9 \"x\""`, "s", func(v parquet.Value) any { return string(v.ByteArray()) }, `café "x"`, ""},
		{`"s":"ignored: the JSON key is S"`, "s", func(v parquet.Value) any { return v.IsNull() }, true, ""},
		{`"S":12`, "s", nil, nil, ClassTypeMismatch},
		{`"date":"1970-01-02"`, "date", i32, int32(1), ""},
		{`"date":"1969-12-31"`, "date", i32, int32(-1), ""},
		{`"date":"2000-02-29"`, "date", i32, int32(11016), ""},
		{`"date":"1900-02-29"`, "date", nil, nil, ClassTypeMismatch},
		{`"date":"2018-01-01T00:00:00Z"`, "date", nil, nil, ClassTypeMismatch},
		{`"date":"0000-12-31"`, "date", nil, nil, ClassOutOfRange},
		{`"date":"12018-01-01"`, "date", nil, nil, ClassOutOfRange},
		{`"ts_s":1514766065`, "ts_s", i64, int64(1514766065000), ""},
		{`"ts_s":1514766065.1239`, "ts_s", i64, int64(1514766065123), ""},
		{`"ts_s":"2018-01-01T00:21:05.1239Z"`, "ts_s", i64, int64(1514766065123), ""},
		{`"ts_s":"2018-01-01T00:21:05-05:30"`, "ts_s", i64, int64(1514766065000 + 5.5*3600*1000), ""},
		{`"ts_s":-1`, "ts_s", i64, int64(-1000), ""},
		{`"ts_s":253402300800`, "ts_s", nil, nil, ClassOutOfRange}, // 10000-01-01
		{`"ts_s":253402300799`, "ts_s", i64, int64(253402300799000), ""},
		{`"ts_s":"0001-01-01T00:00:00+00:01"`, "ts_s", nil, nil, ClassOutOfRange},
		{`"ts_s":"2018-01-01T24:00:00Z"`, "ts_s", nil, nil, ClassTypeMismatch},
		{`"ts_s":"2018-01-01T00:00:00"`, "ts_s", nil, nil, ClassTypeMismatch},
		{`"ts_s":true`, "ts_s", nil, nil, ClassTypeMismatch},
		{`"ts_us":1514766065123999`, "ts_us", i64, int64(1514766065123), ""},
		{`"ts_ns":1514766065123`, "ts_ns", i64, int64(1514766065123000000), ""},
		{`"ts_ns":"2262-04-12T00:00:00Z"`, "ts_ns", nil, nil, ClassOutOfRange},
		{`"ts_ns":"2018-01-01T00:21:05.123456789Z"`, "ts_ns", i64, int64(1514766065123456789), ""},
		{`"dec":12.3456`, "dec", i64, int64(123456), ""},
		{`"dec":"-0.5"`, "dec", i64, int64(-5000), ""},
		{`"dec":1.5e2`, "dec", i64, int64(1500000), ""},
		{`"dec":12.34560000000000000000`, "dec", i64, int64(123456), ""},
		{`"dec":12.34567`, "dec", nil, nil, ClassOutOfRange},
		{`"dec":99999999999999.9999`, "dec", i64, int64(999999999999999999), ""},
		{`"dec":100000000000000`, "dec", nil, nil, ClassOutOfRange},
		{`"dec":"1.2.3"`, "dec", nil, nil, ClassTypeMismatch},
		{`"dec":" 1"`, "dec", nil, nil, ClassTypeMismatch},
		{`"dec0":-999`, "dec0", i32, int32(-999), ""},
		{`"dec0":1000`, "dec0", nil, nil, ClassOutOfRange},
	}
	d := s.NewDecoder()
	for _, tt := range tests {
		t.Run(tt.json, func(t *testing.T) {
			row, err := d.Decode([]byte("{"+tt.json+"}"), nil)
			if tt.class != "" {
				var de *Error
				if !errors.As(err, &de) || de.Class != tt.class || de.Field != tt.field {
					t.Fatalf("err = %v, want class %s on %s", err, tt.class, tt.field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkRow(t, s, row)
			if got := tt.get(valueOf(t, s, row, tt.field)); got != tt.want {
				t.Errorf("got %v (%T), want %v (%T)", got, got, tt.want, tt.want)
			}
		})
	}
}

func TestParseRFC3339MatchesTime(t *testing.T) {
	inputs := []string{
		"2018-01-01T00:21:05Z", "1970-01-01T00:00:00Z", "1969-12-31T23:59:59.999999Z",
		"0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "2000-02-29T12:00:00+14:00",
		"2016-12-31T23:59:59-23:59", "1600-03-01T00:00:00.5Z", "2024-07-04T10:11:12.000001+05:45",
	}
	for _, in := range inputs {
		want, err := time.Parse(time.RFC3339Nano, in)
		if err != nil {
			t.Fatal(err)
		}
		got, st := parseRFC3339([]byte(in), Micros)
		if st != timeOK || got != want.Unix()*1e6+int64(want.Nanosecond()/1e3) {
			t.Errorf("%s: got %d (%d), want %d", in, got, st, want.UnixMicro())
		}
	}
}

func TestDecodeStringsStayValidUntilNextDecode(t *testing.T) {
	s := taxiSchema(t)
	d := s.NewDecoder()
	first, err := d.Decode([]byte(`{"type":"yellow","pickup_datetime":"2018-01-01T00:00:00Z","pickup_location_id":1}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	kept := first.Clone()
	if _, err := d.Decode([]byte(`{"type":"purple","pickup_datetime":"2018-01-01T00:00:00Z","pickup_location_id":1}`), nil); err != nil {
		t.Fatal(err)
	}
	if got := string(valueOf(t, s, kept, "type").ByteArray()); got != "yellow" {
		t.Errorf("cloned row changed: %q", got)
	}
}

func TestDecodeNoAllocations(t *testing.T) {
	s := taxiSchema(t)
	d := s.NewDecoder()
	value := readTestdata(t, "good")["yellow.json"]
	row := make(parquet.Row, 0, len(s.Fields()))
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		if row, err = d.Decode(value, row); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per Decode, want 0", allocs)
	}
}

func BenchmarkDecode(b *testing.B) {
	s := taxiSchema(b)
	d := s.NewDecoder()
	value := readTestdata(b, "good")["yellow.json"]
	row := make(parquet.Row, 0, len(s.Fields()))
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if row, err = d.Decode(value, row); err != nil {
			b.Fatal(err)
		}
	}
}

func TestExpectedMentionsUnits(t *testing.T) {
	f := Field{Kind: Timestamp, Input: Seconds}
	if !strings.Contains(expected(&f), "seconds") {
		t.Error(expected(&f))
	}
}
