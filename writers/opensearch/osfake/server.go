// Package osfake is a strict, in-memory fake of the OpenSearch REST API
// subset that sinkd uses: _bulk with per-item results, dynamic mappings that
// reject type conflicts, versioning, _refresh, _count, GET _doc, index
// templates and cluster info. It verifies AWS SigV4 signatures or basic auth
// when configured, and injects faults (429, 503, latency, 413) that can be
// changed while it runs. It is built from OpenSearch's documented behaviour;
// where the real service is more lenient or more detailed, the fake errs on
// the side of rejecting.
package osfake

// Over 500 lines on purpose: one concern, the fake's REST routing and the
// small endpoints, each a short handler; _bulk and mappings have their own files.

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Faults are injected into answers. Shares are probabilities in [0, 1].
type Faults struct {
	ItemReject429  float64       `json:"item_reject_429"`  // bulk items answered 429 rejected_execution_exception
	Request429     float64       `json:"request_429"`      // whole requests answered 429
	Request503     float64       `json:"request_503"`      // whole requests answered 503
	RetryAfter     int           `json:"retry_after"`      // seconds sent in Retry-After with 429/503; 0 sends none
	Latency        time.Duration `json:"latency"`          // added before every answer
	MaxRequestSize int64         `json:"max_request_size"` // bodies above this many bytes get 413; 0 = no limit
}

// Stats counts what the fake has seen.
type Stats struct {
	Requests        int64 // every HTTP request
	BulkRequests    int64 // _bulk requests that reached the handler
	MaxBulkInFlight int64 // the most _bulk requests ever served at the same time
	Rejected429     int64 // items and requests answered 429 by fault injection
	Rejected503     int64
	Rejected413     int64
}

// Option configures a Server.
type Option func(*Server)

// WithSigV4 requires every request to carry a valid AWS Signature Version 4
// for these credentials, region and service ("es" or "aoss"; "aoss" also
// requires the X-Amz-Content-Sha256 header).
func WithSigV4(accessKey, secretKey, region, service string) Option {
	return func(s *Server) {
		s.sigv4 = &sigv4Verifier{accessKey: accessKey, secretKey: secretKey, region: region, service: service, now: time.Now}
	}
}

// WithBasicAuth requires HTTP basic auth with this user and password.
func WithBasicAuth(user, password string) Option {
	return func(s *Server) { s.basicUser, s.basicPassword = user, password }
}

// WithSeed makes fault injection reproducible.
func WithSeed(seed uint64) Option {
	return func(s *Server) { s.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }
}

// WithFaults sets the initial faults.
func WithFaults(f Faults) Option { return func(s *Server) { s.faults = f } }

// Server is an http.Handler serving the fake cluster.
type Server struct {
	sigv4                    *sigv4Verifier
	basicUser, basicPassword string

	mu        sync.Mutex // guards everything below
	rng       *rand.Rand
	faults    Faults
	indices   map[string]*index
	templates map[string]template
	stats     Stats
	flat      []flatField // the members of the document being applied, reused

	bulkInFlight atomic.Int64
}

type template struct {
	raw      json.RawMessage
	patterns []string
	priority int
	mapping  mapping
}

// New returns an empty cluster.
func New(opts ...Option) *Server {
	s := &Server{
		rng:       rand.New(rand.NewPCG(1, 2)),
		indices:   map[string]*index{},
		templates: map[string]template{},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// SetFaults replaces the injected faults; requests already running keep theirs.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
}

// SetCredentials changes the SigV4 key pair the fake accepts, as a revoked or
// rotated key would on the real service. It does nothing without WithSigV4.
func (s *Server) SetCredentials(accessKey, secretKey string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sigv4 != nil {
		s.sigv4.accessKey, s.sigv4.secretKey = accessKey, secretKey
	}
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "parse_exception", "failed to read the request body: "+err.Error())
		return
	}
	s.mu.Lock()
	s.stats.Requests++
	f := s.faults
	s.mu.Unlock()

	if !s.authorize(w, r, body) {
		return
	}
	if fp := r.URL.Query().Get("filter_path"); fp != "" {
		paths, bad := parseFilterPath(fp)
		if bad != "" {
			writeError(w, http.StatusBadRequest, "illegal_argument_exception", bad)
			return
		}
		w = &filterWriter{ResponseWriter: w, paths: paths}
	}
	// The fake's own control endpoint: faults can be changed while benchmarks run.
	if r.URL.Path == "/_fake/faults" {
		s.serveFaults(w, r, body)
		return
	}
	if f.Latency > 0 {
		select {
		case <-time.After(f.Latency):
		case <-r.Context().Done():
			return
		}
	}
	if f.MaxRequestSize > 0 && int64(len(body)) > f.MaxRequestSize {
		s.count(func(st *Stats) { st.Rejected413++ })
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		fmt.Fprintf(w, `{"Message":"Request size exceeded %d bytes"}`, f.MaxRequestSize)
		return
	}
	if status := s.requestFault(f); status != 0 {
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
		}
		if status == http.StatusTooManyRequests {
			writeError(w, status, "rejected_execution_exception", "rejected execution of coordinating operation [shard_detail=[], shard_coordinating_and_primary_bytes=0, replica_bytes=0]")
			return
		}
		writeError(w, status, "cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/2/no cluster-manager];")
		return
	}
	s.route(w, r, body)
}

