package dlq

import "slices"

// ReasonOther is the metric reason of any class outside the known set.
const ReasonOther = "other"

// ClassInfo is one row of the dead-letter class table: a class, the stage
// that produces it and what it means to an operator.
type ClassInfo struct {
	Class   string
	Stage   Stage
	Meaning string
}

// classes is the one table of dead-letter classes. The stages produce exactly
// these classes (a test parses the decoder, the bucket templates and the KPL
// reader and checks that every class they can emit is here), and each is a
// value of the `reason` label of sinkd_dlq_records_total. A class outside the
// table (a new OpenSearch error type, a typo) is counted as "other" so that the
// label's cardinality stays bounded whatever the input; the letter itself keeps
// the full class.
var classes = []ClassInfo{
	// decode (package schema): the value is not a JSON object at all
	{"malformed_json", StageDecode, "not valid JSON (syntax error, truncated value, byte-order mark, several values)"},
	{"not_utf8", StageDecode, "a string is not valid UTF-8"},
	{"empty", StageDecode, "the value is empty or only whitespace"},
	{"not_object", StageDecode, "valid JSON, but not an object (array, string, null...)"},
	{"too_deep", StageDecode, "nested deeper than the decoder allows"},
	// decode (packages schema, schema/registry): schema-registry framed input
	{"malformed_avro", StageDecode, "the Avro body does not parse against its writer schema"},
	{"bad_magic_byte", StageDecode, "the value does not start with the registry's magic byte 0"},
	{"truncated_header", StageDecode, "the value is shorter than the magic byte and schema id"},
	{"unknown_schema_id", StageDecode, "the registry does not know the schema id"},
	{"schema_mismatch", StageDecode, "the writer schema does not fit the pipeline's schema"},
	{"malformed_protobuf", StageDecode, "the Protobuf body does not parse against its writer's message (truncated, wrong wire type)"},
	{"bad_message_index", StageDecode, "the Protobuf message indexes are malformed or name no message of the schema"},
	{"bad_envelope", StageDecode, "a CDC record that is not a Debezium change event"},
	{"incompatible_schema", StageDecode, "the writer schema cannot be merged into the file schema (a changed type)"},
	// schema (package schema): an object that does not fit the schema
	{"type_mismatch", StageSchema, "a field has the wrong JSON type or layout"},
	{"missing_required", StageSchema, "a required field is absent"},
	{"null_required", StageSchema, "a required field is null"},
	{"out_of_range", StageSchema, "a number or time does not fit its column"},
	{"duplicate_key", StageSchema, "a field appears twice in the object"},
	// bucket (package buckets): a path, index or id template cannot be filled
	{"missing_field", StageBucket, "a field the template needs is null or missing"},
	{"bad_time", StageBucket, "the event time is missing or outside 0000..9999"},
	// oversize
	{"oversize", StageOversize, "the value is larger than max_record_size"},
	// kpl (Kinesis aggregated records)
	{"kpl_checksum", StageKPL, "the MD5 of a KPL aggregate does not match its trailer"},
	{"kpl_malformed", StageKPL, "a KPL aggregate does not parse"},
	// parquet
	{"encode_error", StageParquet, "the row could not be encoded"},
	{"write_error", StageParquet, "the row could not be written"},
	// opensearch: the writer's own classes, then OpenSearch item error types
	{"invalid_json", StageOpenSearch, "the document body is not valid JSON"},
	{"request_entity_too_large", StageOpenSearch, "one document is larger than the cluster accepts (HTTP 413)"},
	{"mapper_parsing_exception", StageOpenSearch, "a field does not fit the index mapping"},
	{"document_parsing_exception", StageOpenSearch, "a field does not fit the index mapping"},
	{"strict_dynamic_mapping_exception", StageOpenSearch, "a field is not in a strict mapping"},
	{"illegal_argument_exception", StageOpenSearch, "OpenSearch refused an argument (often a mapping limit)"},
	{"version_conflict_engine_exception", StageOpenSearch, "an external version older than the indexed one"},
	{"index_not_found_exception", StageOpenSearch, "the index does not exist and cannot be created"},
	{"invalid_index_name_exception", StageOpenSearch, "the index template produced an invalid name"},
	{"action_request_validation_exception", StageOpenSearch, "OpenSearch refused the request"},
	{"cluster_block_exception", StageOpenSearch, "the index is read-only or blocked"},
	{"document_too_large", StageOpenSearch, "the document is larger than the index accepts"},
	{"bad_request", StageOpenSearch, "HTTP 400 without an error type"},
	{"rejected", StageOpenSearch, "refused after every retry"},
}

// Classes returns the table of dead-letter classes (a copy).
func Classes() []ClassInfo { return slices.Clone(classes) }

// reasons indexes classes; built once, read-only afterwards.
var reasons = func() map[string]struct{} {
	m := make(map[string]struct{}, len(classes))
	for _, c := range classes {
		m[c.Class] = struct{}{}
	}
	return m
}()

// Reason maps a letter's class to the value of the `reason` metric label: the
// class itself when it is in the table, ReasonOther otherwise.
func Reason(class string) string {
	if _, ok := reasons[class]; ok {
		return class
	}
	return ReasonOther
}
