// Package srfake is a strict stand-in for a Confluent-compatible schema
// registry, for tests: no registry can be installed on the machines sinkd is
// developed on (it needs a JVM and Kafka). It follows the Confluent Schema
// Registry REST API reference
// (https://docs.confluent.io/platform/current/schema-registry/develop/api.html)
// for what sinkd and producers use: registering schemas under subjects, global
// ids shared by identical schemas, versions, latest, lookups by id, the
// compatibility levels (global and per subject) enforced on registration and
// checked on request, basic auth, the vnd.schemaregistry.v1+json content type
// and the documented error codes (40401, 40402, 40403, 42201, 42202, 409).
//
// Compatibility is checked for Avro schemas (with hamba/avro's resolution
// rules, the Avro specification's). Protobuf and JSON Schema subjects accept
// every new schema whatever their level: that check is not modelled, and tests
// that depend on it must run against a real registry (SINKD_SCHEMA_REGISTRY_URL).
package srfake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/hamba/avro/v2"
)

// Registry is an in-memory registry. Its zero value is not usable: use New.
type Registry struct {
	mu       sync.Mutex
	schemas  []stored // id-1 -> schema
	subjects map[string][]int
	compat   map[string]string // subject ("" for global) -> level
	user     string
	pass     string
	// Requests counts the requests served, by "METHOD path-pattern", so that
	// tests can check what a client's cache saves.
	Requests map[string]int
}

type stored struct {
	Schema     string      `json:"schema"`
	SchemaType string      `json:"schemaType,omitempty"`
	References []reference `json:"references,omitempty"`
}

type reference struct {
	Name    string `json:"name"`
	Subject string `json:"subject"`
	Version int    `json:"version"`
}

// New returns an empty registry with the default global level, BACKWARD.
// With user set, every request needs that basic-auth user and password.
func New(user, pass string) *Registry {
	return &Registry{
		subjects: map[string][]int{},
		compat:   map[string]string{"": "BACKWARD"},
		user:     user, pass: pass,
		Requests: map[string]int{},
	}
}

const contentType = "application/vnd.schemaregistry.v1+json"

type apiError struct {
	status int
	code   int
	msg    string
}