func (s *Server) requestFault(f Faults) int {
	if f.Request429 <= 0 && f.Request503 <= 0 {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.rng.Float64()
	switch {
	case p < f.Request429:
		s.stats.Rejected429++
		return http.StatusTooManyRequests
	case p < f.Request429+f.Request503:
		s.stats.Rejected503++
		return http.StatusServiceUnavailable
	}
	return 0
}

func (s *Server) count(update func(*Stats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	update(&s.stats)
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request, body []byte) bool {
	s.mu.Lock()
	var verifier *sigv4Verifier
	if s.sigv4 != nil {
		v := *s.sigv4
		verifier = &v
	}
	s.mu.Unlock()
	if verifier != nil {
		if status, msg := verifier.verify(r, body); status != 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			if verifier.service == "aoss" {
				fmt.Fprintf(w, `{"status":%d,"request-id":"%016x","error":{"reason":%s,"type":"Forbidden"}}`, status, time.Now().UnixNano(), quote(msg))
			} else {
				fmt.Fprintf(w, `{"message":%s}`, quote(msg))
			}
			return false
		}
	}
	if s.basicUser != "" {
		u, p, ok := r.BasicAuth()
		if !ok || u != s.basicUser || p != s.basicPassword {
			w.Header().Set("WWW-Authenticate", `Basic realm="OpenSearch Security"`)
			w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, "Unauthorized")
			return false
		}
	}
	return true
}

func (s *Server) serveFaults(w http.ResponseWriter, r *http.Request, body []byte) {
	switch r.Method {
	case http.MethodGet:
	case http.MethodPut, http.MethodPost:
		var f Faults
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			writeError(w, http.StatusBadRequest, "parse_exception", "faults: "+err.Error())
			return
		}
		s.SetFaults(f)
	default:
		methodNotAllowed(w, r)
		return
	}
	s.mu.Lock()
	f := s.faults
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, f)
}

// route dispatches on the path's segments, the way OpenSearch's REST layer does.
func (s *Server) route(w http.ResponseWriter, r *http.Request, body []byte) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) == 1 && parts[0] == "" {
		parts = nil
	}
	m := r.Method
	switch {
	case len(parts) == 0 && (m == http.MethodGet || m == http.MethodHead):
		s.serveInfo(w, r)
	case len(parts) == 1 && parts[0] == "_bulk" && (m == http.MethodPost || m == http.MethodPut):
		s.serveBulk(w, r, body, "")
	case len(parts) == 2 && parts[1] == "_bulk" && (m == http.MethodPost || m == http.MethodPut):
		s.serveBulk(w, r, body, parts[0])
	case len(parts) <= 2 && last(parts) == "_refresh" && (m == http.MethodPost || m == http.MethodGet):
		s.serveRefresh(w, indexExpr(parts))
	case len(parts) <= 2 && last(parts) == "_count" && (m == http.MethodPost || m == http.MethodGet):
		s.serveCount(w, r, indexExpr(parts), body)
	case len(parts) == 3 && parts[1] == "_doc" && (m == http.MethodGet || m == http.MethodHead):
		s.serveGetDoc(w, r, parts[0], parts[2])
	case len(parts) == 2 && parts[0] == "_index_template" && (m == http.MethodPut || m == http.MethodPost):
		s.servePutTemplate(w, parts[1], body)
	case len(parts) == 2 && parts[0] == "_index_template" && m == http.MethodGet:
		s.serveGetTemplate(w, parts[1])
	case len(parts) == 1 && !strings.HasPrefix(parts[0], "_") && m == http.MethodDelete:
		s.serveDeleteIndex(w, parts[0])
	default:
		methodNotAllowed(w, r)
	}
}

