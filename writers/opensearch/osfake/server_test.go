package osfake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

func do(t *testing.T, h http.Handler, method, path, body string) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	var out map[string]any
	if b, _ := io.ReadAll(rec.Body); len(b) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: answer is not JSON: %s", method, path, b)
		}
	}
	return rec.Code, out
}

func errorType(resp map[string]any) string {
	e, _ := resp["error"].(map[string]any)
	s, _ := e["type"].(string)
	return s
}

func TestBulkRejectsMalformedNDJSON(t *testing.T) {
	tests := []struct {
		name, body, wantType, wantReason string
	}{
		{"empty", "", "action_request_validation_exception", "no requests added"},
		{"no final newline", `{"index":{"_index":"a","_id":"1"}}` + "\n" + `{"x":1}`, "illegal_argument_exception", "terminated by a newline"},
		{"action not an object", `"index"` + "\n", "illegal_argument_exception", "Malformed action/metadata line [1]"},
		{"unknown action", `{"upsert":{"_index":"a"}}` + "\n{}\n", "illegal_argument_exception", "found [upsert]"},
		{"unknown parameter", `{"index":{"_index":"a","colour":"red"}}` + "\n{}\n", "illegal_argument_exception", "unknown parameter [colour]"},
		{"missing source", `{"index":{"_index":"a","_id":"1"}}` + "\n", "illegal_argument_exception", "missing its source line"},
		{"broken JSON action", `{"index":{` + "\n", "json_parse_exception", "line [1]"},
		{"empty line", `{"index":{"_index":"a"}}` + "\n{}\n\n", "illegal_argument_exception", "Malformed action/metadata line [3]"},
		{"no index", `{"index":{"_id":"1"}}` + "\n{}\n", "action_request_validation_exception", "index is missing"},
		{"create with external version", `{"create":{"_index":"a","_id":"1","version":3,"version_type":"external"}}` + "\n{}\n", "action_request_validation_exception", "create operations only support internal versioning"},
		{"id too long", `{"index":{"_index":"a","_id":"` + strings.Repeat("x", 513) + `"}}` + "\n{}\n", "action_request_validation_exception", "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, resp := do(t, New(), http.MethodPost, "/_bulk", tt.body)
			e, _ := resp["error"].(map[string]any)
			reason, _ := e["reason"].(string)
			if status != http.StatusBadRequest || errorType(resp) != tt.wantType || !strings.Contains(reason, tt.wantReason) {
				t.Errorf("got %d %v, want 400 %s containing %q", status, resp, tt.wantType, tt.wantReason)
			}
		})
	}
}

// bulkItems posts one bulk request and returns each item's status and error type.
func bulkItems(t *testing.T, h http.Handler, body string) []string {
	t.Helper()
	status, resp := do(t, h, http.MethodPost, "/_bulk", body)
	if status != http.StatusOK {
		t.Fatalf("bulk: %d %v", status, resp)
	}
	var out []string
	anyErr := false
	for _, raw := range resp["items"].([]any) {
		for _, r := range raw.(map[string]any) {
			item := r.(map[string]any)
			s := item["status"].(float64)
			typ := errorType(item)
			anyErr = anyErr || typ != ""
			out = append(out, strings.TrimSpace(fmt.Sprintf("%d %s", int(s), typ)))
		}
	}
	if resp["errors"] != anyErr {
		t.Errorf("errors flag %v with items %v", resp["errors"], out)
	}
	return out
}

