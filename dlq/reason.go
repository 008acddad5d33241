package dlq

// ReasonOther is the metric reason of any class outside the known set.
const ReasonOther = "other"

// Reason maps a letter's class to the value of the `reason` metric label.
// Classes come from fixed sets in the stages that produce them; anything
// else (a new OpenSearch error type, a typo) is clamped to "other" so that
// the label's cardinality stays bounded whatever the input. The full class
// is still in the letter itself.
func Reason(class string) string {
	switch class {
	// decode and schema
	case "invalid_json", "not_object", "type_mismatch", "missing_field",
		"out_of_range", "invalid_timestamp", "invalid_decimal", "invalid_utf8",
		"unsupported_format":
		return class
	// route and bucket
	case "no_route", "bucket_field_missing", "bucket_template", "invalid_index", "invalid_id":
		return class
	// parquet
	case "encode_error", "write_error":
		return class
	// opensearch item errors, by their error type
	case "mapper_parsing_exception", "document_parsing_exception",
		"strict_dynamic_mapping_exception", "illegal_argument_exception",
		"version_conflict_engine_exception", "index_not_found_exception",
		"invalid_index_name_exception", "action_request_validation_exception",
		"cluster_block_exception", "document_too_large", "bad_request", "rejected":
		return class
	// source-level failures
	case "record_too_large", "bad_aggregate", "checksum_mismatch":
		return class
	}
	return ReasonOther
}
