package dlq

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sinkd/sinkd/record"
)

// Kafka header names of the envelope. Every header sinkd adds starts with
// headerPrefix; original headers with that prefix are reserved.
const (
	headerPrefix       = "sinkd-dlq-"
	HeaderID           = headerPrefix + "id"
	HeaderStage        = headerPrefix + "stage"
	HeaderClass        = headerPrefix + "class"
	HeaderMessage      = headerPrefix + "message"
	HeaderSource       = headerPrefix + "source"
	HeaderStream       = headerPrefix + "stream"
	HeaderPartition    = headerPrefix + "partition"
	HeaderPosition     = headerPrefix + "position"
	HeaderTimestamp    = headerPrefix + "timestamp"
	HeaderAttempts     = headerPrefix + "attempts"
	HeaderFirstFailure = headerPrefix + "first-failure"
	HeaderLastFailure  = headerPrefix + "last-failure"
	HeaderPipeline     = headerPrefix + "pipeline"
	HeaderVersion      = headerPrefix + "version"
	HeaderRedriveCount = headerPrefix + "redrive-count"
	HeaderOriginalSize = headerPrefix + "original-size"
	HeaderDetailPrefix = headerPrefix + "detail-"

	// HeaderRedrive is set on records the redrive tool writes back to a
	// source topic: how many times the record has been redriven.
	HeaderRedrive = "sinkd-redrive-count"
)

// ErrNotLetter is returned when a record or line carries no sinkd envelope.
var ErrNotLetter = errors.New("not a sinkd dead letter")

