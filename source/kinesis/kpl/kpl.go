// Package kpl reads and writes the Kinesis Producer Library's aggregated record
// format: many user records packed into one Kinesis record.
//
// Layout: the 4-byte magic 0xF3 0x89 0x9A 0xC2, a proto2 AggregatedRecord
// message, then the MD5 of that message.
//
//	message AggregatedRecord {
//	  repeated string partition_key_table = 1;
//	  repeated string explicit_hash_key_table = 2;
//	  repeated Record records = 3;
//	}
//	message Record {
//	  required uint64 partition_key_index = 1;
//	  optional uint64 explicit_hash_key_index = 2;
//	  required bytes data = 3;
//	  repeated Tag tags = 4;
//	}
//
// The message is encoded and decoded by hand with protowire: the schema is
// tiny and stable, and generated code would bring a descriptor registry (global
// state) for three fields.
package kpl

import (
	"bytes"
	"crypto/md5"
	"errors"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

var magic = [4]byte{0xF3, 0x89, 0x9A, 0xC2}

// Overhead is what the framing adds to the protobuf message: magic and MD5.
const Overhead = len(magic) + md5.Size

// Field numbers of AggregatedRecord and Record.
const (
	fieldPartitionKeyTable    protowire.Number = 1
	fieldExplicitHashKeyTable protowire.Number = 2
	fieldRecords              protowire.Number = 3

	fieldPartitionKeyIndex    protowire.Number = 1
	fieldExplicitHashKeyIndex protowire.Number = 2
	fieldData                 protowire.Number = 3
)

// Error classes, stable strings for metrics and dead letters.
const (
	ClassChecksum  = "kpl_checksum"
	ClassMalformed = "kpl_malformed"
)

// Error is a Kinesis record that carries the KPL magic but is not a valid
// aggregate. The record should be dead-lettered whole: none of its user
// records can be trusted.
type Error struct {
	Class  string // ClassChecksum or ClassMalformed
	Reason string
}

func (e *Error) Error() string { return e.Class + ": " + e.Reason }

func malformed(reason string) *Error { return &Error{Class: ClassMalformed, Reason: reason} }

// UserRecord is one record as the producer handed it to the KPL.
type UserRecord struct {
	PartitionKey    string
	ExplicitHashKey string // "" when the producer set none
	Data            []byte
}

// IsAggregated reports whether data starts with the KPL magic.
func IsAggregated(data []byte) bool {
	return bytes.HasPrefix(data, magic[:])
}

// SizeBound is an upper bound of the bytes r adds to an aggregate, assuming its
// keys are not yet in the key tables. Summed over records plus Overhead it
// bounds the aggregate's size, which lets a producer pack under Kinesis's
// 1 MiB record limit without encoding twice.
func SizeBound(r UserRecord) int {
	const maxVarint = 10
	n := 1 + protowire.SizeBytes(len(r.PartitionKey))
	inner := 1 + maxVarint + 1 + protowire.SizeBytes(len(r.Data))
	if r.ExplicitHashKey != "" {
		n += 1 + protowire.SizeBytes(len(r.ExplicitHashKey))
		inner += 1 + maxVarint
	}
	return n + 1 + protowire.SizeBytes(inner)
}

// Aggregate packs records, in order, into one aggregated record. Keys shared by
// several records are stored once. The caller keeps the result under the
// Kinesis record limit (see SizeBound).
func Aggregate(records []UserRecord) ([]byte, error) {
	if len(records) == 0 {
		return nil, errors.New("kpl: aggregate of no records")
	}
	pkIndex := make(map[string]uint64)
	ehkIndex := make(map[string]uint64)
	var pkTable, ehkTable []string
	size := Overhead
	for i, r := range records {
		if r.PartitionKey == "" {
			return nil, errors.New("kpl: record " + strconv.Itoa(i) + " has an empty partition key")
		}
		if _, ok := pkIndex[r.PartitionKey]; !ok {
			pkIndex[r.PartitionKey] = uint64(len(pkTable))
			pkTable = append(pkTable, r.PartitionKey)
		}
		if _, ok := ehkIndex[r.ExplicitHashKey]; !ok && r.ExplicitHashKey != "" {
			ehkIndex[r.ExplicitHashKey] = uint64(len(ehkTable))
			ehkTable = append(ehkTable, r.ExplicitHashKey)
		}
		size += SizeBound(r)
	}

	buf := make([]byte, 0, size)
	buf = append(buf, magic[:]...)
	for _, k := range pkTable {
		buf = protowire.AppendTag(buf, fieldPartitionKeyTable, protowire.BytesType)
		buf = protowire.AppendString(buf, k)
	}
	for _, k := range ehkTable {
		buf = protowire.AppendTag(buf, fieldExplicitHashKeyTable, protowire.BytesType)
		buf = protowire.AppendString(buf, k)
	}
	for _, r := range records {
		pk := pkIndex[r.PartitionKey]
		inner := 1 + protowire.SizeVarint(pk) + 1 + protowire.SizeBytes(len(r.Data))
		ehk, hasEHK := ehkIndex[r.ExplicitHashKey]
		if hasEHK {
			inner += 1 + protowire.SizeVarint(ehk)
		}
		buf = protowire.AppendTag(buf, fieldRecords, protowire.BytesType)
		buf = protowire.AppendVarint(buf, uint64(inner))
		buf = protowire.AppendTag(buf, fieldPartitionKeyIndex, protowire.VarintType)
		buf = protowire.AppendVarint(buf, pk)
		if hasEHK {
			buf = protowire.AppendTag(buf, fieldExplicitHashKeyIndex, protowire.VarintType)
			buf = protowire.AppendVarint(buf, ehk)
		}
		buf = protowire.AppendTag(buf, fieldData, protowire.BytesType)
		buf = protowire.AppendBytes(buf, r.Data)
	}
	sum := md5.Sum(buf[len(magic):])
	return append(buf, sum[:]...), nil
}

// Deaggregate returns the user records of an aggregate, in order: the index of
// a record is its sub-sequence number. A record without the magic is returned
// as-is, as one user record with partitionKey. An aggregate with a bad MD5 or a
// malformed message is an *Error, never a panic. The returned Data slices
// alias data.
func Deaggregate(data []byte, partitionKey string) ([]UserRecord, error) {
	if !IsAggregated(data) {
		return []UserRecord{{PartitionKey: partitionKey, Data: data}}, nil
	}
	if len(data) < Overhead {
		return nil, malformed("aggregate shorter than magic and checksum")
	}
	msg := data[len(magic) : len(data)-md5.Size]
	if sum := md5.Sum(msg); !bytes.Equal(sum[:], data[len(data)-md5.Size:]) {
		return nil, &Error{Class: ClassChecksum, Reason: "MD5 of the aggregate does not match its trailer"}
	}

	// Fields may come in any order, so records are resolved against the key
	// tables only once the whole message has been read.
	var pkTable, ehkTable []string
	var raw [][]byte
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return nil, malformed("aggregate: bad field tag")
		}
		msg = msg[n:]
		known := num == fieldPartitionKeyTable || num == fieldExplicitHashKeyTable || num == fieldRecords
		if !known {
			n = protowire.ConsumeFieldValue(num, typ, msg)
			if n < 0 {
				return nil, malformed("aggregate: bad value of unknown field " + strconv.Itoa(int(num)))
			}
			msg = msg[n:]
			continue
		}
		if typ != protowire.BytesType {
			return nil, malformed("aggregate: field " + strconv.Itoa(int(num)) + " is not length-delimited")
		}
		v, n := protowire.ConsumeBytes(msg)
		if n < 0 {
			return nil, malformed("aggregate: truncated field " + strconv.Itoa(int(num)))
		}
		msg = msg[n:]
		switch num {
		case fieldPartitionKeyTable:
			pkTable = append(pkTable, string(v))
		case fieldExplicitHashKeyTable:
			ehkTable = append(ehkTable, string(v))
		case fieldRecords:
			raw = append(raw, v)
		}
	}
	if len(raw) == 0 {
		return nil, malformed("aggregate holds no records")
	}

	out := make([]UserRecord, len(raw))
	for i, b := range raw {
		if err := decodeRecord(b, pkTable, ehkTable, &out[i]); err != nil {
			err.Reason = "record " + strconv.Itoa(i) + ": " + err.Reason
			return nil, err
		}
	}
	return out, nil
}

