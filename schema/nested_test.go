package schema

import (
	"errors"
	"strings"
	"testing"

	"github.com/sinkd/sinkd/config/conf"
)

func nestedSchema(t testing.TB) *Schema {
	t.Helper()
	s, err := New([]conf.Field{
		{Name: "trip_id", Type: "int64", Required: true},
		{Name: "payment", Type: "struct", Fields: []conf.Field{
			{Name: "type", Type: "string"},
			{Name: "card", Type: "struct", Fields: []conf.Field{{Name: "last4", Type: "string", Required: true}}},
		}},
		{Name: "stops", Type: "list", Items: &conf.Field{Type: "struct", Fields: []conf.Field{
			{Name: "zone", Type: "int32", Required: true},
			{Name: "at", Type: "timestamp"},
		}}},
		{Name: "scores", Type: "list", Items: &conf.Field{Type: "int32", Required: true}},
		{Name: "attrs", Type: "map", Values: &conf.Field{Type: "bool"}},
		{Name: "note", Type: "string"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNestedLayout(t *testing.T) {
	s := nestedSchema(t)
	want := [][]string{
		{"trip_id"}, {"payment", "type"}, {"payment", "card", "last4"},
		{"stops", "list", "element", "zone"}, {"stops", "list", "element", "at"},
		{"scores", "list", "element"}, {"attrs", "key_value", "key"}, {"attrs", "key_value", "value"}, {"note"},
	}
	cols := s.Parquet().Columns()
	if strings.Join(flat(cols), " ") != strings.Join(flat(want), " ") {
		t.Fatalf("columns %v, want %v", cols, want)
	}
	for path, col := range map[string]int{"trip_id": 0, "payment.type": 1, "payment.card.last4": 2, "note": 8} {
		f, ok := s.Lookup(path)
		if !ok || f.Column != col || f.Path != path {
			t.Errorf("Lookup(%q) = column %d path %q, %v; want column %d", path, f.Column, f.Path, ok, col)
		}
	}
	for _, path := range []string{"stops.zone", "payment.nope", "trip_id.x", "attrs.key"} {
		if _, ok := s.Lookup(path); ok {
			t.Errorf("Lookup(%q) found a field", path)
		}
	}
}

func flat(paths [][]string) []string {
	var out []string
	for _, p := range paths {
		out = append(out, strings.Join(p, "."))
	}
	return out
}

// TestNestedLevels checks the repetition and definition levels of every value,
// column by column, against the Dremel encoding worked out by hand.
func TestNestedLevels(t *testing.T) {
	s := nestedSchema(t)
	d := s.NewDecoder()
	// level is "column:rep:def" or "column:rep:def=value" for a non-null value.
	tests := []struct{ value, want string }{
		{`{"trip_id":1}`, "0:0:0=1 1:0:0 2:0:0 3:0:0 4:0:0 5:0:0 6:0:0 7:0:0 8:0:0"},
		{`{"trip_id":1,"payment":{"type":"x","card":{"last4":"1234"}},"note":"n"}`,
			"0:0:0=1 1:0:2=x 2:0:2=1234 3:0:0 4:0:0 5:0:0 6:0:0 7:0:0 8:0:1=n"},
		{`{"trip_id":1,"payment":{"card":null}}`, "0:0:0=1 1:0:1 2:0:1 3:0:0 4:0:0 5:0:0 6:0:0 7:0:0 8:0:0"},
		{`{"trip_id":1,"stops":[],"scores":[],"attrs":{}}`, "0:0:0=1 1:0:0 2:0:0 3:0:1 4:0:1 5:0:1 6:0:1 7:0:1 8:0:0"},
		{`{"trip_id":1,"stops":[{"zone":4},null,{"zone":5,"at":0}],"scores":[7,8]}`,
			"0:0:0=1 1:0:0 2:0:0 3:0:3=4 3:1:2 3:1:3=5 4:0:3 4:1:2 4:1:4=0 5:0:2=7 5:1:2=8 6:0:0 7:0:0 8:0:0"},
		{`{"trip_id":1,"attrs":{"a":true,"b":null}}`, "0:0:0=1 1:0:0 2:0:0 3:0:0 4:0:0 5:0:0 6:0:2=a 6:1:2=b 7:0:3=true 7:1:2 8:0:0"},
	}
	for _, tt := range tests {
		row, err := d.Decode([]byte(tt.value), nil)
		if err != nil {
			t.Fatalf("%s: %v", tt.value, err)
		}
		var got []string
		for _, v := range row {
			l := itoa(v.Column()) + ":" + itoa(v.RepetitionLevel()) + ":" + itoa(v.DefinitionLevel())
			if !v.IsNull() {
				l += "=" + v.String()
			}
			got = append(got, l)
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.value, strings.Join(got, " "), tt.want)
		}
	}
}

func itoa(n int) string { return string(rune('0' + n)) }

// TestNestedErrors checks that a field problem names the field by its path,
// with list indexes and map keys.
func TestNestedErrors(t *testing.T) {
	s := nestedSchema(t)
	d := s.NewDecoder()
	tests := []struct{ value, class, field, msg string }{
		{`{"trip_id":1,"payment":{"card":{"last4":1234}}}`, ClassTypeMismatch, "payment.card.last4",
			`field "payment.card.last4": expected string, got number 1234`},
		{`{"trip_id":1,"payment":{"card":{}}}`, ClassMissingRequired, "payment.card.last4", ""},
		{`{"trip_id":1,"payment":[]}`, ClassTypeMismatch, "payment", ""},
		{`{"trip_id":1,"payment":{"type":"a","type":"b"}}`, ClassDuplicateKey, "payment.type", ""},
		{`{"trip_id":1,"payment":{},"payment":{}}`, ClassDuplicateKey, "payment", ""},
		{`{"trip_id":1,"stops":[{"zone":1},{"zone":"2"}]}`, ClassTypeMismatch, "stops[1].zone", ""},
		{`{"trip_id":1,"stops":[{"zone":1},{}]}`, ClassMissingRequired, "stops[1].zone", ""},
		{`{"trip_id":1,"stops":{}}`, ClassTypeMismatch, "stops", ""},
		{`{"trip_id":1,"scores":[1,null]}`, ClassNullRequired, "scores[1]", ""},
		{`{"trip_id":1,"scores":[1,3000000000]}`, ClassOutOfRange, "scores[1]", ""},
		{`{"trip_id":1,"attrs":{"a":true,"b":"yes"}}`, ClassTypeMismatch, `attrs["b"]`, ""},
		{`{"trip_id":1,"stops":[{"zone":1,"at":"2018-13-01T00:00:00Z"}]}`, ClassTypeMismatch, "stops[0].at", ""},
		// Problems with the value as a whole still win over field problems.
		{`{"trip_id":1,"stops":[{"zone":"x"}],}`, ClassMalformedJSON, "", ""},
		{`{"trip_id":1,"stops":[{"zone":1}` + strings.Repeat("[", 70) + `]}`, ClassTooDeep, "", ""},
		{`{"trip_id":1,"payment":{"x":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}}`, ClassTooDeep, "", ""},
	}
	for _, tt := range tests {
		_, err := d.Decode([]byte(tt.value), nil)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s: err %v, want %s", tt.value, err, tt.class)
			continue
		}
		if e.Class != tt.class || e.Field != tt.field {
			t.Errorf("%.60s: %s %q (%v), want %s %q", tt.value, e.Class, e.Field, e, tt.class, tt.field)
		}
		if tt.msg != "" && e.Error() != tt.msg {
			t.Errorf("message %q, want %q", e.Error(), tt.msg)
		}
	}
	// The decoder recovers: the next good value decodes.
	if _, err := d.Decode([]byte(`{"trip_id":1,"stops":[{"zone":1}]}`), nil); err != nil {
		t.Errorf("after errors: %v", err)
	}
}

func TestNestedConfigErrors(t *testing.T) {
	tests := []struct {
		field conf.Field
		want  string
	}{
		{conf.Field{Name: "s", Type: "struct"}, "a struct needs at least one field"},
		{conf.Field{Name: "l", Type: "list"}, "a list needs items"},
		{conf.Field{Name: "m", Type: "map"}, "a map needs values"},
		{conf.Field{Name: "x", Type: "int32", Items: &conf.Field{Type: "int32"}}, "items apply to list fields only"},
		{conf.Field{Name: "s", Type: "struct", Fields: []conf.Field{{Name: "a", Type: "int32"}, {Name: "a", Type: "string"}}}, `duplicate name "s.a"`},
		{conf.Field{Name: "l", Type: "list", Items: &conf.Field{Type: "nope"}}, `items: unknown type "nope"`},
	}
	for _, tt := range tests {
		_, err := New([]conf.Field{tt.field})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.field, err, tt.want)
		}
	}
}