func TestBulkItemOutcomes(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  []string
	}{
		{"create then create again", []string{
			`{"create":{"_index":"a","_id":"1"}}`, `{"n":1}`,
			`{"create":{"_index":"a","_id":"1"}}`, `{"n":2}`,
		}, []string{"201", "409 version_conflict_engine_exception"}},
		{"index twice updates", []string{
			`{"index":{"_index":"a","_id":"1"}}`, `{"n":1}`,
			`{"index":{"_index":"a","_id":"1"}}`, `{"n":2}`,
		}, []string{"201", "200"}},
		{"external versions", []string{
			`{"index":{"_index":"a","_id":"1","version":5,"version_type":"external"}}`, `{"n":5}`,
			`{"index":{"_index":"a","_id":"1","version":3,"version_type":"external"}}`, `{"n":3}`,
			`{"index":{"_index":"a","_id":"1","version":5,"version_type":"external"}}`, `{"n":5}`,
			`{"index":{"_index":"a","_id":"1","version":5,"version_type":"external_gte"}}`, `{"n":5}`,
			`{"index":{"_index":"a","_id":"1","version":6,"version_type":"external"}}`, `{"n":6}`,
		}, []string{"201", "409 version_conflict_engine_exception", "409 version_conflict_engine_exception", "200", "200"}},
		{"dynamic mapping conflicts", []string{
			`{"index":{"_index":"m","_id":"1"}}`, `{"l":1,"d":1.5,"b":true,"t":"x","o":{"k":1},"ts":"2018-01-01T00:00:00Z"}`,
			`{"index":{"_index":"m","_id":"2"}}`, `{"l":"abc"}`,
			`{"index":{"_index":"m","_id":"3"}}`, `{"l":"42","d":"2.5","t":7,"b":"false"}`,
			`{"index":{"_index":"m","_id":"4"}}`, `{"b":3}`,
			`{"index":{"_index":"m","_id":"5"}}`, `{"o":"flat"}`,
			`{"index":{"_index":"m","_id":"6"}}`, `{"l":{"nested":1}}`,
			`{"index":{"_index":"m","_id":"7"}}`, `{"ts":"not a date"}`,
			`{"index":{"_index":"m","_id":"8"}}`, `{"broken":`,
			`{"index":{"_index":"m","_id":"9"}}`, `[1,2]`,
		}, []string{"201", "400 mapper_parsing_exception", "201", "400 mapper_parsing_exception", "400 mapper_parsing_exception",
			"400 mapper_parsing_exception", "400 mapper_parsing_exception", "400 mapper_parsing_exception", "400 mapper_parsing_exception"}},
		{"rejected doc adds no mapping", []string{
			`{"index":{"_index":"r","_id":"1"}}`, `{"a":1,"z":"x"}`,
			`{"index":{"_index":"r","_id":"2"}}`, `{"a":"bad","new":"text"}`,
			`{"index":{"_index":"r","_id":"3"}}`, `{"new":5}`,
		}, []string{"201", "400 mapper_parsing_exception", "201"}},
		{"update and delete", []string{
			`{"update":{"_index":"u","_id":"1"}}`, `{"doc":{"a":1}}`,
			`{"update":{"_index":"u","_id":"1"}}`, `{"doc":{"a":1},"doc_as_upsert":true}`,
			`{"update":{"_index":"u","_id":"1"}}`, `{"doc":{"b":2}}`,
			`{"delete":{"_index":"u","_id":"1"}}`,
			`{"delete":{"_index":"u","_id":"1"}}`,
		}, []string{"404 document_missing_exception", "201", "200", "200", "404"}},
		{"invalid index name", []string{
			`{"index":{"_index":"Trips","_id":"1"}}`, `{}`,
		}, []string{"400 invalid_index_name_exception"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := bulkItems(t, New(), strings.Join(tt.lines, "\n")+"\n")
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("items %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCountSeesWritesAfterRefresh(t *testing.T) {
	s := New()
	bulkItems(t, s, `{"index":{"_index":"trips-a","_id":"1"}}`+"\n{}\n"+`{"index":{"_index":"trips-b","_id":"1"}}`+"\n{}\n")
	// Within the refresh interval a write is not yet searchable.
	if _, resp := do(t, s, http.MethodGet, "/trips-a/_count", ""); resp["count"] != 0.0 {
		t.Errorf("count before refresh %v, want 0", resp["count"])
	}
	tests := []struct {
		path   string
		status int
		count  float64
	}{
		{"/trips-a/_count", 200, 1},
		{"/trips-*/_count", 200, 2},
		{"/trips-a,trips-b/_count", 200, 2},
		{"/_count", 200, 2},
		{"/other/_count", 404, 0},
	}
	if status, _ := do(t, s, http.MethodPost, "/_refresh", ""); status != 200 {
		t.Fatal("refresh failed")
	}
	for _, tt := range tests {
		status, resp := do(t, s, http.MethodGet, tt.path, "")
		if status != tt.status || status == 200 && resp["count"] != tt.count {
			t.Errorf("%s: %d %v, want %d count %v", tt.path, status, resp, tt.status, tt.count)
		}
	}
	if status, resp := do(t, s, http.MethodGet, "/trips-a/_doc/1", ""); status != 200 || resp["found"] != true {
		t.Errorf("get: %d %v", status, resp)
	}
	if status, resp := do(t, s, http.MethodGet, "/trips-a/_doc/2", ""); status != 404 || resp["found"] != false {
		t.Errorf("get missing: %d %v", status, resp)
	}
}

func TestFaultInjection(t *testing.T) {
	body := `{"index":{"_index":"f","_id":"1"}}` + "\n{}\n"
	tests := []struct {
		name   string
		faults Faults
		status int
	}{
		{"413 above size", Faults{MaxRequestSize: 10}, http.StatusRequestEntityTooLarge},
		{"all 429", Faults{Request429: 1, RetryAfter: 2}, http.StatusTooManyRequests},
		{"all 503", Faults{Request503: 1}, http.StatusServiceUnavailable},
		{"none", Faults{}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(WithFaults(tt.faults))
			if status, resp := do(t, s, http.MethodPost, "/_bulk", body); status != tt.status {
				t.Errorf("status %d %v, want %d", status, resp, tt.status)
			}
		})
	}
	s := New()
	if status, _ := do(t, s, http.MethodPut, "/_fake/faults", `{"item_reject_429":1}`); status != 200 {
		t.Fatal("setting faults at run time failed")
	}
	if got := bulkItems(t, s, body); got[0] != "429 rejected_execution_exception" {
		t.Errorf("item %q, want a 429 item", got[0])
	}
	if status, _ := do(t, s, http.MethodPut, "/_fake/faults", `{"bogus":1}`); status != 400 {
		t.Error("unknown fault accepted")
	}
}

func TestSigV4Verification(t *testing.T) {
	const body = `{"index":{"_index":"s","_id":"1"}}` + "\n{}\n"
	sign := func(t *testing.T, r *http.Request, secret, service string, payload string, withHash bool, at time.Time) {
		sum := sha256.Sum256([]byte(payload))
		hash := hex.EncodeToString(sum[:])
		if withHash {
			r.Header.Set("X-Amz-Content-Sha256", hash)
		}
		creds := aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: secret}
		if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hash, service, "us-east-1", at); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, service, secret, sentBody string
		withHash                        bool
		skew                            time.Duration
		unsigned                        bool
		want                            int
	}{
		{"es valid", "es", "secret", body, false, 0, false, 200},
		{"es valid with hash", "es", "secret", body, true, 0, false, 200},
		{"aoss valid", "aoss", "secret", body, true, 0, false, 200},
		{"aoss without payload hash", "aoss", "secret", body, false, 0, false, 403},
		{"wrong secret", "es", "wrong", body, true, 0, false, 403},
		{"body changed after signing", "es", "secret", strings.Replace(body, `"1"`, `"2"`, 1), false, 0, false, 403},
		{"old signature", "es", "secret", body, true, -10 * time.Minute, false, 403},
		{"wrong service", "aoss", "secret", body, true, 0, false, 403},
		{"unsigned", "es", "secret", body, false, 0, true, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			service := "es"
			if strings.HasPrefix(tt.name, "aoss") {
				service = "aoss"
			}
			srv := httptest.NewServer(New(WithSigV4("AKID", "secret", "us-east-1", service)))
			defer srv.Close()
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/_bulk?refresh=true", strings.NewReader(tt.sentBody))
			req.Header.Set("Content-Type", "application/x-ndjson")
			if !tt.unsigned {
				sign(t, req, tt.secret, tt.service, body, tt.withHash, time.Now().Add(tt.skew))
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status %d (%s), want %d", resp.StatusCode, b, tt.want)
			}
		})
	}
}

