package buckets

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/schema"
)

// FuzzAssign decodes a value and renders it through a fuzzed template and a
// fixed Hive template. It checks that nothing panics, that failures are
// classified, and that Hive escaping round-trips and never adds path levels or
// key=value pairs.
func FuzzAssign(f *testing.F) {
	f.Add([]byte(yellowTrip), "pickup_location={pickup_location_id:%03d}/year={pickup_datetime:yyyy}/month={pickup_datetime:MM}")
	f.Add([]byte(withField("type", `"a/b=c%\u0000é"`)), "type={type}/dt={pickup_datetime:yyyy-MM-dd}")
	f.Add([]byte(withField("type", `""`)), "{@time:yyyy'T'HH}/{service_date}")
	f.Add([]byte(withField("pickup_datetime", `"9999-12-31T23:59:59Z"`)), "{pickup_datetime:yyyy}{store_and_fwd}{trip_id:%020d}")
	f.Add([]byte(`{"pickup_datetime":"0001-01-01T00:00:00Z","pickup_location_id":-1}`), "{@time:yyyy}")

	s := taxiSchema(f)
	d := s.NewDecoder()
	hive, err := Compile("type={type}/payment={payment_type}", s, conf.EventTime{}, "")
	if err != nil {
		f.Fatal(err)
	}
	typeCol, _ := s.Lookup("type")
	payCol, _ := s.Lookup("payment_type")
	broker := time.Date(2018, 1, 2, 3, 4, 5, 0, time.UTC)
	var row parquet.Row
	var buf []byte
	f.Fuzz(func(t *testing.T, value []byte, tmpl string) {
		row, err = d.Decode(value, row)
		if err != nil {
			return
		}
		rec := &record.Record{Value: value, Timestamp: broker}
		for _, compile := range []func(string, *schema.Schema, conf.EventTime, string) (*Template, error){Compile, CompileRaw} {
			tp, err := compile(tmpl, s, conf.EventTime{Field: "pickup_datetime"}, "America/New_York")
			if err != nil {
				continue
			}
			if buf, err = tp.Append(buf[:0], row, rec, broker); err != nil {
				var be *Error
				if !errors.As(err, &be) || (be.Class != ClassMissingField && be.Class != ClassBadTime) {
					t.Fatalf("unclassified error %v", err)
				}
			}
		}

		buf, err = hive.Append(buf[:0], row, rec, broker)
		if row[typeCol.Column].IsNull() || row[payCol.Column].IsNull() {
			if err == nil {
				t.Fatal("null field rendered without error")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		out := string(buf)
		if strings.Count(out, "/") != 1 || strings.Count(out, "=") != 2 {
			t.Fatalf("escaping let a separator through: %q", out)
		}
		typ, pay, _ := strings.Cut(out, "/")
		for _, c := range []struct {
			rendered string
			want     []byte
		}{{strings.TrimPrefix(typ, "type="), row[typeCol.Column].ByteArray()}, {strings.TrimPrefix(pay, "payment="), row[payCol.Column].ByteArray()}} {
			if len(c.want) == 0 {
				if c.rendered != HiveDefaultPartition {
					t.Fatalf("empty string rendered as %q", c.rendered)
				}
				continue
			}
			got, err := url.PathUnescape(c.rendered)
			if err != nil || got != string(c.want) {
				t.Fatalf("%q unescapes to %q (%v), want %q", c.rendered, got, err, c.want)
			}
		}
	})
}
