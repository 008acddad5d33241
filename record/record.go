// Package record holds the types every stage of the pipeline shares: a record read
// from a source, its coordinates, and its position in its source partition.
package record

import (
	"fmt"
	"strconv"
	"time"
)

// Kind names the source system a record came from.
type Kind uint8

const (
	Kafka Kind = iota + 1
	Kinesis
)

func (k Kind) String() string {
	switch k {
	case Kafka:
		return "kafka"
	case Kinesis:
		return "kinesis"
	}
	return "unknown"
}

// PartitionID identifies one ordered source partition: a Kafka topic-partition
// (Stream, Partition) or a Kinesis shard (Stream, Shard). It is comparable and
// serves as a map key.
type PartitionID struct {
	Stream    string
	Shard     string
	Partition int32
}

func (p PartitionID) String() string {
	if p.Shard != "" {
		return p.Stream + "/" + p.Shard
	}
	return p.Stream + "/" + strconv.Itoa(int(p.Partition))
}

// Position is a point in one source partition. Kafka uses Offset; Kinesis uses the
// sequence number (a decimal string of up to 128 bits) and, for records unpacked
// from a KPL aggregate, the sub-sequence index.
type Position struct {
	Offset int64  `json:"offset,omitempty"`
	Seq    string `json:"seq,omitempty"`
	Sub    int64  `json:"sub,omitempty"`
}

// Compare orders positions of the same partition: -1, 0 or +1.
func (p Position) Compare(q Position) int {
	if p.Seq == "" && q.Seq == "" {
		return cmpInt(p.Offset, q.Offset)
	}
	// Sequence numbers are decimal without leading zeros: longer is larger.
	if len(p.Seq) != len(q.Seq) {
		return cmpInt(int64(len(p.Seq)), int64(len(q.Seq)))
	}
	if p.Seq != q.Seq {
		if p.Seq < q.Seq {
			return -1
		}
		return 1
	}
	return cmpInt(p.Sub, q.Sub)
}

func (p Position) String() string {
	if p.Seq == "" {
		return strconv.FormatInt(p.Offset, 10)
	}
	if p.Sub == 0 {
		return p.Seq
	}
	return fmt.Sprintf("%s.%d", p.Seq, p.Sub)
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Header is one Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is one event as read from a source, before decoding.
type Record struct {
	Source    Kind
	Partition PartitionID
	Position  Position
	Key       []byte // Kafka key, or the Kinesis partition key
	Value     []byte
	Headers   []Header
	Timestamp time.Time // broker timestamp (Kafka) or approximate arrival (Kinesis)
	// Failure is set by a source for a record it could read but not unpack
	// (a corrupt KPL aggregate): the pipeline dead-letters it as it is.
	Failure *Failure
}

// Failure says why a source could not unpack a record.
type Failure struct {
	Stage   string // a dead-letter stage, e.g. "kpl"
	Class   string // bounded error class, e.g. "kpl_checksum"
	Message string
}

// Coordinates renders where a record came from, for logs and dead letters.
func (r *Record) Coordinates() string {
	return r.Source.String() + ":" + r.Partition.String() + "@" + r.Position.String()
}
