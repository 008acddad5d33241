package registry

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/sr"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/config/conf"
	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/schema/avro"
	"github.com/sinkd/sinkd/schema/jsonschema"
	"github.com/sinkd/sinkd/schema/protobuf"
)

// SchemaChange is a record whose writer schema, merged into the file schema,
// changes the Parquet schema (a field added, a type widened). It is not a
// record at fault: the pipeline closes its files and starts again with
// Fields, the merged field list, then reads the record again.
type SchemaChange struct {
	ID     int
	Fields []conf.Field
}

func (e *SchemaChange) Error() string {
	return "schema id " + strconv.Itoa(e.ID) + " changes the Parquet schema: the files in progress close and the pipeline starts again with the merged schema"
}

// IncompatibleError is a record whose writer schema cannot be merged into
// the file schema, with on_incompatible: stop. It ends the run.
type IncompatibleError struct {
	ID  int
	Err error
}

func (e *IncompatibleError) Error() string {
	return fmt.Sprintf("schema id %d cannot be merged into the file schema (schema.registry.on_incompatible is stop): %v", e.ID, e.Err)
}

// InputOptions configure an Input.
type InputOptions struct {
	// Format is sr.TypeAvro, sr.TypeProtobuf or sr.TypeJSON (JSON Schema).
	Format  sr.SchemaType
	Subject string
	// Message is the full name of the Protobuf message records hold; empty
	// for the first message of the subject's latest schema.
	Message string
	// Fields, when set, are the file schema of an earlier run in this
	// process (after a SchemaChange): the subject's latest schema is merged
	// into them, so that a schema seen once is never lost to a restart.
	Fields []conf.Field
	// Stop makes an incompatible schema end the run (IncompatibleError)
	// instead of dead-lettering its records.
	Stop bool
	// CDC reads Debezium envelopes (Avro, Protobuf or JSON Schema): the row
	// is the after image (the before image of a delete when KeepDeletes is
	// set), plus __op and __source_ts_ms; tombstones (empty values) are
	// skipped.
	CDC, KeepDeletes bool
	// Changes, when set, counts the outcome of every writer schema met in
	// records (sinkd_schema_changes_total).
	Changes *Changes
}

// maxWriters bounds the decoders kept by schema id (and by message index).
const maxWriters = 1024

// maxMessageIndexes bounds the Protobuf message index list of a record.
const maxMessageIndexes = 64

// Input decodes wire-format records, Avro or Protobuf, into rows of the
// schema derived from a subject's latest schema, merged with every writer
// schema met so far. Not safe for concurrent use.
type Input struct {
	client  *Client
	o       InputOptions
	fields  []conf.Field
	schema  *schema.Schema
	message protoreflect.FullName
	byID    map[int]*writer
	json    *schema.Decoder // JSON Schema: one decoder reads every writer's records
	jsonCDC *schema.CDCDecoder
}

// writer is what one schema id decodes with.
type writer struct {
	avro    rowDecoder // an *AvroDecoder or *AvroCDCDecoder
	json    bool
	file    protoreflect.FileDescriptor
	byIndex map[string]rowDecoder // Protobuf: a *ProtoDecoder or *ProtoCDCDecoder, by the raw message indexes
	err     error                 // a record at fault whatever its payload
}

// rowDecoder is the Avro or Protobuf decoder (plain or CDC) of one writer
// schema.
type rowDecoder interface {
	Decode(payload []byte, row parquet.Row) (parquet.Row, error)
}

// NewInput derives the Parquet schema from the subject's latest schema
// (merged into o.Fields when set).
func NewInput(ctx context.Context, client *Client, o InputOptions) (*Input, error) {
	in := &Input{client: client, o: o, byID: map[int]*writer{}}
	latest, err := client.Latest(ctx, o.Subject)
	if err != nil {
		return nil, fmt.Errorf("schema registry subject %q: %w", o.Subject, err)
	}
	if latest.Type != o.Format {
		return nil, fmt.Errorf("schema registry subject %q holds %s schemas, not %s", o.Subject, latest.Type, o.Format)
	}
	var fields []conf.Field
	if o.Format == sr.TypeProtobuf {
		fd, err := in.compile(ctx, latest.Schema)
		if err != nil {
			return nil, fmt.Errorf("schema registry subject %q: %w", o.Subject, err)
		}
		md, err := protobuf.Message(fd, nil)
		if o.Message != "" {
			md, _, err = protobuf.ByName(fd, o.Message)
		}
		if err != nil {
			return nil, fmt.Errorf("schema registry subject %q: %w", o.Subject, err)
		}
		in.message = md.FullName()
		if fields, err = protoFields(md, o.CDC); err != nil {
			return nil, fmt.Errorf("schema registry subject %q: %w", o.Subject, err)
		}
	} else {
		if fields, err = in.derive(latest.Schema.Schema); err != nil {
			return nil, fmt.Errorf("schema registry subject %q: %w", o.Subject, err)
		}
	}
	if o.Fields != nil {
		if fields, err = schema.Merge(o.Fields, fields); err != nil {
			return nil, fmt.Errorf("schema registry subject %q: its latest schema cannot be merged into the file schema: %w", o.Subject, err)
		}
	}
	if in.schema, err = schema.New(fields); err != nil {
		return nil, fmt.Errorf("schema registry subject %q: %w", o.Subject, err)
	}
	in.fields = fields
	key := strconv.Itoa(latest.ID)
	if o.Format == sr.TypeProtobuf {
		key += "/" + string(in.message)
	}
	o.Changes.known(key)
	return in, nil
}

