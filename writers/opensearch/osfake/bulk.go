package osfake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"time"
)

// maxIDBytes is OpenSearch's limit on a document id (since 2.9).
const maxIDBytes = 512

type index struct {
	name        string
	docs        map[string]*doc
	mapping     mapping
	seqNo       int64
	refreshedAt time.Time
	searchable  int // documents visible to search as of the last refresh
}

type doc struct {
	source  []byte
	version int64
	seqNo   int64
}

// refreshInterval is OpenSearch's default index.refresh_interval: counts see
// writes only after a refresh, explicit or periodic.
const refreshInterval = time.Second

func (i *index) refresh() {
	i.searchable = len(i.docs)
	i.refreshedAt = time.Now()
}

func (i *index) searchableCount() int {
	if time.Since(i.refreshedAt) >= refreshInterval {
		i.refresh()
	}
	return i.searchable
}

// op is one parsed bulk action with its source line.
type op struct {
	action      string // index | create | update | delete
	index, id   string
	version     int64
	versionType string // internal | external | external_gte
	ifSeqNo     *int64
	source      []byte
}

// bulkParseError is a request-level failure: the whole request gets a 400.
type bulkParseError struct {
	typ, reason string
}

var allowedMeta = map[string]bool{
	"_index": true, "_id": true, "routing": true, "version": true, "version_type": true,
	"if_seq_no": true, "if_primary_term": true, "pipeline": true, "require_alias": true,
	"retry_on_conflict": true, "_source": true,
}

func (s *Server) serveBulk(w http.ResponseWriter, r *http.Request, body []byte, pathIndex string) {
	start := time.Now()
	n := s.bulkInFlight.Add(1)
	defer s.bulkInFlight.Add(-1)
	s.count(func(st *Stats) {
		st.BulkRequests++
		st.MaxBulkInFlight = max(st.MaxBulkInFlight, n)
	})

	ops, perr := parseBulk(body, pathIndex)
	if perr != nil {
		writeError(w, http.StatusBadRequest, perr.typ, perr.reason)
		return
	}
	s.mu.Lock()
	itemFaults := s.faults.ItemReject429
	outs := make([]itemOut, len(ops))
	allFast := true
	for i, o := range ops {
		if itemFaults > 0 && s.rng.Float64() < itemFaults {
			s.stats.Rejected429++
			outs[i] = itemOut{m: itemError(o, http.StatusTooManyRequests, "rejected_execution_exception",
				"rejected execution of primary operation [shard_detail=["+o.index+"][0]]", nil)}
		} else {
			outs[i] = s.apply(o)
		}
		allFast = allFast && outs[i].fast
	}
	s.mu.Unlock()
	if r.URL.Query().Get("refresh") == "true" {
		s.serveRefreshQuiet(ops)
	}
	took := time.Since(start).Milliseconds()
	if allFast {
		writeFastAnswer(w, took, outs)
		return
	}
	items := make([]any, len(ops))
	errors := false
	for i, o := range ops {
		res := outs[i].result()
		if _, failed := res["error"]; failed {
			errors = true
		}
		items[i] = map[string]any{o.action: res}
	}
	writeJSON(w, http.StatusOK, map[string]any{"took": took, "errors": errors, "items": items})
}

func (s *Server) serveRefreshQuiet(ops []op) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range ops {
		if idx, ok := s.indices[o.index]; ok {
			idx.refresh()
		}
	}
}

// parseBulk reads the NDJSON body strictly: every line complete, every action
// line an object with one known action and known parameters.
func parseBulk(body []byte, pathIndex string) ([]op, *bulkParseError) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, &bulkParseError{"action_request_validation_exception", "Validation Failed: 1: no requests added;"}
	}
	if body[len(body)-1] != '\n' {
		return nil, &bulkParseError{"illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]"}
	}
	lines := bytes.Split(body[:len(body)-1], []byte{'\n'})
	ops := make([]op, 0, len(lines)/2+1)
	var invalid []string
	for i := 0; i < len(lines); i++ {
		lineNo := i + 1
		line := bytes.TrimSuffix(lines[i], []byte{'\r'})
		o, fast := parseActionFast(line, pathIndex)
		if !fast {
			var err *bulkParseError
			if o, err = parseAction(line, lineNo, pathIndex); err != nil {
				return nil, err
			}
		}
		if o.action != "delete" {
			if i+1 >= len(lines) {
				return nil, &bulkParseError{"illegal_argument_exception", fmt.Sprintf("Action/metadata line [%d] is missing its source line", lineNo)}
			}
			i++
			o.source = lines[i]
		}
		if msg := validateOp(o); msg != "" {
			invalid = append(invalid, msg)
		}
		ops = append(ops, o)
	}
	if len(invalid) > 0 {
		var b strings.Builder
		b.WriteString("Validation Failed: ")
		for i, m := range invalid {
			fmt.Fprintf(&b, "%d: %s;", i+1, m)
		}
		return nil, &bulkParseError{"action_request_validation_exception", b.String()}
	}
	return ops, nil
}

