package buckets

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // tests must not depend on the machine's zoneinfo

	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/schema"
)

// taxiSchema is the taxi-trip schema of DESIGN §10, plus a date field.
func taxiSchema(t testing.TB) *schema.Schema {
	t.Helper()
	s, err := schema.New([]conf.Field{
		{Name: "trip_id", Type: "int64"},
		{Name: "type", Type: "string"},
		{Name: "vendor_id", Type: "int32"},
		{Name: "pickup_datetime", Type: "timestamp", Required: true, Unit: "micros"},
		{Name: "dropoff_datetime", Type: "timestamp", Unit: "nanos"},
		{Name: "pickup_location_id", Type: "int32", Required: true},
		{Name: "dropoff_location_id", Type: "int32"},
		{Name: "pickup_latitude", Type: "double"},
		{Name: "passenger_count", Type: "int32"},
		{Name: "fare_amount", Type: "decimal", Precision: 10, Scale: 2},
		{Name: "payment_type", Type: "string"},
		{Name: "store_and_fwd", Type: "bool"},
		{Name: "service_date", Type: "date"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const yellowTrip = `{"trip_id":1234567,"type":"yellow","vendor_id":2,
 "pickup_datetime":"2018-01-01T00:21:05Z","dropoff_datetime":"2018-01-01T00:24:23Z",
 "pickup_location_id":41,"dropoff_location_id":24,"pickup_latitude":40.8012,
 "passenger_count":1,"fare_amount":4.5,"payment_type":"credit","store_and_fwd":false,
 "service_date":"2017-12-31"}`

func decode(t testing.TB, s *schema.Schema, value string) parquet.Row {
	t.Helper()
	row, err := s.NewDecoder().Decode([]byte(value), nil)
	if err != nil {
		t.Fatal(err)
	}
	return row
}

// withField returns the yellow trip with one key's JSON value replaced.
func withField(key, value string) string {
	out := make([]string, 0, 20)
	for _, kv := range strings.Split(yellowTrip, ",") {
		if strings.HasPrefix(strings.TrimSpace(kv), `"`+key+`"`) {
			kv = `"` + key + `":` + value
		}
		out = append(out, kv)
	}
	return strings.Join(out, ",")
}

func TestAppend(t *testing.T) {
	s := taxiSchema(t)
	broker := time.Date(2018, 1, 2, 3, 4, 5, 0, time.UTC)
	now := time.Date(2024, 6, 30, 23, 30, 0, 0, time.UTC)
	tests := []struct {
		name  string
		tmpl  string
		raw   bool
		et    conf.EventTime
		tz    string
		value string // default yellowTrip
		want  string
	}{
		{name: "reference assigner", tmpl: "pickup_location={pickup_location_id:%03d}/year={pickup_datetime:yyyy}/month={pickup_datetime:MM}", want: "pickup_location=041/year=2018/month=01"},
		{name: "type and day", tmpl: "type={type}/dt={pickup_datetime:yyyy-MM-dd}", want: "type=yellow/dt=2018-01-01"},
		{name: "plain ints", tmpl: "{trip_id}/{vendor_id:%d}/{passenger_count:%05d}", want: "1234567/2/00001"},
		{name: "negative zero pad like fmt", tmpl: "{vendor_id:%04d}", value: withField("vendor_id", "-7"), want: "-007"},
		{name: "bool", tmpl: "fwd={store_and_fwd}", want: "fwd=false"},
		{name: "date default layout", tmpl: "d={service_date}", want: "d=2017-12-31"},
		{name: "date ignores time zone", tmpl: "{service_date:yyyy/MM/dd}", tz: "Asia/Tokyo", want: "2017/12/31"},
		{name: "all pattern letters", tmpl: "{pickup_datetime:yyyy-MM-dd'T'HH:mm:ss}", want: "2018-01-01T00:21:05"},
		{name: "quoted quote", tmpl: "{pickup_datetime:yyyy''MM}", want: "2018'01"},
		{name: "nanos field", tmpl: "{dropoff_datetime:HH-mm-ss}", want: "00-24-23"},
		{name: "zone shifts back across midnight", tmpl: "dt={pickup_datetime:yyyy-MM-dd}/h={pickup_datetime:HH}", tz: "America/New_York", want: "dt=2017-12-31/h=19"},
		{name: "zone shifts forward", tmpl: "dt={pickup_datetime:yyyy-MM-dd HH}", tz: "Asia/Kolkata", value: withField("pickup_datetime", `"2018-01-01T18:45:00Z"`), want: "dt=2018-01-02 00"},
		{name: "event time from field", tmpl: "{@time:yyyy/MM/dd/HH}", et: conf.EventTime{Source: "field", Field: "pickup_datetime"}, want: "2018/01/01/00"},
		{name: "event time field by default", tmpl: "{@time:yyyy}", et: conf.EventTime{Field: "service_date"}, want: "2017"},
		{name: "broker time", tmpl: "{@time:yyyy-MM-dd/HH}", et: conf.EventTime{Source: "broker"}, want: "2018-01-02/03"},
		{name: "broker time by default", tmpl: "{@time:mm:ss}", want: "04:05"},
		{name: "broker time in zone", tmpl: "{@time:yyyy-MM-dd}", et: conf.EventTime{Source: "broker"}, tz: "Pacific/Honolulu", want: "2018-01-01"},
		{name: "processing time", tmpl: "{@time:yyyy-MM-dd}", et: conf.EventTime{Source: "processing"}, tz: "Europe/Berlin", want: "2024-07-01"},
		{name: "escaping", tmpl: "type={type}", value: withField("type", `"a/b=c%d#e\\f{g}h\u0001i:j"`), want: "type=a%2Fb%3Dc%25d%23e%5Cf%7Bg%7Dh%01i%3Aj"},
		{name: "non-ASCII kept", tmpl: "p={payment_type}", value: withField("payment_type", `"carte bancaire é"`), want: "p=carte bancaire é"},
		{name: "empty string", tmpl: "type={type}", value: withField("type", `""`), want: "type=__HIVE_DEFAULT_PARTITION__"},
		{name: "raw id", tmpl: "{trip_id}", raw: true, want: "1234567"},
		{name: "raw index", tmpl: "trips-{type}-{pickup_datetime:yyyy.MM}", raw: true, want: "trips-yellow-2018.01"},
		{name: "raw keeps bytes", tmpl: "{type}", raw: true, value: withField("type", `"a/b=c"`), want: "a/b=c"},
		{name: "raw empty", tmpl: "x{type}y", raw: true, value: withField("type", `""`), want: "xy"},
		{name: "literal only", tmpl: "static/prefix", want: "static/prefix"},
		{name: "empty template", tmpl: "", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			compile := Compile
			if tt.raw {
				compile = CompileRaw
			}
			tmpl, err := compile(tt.tmpl, s, tt.et, tt.tz)
			if err != nil {
				t.Fatal(err)
			}
			value := tt.value
			if value == "" {
				value = yellowTrip
			}
			rec := &record.Record{Value: []byte(value), Timestamp: broker}
			got, err := tmpl.Append([]byte("prefix:"), decode(t, s, value), rec, now)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != "prefix:"+tt.want {
				t.Errorf("got %q, want %q", got, "prefix:"+tt.want)
			}
			if tmpl.String() != tt.tmpl {
				t.Errorf("String() = %q", tmpl.String())
			}
		})
	}
}

func TestAppendIntMatchesFmt(t *testing.T) {
	for _, n := range []int64{0, 1, -1, 7, -7, 41, 999, -1000, 1 << 40, -1 << 63, 1<<63 - 1} {
		for _, width := range []int{0, 1, 3, 5, 20} {
			want := fmt.Sprintf("%0*d", width, n)
			if got := string(appendInt(nil, n, width)); got != want {
				t.Errorf("appendInt(%d, %d) = %q, want %q", n, width, got, want)
			}
		}
	}
}

func TestAppendErrors(t *testing.T) {
	s := taxiSchema(t)
	tests := []struct {
		name   string
		tmpl   string
		et     conf.EventTime
		value  string
		broker time.Time
		class  string
		field  string
	}{
		{name: "null optional", tmpl: "type={type}", value: withField("type", "null"), class: ClassMissingField, field: "type"},
		{name: "absent optional", tmpl: "{dropoff_location_id:%03d}", value: `{"pickup_datetime":"2018-01-01T00:00:00Z","pickup_location_id":1}`, class: ClassMissingField, field: "dropoff_location_id"},
		{name: "null event time field", tmpl: "{@time:yyyy}", et: conf.EventTime{Field: "dropoff_datetime"}, value: withField("dropoff_datetime", "null"), class: ClassMissingField, field: "dropoff_datetime"},
		{name: "no broker time", tmpl: "{@time:yyyy}", et: conf.EventTime{Source: "broker"}, class: ClassBadTime, field: "@time"},
		{name: "broker year 10000", tmpl: "{@time:yyyy}", et: conf.EventTime{Source: "broker"}, broker: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), class: ClassBadTime, field: "@time"},
		{name: "broker negative year", tmpl: "{@time:yyyy}", et: conf.EventTime{Source: "broker"}, broker: time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC), class: ClassBadTime, field: "@time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := Compile(tt.tmpl, s, tt.et, "")
			if err != nil {
				t.Fatal(err)
			}
			value := tt.value
			if value == "" {
				value = yellowTrip
			}
			_, err = tmpl.Append(nil, decode(t, s, value), &record.Record{Timestamp: tt.broker}, time.Now())
			var be *Error
			if !errors.As(err, &be) || be.Class != tt.class || be.Field != tt.field {
				t.Fatalf("err = %v, want class %s field %s", err, tt.class, tt.field)
			}
			if !strings.Contains(be.Error(), tt.field) {
				t.Errorf("message %q does not name the field", be.Error())
			}
		})
	}
}