// protoFields derives the fields of a Protobuf message (a Debezium
// envelope's row message and the CDC columns, with cdc).
func protoFields(md protoreflect.MessageDescriptor, cdc bool) ([]conf.Field, error) {
	if !cdc {
		return protobuf.Fields(md)
	}
	value, err := schema.ProtoEnvelopeValue(md)
	if err != nil {
		return nil, err
	}
	fields, err := protobuf.Fields(value)
	if err != nil {
		return nil, err
	}
	return schema.CDCFields(fields), nil
}

// derive derives the fields of an Avro or JSON Schema text (a Debezium
// envelope's row and the CDC columns, with CDC).
func (in *Input) derive(text string) ([]conf.Field, error) {
	switch {
	case in.o.Format == sr.TypeJSON && in.o.CDC:
		fields, err := jsonschema.EnvelopeFields(text)
		if err != nil {
			return nil, err
		}
		return schema.CDCFields(fields), nil
	case in.o.Format == sr.TypeJSON:
		return jsonschema.Fields(text)
	case in.o.CDC:
		fields, err := avro.EnvelopeFields(text)
		if err != nil {
			return nil, err
		}
		return schema.CDCFields(fields), nil
	}
	return avro.Fields(text)
}

// NewAvroInput is NewInput for Avro records of subject.
func NewAvroInput(ctx context.Context, client *Client, subject string) (*Input, error) {
	return NewInput(ctx, client, InputOptions{Format: sr.TypeAvro, Subject: subject})
}

// Schema is the Parquet schema rows are decoded into.
func (in *Input) Schema() *schema.Schema { return in.schema }

// Close releases the registry client's connections.
func (in *Input) Close() { in.client.Close() }

// Fields is the field list of Schema.
func (in *Input) Fields() []conf.Field { return in.fields }

// Decode decodes one record value. A record at fault gives a *schema.Error
// (dead-letter it); a registry outage an *OutageError (retry later); a
// writer schema that changes the file schema a *SchemaChange; an
// incompatible one with Stop set an *IncompatibleError.
func (in *Input) Decode(ctx context.Context, value []byte, row parquet.Row) (parquet.Row, error) {
	if in.o.CDC && len(value) == 0 {
		return row[:0], schema.ErrSkip // a tombstone, which compaction needs after a delete
	}
	id, payload, werr := SplitWire(value)
	if werr != nil {
		return row[:0], werr
	}
	w, ok := in.byID[id]
	if !ok {
		if len(in.byID) >= maxWriters {
			// Ids are few in practice; a flood of unknown ones must not
			// grow memory. The client still caches the schemas.
			clear(in.byID)
		}
		var err error
		if w, err = in.writer(ctx, id); err != nil {
			return row[:0], err
		}
	}
	if w.err != nil {
		return row[:0], w.err
	}
	if w.avro != nil {
		return w.avro.Decode(payload, row)
	}
	if w.json && in.o.CDC {
		if in.jsonCDC == nil {
			d, err := in.schema.NewCDCDecoder(in.o.KeepDeletes)
			if err != nil {
				return row[:0], err
			}
			in.jsonCDC = d
		}
		return in.jsonCDC.Decode(payload, row)
	}
	if w.json {
		if in.json == nil {
			in.json = in.schema.NewDecoder()
		}
		return in.json.Decode(payload, row)
	}
	// Protobuf: the message indexes (zigzag varints: a count, then each
	// index; a count of 0 is the first message) come before the payload.
	count, n := binary.Varint(payload)
	if n <= 0 || count < 0 || count > maxMessageIndexes {
		return row[:0], &schema.Error{Class: ClassBadMessageIndex, Expected: "a count of Protobuf message indexes (0 to " + strconv.Itoa(maxMessageIndexes) + ")", Got: indexBytes(payload)}
	}
	end := n
	for range count {
		if _, k := binary.Varint(payload[end:]); k <= 0 {
			return row[:0], &schema.Error{Class: ClassBadMessageIndex, Expected: strconv.FormatInt(count, 10) + " message indexes", Got: indexBytes(payload)}
		} else {
			end += k
		}
	}
	d, ok := w.byIndex[string(payload[:end])]
	if !ok {
		if len(w.byIndex) >= maxWriters {
			clear(w.byIndex) // non-minimal varints make any number of keys
		}
		var err error
		if d, err = in.protoDecoder(id, w, payload[:end]); err != nil {
			return row[:0], err
		}
	}
	return d.Decode(payload[end:], row)
}