func last(parts []string) string {
	if len(parts) == 0 {
		return ""
	}
	return parts[len(parts)-1]
}

// indexExpr is the index expression before an endpoint, "" meaning all.
func indexExpr(parts []string) string {
	if len(parts) == 2 {
		return parts[0]
	}
	return ""
}

func (s *Server) serveInfo(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"name":         "osfake-0",
		"cluster_name": "osfake",
		"cluster_uuid": "osfake-cluster-uuid-0000",
		"version": map[string]any{
			"distribution":   "opensearch",
			"number":         "2.19.0",
			"build_type":     "fake",
			"lucene_version": "9.12.1",
		},
		"tagline": "The OpenSearch Project: https://opensearch.org/",
	})
}

// resolve expands a comma-separated index expression with wildcards into
// existing index names, or reports the first concrete name that is missing.
func (s *Server) resolve(expr string) ([]string, string) {
	if expr == "" || expr == "_all" || expr == "*" {
		expr = "*"
	}
	seen := map[string]bool{}
	var out []string
	for _, pat := range strings.Split(expr, ",") {
		if !strings.Contains(pat, "*") {
			if _, ok := s.indices[pat]; !ok {
				return nil, pat
			}
			if !seen[pat] {
				seen[pat] = true
				out = append(out, pat)
			}
			continue
		}
		for name := range s.indices {
			if ok, _ := path.Match(pat, name); ok && !seen[name] {
				seen[name] = true
				out = append(out, name)
			}
		}
	}
	sort.Strings(out)
	return out, ""
}

func (s *Server) serveRefresh(w http.ResponseWriter, expr string) {
	s.mu.Lock()
	names, missing := s.resolve(expr)
	if missing != "" {
		s.mu.Unlock()
		indexNotFound(w, missing)
		return
	}
	for _, n := range names {
		s.indices[n].refresh()
	}
	s.mu.Unlock()
	n := len(names)
	writeJSON(w, http.StatusOK, map[string]any{"_shards": map[string]int{"total": 2 * n, "successful": n, "failed": 0}})
}

func (s *Server) serveCount(w http.ResponseWriter, r *http.Request, expr string, body []byte) {
	if q := r.URL.Query().Get("q"); q != "" {
		writeError(w, http.StatusBadRequest, "illegal_argument_exception", "osfake: query strings are not supported by _count")
		return
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		v, err := decodeJSON(body)
		obj, _ := v.(map[string]any)
		if err != nil || obj == nil {
			writeError(w, http.StatusBadRequest, "parsing_exception", "request body is not a JSON object")
			return
		}
		if q, ok := obj["query"].(map[string]any); len(obj) > 1 || !ok || len(q) != 1 || q["match_all"] == nil {
			writeError(w, http.StatusBadRequest, "illegal_argument_exception", "osfake: _count supports only match_all")
			return
		}
	}
	s.mu.Lock()
	names, missing := s.resolve(expr)
	if missing != "" {
		s.mu.Unlock()
		indexNotFound(w, missing)
		return
	}
	total := 0
	for _, n := range names {
		total += s.indices[n].searchableCount()
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"count":   total,
		"_shards": map[string]int{"total": len(names), "successful": len(names), "skipped": 0, "failed": 0},
	})
}

func (s *Server) serveGetDoc(w http.ResponseWriter, r *http.Request, indexName, id string) {
	s.mu.Lock()
	idx, ok := s.indices[indexName]
	var d *doc
	if ok {
		d = idx.docs[id]
	}
	s.mu.Unlock()
	if !ok {
		indexNotFound(w, indexName)
		return
	}
	if d == nil {
		writeJSON(w, http.StatusNotFound, map[string]any{"_index": indexName, "_id": id, "found": false})
		return
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"_index": indexName, "_id": id, "_version": d.version, "_seq_no": d.seqNo, "_primary_term": 1,
		"found": true, "_source": json.RawMessage(d.source),
	})
}

