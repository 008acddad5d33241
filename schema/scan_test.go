package schema

import (
	"errors"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// nested returns n arrays nested around an empty one, as the value of key "x"
// of an otherwise valid taxi record: the record object itself is one level.
func nested(n int, tail string) string {
	return `{"pickup_datetime":"2018-01-01T00:00:00Z","pickup_location_id":1,"x":` +
		strings.Repeat("[", n) + strings.Repeat("]", n) + tail + "}"
}

type precedenceCase struct {
	name, value string
	class       string
	field       string
}

// precedenceCases are values with problems of several kinds, or problems
// hidden in unusual places, and the error each has always been reported with.
func precedenceCases() []precedenceCase {
	valid := `"pickup_datetime":"2018-01-01T00:00:00Z","pickup_location_id":1`
	return []precedenceCase{
		{"depth 64 is accepted", nested(MaxDepth-1, ""), "", ""},
		{"depth 65 is refused", nested(MaxDepth, ""), ClassTooDeep, ""},
		{"field error, then too deep", `{"trip_id":"x",` + nested(MaxDepth, "")[1:], ClassTooDeep, ""},
		{"field error, then malformed", `{"trip_id":"x",` + valid + `,}`, ClassMalformedJSON, ""},
		{"malformed, then too deep", `{"a":tru,"b":` + strings.Repeat("[", 70) + "}", ClassTooDeep, ""},
		{"malformed, then bad UTF-8", `{"a":tru,"b":"` + "\xff" + `"}`, ClassNotUTF8, ""},
		{"bad UTF-8 outside strings", `{"a":1}` + "\xc3", ClassNotUTF8, ""},
		{"byte-order mark, then malformed", "\xEF\xBB\xBF{", ClassMalformedJSON, ""},
		{"malformed array is not not_object", `[1,]`, ClassMalformedJSON, ""},
		{"array is not_object", ` [1, {"a": []}] `, ClassNotObject, ""},
		{"number is not_object", `-1.5e3`, ClassNotObject, ""},
		{"first field error wins", `{"trip_id":"x","type":1,` + valid + `}`, ClassTypeMismatch, "trip_id"},
		{"duplicate after a field error", `{"type":1,"type":"a",` + valid + `}`, ClassTypeMismatch, "type"},
		{"escaped key is a field", `{"trip\u005fid":"x",` + valid + `}`, ClassTypeMismatch, "trip_id"},
		{"escaped key duplicates", `{"type":"a","\u0074ype":"b",` + valid + `}`, ClassDuplicateKey, "type"},
		{"unknown keys are validated", `{"zz":[1,2,{"q":01}],` + valid + `}`, ClassMalformedJSON, ""},
		{"control character in a key", "{\"a\tb\":1," + valid + "}", ClassMalformedJSON, ""},
		{"escaped control characters", `{"type":"a\u0000\t\n",` + valid + `}`, "", ""},
		{"empty key and object", `{"":{},` + valid + `}`, "", ""},
		{"whitespace everywhere", " \t\r\n{ \"type\" : \"a\" , " + valid + " } \n", "", ""},
		{"missing required after unknowns", `{"x":{"pickup_location_id":1},"pickup_datetime":"2018-01-01T00:00:00Z"}`, ClassMissingRequired, "pickup_location_id"},
	}
}

func TestDecodePrecedence(t *testing.T) {
	tests := precedenceCases()
	s := taxiSchema(t)
	d, oracle := s.NewDecoder(), newFastjsonDecoder(s)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.Decode([]byte(tt.value), nil)
			_, was := oracle.Decode([]byte(tt.value), nil)
			var old *Error
			if errors.As(was, &old) != (tt.class != "") || (old != nil && (old.Class != tt.class || old.Field != tt.field)) {
				t.Errorf("the fastjson decoder said %v", was)
			}
			if tt.class == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var de *Error
			if !errors.As(err, &de) || de.Class != tt.class || de.Field != tt.field {
				t.Fatalf("err = %v, want class %q field %q", err, tt.class, tt.field)
			}
		})
	}
}