func indexBytes(b []byte) string {
	if len(b) > 16 {
		b = b[:16]
	}
	return fmt.Sprintf("bytes % x", b)
}

// writer fetches and prepares schema id. Ids that are records at fault are
// remembered; outages and schema changes are not.
func (in *Input) writer(ctx context.Context, id int) (*writer, error) {
	s, err := in.client.SchemaByID(ctx, id)
	var se *schema.Error
	if errors.As(err, &se) {
		in.byID[id] = &writer{err: se}
		return in.byID[id], nil
	}
	if err != nil {
		return nil, err
	}
	w := &writer{}
	if s.Type != in.o.Format {
		w.err = &schema.Error{Class: ClassSchemaMismatch, Expected: "a " + in.o.Format.String() + " schema id", Got: fmt.Sprintf("id %d, a %s schema", id, s.Type)}
		in.byID[id] = w
		return w, nil
	}
	if in.o.Format == sr.TypeProtobuf {
		fd, err := in.compile(ctx, s)
		if err != nil {
			var oe *OutageError
			if errors.As(err, &oe) {
				return nil, err
			}
			w.err = &schema.Error{Class: ClassSchemaMismatch, Expected: "a Protobuf schema sinkd can compile", Got: fmt.Sprintf("schema id %d: %v", id, err)}
		}
		w.file, w.byIndex = fd, map[string]rowDecoder{}
		in.byID[id] = w
		return w, nil
	}
	fields, err := in.derive(s.Schema)
	if err != nil {
		w.err = &schema.Error{Class: ClassSchemaMismatch, Expected: "a schema with a Parquet schema", Got: fmt.Sprintf("schema id %d: %v", id, err)}
		in.byID[id] = w
		return w, nil
	}
	if err := in.merge(strconv.Itoa(id), id, fields); err != nil {
		var se *schema.Error
		if errors.As(err, &se) {
			w.err = se
			in.byID[id] = w
			return w, nil
		}
		return nil, err
	}
	switch {
	case in.o.Format == sr.TypeJSON:
		w.json = true
	case in.o.CDC:
		w.avro, err = in.schema.NewAvroCDCDecoder(s.Schema, in.o.KeepDeletes)
	default:
		w.avro, err = in.schema.NewAvroDecoder(s.Schema)
	}
	if err != nil {
		w.err = &schema.Error{Class: ClassSchemaMismatch, Expected: "a schema sinkd can bind", Got: fmt.Sprintf("schema id %d: %v", id, err)}
	}
	in.byID[id] = w
	return w, nil
}

// protoDecoder prepares the decoder of one message of a Protobuf writer.
func (in *Input) protoDecoder(id int, w *writer, index []byte) (rowDecoder, error) {
	var path []int
	count, n := binary.Varint(index)
	for i := int64(0); i < count; i++ {
		v, k := binary.Varint(index[n:])
		n += k
		path = append(path, int(v))
	}
	md, err := protobuf.Message(w.file, path)
	if err != nil {
		return nil, &schema.Error{Class: ClassBadMessageIndex, Expected: "message indexes that name a message of schema id " + strconv.Itoa(id), Got: err.Error()}
	}
	if md.FullName() != in.message {
		return nil, &schema.Error{Class: ClassSchemaMismatch, Expected: "a " + string(in.message) + " message", Got: fmt.Sprintf("a %s (schema id %d)", md.FullName(), id)}
	}
	fields, err := protoFields(md, in.o.CDC)
	if err != nil {
		return nil, &schema.Error{Class: ClassSchemaMismatch, Expected: "a message with a Parquet schema", Got: fmt.Sprintf("schema id %d: %v", id, err)}
	}
	if err := in.merge(strconv.Itoa(id)+"/"+string(md.FullName()), id, fields); err != nil {
		return nil, err
	}
	var d rowDecoder
	if in.o.CDC {
		d, err = in.schema.NewProtoCDCDecoder(md, in.o.KeepDeletes)
	} else {
		d, err = in.schema.NewProtoDecoder(md)
	}
	if err != nil {
		return nil, &schema.Error{Class: ClassSchemaMismatch, Expected: "a schema sinkd can bind", Got: fmt.Sprintf("schema id %d: %v", id, err)}
	}
	w.byIndex[string(index)] = d
	return d, nil
}