func TestFilterPath(t *testing.T) {
	body := `{"index":{"_index":"f","_id":"1"}}` + "\n" + `{"n":1}` + "\n" +
		`{"create":{"_index":"f","_id":"1"}}` + "\n" + `{"n":2}` + "\n"
	tests := []struct {
		name, filter string
		status       int
		want         string
	}{
		{"items statuses and errors", "errors,error,status,items.*.status,items.*.error", 200,
			`{"errors":true,"items":[{"index":{"status":201}},{"create":{"error":{"index":"f","index_uuid":"osfake-f","reason":"[1]: version conflict, document already exists (current version [1])","shard":"0","type":"version_conflict_engine_exception"},"status":409}}]}`},
		{"double wildcard", "**.result", 200, `{"items":[{"index":{"result":"created"}}]}`},
		{"segment glob", "items.cr*._id", 200, `{"items":[{"create":{"_id":"1"}}]}`},
		{"nothing matches", "nothing", 200, `{}`},
		{"exclusion unsupported", "-took", 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			New().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/_bulk?filter_path="+tt.filter, strings.NewReader(body)))
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if tt.want != "" && strings.TrimSpace(rec.Body.String()) != tt.want {
				t.Errorf("answer\n%s\nwant\n%s", rec.Body, tt.want)
			}
		})
	}
	// A request-level error keeps its error and status under the writer's filter.
	rec := httptest.NewRecorder()
	New().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/_bulk?filter_path=errors,error,status,items.*.status,items.*.error", strings.NewReader("{}")))
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != 400 || out["status"] != 400.0 || errorType(out) == "" {
		t.Errorf("request error filtered to %d %s", rec.Code, rec.Body)
	}
}
