package osfake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// fieldType is a mapped field's type family. Dynamic mapping only produces
// long, double, text, date, boolean and object; templates may name others,
// which fold into these families.
type fieldType string

const (
	typeLong    fieldType = "long"
	typeDouble  fieldType = "double"
	typeText    fieldType = "text"
	typeKeyword fieldType = "keyword"
	typeDate    fieldType = "date"
	typeBoolean fieldType = "boolean"
	typeObject  fieldType = "object"
)

// familyOf maps an explicit mapping type onto the family whose parsing rules apply.
func familyOf(t string) fieldType {
	switch t {
	case "long", "integer", "short", "byte", "unsigned_long":
		return typeLong
	case "double", "float", "half_float", "scaled_float":
		return typeDouble
	case "keyword", "constant_keyword", "wildcard":
		return typeKeyword
	case "date", "date_nanos":
		return typeDate
	case "boolean":
		return typeBoolean
	case "object", "nested", "flat_object":
		return typeObject
	}
	return typeText
}

// mapping is an index's field types by dotted path ("pickup.lat").
type mapping map[string]fieldType

// mappingError is a document the mapping rejects: a 400 mapper_parsing_exception.
type mappingError struct {
	reason, causeType, causeReason string
}

// decodeJSON parses one JSON value keeping integers apart from decimals, the
// distinction dynamic mapping depends on. It rejects trailing data.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("unexpected data after the document")
	}
	return v, nil
}

// apply checks doc against m, returning the new fields that dynamic mapping
// adds. m itself is not changed, so that a rejected document leaves no trace.
func (m mapping) apply(doc map[string]any, id string) (mapping, *mappingError) {
	added := mapping{}
	if err := m.walk(doc, "", id, added); err != nil {
		return nil, err
	}
	return added, nil
}

func (m mapping) walk(obj map[string]any, prefix, id string, added mapping) *mappingError {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic: the first conflict reported is stable
	for _, k := range keys {
		if k == "" || strings.HasPrefix(k, "_") && prefix == "" {
			if k == "" {
				return &mappingError{reason: "field name cannot be an empty string"}
			}
			return &mappingError{reason: fmt.Sprintf("Field [%s] is a metadata field and cannot be added inside a document. Use the index API request parameters.", k)}
		}
		if err := m.value(prefix+k, obj[k], id, added); err != nil {
			return err
		}
	}
	return nil
}

func (m mapping) lookup(path string, added mapping) (fieldType, bool) {
	if t, ok := m[path]; ok {
		return t, true
	}
	t, ok := added[path]
	return t, ok
}

func (m mapping) value(path string, v any, id string, added mapping) *mappingError {
	if arr, ok := v.([]any); ok {
		for _, e := range arr {
			if err := m.value(path, e, id, added); err != nil {
				return err
			}
		}
		return nil
	}
	if v == nil {
		return nil // null maps nothing and matches every type
	}
	t, known := m.lookup(path, added)
	if !known {
		t = dynamicType(v)
		added[path] = t
	}
	if obj, ok := v.(map[string]any); ok {
		if t != typeObject {
			return parseFailure(path, t, id, v, "illegal_state_exception", "Can't get text on a START_OBJECT")
		}
		return m.walk(obj, path+".", id, added)
	}
	if t == typeObject {
		return &mappingError{reason: fmt.Sprintf("object mapping for [%s] tried to parse field [%s] as object, but found a concrete value", path, lastSegment(path))}
	}
	return checkScalar(path, t, id, v)
}

func dynamicType(v any) fieldType {
	switch x := v.(type) {
	case map[string]any:
		return typeObject
	case bool:
		return typeBoolean
	case json.Number:
		if strings.ContainsAny(string(x), ".eE") {
			return typeDouble
		}
		return typeLong
	case string:
		if isDate(x) {
			return typeDate // date_detection is on by default
		}
	}
	return typeText
}

