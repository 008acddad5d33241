package buckets

import (
	"errors"
	"testing"
	"time"

	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/schema"
)

// nestedSchema puts lists before the nested fields that templates and
// conditions read, so that their values do not sit at their column index in
// a row.
func nestedSchema(t testing.TB) *schema.Schema {
	t.Helper()
	s, err := schema.New([]conf.Field{
		{Name: "stops", Type: "list", Items: &conf.Field{Type: "int32"}},
		{Name: "attrs", Type: "map", Values: &conf.Field{Type: "string"}},
		{Name: "payment", Type: "struct", Fields: []conf.Field{
			{Name: "type", Type: "string"},
			{Name: "card", Type: "struct", Fields: []conf.Field{{Name: "network", Type: "string"}}},
		}},
		{Name: "pickup", Type: "struct", Fields: []conf.Field{{Name: "at", Type: "timestamp", Required: true}}},
		{Name: "zone", Type: "int32"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTemplateNestedPaths(t *testing.T) {
	s := nestedSchema(t)
	et := conf.EventTime{Source: "field", Field: "pickup.at"}
	tmpl, err := Compile("payment={payment.type}/network={payment.card.network}/zone={zone:%03d}/dt={@time:yyyy-MM-dd}", s, et, "UTC")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ value, want, missing string }{
		{`{"stops":[1,2,3],"attrs":{"a":"x","b":"y"},"payment":{"type":"card","card":{"network":"visa"}},"pickup":{"at":"2018-01-02T03:04:05Z"},"zone":7}`,
			"payment=card/network=visa/zone=007/dt=2018-01-02", ""},
		{`{"stops":[],"payment":{"type":"cash"},"pickup":{"at":"2018-01-02T03:04:05Z"},"zone":7}`, "", "payment.card.network"},
		{`{"payment":null,"pickup":{"at":"2018-01-02T03:04:05Z"},"zone":7}`, "", "payment.type"},
	}
	for _, tt := range tests {
		row := decode(t, s, tt.value)
		got, err := tmpl.Append(nil, row, nil, time.Time{})
		var be *Error
		switch {
		case tt.missing != "":
			if !errors.As(err, &be) || be.Class != ClassMissingField || be.Field != tt.missing {
				t.Errorf("%s: %q, %v; want missing %s", tt.value, got, err, tt.missing)
			}
		case err != nil || string(got) != tt.want:
			t.Errorf("%s: %q, %v; want %q", tt.value, got, err, tt.want)
		}
	}
	for _, bad := range []string{"{stops}", "{payment}", "{payment.nope}", "{attrs.a}"} {
		if _, err := Compile(bad, s, et, "UTC"); err == nil {
			t.Errorf("Compile(%q) accepted", bad)
		}
	}
}

func TestConditionNestedPath(t *testing.T) {
	s := nestedSchema(t)
	c, err := NewCondition(&conf.Condition{Field: "payment.card.network", In: conf.StringList{"visa"}}, s)
	if err != nil {
		t.Fatal(err)
	}
	for value, want := range map[string]bool{
		`{"stops":[1,2,3,4,5],"attrs":{"k":"v"},"payment":{"card":{"network":"visa"}},"pickup":{"at":0}}`: true,
		`{"stops":[1],"payment":{"card":{"network":"amex"}},"pickup":{"at":0}}`:                           false,
		`{"payment":{"card":null},"pickup":{"at":0}}`:                                                     false,
	} {
		if got := c.Match(decode(t, s, value)); got != want {
			t.Errorf("%s: Match = %v, want %v", value, got, want)
		}
	}
}