func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if r.user != "" {
		u, p, ok := req.BasicAuth()
		if !ok || u != r.user || p != r.pass {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error_code": 401, "message": "Unauthorized"})
			return
		}
	}
	parts := strings.Split(strings.Trim(req.URL.EscapedPath(), "/"), "/")
	for i, p := range parts {
		if u, err := pathUnescape(p); err == nil {
			parts[i] = u
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out, aerr := r.route(req, parts)
	if aerr != nil {
		writeJSON(w, aerr.status, map[string]any{"error_code": aerr.code, "message": aerr.msg})
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func pathUnescape(s string) (string, error) {
	return strings.NewReplacer("%2F", "/", "%2f", "/").Replace(s), nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func notFound(code int, what string) *apiError {
	return &apiError{http.StatusNotFound, code, what + " not found"}
}

func (r *Registry) route(req *http.Request, p []string) (any, *apiError) {
	pattern := req.Method + " /" + strings.Join(patternOf(p), "/")
	r.Requests[pattern]++
	switch {
	case req.Method == http.MethodGet && len(p) == 1 && p[0] == "subjects":
		subjects := make([]string, 0, len(r.subjects))
		for s := range r.subjects {
			subjects = append(subjects, s)
		}
		slices.Sort(subjects)
		return subjects, nil
	case req.Method == http.MethodGet && len(p) == 3 && p[0] == "schemas" && p[1] == "ids":
		id, err := strconv.Atoi(p[2])
		if err != nil || id < 1 || id > len(r.schemas) {
			return nil, notFound(40403, "Schema "+p[2])
		}
		return r.schemas[id-1], nil
	case req.Method == http.MethodGet && len(p) == 4 && p[0] == "schemas" && p[1] == "ids" && (p[3] == "versions" || p[3] == "subjects"):
		id, err := strconv.Atoi(p[2])
		if err != nil || id < 1 || id > len(r.schemas) {
			return nil, notFound(40403, "Schema "+p[2])
		}
		type usage struct {
			Subject string `json:"subject"`
			Version int    `json:"version"`
		}
		usages := []usage{}
		subjects := []string{}
		for subject, ids := range r.subjects {
			for v, other := range ids {
				if other == id {
					usages = append(usages, usage{subject, v + 1})
					subjects = append(subjects, subject)
				}
			}
		}
		slices.SortFunc(usages, func(a, b usage) int { return strings.Compare(a.Subject, b.Subject) })
		slices.Sort(subjects)
		if p[3] == "subjects" {
			return subjects, nil
		}
		return usages, nil
	case req.Method == http.MethodGet && len(p) == 3 && p[0] == "subjects" && p[2] == "versions":
		ids, ok := r.subjects[p[1]]
		if !ok {
			return nil, notFound(40401, "Subject '"+p[1]+"'")
		}
		versions := make([]int, len(ids))
		for i := range ids {
			versions[i] = i + 1
		}
		return versions, nil
	case req.Method == http.MethodGet && len(p) == 4 && p[0] == "subjects" && p[2] == "versions":
		v, aerr := r.version(p[1], p[3])
		if aerr != nil {
			return nil, aerr
		}
		return r.subjectSchema(p[1], v), nil
	case req.Method == http.MethodPost && len(p) == 3 && p[0] == "subjects" && p[2] == "versions":
		return r.register(req, p[1])
	case req.Method == http.MethodPost && len(p) == 2 && p[0] == "subjects":
		// Look a schema up in a subject.
		s, aerr := decodeSchema(req)
		if aerr != nil {
			return nil, aerr
		}
		ids, ok := r.subjects[p[1]]
		if !ok {
			return nil, notFound(40401, "Subject '"+p[1]+"'")
		}
		for i, id := range ids {
			if sameSchema(r.schemas[id-1], s) {
				return r.subjectSchema(p[1], i+1), nil
			}
		}
		return nil, notFound(40403, "Schema")
	case (req.Method == http.MethodGet || req.Method == http.MethodPut) && p[0] == "config" && len(p) <= 2:
		subject := ""
		if len(p) == 2 {
			subject = p[1]
		}
		if req.Method == http.MethodPut {
			var body struct {
				Compatibility string `json:"compatibility"`
			}
			if err := json.NewDecoder(req.Body).Decode(&body); err != nil || !validLevel(body.Compatibility) {
				return nil, &apiError{http.StatusUnprocessableEntity, 42203, "Invalid compatibility level"}
			}
			r.compat[subject] = body.Compatibility
			return map[string]string{"compatibility": body.Compatibility}, nil
		}
		level, ok := r.compat[subject]
		if !ok {
			if req.URL.Query().Get("defaultToGlobal") != "true" {
				return nil, notFound(40408, "Subject '"+subject+"' compatibility level")
			}
			level = r.compat[""]
		}
		return map[string]string{"compatibilityLevel": level}, nil
	case req.Method == http.MethodPost && len(p) >= 4 && p[0] == "compatibility" && p[1] == "subjects" && p[3] == "versions":
		s, aerr := decodeSchema(req)
		if aerr != nil {
			return nil, aerr
		}
		ids := r.subjects[p[2]]
		var against []int
		if len(p) == 5 {
			v, aerr := r.version(p[2], p[4])
			if aerr != nil {
				return nil, aerr
			}
			against = []int{ids[v-1]}
		} else {
			against = ids
		}
		msgs, aerr := r.incompatibilities(s, against, r.level(p[2]))
		if aerr != nil {
			return nil, aerr
		}
		return map[string]any{"is_compatible": len(msgs) == 0, "messages": msgs}, nil
	}
	return nil, &apiError{http.StatusNotFound, 404, "HTTP 404 Not Found"}
}

// patternOf replaces the variable parts of a path, for Requests.
func patternOf(p []string) []string {
	out := slices.Clone(p)
	for i := range out {
		if i > 0 && (out[i-1] == "subjects" || out[i-1] == "ids" || out[i-1] == "versions" || out[i-1] == "config") {
			out[i] = "*"
		}
	}
	return out
}

func validLevel(l string) bool {
	switch l {
	case "NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE":
		return true
	}
	return false
}

func (r *Registry) level(subject string) string {
	if l, ok := r.compat[subject]; ok {
		return l
	}
	return r.compat[""]
}

// version resolves "latest", "-1" or a number in subject to a 1-based version.
func (r *Registry) version(subject, v string) (int, *apiError) {
	ids, ok := r.subjects[subject]
	if !ok {
		return 0, notFound(40401, "Subject '"+subject+"'")
	}
	if v == "latest" || v == "-1" {
		return len(ids), nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, &apiError{http.StatusUnprocessableEntity, 42202, "The specified version '" + v + "' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""}
	}
	if n > len(ids) {
		return 0, notFound(40402, "Version "+v)
	}
	return n, nil
}

func (r *Registry) subjectSchema(subject string, version int) map[string]any {
	id := r.subjects[subject][version-1]
	s := r.schemas[id-1]
	out := map[string]any{"subject": subject, "version": version, "id": id, "schema": s.Schema}
	if s.SchemaType != "" {
		out["schemaType"] = s.SchemaType
	}
	if len(s.References) > 0 {
		out["references"] = s.References
	}
	return out
}

func decodeSchema(req *http.Request) (stored, *apiError) {
	var s stored
	if err := json.NewDecoder(req.Body).Decode(&s); err != nil {
		return s, &apiError{http.StatusUnprocessableEntity, 42201, "Invalid schema: " + err.Error()}
	}
	switch s.SchemaType {
	case "AVRO":
		s.SchemaType = "" // the registry leaves the default type out
	case "", "PROTOBUF", "JSON":
	default:
		return s, &apiError{http.StatusUnprocessableEntity, 42201, "Invalid schema type " + s.SchemaType}
	}
	if s.Schema == "" {
		return s, &apiError{http.StatusUnprocessableEntity, 42201, "Empty schema"}
	}
	if s.SchemaType == "" {
		if _, err := avro.ParseWithCache(s.Schema, "", new(avro.SchemaCache)); err != nil {
			return s, &apiError{http.StatusUnprocessableEntity, 42201, "Invalid schema: " + err.Error()}
		}
	}
	return s, nil
}

// sameSchema compares schemas as the registry does after parsing: Avro by its
// canonical form, others by their text.
func sameSchema(a, b stored) bool {
	if a.SchemaType != b.SchemaType {
		return false
	}
	if a.SchemaType != "" {
		return a.Schema == b.Schema
	}
	sa, errA := avro.ParseWithCache(a.Schema, "", new(avro.SchemaCache))
	sb, errB := avro.ParseWithCache(b.Schema, "", new(avro.SchemaCache))
	return errA == nil && errB == nil && sa.Fingerprint() == sb.Fingerprint()
}

func (r *Registry) register(req *http.Request, subject string) (any, *apiError) {
	s, aerr := decodeSchema(req)
	if aerr != nil {
		return nil, aerr
	}
	ids := r.subjects[subject]
	for _, id := range ids {
		if sameSchema(r.schemas[id-1], s) {
			return map[string]int{"id": id}, nil // registering again is idempotent
		}
	}
	msgs, aerr := r.incompatibilities(s, ids, r.level(subject))
	if aerr != nil {
		return nil, aerr
	}
	if len(msgs) > 0 {
		return nil, &apiError{http.StatusConflict, 409, "Schema being registered is incompatible with an earlier schema for subject \"" + subject + "\", details: " + strings.Join(msgs, "; ")}
	}
	id := 0
	for i, other := range r.schemas {
		if sameSchema(other, s) {
			id = i + 1 // one global id per distinct schema
		}
	}
	if id == 0 {
		r.schemas = append(r.schemas, s)
		id = len(r.schemas)
	}
	r.subjects[subject] = append(ids, id)
	return map[string]int{"id": id}, nil
}

// incompatibilities checks s against the schemas with the given ids (oldest
// first) at level: the latest only, or all for the _TRANSITIVE levels.
func (r *Registry) incompatibilities(s stored, ids []int, level string) ([]string, *apiError) {
	if level == "NONE" || len(ids) == 0 || s.SchemaType != "" {
		return nil, nil
	}
	if !strings.HasSuffix(level, "_TRANSITIVE") {
		ids = ids[len(ids)-1:]
	}
	level = strings.TrimSuffix(level, "_TRANSITIVE")
	next, err := avro.ParseWithCache(s.Schema, "", new(avro.SchemaCache))
	if err != nil {
		return nil, &apiError{http.StatusUnprocessableEntity, 42201, "Invalid schema: " + err.Error()}
	}
	compat := avro.NewSchemaCompatibility()
	var msgs []string
	for _, id := range ids {
		old, err := avro.ParseWithCache(r.schemas[id-1].Schema, "", new(avro.SchemaCache))
		if err != nil || r.schemas[id-1].SchemaType != "" {
			continue
		}
		// BACKWARD: the new schema reads data written with the old one.
		if level == "BACKWARD" || level == "FULL" {
			if err := compat.Compatible(next, old); err != nil {
				msgs = append(msgs, fmt.Sprintf("the new schema cannot read data written with id %d: %v", id, err))
			}
		}
		if level == "FORWARD" || level == "FULL" {
			if err := compat.Compatible(old, next); err != nil {
				msgs = append(msgs, fmt.Sprintf("data written with the new schema cannot be read with id %d: %v", id, err))
			}
		}
	}
	return msgs, nil
}
