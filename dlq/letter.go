// Package dlq is sinkd's dead-letter stream: one envelope for every failure,
// producers for Kafka, Kinesis and a local file, and the inspect and redrive
// tools that read the envelopes back. See README.md for the wire format.
package dlq

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/sinkd/sinkd/record"
)

// Stage names the step of the pipeline where a record failed.
type Stage string

const (
	StageDecode     Stage = "decode"
	StageSchema     Stage = "schema"
	StageRoute      Stage = "route"
	StageBucket     Stage = "bucket"
	StageParquet    Stage = "parquet"
	StageOpenSearch Stage = "opensearch"
	StageOversize   Stage = "oversize"
	StageKPL        Stage = "kpl"
)

// Letter is one failed record with the context needed to understand and
// replay it.
type Letter struct {
	// Record is the original record: Value, Key and Headers are never altered,
	// except that a sink whose stream cannot hold the value truncates it and
	// sets OriginalSize (see README.md).
	Record *record.Record
	Stage  Stage
	// Class is a bounded error class ("type_mismatch", "missing_field",
	// "mapper_parsing_exception"...). It is the `reason` metric label, clamped
	// to "other" when it is not one of the known classes (see Reason).
	Class        string
	Message      string // human-readable: field, expected, got
	Attempts     int
	FirstFailure time.Time
	LastFailure  time.Time
	Details      map[string]string // e.g. opensearch index, id, status
	// RedriveCount is how many times this record has already been redriven;
	// RedriveCount(rec) reads it from a redriven Kafka record.
	RedriveCount int

	// Pipeline and Version are stamped by the sink from its Options when they
	// are empty, and filled when a letter is read back.
	Pipeline string
	Version  string
	// OriginalSize is the length of the original value when a sink had to
	// truncate it to fit its stream's record limit; 0 means Record.Value is
	// complete. Truncated letters are never redriven.
	OriginalSize int
}

// DetailIndex is the Details key holding the OpenSearch index of a failed
// document; it is part of the letter id, since one record can fail in
// several indices.
const DetailIndex = "index"

// DetailMaxRedrives carries the pipeline's dlq.max_redrives, the limit that
// `sinkd dlq redrive` applies to the letter unless told otherwise.
const DetailMaxRedrives = "max_redrives"

// ID is a deterministic identifier of this failure: the same record failing
// at the same stage (and, for OpenSearch, in the same index) always gets the
// same id, so that consumers and the redrive tool can drop duplicates left
// by replays after a crash.
func (l *Letter) ID() string {
	h := sha256.New()
	var buf [8]byte
	field := func(s string) {
		// Length prefixes keep ("ab","c") and ("a","bc") apart.
		binary.BigEndian.PutUint64(buf[:], uint64(len(s)))
		h.Write(buf[:])
		h.Write([]byte(s))
	}
	r := l.Record
	if r == nil {
		r = &record.Record{}
	}
	field(r.Source.String())
	field(r.Partition.Stream)
	field(r.Partition.Shard)
	field(strconv.FormatInt(int64(r.Partition.Partition), 10))
	field(strconv.FormatInt(r.Position.Offset, 10))
	field(r.Position.Seq)
	field(strconv.FormatInt(r.Position.Sub, 10))
	field(string(l.Stage))
	if l.Stage == StageOpenSearch {
		field(l.Details[DetailIndex])
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Truncated reports whether the letter's value is only a prefix of the
// original.
func (l *Letter) Truncated() bool { return l.OriginalSize > 0 }
