package schema

import (
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/config/conf"
)

// FuzzDecode checks that no input panics, that every failure is a classified
// *Error, and that a success yields one value per column with valid levels.
func FuzzDecode(f *testing.F) {
	for _, dir := range []string{"good", "bad"} {
		for _, value := range readTestdata(f, dir) {
			// Huge seeds (the 100 KB nesting bomb) slow every mutation down;
			// the unit tests cover them.
			if len(value) <= 4096 {
				f.Add(value)
			}
		}
	}
	s := taxiSchema(f)
	d := s.NewDecoder()
	classes := map[string]bool{
		ClassMalformedJSON: true, ClassNotUTF8: true, ClassEmpty: true, ClassNotObject: true,
		ClassTypeMismatch: true, ClassMissingRequired: true, ClassNullRequired: true,
		ClassOutOfRange: true, ClassDuplicateKey: true, ClassTooDeep: true,
	}
	var row parquet.Row
	f.Fuzz(func(t *testing.T, value []byte) {
		var err error
		row, err = d.Decode(value, row)
		// encoding/json is the reference for what is well-formed JSON.
		valid := json.Valid(value)
		if err != nil {
			var de *Error
			if !errors.As(err, &de) || !classes[de.Class] {
				t.Fatalf("unclassified error %v (%T)", err, err)
			}
			if valid && de.Class == ClassMalformedJSON {
				t.Fatalf("well-formed JSON rejected as malformed: %v", err)
			}
			return
		}
		if !valid {
			t.Fatalf("malformed JSON accepted: %q", value)
		}
		checkRow(t, s, row)
	})
}

// FuzzDecodeNested runs the nested decoder: no panic, classified failures,
// and every row it returns has each leaf column in order, at least once, with
// levels a Parquet writer accepts and reads back unchanged.
func FuzzDecodeNested(f *testing.F) {
	for _, v := range []string{
		`{"trip_id":1,"payment":{"type":"x","card":{"last4":"1234"}},"note":"n"}`,
		`{"trip_id":1,"stops":[{"zone":4},null,{"zone":5,"at":0}],"scores":[7,8]}`,
		`{"trip_id":1,"attrs":{"a":true,"b":null},"stops":[],"scores":[]}`,
		`{"trip_id":1,"payment":{"card":null},"attrs":{}}`,
		`{"trip_id":1,"stops":[{"zone":1},{"zone":"2"}]}`,
	} {
		f.Add([]byte(v))
	}
	s := nestedSchema(f)
	d := s.NewDecoder()
	leaves := s.Parquet().Columns()
	maxDef := make([]int, len(leaves))
	for i, path := range leaves {
		leaf, _ := s.Parquet().Lookup(path...)
		maxDef[i] = leaf.MaxDefinitionLevel
	}
	var row parquet.Row
	f.Fuzz(func(t *testing.T, value []byte) {
		var err error
		row, err = d.Decode(value, row)
		valid := json.Valid(value)
		if err != nil {
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("unclassified error %v (%T)", err, err)
			}
			if valid && de.Class == ClassMalformedJSON {
				t.Fatalf("well-formed JSON rejected as malformed: %v", err)
			}
			return
		}
		if !valid {
			t.Fatalf("malformed JSON accepted: %q", value)
		}
		col := -1
		for i, v := range row {
			switch c := v.Column(); {
			case c == col:
				if v.RepetitionLevel() == 0 {
					t.Fatalf("value %d: a second value of column %d with repetition level 0", i, c)
				}
			case c == col+1:
				if v.RepetitionLevel() != 0 {
					t.Fatalf("value %d: column %d starts at repetition level %d", i, c, v.RepetitionLevel())
				}
				col = c
			default:
				t.Fatalf("value %d: column %d after column %d", i, c, col)
			}
			if d := v.DefinitionLevel(); d > maxDef[col] || (!v.IsNull() && d != maxDef[col]) || (v.IsNull() && d == maxDef[col]) {
				t.Fatalf("value %d of column %d: definition level %d (max %d, null %v)", i, col, d, maxDef[col], v.IsNull())
			}
		}
		if col != len(leaves)-1 {
			t.Fatalf("row ends at column %d of %d", col, len(leaves))
		}
		buf := parquet.NewBuffer(s.Parquet())
		if _, err := buf.WriteRows([]parquet.Row{row}); err != nil {
			t.Fatalf("parquet-go refuses the row: %v", err)
		}
		back := make([]parquet.Row, 1)
		rows := buf.Rows()
		defer rows.Close()
		if n, _ := rows.ReadRows(back); n != 1 || !back[0].Equal(row) {
			t.Fatalf("row read back differs:\n got %v\nwant %v", back[0], row)
		}
	})
}

// FuzzWideDecimal compares wide decimals with math/big's reading of the same
// text: a value is accepted exactly when it has at most the scale's
// fractional digits and fits the precision, and its bytes hold that value.
func FuzzWideDecimal(f *testing.F) {
	for _, v := range []string{"0", "-1", "1234567890123456789012345678.0123456789", "1e27", "-0.5e-9", "9999999999999999999999999999.99999999990", "1.00000000001"} {
		f.Add(v)
	}
	s, err := New([]conf.Field{{Name: "d", Type: "decimal", Precision: 38, Scale: 10}})
	if err != nil {
		f.Fatal(err)
	}
	d := s.NewDecoder()
	limit := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(28), nil))
	scale := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(10), nil))
	f.Fuzz(func(t *testing.T, text string) {
		value := `{"d":"` + text + `"}`
		row, err := d.Decode([]byte(value), nil)
		// math/big computes 1e999999 in full: leave huge exponents to the
		// unit tests (the decoder settles them without arithmetic).
		if _, exp, found := strings.Cut(strings.ToLower(text), "e"); found && len(strings.TrimLeft(exp, "+-0")) > 2 {
			return
		}
		// The reference: a JSON number's text, scaled exactly.
		var num json.Number
		isNumber := json.Unmarshal([]byte(text), &num) == nil && len(text) < 200 && !strings.ContainsAny(text, " \t\r\n")
		var want *big.Rat
		if isNumber {
			want, _ = new(big.Rat).SetString(text)
		}
		ok := want != nil && new(big.Rat).Abs(want).Cmp(limit) < 0 && new(big.Rat).Mul(want, scale).IsInt()
		if (err == nil) != ok {
			t.Fatalf("%q: err %v, reference says ok=%v", text, err, ok)
		}
		if err != nil {
			return
		}
		got := new(big.Rat).SetFrac(decimalFromBytes(row[0].ByteArray()), new(big.Int).Exp(big.NewInt(10), big.NewInt(10), nil))
		if got.Cmp(want) != 0 {
			t.Fatalf("%q: decoded %s, want %s", text, got.FloatString(10), want.FloatString(10))
		}
	})
}