// checkScalar applies the coercion OpenSearch performs by default: numeric
// strings into numbers, numbers and booleans into text, "true"/"false" into booleans.
func checkScalar(path string, t fieldType, id string, v any) *mappingError {
	switch t {
	case typeText, typeKeyword:
		return nil
	case typeLong:
		switch x := v.(type) {
		case json.Number:
			if _, err := strconv.ParseFloat(string(x), 64); err == nil {
				return nil
			}
		case string:
			if _, err := strconv.ParseFloat(strings.TrimSpace(x), 64); err == nil {
				return nil
			}
			return parseFailure(path, t, id, v, "illegal_argument_exception", fmt.Sprintf("For input string: %q", x))
		}
		return parseFailure(path, t, id, v, "illegal_argument_exception", fmt.Sprintf("Current token (%s) not numeric, can not use numeric value accessors", tokenName(v)))
	case typeDouble:
		switch x := v.(type) {
		case json.Number:
			return nil
		case string:
			if _, err := strconv.ParseFloat(strings.TrimSpace(x), 64); err == nil {
				return nil
			}
			return parseFailure(path, t, id, v, "number_format_exception", fmt.Sprintf("For input string: %q", x))
		}
		return parseFailure(path, t, id, v, "illegal_argument_exception", fmt.Sprintf("Current token (%s) not numeric, can not use numeric value accessors", tokenName(v)))
	case typeBoolean:
		switch x := v.(type) {
		case bool:
			return nil
		case string:
			if x == "true" || x == "false" || x == "" {
				return nil
			}
			return parseFailure(path, t, id, v, "illegal_argument_exception", fmt.Sprintf("Failed to parse value [%s] as only [true] or [false] are allowed.", x))
		}
		return parseFailure(path, t, id, v, "json_parse_exception", fmt.Sprintf("Current token (%s) not of boolean type", tokenName(v)))
	case typeDate:
		switch x := v.(type) {
		case json.Number:
			return nil // epoch_millis
		case string:
			if isDate(x) {
				return nil
			}
			return parseFailure(path, t, id, v, "illegal_argument_exception", fmt.Sprintf("failed to parse date field [%s] with format [strict_date_optional_time||epoch_millis]", x))
		}
		return parseFailure(path, t, id, v, "illegal_argument_exception", "failed to parse date field with format [strict_date_optional_time||epoch_millis]")
	}
	return nil
}

func parseFailure(path string, t fieldType, id string, v any, causeType, causeReason string) *mappingError {
	preview := fmt.Sprint(v)
	if s, ok := v.(string); ok {
		preview = s
	}
	return &mappingError{
		reason:      fmt.Sprintf("failed to parse field [%s] of type [%s] in document with id '%s'. Preview of field's value: '%s'", path, t, id, preview),
		causeType:   causeType,
		causeReason: causeReason,
	}
}

func tokenName(v any) string {
	switch v.(type) {
	case bool:
		return "VALUE_TRUE"
	case string:
		return "VALUE_STRING"
	case json.Number:
		return "VALUE_NUMBER_INT"
	}
	return "START_OBJECT"
}

func lastSegment(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i+1:]
	}
	return path
}

// isDate accepts what strict_date_optional_time accepts in practice: a date,
// optionally followed by a time and a zone.
func isDate(s string) bool {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04", "2006-01-02"} {
		if _, err := time.Parse(layout, s); err == nil {
			return true
		}
	}
	return false
}

// templateMapping reads mappings.properties of an index template into a mapping.
func templateMapping(props map[string]any, prefix string, out mapping) {
	for name, raw := range props {
		def, _ := raw.(map[string]any)
		if def == nil {
			continue
		}
		path := prefix + name
		typ, _ := def["type"].(string)
		if sub, ok := def["properties"].(map[string]any); ok && (typ == "" || familyOf(typ) == typeObject) {
			out[path] = typeObject
			templateMapping(sub, path+".", out)
			continue
		}
		if typ == "" {
			typ = "object"
		}
		out[path] = familyOf(typ)
	}
}