func TestAppendShortRowIsMissingField(t *testing.T) {
	s := taxiSchema(t)
	tmpl, err := Compile("{type}", s, conf.EventTime{}, "")
	if err != nil {
		t.Fatal(err)
	}
	var be *Error
	if _, err := tmpl.Append(nil, parquet.Row{}, nil, time.Time{}); !errors.As(err, &be) || be.Class != ClassMissingField {
		t.Errorf("err = %v", err)
	}
}

func TestCompileErrors(t *testing.T) {
	s := taxiSchema(t)
	tests := []struct {
		tmpl string
		et   conf.EventTime
		tz   string
		want []string // substrings of the error
	}{
		{tmpl: "a/{nope}", want: []string{`unknown field "nope"`, "offset 2"}},
		{tmpl: "x={type:yyyy}", want: []string{"time pattern", "string field", "offset 2"}},
		{tmpl: "{type:%03d}", want: []string{"%d formats apply to int32 and int64", "string field"}},
		{tmpl: "{trip_id:%3d}", want: []string{`unsupported format "%3d"`}},
		{tmpl: "{trip_id:%0d}", want: []string{`unsupported format "%0d"`}},
		{tmpl: "{trip_id:%05x}", want: []string{`unsupported format "%05x"`}},
		{tmpl: "a{type", want: []string{"'{' is not closed", "offset 1"}},
		{tmpl: "a{ty{pe}", want: []string{"'{' is not closed", "offset 1"}},
		{tmpl: "a}b", want: []string{"'}' without a matching '{'", "offset 1"}},
		{tmpl: "{}", want: []string{"empty placeholder"}},
		{tmpl: "{pickup_datetime}", want: []string{"needs a time pattern"}},
		{tmpl: "{pickup_datetime:yy}", want: []string{`unsupported "yy"`}},
		{tmpl: "{pickup_datetime:yyyy-MM-ddTHH}", want: []string{`unsupported "T"`}},
		{tmpl: "{pickup_datetime:'T}", want: []string{"unclosed quote"}},
		{tmpl: "{pickup_datetime:}", want: []string{"empty time pattern"}},
		{tmpl: "{fare_amount}", want: []string{"decimal field", "cannot be used"}},
		{tmpl: "{pickup_latitude}", want: []string{"double field"}},
		{tmpl: "{@time}", want: []string{"needs a time pattern"}},
		{tmpl: "{@time:yyyy}", et: conf.EventTime{Source: "field", Field: "ghost"}, want: []string{`event time field "ghost"`}},
		{tmpl: "{@time:yyyy}", et: conf.EventTime{Field: "type"}, want: []string{"is a string"}},
		{tmpl: "{@time:yyyy}", et: conf.EventTime{Source: "sundial"}, want: []string{`unknown event time source "sundial"`}},
		{tmpl: "{type}", tz: "Mars/Olympus_Mons", want: []string{`time zone "Mars/Olympus_Mons"`}},
	}
	for _, tt := range tests {
		t.Run(tt.tmpl, func(t *testing.T) {
			_, err := Compile(tt.tmpl, s, tt.et, tt.tz)
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

func TestDeterministic(t *testing.T) {
	s := taxiSchema(t)
	tests := []struct {
		tmpl string
		et   conf.EventTime
		want bool
	}{
		{"{type}/{pickup_datetime:yyyy}", conf.EventTime{}, true},
		{"{@time:yyyy}", conf.EventTime{Source: "broker"}, true},
		{"{@time:yyyy}", conf.EventTime{Field: "pickup_datetime"}, true},
		{"{@time:yyyy}", conf.EventTime{Source: "processing"}, false},
		{"{type}", conf.EventTime{Source: "processing"}, true}, // the time is configured but unused
	}
	for _, tt := range tests {
		tmpl, err := Compile(tt.tmpl, s, tt.et, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := tmpl.Deterministic(); got != tt.want {
			t.Errorf("%s with %+v: Deterministic() = %v", tt.tmpl, tt.et, got)
		}
	}
}

func TestAppendNoAllocations(t *testing.T) {
	s := taxiSchema(t)
	tmpl, err := Compile("type={type}/pickup_location={pickup_location_id:%03d}/dt={pickup_datetime:yyyy-MM-dd}/{@time:HH}", s,
		conf.EventTime{Field: "pickup_datetime"}, "America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	row := decode(t, s, yellowTrip)
	rec := &record.Record{Timestamp: time.Now()}
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(100, func() {
		if buf, err = tmpl.Append(buf[:0], row, rec, time.Time{}); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per Append, want 0", allocs)
	}
}

func BenchmarkAssign(b *testing.B) {
	s := taxiSchema(b)
	tmpl, err := Compile("pickup_location={pickup_location_id:%03d}/year={pickup_datetime:yyyy}/month={pickup_datetime:MM}", s, conf.EventTime{}, "")
	if err != nil {
		b.Fatal(err)
	}
	row := decode(b, s, yellowTrip)
	rec := &record.Record{}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		if buf, err = tmpl.Append(buf[:0], row, rec, time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
}
