package kpl

import (
	"bytes"
	"crypto/md5"
	"errors"
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

func sample(n int) []UserRecord {
	recs := make([]UserRecord, n)
	for i := range recs {
		recs[i] = UserRecord{
			// Keys repeat so the tables are shared; one in three has a hash key.
			PartitionKey: fmt.Sprintf("trip-%d", i%7),
			Data:         fmt.Appendf(nil, `{"trip_id":%d,"type":"yellow"}`, i),
		}
		if i%3 == 0 {
			recs[i].ExplicitHashKey = fmt.Sprint(uint64(i) * 1_000_003)
		}
	}
	return recs
}

func TestRoundTrip(t *testing.T) {
	for _, n := range []int{1, 2, 100, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			in := sample(n)
			agg, err := Aggregate(in)
			if err != nil {
				t.Fatal(err)
			}
			if !IsAggregated(agg) {
				t.Fatal("aggregate lacks the magic")
			}
			bound := Overhead
			for _, r := range in {
				bound += SizeBound(r)
			}
			if len(agg) > bound {
				t.Errorf("aggregate is %d bytes, over its bound %d", len(agg), bound)
			}
			out, err := Deaggregate(agg, "ignored")
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != len(in) {
				t.Fatalf("got %d records, want %d", len(out), len(in))
			}
			for i := range in {
				if out[i].PartitionKey != in[i].PartitionKey || out[i].ExplicitHashKey != in[i].ExplicitHashKey || !bytes.Equal(out[i].Data, in[i].Data) {
					t.Fatalf("record %d: got %+v, want %+v", i, out[i], in[i])
				}
			}
		})
	}
}

func TestAggregateSharesKeys(t *testing.T) {
	one, err := Aggregate([]UserRecord{{PartitionKey: "a-long-partition-key", Data: []byte("x")}})
	if err != nil {
		t.Fatal(err)
	}
	two, err := Aggregate([]UserRecord{
		{PartitionKey: "a-long-partition-key", Data: []byte("x")},
		{PartitionKey: "a-long-partition-key", Data: []byte("y")},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The second record costs only its own message (tag, length, index, data),
	// not another copy of the key.
	if grew := len(two) - len(one); grew != 7 {
		t.Errorf("second record with the same key added %d bytes, want 7", grew)
	}
}

func TestAggregateRejects(t *testing.T) {
	for name, recs := range map[string][]UserRecord{
		"no records":   nil,
		"empty pk":     {{PartitionKey: "", Data: []byte("x")}},
		"empty pk 2nd": {{PartitionKey: "a", Data: []byte("x")}, {Data: []byte("y")}},
	} {
		if _, err := Aggregate(recs); err == nil {
			t.Errorf("%s: Aggregate succeeded", name)
		}
	}
}

func TestPassthrough(t *testing.T) {
	for _, data := range [][]byte{nil, {}, []byte(`{"trip_id":1}`), {0xF3, 0x89, 0x9A}} {
		out, err := Deaggregate(data, "pk")
		if err != nil {
			t.Fatalf("%q: %v", data, err)
		}
		if len(out) != 1 || out[0].PartitionKey != "pk" || !bytes.Equal(out[0].Data, data) {
			t.Errorf("%q: got %+v, want the record as-is", data, out)
		}
	}
}

// frame wraps a protobuf message in magic and a correct checksum, so that the
// message itself is what a test exercises.
func frame(msg []byte) []byte {
	out := append(magic[:len(magic):len(magic)], msg...)
	sum := md5.Sum(msg)
	return append(out, sum[:]...)
}

func rec(fields ...[]byte) []byte {
	var b []byte
	for _, f := range fields {
		b = append(b, f...)
	}
	return b
}

func varintField(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

func bytesField(num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
}

func TestDeaggregateErrors(t *testing.T) {
	good, err := Aggregate(sample(5))
	if err != nil {
		t.Fatal(err)
	}
	flipped := slices.Clone(good)
	flipped[len(flipped)-1] ^= 1
	bodyFlip := slices.Clone(good)
	bodyFlip[10] ^= 0x40

	pk := bytesField(fieldPartitionKeyTable, []byte("k"))
	okRecord := rec(varintField(fieldPartitionKeyIndex, 0), bytesField(fieldData, []byte("d")))

	tests := []struct {
		name  string
		data  []byte
		class string
	}{
		{"corrupted md5", flipped, ClassChecksum},
		{"corrupted body", bodyFlip, ClassChecksum},
		{"magic only", magic[:], ClassMalformed},
		{"shorter than checksum", append(magic[:len(magic):len(magic)], 1, 2, 3), ClassMalformed},
		{"truncated protobuf", frame(good[len(magic) : len(good)-md5.Size-3]), ClassMalformed},
		{"garbage protobuf", frame([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), ClassMalformed},
		{"no records", frame(pk), ClassMalformed},
		{"empty message", frame(nil), ClassMalformed},
		{"pk index out of range", frame(rec(pk, bytesField(fieldRecords, rec(varintField(fieldPartitionKeyIndex, 1), bytesField(fieldData, []byte("d")))))), ClassMalformed},
		{"huge pk index", frame(rec(pk, bytesField(fieldRecords, rec(varintField(fieldPartitionKeyIndex, 1<<63), bytesField(fieldData, []byte("d")))))), ClassMalformed},
		{"ehk index out of range", frame(rec(pk, bytesField(fieldRecords, rec(okRecord, varintField(fieldExplicitHashKeyIndex, 0))))), ClassMalformed},
		{"missing pk index", frame(rec(pk, bytesField(fieldRecords, bytesField(fieldData, []byte("d"))))), ClassMalformed},
		{"missing data", frame(rec(pk, bytesField(fieldRecords, varintField(fieldPartitionKeyIndex, 0)))), ClassMalformed},
		{"records as varint", frame(rec(pk, varintField(fieldRecords, 3))), ClassMalformed},
		{"data as varint", frame(rec(pk, bytesField(fieldRecords, rec(varintField(fieldPartitionKeyIndex, 0), varintField(fieldData, 1))))), ClassMalformed},
		{"record truncated inside", frame(rec(pk, bytesField(fieldRecords, okRecord[:len(okRecord)-1]))), ClassMalformed},
		{"field number zero", frame(rec(pk, []byte{0x00, 0x01})), ClassMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Deaggregate(tt.data, "pk")
			var kerr *Error
			if !errors.As(err, &kerr) {
				t.Fatalf("got records %v, err %v; want a *kpl.Error", out, err)
			}
			if kerr.Class != tt.class {
				t.Errorf("class %q (%v), want %q", kerr.Class, err, tt.class)
			}
		})
	}
}

func TestDeaggregateSkipsUnknownFields(t *testing.T) {
	// Tags (field 4) and fields a newer producer might add are ignored.
	tag := bytesField(4, rec(bytesField(1, []byte("key")), bytesField(2, []byte("value"))))
	msg := rec(
		bytesField(fieldPartitionKeyTable, []byte("k")),
		varintField(9, 42),
		bytesField(fieldRecords, rec(varintField(fieldPartitionKeyIndex, 0), tag, bytesField(fieldData, []byte("d")), varintField(7, 1))),
	)
	out, err := Deaggregate(frame(msg), "outer")
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].PartitionKey != "k" || string(out[0].Data) != "d" {
		t.Errorf("got %+v", out)
	}
}

func BenchmarkDeaggregate(b *testing.B) {
	agg, err := Aggregate(sample(100))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(agg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Deaggregate(agg, "pk"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAggregate(b *testing.B) {
	recs := sample(100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Aggregate(recs); err != nil {
			b.Fatal(err)
		}
	}
}
