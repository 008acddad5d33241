package buckets

import (
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/config/conf"
)

func TestConditionMatch(t *testing.T) {
	s := taxiSchema(t)
	yellow := decode(t, s, yellowTrip)
	green := decode(t, s, withField("type", `"green"`))
	nullType := decode(t, s, withField("type", "null"))
	tests := []struct {
		name string
		cond *conf.Condition
		want map[string]bool // row name -> match
	}{
		{"nil matches all", nil, map[string]bool{"yellow": true, "green": true, "null": true}},
		{"string", &conf.Condition{Field: "type", In: conf.StringList{"yellow", "fhv"}}, map[string]bool{"yellow": true, "green": false, "null": false}},
		{"int32", &conf.Condition{Field: "pickup_location_id", In: conf.StringList{"41"}}, map[string]bool{"yellow": true, "green": true, "null": true}},
		{"int32 miss", &conf.Condition{Field: "vendor_id", In: conf.StringList{"1", "3"}}, map[string]bool{"yellow": false}},
		{"int64", &conf.Condition{Field: "trip_id", In: conf.StringList{"1234567"}}, map[string]bool{"yellow": true}},
		{"bool", &conf.Condition{Field: "store_and_fwd", In: conf.StringList{"false"}}, map[string]bool{"yellow": true}},
		{"bool miss", &conf.Condition{Field: "store_and_fwd", In: conf.StringList{"true"}}, map[string]bool{"yellow": false}},
	}
	rows := map[string]parquet.Row{"yellow": yellow, "green": green, "null": nullType}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewCondition(tt.cond, s)
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tt.want {
				if got := c.Match(rows[name]); got != want {
					t.Errorf("%s: Match = %v, want %v", name, got, want)
				}
			}
		})
	}
}

func TestNewConditionErrors(t *testing.T) {
	s := taxiSchema(t)
	tests := []struct {
		cond *conf.Condition
		want string
	}{
		{&conf.Condition{Field: "ghost", In: conf.StringList{"x"}}, `unknown field "ghost"`},
		{&conf.Condition{Field: "type"}, "at least one value"},
		{&conf.Condition{Field: "vendor_id", In: conf.StringList{"two"}}, `"two" is not an integer`},
		{&conf.Condition{Field: "store_and_fwd", In: conf.StringList{"1"}}, `"1" is not true or false`},
		{&conf.Condition{Field: "pickup_datetime", In: conf.StringList{"2018"}}, "timestamp field"},
	}
	for _, tt := range tests {
		_, err := NewCondition(tt.cond, s)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: err = %v, want %q", tt.cond, err, tt.want)
		}
	}
}