func decodeRecord(b []byte, pkTable, ehkTable []string, r *UserRecord) *Error {
	var hasPK, hasData bool
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return malformed("bad field tag")
		}
		b = b[n:]
		switch {
		case (num == fieldPartitionKeyIndex || num == fieldExplicitHashKeyIndex) && typ == protowire.VarintType:
			idx, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return malformed("truncated key index")
			}
			b = b[n:]
			if num == fieldPartitionKeyIndex {
				if idx >= uint64(len(pkTable)) {
					return malformed("partition key index " + strconv.FormatUint(idx, 10) + " outside a table of " + strconv.Itoa(len(pkTable)))
				}
				r.PartitionKey, hasPK = pkTable[idx], true
			} else {
				if idx >= uint64(len(ehkTable)) {
					return malformed("explicit hash key index " + strconv.FormatUint(idx, 10) + " outside a table of " + strconv.Itoa(len(ehkTable)))
				}
				r.ExplicitHashKey = ehkTable[idx]
			}
		case num == fieldData && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return malformed("truncated data")
			}
			b = b[n:]
			r.Data, hasData = v, true
		case num == fieldPartitionKeyIndex || num == fieldExplicitHashKeyIndex || num == fieldData:
			return malformed("field " + strconv.Itoa(int(num)) + " has wire type " + strconv.Itoa(int(typ)))
		default: // tags (4) and fields from newer producers are not needed
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return malformed("bad value of field " + strconv.Itoa(int(num)))
			}
			b = b[n:]
		}
	}
	if !hasPK {
		return malformed("missing partition_key_index")
	}
	if !hasData {
		return malformed("missing data")
	}
	return nil
}