func parseAction(line []byte, lineNo int, pathIndex string) (op, *bulkParseError) {
	malformed := func(format string, args ...any) *bulkParseError {
		return &bulkParseError{"illegal_argument_exception", fmt.Sprintf("Malformed action/metadata line [%d], ", lineNo) + fmt.Sprintf(format, args...)}
	}
	v, err := decodeJSON(line)
	if err != nil {
		if len(bytes.TrimSpace(line)) == 0 {
			return op{}, malformed("expected START_OBJECT but found [null]")
		}
		return op{}, &bulkParseError{"json_parse_exception", fmt.Sprintf("line [%d]: %v", lineNo, err)}
	}
	outer, ok := v.(map[string]any)
	if !ok {
		return op{}, malformed("expected START_OBJECT but found [%s]", tokenName(v))
	}
	if len(outer) != 1 {
		return op{}, malformed("expected exactly one action but found [%d]", len(outer))
	}
	var o op
	var metaV any
	for k, mv := range outer {
		o.action, metaV = k, mv
	}
	switch o.action {
	case "index", "create", "update", "delete":
	default:
		return op{}, malformed("expected field [create], [delete], [index] or [update] but found [%s]", o.action)
	}
	meta, ok := metaV.(map[string]any)
	if !ok {
		return op{}, malformed("expected START_OBJECT but found [%s]", tokenName(metaV))
	}
	o.index, o.versionType = pathIndex, "internal"
	for k, val := range meta {
		if !allowedMeta[k] {
			return op{}, &bulkParseError{"illegal_argument_exception", fmt.Sprintf("Action/metadata line [%d] contains an unknown parameter [%s]", lineNo, k)}
		}
		switch k {
		case "_index", "_id", "version_type":
			str, ok := val.(string)
			if !ok {
				return op{}, malformed("field [%s] must be a string", k)
			}
			switch k {
			case "_index":
				o.index = str
			case "_id":
				o.id = str
			default:
				o.versionType = str
			}
		case "version", "if_seq_no":
			num, ok := val.(json.Number)
			n, err := num.Int64()
			if !ok || err != nil {
				return op{}, malformed("field [%s] must be an integer", k)
			}
			if k == "version" {
				o.version = n
			} else {
				o.ifSeqNo = &n
			}
		}
	}
	return o, nil
}

func validateOp(o op) string {
	switch {
	case o.index == "":
		return "index is missing"
	case len(o.id) > maxIDBytes:
		return fmt.Sprintf("id [%s] is too long, must be no longer than 512 bytes but was: %d", o.id, len(o.id))
	case o.action != "index" && o.action != "create" && o.id == "":
		return "id is missing"
	case o.versionType != "internal" && o.versionType != "external" && o.versionType != "external_gte":
		return fmt.Sprintf("version_type [%s] is not supported", o.versionType)
	case o.action == "create" && o.versionType != "internal":
		return "create operations only support internal versioning. use index instead"
	case o.versionType != "internal" && o.version <= 0:
		return fmt.Sprintf("illegal version value [%d] for version type [%s]", o.version, o.versionType)
	case o.versionType == "internal" && o.version != 0:
		return "internal versioning can not be used for optimistic concurrency control. Please use `if_seq_no` and `if_primary_term` instead"
	}
	return ""
}

// invalidIndexName returns why OpenSearch refuses name, or "".
func invalidIndexName(name string) string {
	switch {
	case name != strings.ToLower(name):
		return "must be lowercase"
	case strings.ContainsAny(name, "\\/*?\"<>| ,#:"):
		return `must not contain the following characters [ , ", *, \, <, |, ,, >, /, ?, #, :]`
	case strings.HasPrefix(name, "_") || strings.HasPrefix(name, "-") || strings.HasPrefix(name, "+"):
		return "must not start with '_', '-', or '+'"
	case name == "." || name == "..":
		return "must not be '.' or '..'"
	case len(name) > 255:
		return "index name is too long"
	}
	return ""
}

