package kpl

import (
	"bytes"
	"crypto/md5"
	"errors"
	"testing"
)

// FuzzDeaggregate feeds arbitrary Kinesis record payloads. Whatever the input,
// Deaggregate must not panic, must fail only with a classified *Error, and what
// it accepts must survive re-aggregation unchanged. With framed set, the input
// is wrapped in magic and a correct MD5 first, so that mutations reach the
// protobuf parser instead of dying at the checksum. The seed corpus lives in
// testdata/fuzz/FuzzDeaggregate.
func FuzzDeaggregate(f *testing.F) {
	agg, err := Aggregate(sample(3))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(agg, false)
	f.Add(agg[len(magic):len(agg)-md5.Size], true)
	f.Add([]byte(`{"trip_id":1}`), false)
	f.Fuzz(func(t *testing.T, data []byte, framed bool) {
		if framed {
			data = frame(data)
		}
		out, err := Deaggregate(data, "pk")
		if err != nil {
			var kerr *Error
			if !errors.As(err, &kerr) || (kerr.Class != ClassChecksum && kerr.Class != ClassMalformed) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if len(out) == 0 {
			t.Fatal("no records and no error")
		}
		if !IsAggregated(data) {
			return
		}
		for _, r := range out {
			if r.PartitionKey == "" {
				return // valid on the wire, but Aggregate refuses to write it
			}
		}
		again, err := Aggregate(out)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Deaggregate(again, "pk")
		if err != nil {
			t.Fatal(err)
		}
		if len(back) != len(out) {
			t.Fatalf("re-aggregated %d records, got %d back", len(out), len(back))
		}
		for i := range out {
			if back[i].PartitionKey != out[i].PartitionKey || back[i].ExplicitHashKey != out[i].ExplicitHashKey || !bytes.Equal(back[i].Data, out[i].Data) {
				t.Fatalf("record %d changed: %+v became %+v", i, out[i], back[i])
			}
		}
	})
}