// TestDecodeRefusesWhatFastjsonAccepted pins the one way in which the scanner
// differs from the fastjson-based decoder it replaced: fastjson's validator let
// a raw control character through when an escape followed it in the same
// string. RFC 8259 and encoding/json refuse it.
func TestDecodeRefusesWhatFastjsonAccepted(t *testing.T) {
	valid := `"pickup_datetime":"2018-01-01T00:00:00Z","pickup_location_id":1`
	values := []string{
		"{\"a\x11\\n\":1," + valid + "}",
		"{\"type\":\"\t\\n\"," + valid + "}",
	}
	s := taxiSchema(t)
	d, oracle := s.NewDecoder(), newFastjsonDecoder(s)
	for _, value := range values {
		if _, err := oracle.Decode([]byte(value), nil); err != nil {
			t.Errorf("%q: the fastjson decoder refused it (%v): drop the leniency from FuzzDecodeMatchesFastjson", value, err)
		}
		if !fastjsonLeniency([]byte(value)) {
			t.Errorf("%q: fastjsonLeniency does not recognise it", value)
		}
		_, err := d.Decode([]byte(value), nil)
		var de *Error
		if !errors.As(err, &de) || de.Class != ClassMalformedJSON {
			t.Errorf("%q: err = %v, want malformed_json", value, err)
		}
	}
}

func TestDecodeMalformedSaysWhere(t *testing.T) {
	tests := []struct{ value, want string }{
		{`{"trip_id":1,}`, `'}' at byte 13 where a quoted key should be`},
		{`{"trip_id" 1}`, `'1' at byte 11 where ':' after a key should be`},
		{`{"trip_id":1`, `the end of the input at byte 12 where ',' or '}' after a value should be`},
		{`{"a":"\x"}`, `'x' at byte 7 where an escape`},
		{"{\"a\":\"\x01\"}", `byte 0x01 at byte 6 where a string character`},
		{`{"a":-}`, `'}' at byte 6 where a digit should be`},
		{`{} x`, `'x' at byte 3 where the end of the value should be`},
		{`{"a":é}`, `byte 0xc3 at byte 5 where a value should be`},
	}
	d := taxiSchema(t).NewDecoder()
	for _, tt := range tests {
		_, err := d.Decode([]byte(tt.value), nil)
		var de *Error
		if !errors.As(err, &de) || de.Class != ClassMalformedJSON {
			t.Errorf("%s: err = %v, want malformed_json", tt.value, err)
			continue
		}
		if !strings.Contains(de.Got, tt.want) {
			t.Errorf("%s: got %q, want it to contain %q", tt.value, de.Got, tt.want)
		}
	}
}

func TestDecodeRowsDoNotAliasTheInput(t *testing.T) {
	s := taxiSchema(t)
	d := s.NewDecoder()
	value := []byte(`{"type":"yellow","payment_type":"c\u00e9sh","pickup_datetime":"2018-01-01T00:00:00Z","pickup_location_id":1}`)
	row, err := d.Decode(value, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range value {
		value[i] = 'X'
	}
	if got := string(valueOf(t, s, row, "type").ByteArray()); got != "yellow" {
		t.Errorf("type = %q after the input changed", got)
	}
	if got := string(valueOf(t, s, row, "payment_type").ByteArray()); got != "césh" {
		t.Errorf("payment_type = %q after the input changed", got)
	}
}

func TestDecodeEscapedNoAllocations(t *testing.T) {
	s := taxiSchema(t)
	d := s.NewDecoder()
	value := []byte(`{"typ\u0065":"ye\"ll\u00f6w","pickup_datetime":"2018-01-01T00:00:00\u005a","pickup_location_id":1,"fare_amount":"1\u002e5","x":["\ud83d\ude00"]}`)
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
	if got := string(valueOf(t, s, row, "type").ByteArray()); got != `ye"llöw` {
		t.Errorf("type = %q", got)
	}
	if got := valueOf(t, s, row, "fare_amount").Int64(); got != 150 {
		t.Errorf("fare_amount = %d", got)
	}
}

func TestAppendUnescaped(t *testing.T) {
	tests := []struct{ in, want string }{
		{`a\"b\\c\/d`, `a"b\c/d`},
		{`\b\f\n\r\t`, "\b\f\n\r\t"},
		{`\u00e9\u00E9\u20ac`, "éé€"},
		{`\ud83d\ude00`, "😀"},
		// Lone and mismatched surrogates read as they always have.
		{`\ud800`, `\ud800`},
		{`\ud800x`, `\ud800x`},
		{`\ud800\u0041`, "\uFFFD"},
		{`\udc00\ud800`, "\uFFFD"},
		{`\ud800\\u0041`, `\ud800\u0041`},
	}
	for _, tt := range tests {
		if got := string(appendUnescaped(nil, []byte(tt.in))); got != tt.want {
			t.Errorf("appendUnescaped(%s) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
