package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/config/conf"
)

// differentialFields covers every kind, both repetitions, escaped keys and
// keys that differ from their column names.
func differentialFields() []conf.Field {
	return append(taxiFields(),
		conf.Field{Name: "d", Type: "date"},
		conf.Field{Name: "small", Type: "decimal", Precision: 3, Scale: 1, From: "sm\u00e9"},
		conf.Field{Name: "ts_s", Type: "timestamp", Unit: "nanos", Input: "seconds", Required: true, From: "t"},
		conf.Field{Name: "ok", Type: "bool", Required: true, From: "a\"b"},
	)
}

// FuzzDecodeMatchesFastjson checks that the scanner decodes every value as the
// fastjson-based decoder it replaced did: the same row, or an error of the same
// class, field, expectation and description. Only the wording of malformed_json
// descriptions differs, because those used to be fastjson's own messages.
func FuzzDecodeMatchesFastjson(f *testing.F) {
	for _, dir := range []string{"good", "bad"} {
		for _, value := range readTestdata(f, dir) {
			if len(value) <= 4096 {
				f.Add(value)
			}
		}
	}
	for _, seed := range []string{
		`{"t":1,"a\"b":true,"pickup_datetime":"2018-01-01T00:00:00Z","pickup_location_id":1,"d":"2020-02-29","sm\u00e9":"12.3"}`,
		`{"t":"2018-01-01T00:00:00\u005a","a\u0022b":false,"pickup_datetime":1514766065123,"pickup_location_id":1e2,"type":"\ud83d\ude00\ud800\u0041\udc00x\ud800"}`,
		`{"t":-1.5e1,"a\"b":null}`,
		`[1,{"a":[]},"x\n"]`,
		`  -0.0e+5 `,
		`{"x":{"y":[true,false,null,"\/\b\f\n\r\t"]},"t":0,"a\"b":true,"pickup_datetime":"2018-01-01 00:00:00z","pickup_location_id":-0}`,
	} {
		f.Add([]byte(seed))
	}
	for _, c := range precedenceCases() {
		f.Add([]byte(c.value))
	}
	s, err := New(differentialFields())
	if err != nil {
		f.Fatal(err)
	}
	d, oracle := s.NewDecoder(), newFastjsonDecoder(s)
	var row, want parquet.Row
	f.Fuzz(func(t *testing.T, value []byte) {
		var err, wantErr error
		row, err = d.Decode(value, row)
		want, wantErr = oracle.Decode(value, want)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("scanner: %v\nfastjson: %v", err, wantErr)
		}
		if err != nil {
			var got, exp *Error
			if !errors.As(err, &got) || !errors.As(wantErr, &exp) {
				t.Fatalf("scanner: %T, fastjson: %T", err, wantErr)
			}
			if got.Class == ClassMalformedJSON && exp.Class != ClassMalformedJSON && fastjsonLeniency(value) {
				return // the scanner is right, see fastjsonLeniency
			}
			if got.Class == ClassMalformedJSON && exp.Class == ClassMalformedJSON {
				got, exp = &Error{Class: got.Class, Field: got.Field, Expected: got.Expected}, &Error{Class: exp.Class, Field: exp.Field, Expected: exp.Expected}
			}
			if *got != *exp {
				t.Fatalf("scanner: %#v\nfastjson: %#v", *got, *exp)
			}
			return
		}
		if len(row) != len(want) {
			t.Fatalf("scanner: %d values, fastjson: %d", len(row), len(want))
		}
		for i := range row {
			if !sameValue(row[i], want[i]) {
				t.Fatalf("column %d: scanner %v, fastjson %v", i, row[i], want[i])
			}
		}
	})
}

// fastjsonLeniency reports whether value is malformed JSON of the one kind
// that fastjson let through: a raw control character in a string that holds
// an escape after it (its validator checks only the part after the last
// escape), as in {"a\x11\n":1}. encoding/json, the reference, refuses it.
func fastjsonLeniency(value []byte) bool {
	return !json.Valid(value) && bytes.ContainsFunc(value, func(r rune) bool { return r < 0x20 })
}

// sameValue compares kind, levels, column and contents, floats bit for bit.
func sameValue(a, b parquet.Value) bool {
	if a.Kind() != b.Kind() || a.IsNull() != b.IsNull() || a.Column() != b.Column() ||
		a.DefinitionLevel() != b.DefinitionLevel() || a.RepetitionLevel() != b.RepetitionLevel() {
		return false
	}
	switch {
	case a.IsNull():
		return true
	case a.Kind() == parquet.ByteArray:
		return bytes.Equal(a.ByteArray(), b.ByteArray())
	case a.Kind() == parquet.Double:
		return math.Float64bits(a.Double()) == math.Float64bits(b.Double())
	case a.Kind() == parquet.Float:
		return math.Float32bits(a.Float()) == math.Float32bits(b.Float())
	}
	return parquet.Equal(a, b)
}

func BenchmarkDecodeFastjson(b *testing.B) {
	s := taxiSchema(b)
	d := newFastjsonDecoder(s)
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