// apply executes one operation. Callers hold s.mu.
func (s *Server) apply(o op) itemOut {
	if why := invalidIndexName(o.index); why != "" {
		return itemOut{m: itemError(o, http.StatusBadRequest, "invalid_index_name_exception", fmt.Sprintf("Invalid index name [%s], %s", o.index, why), nil)}
	}
	idx, ok := s.indices[o.index]
	if !ok {
		// Every write action auto-creates its index, even one that then fails.
		idx = s.createIndex(o.index)
	}
	if o.id == "" {
		o.id = s.autoID()
	}
	existing := idx.docs[o.id]
	if o.ifSeqNo != nil && (existing == nil || existing.seqNo != *o.ifSeqNo) {
		current := int64(-2)
		if existing != nil {
			current = existing.seqNo
		}
		return itemOut{m: itemError(o, http.StatusConflict, "version_conflict_engine_exception",
			fmt.Sprintf("[%s]: version conflict, required seqNo [%d], primary term [1]. current document has seqNo [%d] and primary term [1]", o.id, *o.ifSeqNo, current), nil)}
	}
	switch o.action {
	case "delete":
		if existing == nil {
			return itemOut{m: itemResult(o, http.StatusNotFound, "not_found", 1, idx.nextSeqNo())}
		}
		if conflict := versionConflict(o, existing); conflict != nil {
			return itemOut{m: conflict}
		}
		delete(idx.docs, o.id)
		return itemOut{m: itemResult(o, http.StatusOK, "deleted", nextVersion(o, existing), idx.nextSeqNo())}
	case "update":
		return itemOut{m: s.applyUpdate(idx, o, existing)}
	}
	if o.action == "create" && existing != nil {
		return itemOut{m: itemError(o, http.StatusConflict, "version_conflict_engine_exception",
			fmt.Sprintf("[%s]: version conflict, document already exists (current version [%d])", o.id, existing.version), nil)}
	}
	if conflict := versionConflict(o, existing); conflict != nil {
		return itemOut{m: conflict}
	}
	// A flat document is checked without being decoded, in members kept
	// from one document to the next; the general path decides about the rest
	// and says why it rejects one.
	var src []byte
	var flat, added bool
	if s.flat, flat = scanFlat(o.source, s.flat[:0]); flat {
		var m mapping
		if m, added = idx.mapping.applyFlat(s.flat); added {
			for k, t := range m {
				idx.mapping[k] = t
			}
			src = append([]byte(nil), o.source...)
		}
	}
	if !added {
		var failure map[string]any
		if src, failure = s.checkSource(idx, o, o.source); failure != nil {
			return itemOut{m: failure}
		}
	}
	d := &doc{source: src, version: nextVersion(o, existing), seqNo: idx.nextSeqNo()}
	idx.docs[o.id] = d
	if existing == nil {
		return itemOut{fast: true, r: okResult{o.action, o.index, o.id, "created", d.version, d.seqNo, http.StatusCreated}}
	}
	return itemOut{fast: true, r: okResult{o.action, o.index, o.id, "updated", d.version, d.seqNo, http.StatusOK}}
}

func (s *Server) applyUpdate(idx *index, o op, existing *doc) map[string]any {
	v, err := decodeJSON(o.source)
	body, _ := v.(map[string]any)
	if err != nil || body == nil {
		return itemError(o, http.StatusBadRequest, "x_content_parse_exception", "[1:2] [UpdateRequest] failed to parse update body", nil)
	}
	partial, hasDoc := body["doc"].(map[string]any)
	if existing == nil {
		var src any
		switch {
		case hasDoc && body["doc_as_upsert"] == true:
			src = partial
		case body["upsert"] != nil:
			src = body["upsert"]
		default:
			return itemError(o, http.StatusNotFound, "document_missing_exception", "["+o.id+"]: document missing", nil)
		}
		raw, _ := json.Marshal(src)
		checked, failure := s.checkSource(idx, o, raw)
		if failure != nil {
			return failure
		}
		d := &doc{source: checked, version: 1, seqNo: idx.nextSeqNo()}
		idx.docs[o.id] = d
		return itemResult(o, http.StatusCreated, "created", d.version, d.seqNo)
	}
	if !hasDoc {
		return itemError(o, http.StatusBadRequest, "action_request_validation_exception", "Validation Failed: 1: script or doc is missing;", nil)
	}
	cur, _ := decodeJSON(existing.source)
	curObj, _ := cur.(map[string]any)
	merged := mergeObjects(curObj, partial)
	if reflect.DeepEqual(merged, curObj) {
		return itemResult(o, http.StatusOK, "noop", existing.version, existing.seqNo)
	}
	raw, _ := json.Marshal(merged)
	checked, failure := s.checkSource(idx, o, raw)
	if failure != nil {
		return failure
	}
	d := &doc{source: checked, version: existing.version + 1, seqNo: idx.nextSeqNo()}
	idx.docs[o.id] = d
	return itemResult(o, http.StatusOK, "updated", d.version, d.seqNo)
}