func (s *Server) servePutTemplate(w http.ResponseWriter, name string, body []byte) {
	v, err := decodeJSON(body)
	obj, _ := v.(map[string]any)
	if err != nil || obj == nil {
		writeError(w, http.StatusBadRequest, "parse_exception", "request body is required and must be a JSON object")
		return
	}
	var patterns []string
	switch p := obj["index_patterns"].(type) {
	case string:
		patterns = []string{p}
	case []any:
		for _, e := range p {
			if s, ok := e.(string); ok {
				patterns = append(patterns, s)
			}
		}
	}
	if len(patterns) == 0 {
		writeError(w, http.StatusBadRequest, "action_request_validation_exception", "Validation Failed: 1: index patterns are missing;")
		return
	}
	t := template{raw: json.RawMessage(body), patterns: patterns, mapping: mapping{}}
	if n, ok := obj["priority"].(json.Number); ok {
		p, _ := n.Int64()
		t.priority = int(p)
	}
	if tpl, ok := obj["template"].(map[string]any); ok {
		if mappings, ok := tpl["mappings"].(map[string]any); ok {
			if props, ok := mappings["properties"].(map[string]any); ok {
				templateMapping(props, "", t.mapping)
			}
		}
	}
	s.mu.Lock()
	s.templates[name] = t
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]bool{"acknowledged": true})
}

func (s *Server) serveGetTemplate(w http.ResponseWriter, name string) {
	s.mu.Lock()
	t, ok := s.templates[name]
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "resource_not_found_exception", fmt.Sprintf("index template matching [%s] not found", name))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"index_templates": []any{map[string]any{"name": name, "index_template": t.raw}}})
}

func (s *Server) serveDeleteIndex(w http.ResponseWriter, expr string) {
	s.mu.Lock()
	names, missing := s.resolve(expr)
	if missing == "" {
		for _, n := range names {
			delete(s.indices, n)
		}
	}
	s.mu.Unlock()
	if missing != "" {
		indexNotFound(w, missing)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"acknowledged": true})
}

// createIndex makes an index, seeding its mapping from the matching index
// template with the highest priority. Callers hold s.mu.
func (s *Server) createIndex(name string) *index {
	idx := &index{name: name, docs: map[string]*doc{}, mapping: mapping{}, refreshedAt: time.Now()}
	best := -1
	for _, t := range s.templates {
		for _, p := range t.patterns {
			if ok, _ := path.Match(p, name); ok && t.priority > best {
				best = t.priority
				idx.mapping = mapping{}
				for k, v := range t.mapping {
					idx.mapping[k] = v
				}
			}
		}
	}
	s.indices[name] = idx
	return idx
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusMethodNotAllowed, map[string]any{
		"error":  fmt.Sprintf("Incorrect HTTP method for uri [%s] and method [%s]", r.URL.Path, r.Method),
		"status": http.StatusMethodNotAllowed,
	})
}

func indexNotFound(w http.ResponseWriter, name string) {
	cause := map[string]any{"type": "index_not_found_exception", "reason": "no such index [" + name + "]", "index": name, "resource.id": name, "resource.type": "index_or_alias"}
	writeJSON(w, http.StatusNotFound, map[string]any{"error": withRootCause(cause), "status": http.StatusNotFound})
}

// writeError writes OpenSearch's request-level error shape.
func writeError(w http.ResponseWriter, status int, typ, reason string) {
	cause := map[string]any{"type": typ, "reason": reason}
	writeJSON(w, status, map[string]any{"error": withRootCause(cause), "status": status})
}

func withRootCause(cause map[string]any) map[string]any {
	out := map[string]any{"root_cause": []any{cause}}
	for k, v := range cause {
		out[k] = v
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	if fw, ok := w.(*filterWriter); ok {
		v = filterJSON(v, fw.paths)
	}
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	w.Write(b)
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// readBody reads a request body into one buffer of the announced size (within
// a bound), instead of growing one from 512 bytes through a 5 MiB bulk.
func readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength <= 0 || r.ContentLength > 256<<20 {
		return io.ReadAll(r.Body)
	}
	b := make([]byte, r.ContentLength, r.ContentLength+1)
	if _, err := io.ReadFull(r.Body, b); err != nil {
		return nil, err
	}
	// A body longer than announced is read whole, as io.ReadAll would.
	rest, err := io.ReadAll(r.Body)
	return append(b, rest...), err
}