// kafkaRecord renders a letter as a Kafka record for topic: original key and
// value, original headers, then the envelope's headers.
func kafkaRecord(l *Letter, topic string) *kgo.Record {
	r := l.Record
	hs := make([]kgo.RecordHeader, 0, len(r.Headers)+16+len(l.Details))
	for _, h := range r.Headers {
		hs = append(hs, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	for _, kv := range metadata(l) {
		hs = append(hs, kgo.RecordHeader{Key: kv[0], Value: []byte(kv[1])})
	}
	return &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: hs}
}

// metadata lists the envelope's header names and values in a stable order.
func metadata(l *Letter) [][2]string {
	r := l.Record
	md := [][2]string{
		{HeaderID, l.ID()},
		{HeaderStage, string(l.Stage)},
		{HeaderClass, l.Class},
		{HeaderMessage, l.Message},
		{HeaderSource, r.Source.String()},
		{HeaderStream, r.Partition.Stream},
		{HeaderPartition, partitionString(r)},
		{HeaderPosition, r.Position.String()},
		{HeaderTimestamp, formatTime(r.Timestamp)},
		{HeaderAttempts, strconv.Itoa(l.Attempts)},
		{HeaderFirstFailure, formatTime(l.FirstFailure)},
		{HeaderLastFailure, formatTime(l.LastFailure)},
		{HeaderPipeline, l.Pipeline},
		{HeaderVersion, l.Version},
		{HeaderRedriveCount, strconv.Itoa(l.RedriveCount)},
	}
	if l.OriginalSize > 0 {
		md = append(md, [2]string{HeaderOriginalSize, strconv.Itoa(l.OriginalSize)})
	}
	for _, k := range sortedKeys(l.Details) {
		md = append(md, [2]string{HeaderDetailPrefix + k, l.Details[k]})
	}
	return md
}

// FromKafka reads a dead letter written by the Kafka sink back.
func FromKafka(kr *kgo.Record) (*Letter, error) {
	rec := &record.Record{Key: kr.Key, Value: kr.Value}
	fields := map[string]string{}
	details := map[string]string{}
	for _, h := range kr.Headers {
		switch {
		case strings.HasPrefix(h.Key, HeaderDetailPrefix):
			details[strings.TrimPrefix(h.Key, HeaderDetailPrefix)] = string(h.Value)
		case strings.HasPrefix(h.Key, headerPrefix):
			fields[h.Key] = string(h.Value)
		default:
			rec.Headers = append(rec.Headers, record.Header{Key: h.Key, Value: h.Value})
		}
	}
	if fields[HeaderID] == "" {
		return nil, fmt.Errorf("%w: %s/%d@%d has no %s header", ErrNotLetter, kr.Topic, kr.Partition, kr.Offset, HeaderID)
	}
	f := flat{
		Stage: fields[HeaderStage], Class: fields[HeaderClass], Message: fields[HeaderMessage],
		Source: fields[HeaderSource], Stream: fields[HeaderStream], Partition: fields[HeaderPartition],
		Position: fields[HeaderPosition], Timestamp: fields[HeaderTimestamp],
		Attempts: fields[HeaderAttempts], FirstFailure: fields[HeaderFirstFailure],
		LastFailure: fields[HeaderLastFailure], Pipeline: fields[HeaderPipeline],
		Version: fields[HeaderVersion], RedriveCount: fields[HeaderRedriveCount],
		OriginalSize: fields[HeaderOriginalSize],
	}
	l, err := f.letter(rec)
	if err != nil {
		return nil, fmt.Errorf("dead letter %s: %w", fields[HeaderID], err)
	}
	if len(details) > 0 {
		l.Details = details
	}
	return l, nil
}

// jsonEnvelope is the JSON form of a letter (Kinesis and the file sink).
// []byte fields marshal as standard base64.
type jsonEnvelope struct {
	ID           string            `json:"id"`
	Stage        string            `json:"stage"`
	Class        string            `json:"class"`
	Message      string            `json:"message"`
	Source       string            `json:"source"`
	Stream       string            `json:"stream"`
	Partition    string            `json:"partition"`
	Position     string            `json:"position"`
	Timestamp    string            `json:"timestamp,omitempty"`
	Attempts     int               `json:"attempts"`
	FirstFailure string            `json:"first_failure,omitempty"`
	LastFailure  string            `json:"last_failure,omitempty"`
	Pipeline     string            `json:"pipeline,omitempty"`
	Version      string            `json:"version,omitempty"`
	RedriveCount int               `json:"redrive_count"`
	Details      map[string]string `json:"details,omitempty"`
	Key          []byte            `json:"key_b64,omitempty"`
	Value        []byte            `json:"value_b64"`
	OriginalSize int               `json:"original_size,omitempty"`
	Headers      []jsonHeader      `json:"headers,omitempty"`
}

type jsonHeader struct {
	Key   string `json:"key"`
	Value []byte `json:"value_b64"`
}

// ToJSON renders a letter as the JSON envelope (one line, no newline).
func ToJSON(l *Letter) ([]byte, error) {
	r := l.Record
	e := jsonEnvelope{
		ID: l.ID(), Stage: string(l.Stage), Class: l.Class, Message: l.Message,
		Source: r.Source.String(), Stream: r.Partition.Stream, Partition: partitionString(r),
		Position: r.Position.String(), Timestamp: formatTime(r.Timestamp),
		Attempts: l.Attempts, FirstFailure: formatTime(l.FirstFailure), LastFailure: formatTime(l.LastFailure),
		Pipeline: l.Pipeline, Version: l.Version, RedriveCount: l.RedriveCount, Details: l.Details,
		Key: r.Key, Value: r.Value, OriginalSize: l.OriginalSize,
	}
	if e.Value == nil {
		e.Value = []byte{}
	}
	for _, h := range r.Headers {
		e.Headers = append(e.Headers, jsonHeader{Key: h.Key, Value: h.Value})
	}
	return json.Marshal(e)
}

// FromJSON reads a JSON envelope back.
func FromJSON(b []byte) (*Letter, error) {
	var e jsonEnvelope
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotLetter, err)
	}
	if e.ID == "" {
		return nil, fmt.Errorf("%w: no id", ErrNotLetter)
	}
	rec := &record.Record{Key: e.Key, Value: e.Value}
	for _, h := range e.Headers {
		rec.Headers = append(rec.Headers, record.Header{Key: h.Key, Value: h.Value})
	}
	f := flat{
		Stage: e.Stage, Class: e.Class, Message: e.Message, Source: e.Source, Stream: e.Stream,
		Partition: e.Partition, Position: e.Position, Timestamp: e.Timestamp,
		Attempts: strconv.Itoa(e.Attempts), FirstFailure: e.FirstFailure, LastFailure: e.LastFailure,
		Pipeline: e.Pipeline, Version: e.Version, RedriveCount: strconv.Itoa(e.RedriveCount),
		OriginalSize: strconv.Itoa(e.OriginalSize),
	}
	l, err := f.letter(rec)
	if err != nil {
		return nil, fmt.Errorf("dead letter %s: %w", e.ID, err)
	}
	l.Details = e.Details
	return l, nil
}

