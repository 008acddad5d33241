package avro

import (
	"strings"
	"testing"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/schema"
)

const tripSchema = `{"type":"record","name":"Trip","namespace":"taxi","fields":[
 {"name":"trip_id","type":"long"},
 {"name":"type","type":{"type":"enum","name":"Kind","symbols":["yellow","green","fhv"]}},
 {"name":"pickup","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"day","type":["null",{"type":"int","logicalType":"date"}],"default":null},
 {"name":"fare","type":["null",{"type":"record","name":"Fare","fields":[
   {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
   {"name":"big","type":{"type":"fixed","name":"Big","size":16,"logicalType":"decimal","precision":38,"scale":4}},
   {"name":"tip","type":["null","float"],"default":null}]}],"default":null},
 {"name":"stops","type":{"type":"array","items":{"type":"record","name":"Stop","fields":[
   {"name":"zone","type":"int"},{"name":"at","type":{"type":"int","logicalType":"time-millis"}}]}}},
 {"name":"tags","type":{"type":"map","values":["null","string"]}},
 {"name":"id","type":{"type":"string","logicalType":"uuid"}},
 {"name":"again","type":["null","Fare"],"default":null},
 {"name":"ok","type":"boolean"},{"name":"x","type":"double"}]}`

func TestFieldsFromAvro(t *testing.T) {
	fields, err := Fields(tripSchema)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var render func(prefix string, fs []conf.Field)
	one := func(f conf.Field) string {
		s := f.Type
		switch f.Type {
		case "decimal":
			s += "(" + itoa(f.Precision) + "," + itoa(f.Scale) + ")"
		case "timestamp", "time":
			s += "(" + f.Unit + ")"
		}
		if f.Required {
			s += "*"
		}
		return s
	}
	render = func(prefix string, fs []conf.Field) {
		for _, f := range fs {
			got = append(got, prefix+f.Name+" "+one(f))
			render(prefix+f.Name+".", f.Fields)
			for _, e := range []*conf.Field{f.Items, f.Values} {
				if e != nil {
					got = append(got, prefix+f.Name+"[] "+one(*e))
					render(prefix+f.Name+"[].", e.Fields)
				}
			}
		}
	}
	render("", fields)
	want := []string{
		"trip_id int64*", "type string*", "pickup timestamp(micros)*", "day date",
		"fare struct", "fare.amount decimal(10,2)*", "fare.big decimal(38,4)*", "fare.tip float",
		"stops list*", "stops[] struct*", "stops[].zone int32*", "stops[].at time(millis)*",
		"tags map*", "tags[] string",
		"id uuid*",
		"again struct", "again.amount decimal(10,2)*", "again.big decimal(38,4)*", "again.tip float",
		"ok bool*", "x double*",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("derived\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// What is derived is a schema sinkd accepts.
	if _, err := schema.New(fields); err != nil {
		t.Errorf("schema.New refuses the derived fields: %v", err)
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

func TestFieldsRefused(t *testing.T) {
	for _, tt := range []struct{ schema, want string }{
		{`"long"`, "the top level is a long, not a record"},
		{`{"type":"record","name":"R","fields":[{"name":"u","type":["int","string"]}]}`, "u: a union of int, string has no column type"},
		{`{"type":"record","name":"R","fields":[{"name":"b","type":"bytes"}]}`, "b: bytes has no column type"},
		{`{"type":"record","name":"R","fields":[{"name":"f","type":{"type":"fixed","name":"F","size":4}}]}`, "f: fixed(4) without a decimal"},
		{`{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}`, "next: record Node contains itself"},
		{`{"type":"record","name":"R","fields":[{"name":"s","type":{"type":"record","name":"S","fields":[{"name":"n","type":"null"}]}}]}`, "s.n: null has no column type"},
		{`{"type":"record","name":"R","fields":[{"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":40,"scale":0}}]}`, "decimal(40,0) is wider than 38 digits"},
	} {
		_, err := Fields(tt.schema)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.schema, err, tt.want)
		}
	}
}
