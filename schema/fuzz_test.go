package schema

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/parquet-go/parquet-go"
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