// merge checks a writer's fields against the file schema: nil when the file
// schema holds them as they are, a *SchemaChange when merging changes the
// Parquet schema, an incompatibility as a record at fault (or an
// IncompatibleError with Stop). key names the writer schema for Changes.
func (in *Input) merge(key string, id int, fields []conf.Field) error {
	err := in.mergeFields(id, fields)
	var change *SchemaChange
	var se *schema.Error
	var ie *IncompatibleError
	switch {
	case err == nil:
		in.o.Changes.count(key, OutcomeSameParquet)
	case errors.As(err, &change):
		in.o.Changes.count(key, OutcomeMerged)
	case errors.As(err, &ie), errors.As(err, &se):
		in.o.Changes.count(key, OutcomeIncompatible)
	}
	return err
}

func (in *Input) mergeFields(id int, fields []conf.Field) error {
	merged, err := schema.Merge(in.fields, fields)
	if err != nil {
		if in.o.Stop {
			return &IncompatibleError{ID: id, Err: err}
		}
		return &schema.Error{Class: schema.ClassIncompatibleSchema, Expected: "a writer schema whose changes merge into the file schema", Got: fmt.Sprintf("schema id %d: %v", id, err)}
	}
	if reflect.DeepEqual(merged, in.fields) {
		return nil
	}
	s, err := schema.New(merged)
	if err != nil {
		return &schema.Error{Class: schema.ClassIncompatibleSchema, Expected: "a writer schema whose changes merge into the file schema", Got: fmt.Sprintf("schema id %d: %v", id, err)}
	}
	if s.Parquet().String() == in.schema.Parquet().String() {
		// The same Parquet schema: no reason to roll files.
		in.fields, in.schema, in.json, in.jsonCDC = merged, s, nil, nil
		clear(in.byID)
		return nil
	}
	return &SchemaChange{ID: id, Fields: merged}
}

// maxReferences bounds the schemas one Protobuf schema may import.
const maxReferences = 256

// compile compiles a Protobuf schema with its references, fetched by
// subject and version.
func (in *Input) compile(ctx context.Context, s sr.Schema) (protoreflect.FileDescriptor, error) {
	refs := map[string]string{}
	pending := append([]sr.SchemaReference(nil), s.References...)
	for len(pending) > 0 {
		r := pending[0]
		pending = pending[1:]
		if _, done := refs[r.Name]; done {
			continue
		}
		if len(refs) >= maxReferences {
			return nil, fmt.Errorf("more than %d references", maxReferences)
		}
		ss, err := in.client.Version(ctx, r.Subject, r.Version)
		if err != nil {
			return nil, fmt.Errorf("reference %s (subject %q version %d): %w", r.Name, r.Subject, r.Version, err)
		}
		refs[r.Name] = ss.Schema.Schema
		pending = append(pending, ss.Schema.References...)
	}
	fd, err := protobuf.Compile(ctx, s.Schema, refs)
	if err != nil {
		return nil, errors.New(strings.ReplaceAll(err.Error(), protobuf.MainFile+":", ""))
	}
	return fd, nil
}

// Open connects to the registry of cfg and derives the Parquet schema from
// its subject; fields, when set, are the file schema of an earlier run in
// this process; cdc, when set, unwraps Debezium envelopes;
// changes, when set, counts the writer schemas met.
func Open(ctx context.Context, cfg config.Registry, format string, fields []conf.Field, cdc *config.CDC, changes *Changes) (*Input, error) {
	tc, err := tlsConfig(cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("schema.registry.tls: %w", err)
	}
	cl, err := NewClient(Options{URL: cfg.URL, Username: cfg.Username, Password: cfg.Password, TLS: tc, Timeout: cfg.Timeout.D()})
	if err != nil {
		return nil, err
	}
	t := sr.TypeAvro
	switch format {
	case "protobuf":
		t = sr.TypeProtobuf
	case "jsonschema":
		t = sr.TypeJSON
	}
	o := InputOptions{Format: t, Subject: cfg.Subject, Message: cfg.Message, Fields: fields, Stop: cfg.OnIncompatible == "stop", Changes: changes}
	if cdc != nil {
		o.CDC, o.KeepDeletes = true, cdc.Deletes == "keep"
	}
	in, err := NewInput(ctx, cl, o)
	if err != nil {
		cl.Close()
		return nil, err
	}
	return in, nil
}
