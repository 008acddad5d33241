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
