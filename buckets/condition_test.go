package buckets

import (
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/config"
)

func TestConditionMatch(t *testing.T) {
	s := taxiSchema(t)
	yellow := decode(t, s, yellowTrip)
	green := decode(t, s, withField("type", `"green"`))
	nullType := decode(t, s, withField("type", "null"))
	tests := []struct {
		name string
		cond *config.Condition
		want map[string]bool // row name -> match
	}{
		{"nil matches all", nil, map[string]bool{"yellow": true, "green": true, "null": true}},
		{"string", &config.Condition{Field: "type", In: config.StringList{"yellow", "fhv"}}, map[string]bool{"yellow": true, "green": false, "null": false}},
		{"int32", &config.Condition{Field: "pickup_location_id", In: config.StringList{"41"}}, map[string]bool{"yellow": true, "green": true, "null": true}},
		{"int32 miss", &config.Condition{Field: "vendor_id", In: config.StringList{"1", "3"}}, map[string]bool{"yellow": false}},
		{"int64", &config.Condition{Field: "trip_id", In: config.StringList{"1234567"}}, map[string]bool{"yellow": true}},
		{"bool", &config.Condition{Field: "store_and_fwd", In: config.StringList{"false"}}, map[string]bool{"yellow": true}},
		{"bool miss", &config.Condition{Field: "store_and_fwd", In: config.StringList{"true"}}, map[string]bool{"yellow": false}},
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
		cond *config.Condition
		want string
	}{
		{&config.Condition{Field: "ghost", In: config.StringList{"x"}}, `unknown field "ghost"`},
		{&config.Condition{Field: "type"}, "at least one value"},
		{&config.Condition{Field: "vendor_id", In: config.StringList{"two"}}, `"two" is not an integer`},
		{&config.Condition{Field: "store_and_fwd", In: config.StringList{"1"}}, `"1" is not true or false`},
		{&config.Condition{Field: "pickup_datetime", In: config.StringList{"2018"}}, "timestamp field"},
	}
	for _, tt := range tests {
		_, err := NewCondition(tt.cond, s)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: err = %v, want %q", tt.cond, err, tt.want)
		}
	}
}
