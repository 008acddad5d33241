package schema

import (
	"errors"
	"math/big"
	"testing"

	"github.com/sinkd/sinkd/config/conf"
)

// decimalFromBytes reads a big-endian two's complement with math/big, an
// implementation independent of appendDecimal128.
func decimalFromBytes(b []byte) *big.Int {
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	return n
}

func TestDecimalBytes(t *testing.T) {
	// The lengths of the Parquet specification's table (and Spark's).
	for p, want := range map[int]int{19: 9, 20: 9, 21: 9, 22: 10, 28: 12, 29: 13, 38: 16} {
		if got := decimalBytes(p); got != want {
			t.Errorf("decimalBytes(%d) = %d, want %d", p, got, want)
		}
	}
}

func TestWideDecimal(t *testing.T) {
	s, err := New([]conf.Field{
		{Name: "d38", Type: "decimal", Precision: 38, Scale: 10},
		{Name: "d20", Type: "decimal", Precision: 20, Scale: 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	d := s.NewDecoder()
	tests := []struct {
		value string
		d38   string // unscaled value, "" for null; or an error class
		d20   string
		class string
		field string
	}{
		{`{"d38":"1234567890123456789012345678.0123456789","d20":-12345678901234567890}`, "12345678901234567890123456780123456789", "-12345678901234567890", "", ""},
		{`{"d38":"-9999999999999999999999999999.9999999999","d20":"99999999999999999999"}`, "-99999999999999999999999999999999999999", "99999999999999999999", "", ""},
		{`{"d38":0.5,"d20":1e19}`, "5000000000", "10000000000000000000", "", ""},
		{`{"d38":"-0.0000000001","d20":"-1"}`, "-1", "-1", "", ""},
		{`{"d38":"1.00000000000","d20":0}`, "10000000000", "0", "", ""},
		{`{"d38":"10000000000000000000000000000"}`, "", "", ClassOutOfRange, "d38"},
		{`{"d20":100000000000000000000}`, "", "", ClassOutOfRange, "d20"},
		{`{"d38":"0.00000000001"}`, "", "", ClassOutOfRange, "d38"},
		{`{"d20":1.5}`, "", "", ClassOutOfRange, "d20"},
		{`{"d38":"1.2.3"}`, "", "", ClassTypeMismatch, "d38"},
		{`{"d38":true}`, "", "", ClassTypeMismatch, "d38"},
	}
	for _, tt := range tests {
		row, err := d.Decode([]byte(tt.value), nil)
		if tt.class != "" {
			var e *Error
			if !errors.As(err, &e) || e.Class != tt.class || e.Field != tt.field {
				t.Errorf("%s: %v, want %s on %s", tt.value, err, tt.class, tt.field)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.value, err)
		}
		for i, want := range []string{tt.d38, tt.d20} {
			b := row[i].ByteArray()
			if len(b) != s.fields[i].size {
				t.Errorf("%s: column %d has %d bytes, want %d", tt.value, i, len(b), s.fields[i].size)
			}
			if got := decimalFromBytes(b).String(); got != want {
				t.Errorf("%s: column %d = %s, want %s", tt.value, i, got, want)
			}
		}
	}
}

func TestTimeUUIDJSON(t *testing.T) {
	s, err := New([]conf.Field{
		{Name: "t", Type: "time"},
		{Name: "tms", Type: "time", Unit: "millis"},
		{Name: "id", Type: "uuid"},
		{Name: "raw", Type: "json"},
	})
	if err != nil {
		t.Fatal(err)
	}
	d := s.NewDecoder()
	row, err := d.Decode([]byte(`{"t":"13:45:07.1234567","tms":"23:59:59.999","id":"123E4567-e89b-12d3-a456-426614174000","raw":{"a": [1, "x", null]}}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := row[0].Int64(), int64((13*3600+45*60+7)*1_000_000+123456); got != want {
		t.Errorf("time micros %d, want %d", got, want)
	}
	if got, want := row[1].Int32(), int32(86400000-1); got != want {
		t.Errorf("time millis %d, want %d", got, want)
	}
	if got := row[2].ByteArray(); string(got) != "\x12\x3e\x45\x67\xe8\x9b\x12\xd3\xa4\x56\x42\x66\x14\x17\x40\x00" {
		t.Errorf("uuid bytes %x", got)
	}
	if got := string(row[3].ByteArray()); got != `{"a": [1, "x", null]}` {
		t.Errorf("json %q", got)
	}
	for _, tt := range []struct{ value, class, field string }{
		{`{"t":"24:00:00"}`, ClassOutOfRange, "t"},
		{`{"t":"1:00:00"}`, ClassTypeMismatch, "t"},
		{`{"t":"10:00:00."}`, ClassTypeMismatch, "t"},
		{`{"t":36000}`, ClassTypeMismatch, "t"},
		{`{"id":"123e4567e89b12d3a456426614174000"}`, ClassTypeMismatch, "id"},
		{`{"id":"123e4567-e89b-12d3-a456-42661417400g"}`, ClassTypeMismatch, "id"},
		{`{"raw":{"a":}}`, ClassMalformedJSON, ""},
	} {
		_, err := d.Decode([]byte(tt.value), nil)
		var e *Error
		if !errors.As(err, &e) || e.Class != tt.class || e.Field != tt.field {
			t.Errorf("%s: %v, want %s on %q", tt.value, err, tt.class, tt.field)
		}
	}
	// json keeps strings, numbers and booleans as their JSON text too; null is null.
	row, err = d.Decode([]byte(`{"raw":"a\"b"}`), nil)
	if err != nil || string(row[3].ByteArray()) != `"a\"b"` {
		t.Errorf("json string: %q, %v", row[3].ByteArray(), err)
	}
	row, err = d.Decode([]byte(`{"raw":null}`), nil)
	if err != nil || !row[3].IsNull() {
		t.Errorf("json null: %v, %v", row[3], err)
	}
}