// checkSource parses a document and applies it to the index mapping, which
// grows by the new fields only when the document is accepted.
func (s *Server) checkSource(idx *index, o op, src []byte) ([]byte, map[string]any) {
	v, err := decodeJSON(src)
	return s.checkParsed(idx, o, src, v, err)
}

func (s *Server) checkParsed(idx *index, o op, src []byte, v any, err error) ([]byte, map[string]any) {
	if err != nil {
		return nil, itemError(o, http.StatusBadRequest, "mapper_parsing_exception", "failed to parse",
			map[string]any{"type": "json_parse_exception", "reason": err.Error()})
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, itemError(o, http.StatusBadRequest, "mapper_parsing_exception", "failed to parse",
			map[string]any{"type": "not_x_content_exception", "reason": "Compressor detection can only be called on some xcontent bytes or compressed xcontent bytes"})
	}
	added, merr := idx.mapping.apply(obj, o.id)
	if merr != nil {
		var cause map[string]any
		if merr.causeType != "" {
			cause = map[string]any{"type": merr.causeType, "reason": merr.causeReason}
		}
		return nil, itemError(o, http.StatusBadRequest, "mapper_parsing_exception", merr.reason, cause)
	}
	for k, t := range added {
		idx.mapping[k] = t
	}
	return append([]byte(nil), src...), nil
}

func versionConflict(o op, existing *doc) map[string]any {
	if existing == nil || o.versionType == "internal" {
		return nil
	}
	if existing.version > o.version || existing.version == o.version && o.versionType == "external" {
		return itemError(o, http.StatusConflict, "version_conflict_engine_exception",
			fmt.Sprintf("[%s]: version conflict, current version [%d] is higher or equal to the one provided [%d]", o.id, existing.version, o.version), nil)
	}
	return nil
}

func nextVersion(o op, existing *doc) int64 {
	switch {
	case o.versionType != "internal":
		return o.version
	case existing != nil:
		return existing.version + 1
	}
	return 1
}

func (i *index) nextSeqNo() int64 {
	n := i.seqNo
	i.seqNo++
	return n
}

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// autoID makes a 20-character id like OpenSearch's generated ones. Callers hold s.mu.
func (s *Server) autoID() string {
	b := make([]byte, 20)
	for i := range b {
		b[i] = idAlphabet[s.rng.IntN(len(idAlphabet))]
	}
	return string(b)
}

func mergeObjects(dst, patch map[string]any) map[string]any {
	out := make(map[string]any, len(dst)+len(patch))
	for k, v := range dst {
		out[k] = v
	}
	for k, v := range patch {
		if pv, ok := v.(map[string]any); ok {
			if dv, ok := out[k].(map[string]any); ok {
				out[k] = mergeObjects(dv, pv)
				continue
			}
		}
		out[k] = v
	}
	return out
}

func itemResult(o op, status int, result string, version, seqNo int64) map[string]any {
	return map[string]any{
		"_index": o.index, "_id": o.id, "_version": version, "result": result,
		"_shards": map[string]int{"total": 2, "successful": 1, "failed": 0},
		"_seq_no": seqNo, "_primary_term": 1, "status": status,
	}
}

func itemError(o op, status int, typ, reason string, cause map[string]any) map[string]any {
	e := map[string]any{"type": typ, "reason": reason, "index": o.index, "shard": "0", "index_uuid": "osfake-" + o.index}
	if cause != nil {
		e["caused_by"] = cause
	}
	return map[string]any{"_index": o.index, "_id": o.id, "status": status, "error": e}
}