// flat is the envelope's metadata as text, the common ground of the Kafka
// headers and the JSON form, so that both decode through one path.
type flat struct {
	Stage, Class, Message, Source, Stream, Partition, Position, Timestamp string
	Attempts, FirstFailure, LastFailure, Pipeline, Version, RedriveCount  string
	OriginalSize                                                          string
}

func (f flat) letter(rec *record.Record) (*Letter, error) {
	var errs []error
	num := func(name, s string) int {
		if s == "" {
			return 0
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", name, s, err))
		}
		return n
	}
	tm := func(name, s string) time.Time {
		if s == "" {
			return time.Time{}
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", name, s, err))
		}
		return t
	}
	rec.Partition.Stream = f.Stream
	switch f.Source {
	case "kafka":
		rec.Source = record.Kafka
		rec.Partition.Partition = int32(num("partition", f.Partition))
		off, err := strconv.ParseInt(f.Position, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("kafka offset %q: %w", f.Position, err))
		}
		rec.Position.Offset = off
	case "kinesis":
		rec.Source = record.Kinesis
		rec.Partition.Shard = f.Partition
		seq, sub, ok := strings.Cut(f.Position, ".")
		rec.Position.Seq = seq
		if ok {
			rec.Position.Sub = int64(num("sub-sequence", sub))
		}
	default:
		errs = append(errs, fmt.Errorf("unknown source %q", f.Source))
	}
	rec.Timestamp = tm("timestamp", f.Timestamp)
	l := &Letter{
		Record: rec, Stage: Stage(f.Stage), Class: f.Class, Message: f.Message,
		Attempts: num("attempts", f.Attempts), FirstFailure: tm("first failure", f.FirstFailure),
		LastFailure: tm("last failure", f.LastFailure), Pipeline: f.Pipeline, Version: f.Version,
		RedriveCount: num("redrive count", f.RedriveCount), OriginalSize: num("original size", f.OriginalSize),
	}
	return l, errors.Join(errs...)
}

// RedriveCount is how many times a record has been redriven, read from the
// header the redrive tool sets on Kafka records. Kinesis records carry no
// headers, so it is always 0 for them (see README.md).
func RedriveCount(rec *record.Record) int {
	for i := len(rec.Headers) - 1; i >= 0; i-- {
		if rec.Headers[i].Key == HeaderRedrive {
			n, err := strconv.Atoi(string(rec.Headers[i].Value))
			if err != nil || n < 0 {
				return 0
			}
			return n
		}
	}
	return 0
}

func partitionString(r *record.Record) string {
	if r.Source == record.Kinesis {
		return r.Partition.Shard
	}
	return strconv.Itoa(int(r.Partition.Partition))
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

// fitValue returns l when size(l) is within limit, and otherwise a copy whose
// value is cut to a prefix that fits, with OriginalSize set. A dead letter
// that cannot be written would block the pipeline forever; a truncated one
// keeps its coordinates, so the original can still be found at the source.
func fitValue(l *Letter, limit int, size func(*Letter) int) *Letter {
	over := size(l) - limit
	if over <= 0 {
		return l
	}
	cut := *l
	rec := *l.Record
	cut.Record = &rec
	cut.OriginalSize = len(l.Record.Value)
	rec.Value = nil
	fixed := size(&cut)
	if fixed >= limit {
		return &cut // nothing of the value fits
	}
	// The encoding's cost per value byte (1 in Kafka, 4/3 in base64 JSON)
	// scales the prefix; the loop trims what rounding leaves over.
	keep := int(int64(len(l.Record.Value)) * int64(limit-fixed) / int64(size(l)-fixed))
	for {
		rec.Value = l.Record.Value[:keep]
		over := size(&cut) - limit
		if over <= 0 || keep == 0 {
			return &cut
		}
		keep = max(keep-over, 0)
	}
}

// kafkaSize approximates a letter's size as a Kafka record.
func kafkaSize(l *Letter) int {
	n := len(l.Record.Key) + len(l.Record.Value)
	for _, h := range l.Record.Headers {
		n += len(h.Key) + len(h.Value)
	}
	for _, kv := range metadata(l) {
		n += len(kv[0]) + len(kv[1])
	}
	return n
}

// jsonSize is a letter's size as a JSON envelope.
func jsonSize(l *Letter) int {
	b, err := ToJSON(l)
	if err != nil {
		return 0
	}
	return len(b)
}
