package opensearch

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"testing"
)

func TestParseBulkResponse(t *testing.T) {
	type want struct {
		status int
		err    string // raw error object, "" for none
	}
	tests := []struct {
		name   string
		answer string
		want   []want
		bad    bool
	}{
		{name: "unfiltered", answer: `{"took":3,"errors":false,"items":[{"index":{"_index":"t","_id":"1","_version":1,"result":"created","_shards":{"total":2,"successful":1,"failed":0},"_seq_no":0,"_primary_term":1,"status":201}},{"index":{"_index":"t","_id":"2","_version":2,"result":"updated","status":200}}]}`,
			want: []want{{201, ""}, {200, ""}}},
		{name: "filtered", answer: `{"errors":false,"items":[{"index":{"status":201}},{"create":{"status":201}}]}`,
			want: []want{{201, ""}, {201, ""}}},
		{name: "errors with causes", answer: `{"errors":true,"items":[{"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"[1]: version conflict"}}},{"index":{"error":{"type":"mapper_parsing_exception","reason":"failed to parse","caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"x\""}},"status":400}}]}`,
			want: []want{{409, `{"type":"version_conflict_engine_exception","reason":"[1]: version conflict"}`}, {400, `{"type":"mapper_parsing_exception","reason":"failed to parse","caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"x\""}}`}}},
		{name: "whitespace and escapes", answer: " {\n \"took\" : 1 ,\n \"errors\" : true , \"items\" : [ { \"index\" : { \"_id\" : \"a\\\"b\\u00e9\" , \"status\" : 429 , \"error\" : { \"type\" : \"es_rejected_execution_exception\" , \"reason\" : \"queue full\" } } } ] }\n",
			want: []want{{429, `{ "type" : "es_rejected_execution_exception" , "reason" : "queue full" }`}}},
		{name: "no items", answer: `{"errors":false,"items":[]}`, want: []want{}},
		{name: "items missing", answer: `{"errors":false}`, bad: true},
		{name: "status missing", answer: `{"items":[{"index":{"_id":"1"}}]}`, bad: true},
		{name: "status not an integer", answer: `{"items":[{"index":{"status":201.5}}]}`, bad: true},
		{name: "status a string", answer: `{"items":[{"index":{"status":"201"}}]}`, bad: true},
		{name: "two actions", answer: `{"items":[{"index":{"status":201},"create":{"status":201}}]}`, bad: true},
		{name: "empty item", answer: `{"items":[{}]}`, bad: true},
		{name: "truncated", answer: `{"items":[{"index":{"status":201}}`, bad: true},
		{name: "trailing garbage", answer: `{"items":[]}x`, bad: true},
		{name: "bad literal", answer: `{"errors":fals,"items":[]}`, bad: true},
		{name: "bad number", answer: `{"took":01,"items":[]}`, bad: true},
		{name: "control character", answer: "{\"took\":\"a\x01\",\"items\":[]}", bad: true},
		{name: "not an object", answer: `[]`, bad: true},
		{name: "request error", answer: `{"error":{"type":"x"},"status":400}`, bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseBulkResponse([]byte(tt.answer), nil)
			if tt.bad {
				if err == nil {
					t.Fatalf("parsed %q as %+v, want an error", tt.answer, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("%d items, want %d", len(got), len(tt.want))
			}
			for i, w := range tt.want {
				if got[i].status != w.status || string(got[i].err) != w.err {
					t.Errorf("item %d: status %d error %s, want %d %s", i, got[i].status, got[i].err, w.status, w.err)
				}
			}
		})
	}
}

// refParse is the reference: the statuses and errors encoding/json finds in
// an answer (keys case-sensitive, the last of repeated keys), or ok false
// when it is not a well-formed bulk answer.
func refParse(b []byte) (statuses []int, errs []bool, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var top any
	if dec.Decode(&top) != nil || dec.More() {
		return nil, nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, false
	}
	obj, _ := top.(map[string]any)
	items, isArray := obj["items"].([]any)
	if !isArray {
		return nil, nil, false
	}
	for _, raw := range items {
		item, _ := raw.(map[string]any)
		if len(item) != 1 {
			return nil, nil, false
		}
		for _, r := range item {
			res, isObj := r.(map[string]any)
			if !isObj {
				return nil, nil, false
			}
			num, isNum := res["status"].(json.Number)
			n, err := strconv.Atoi(string(num))
			if !isNum || err != nil || n < 0 || n > 9999 || string(num) != strconv.Itoa(n) {
				return nil, nil, false
			}
			_, hasErr := res["error"].(map[string]any)
			statuses, errs = append(statuses, n), append(errs, hasErr)
		}
	}
	return statuses, errs, true
}

// FuzzParseBulkResponse checks the scanner against encoding/json: what it
// accepts, encoding/json reads the same way.
func FuzzParseBulkResponse(f *testing.F) {
	for _, s := range []string{
		`{"took":3,"errors":false,"items":[{"index":{"_index":"t","_id":"1","status":201}}]}`,
		`{"errors":true,"items":[{"create":{"status":409,"error":{"type":"x","reason":"y","caused_by":{"type":"z","reason":"w"}}}}]}`,
		`{"errors":false,"items":[{"index":{"status":201}},{"index":{"status":200}}]}`,
		`{"items":[{"index":{"status":429,"error":null}}],"x":[1,-2.5e3,true,null,"\u00e9"]}`,
		`{"items":[],"items":[{"index":{"status":201,"status":500,"error":{},"error":null}}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseBulkResponse(b, nil)
		if err != nil {
			return
		}
		statuses, errs, ok := refParse(b)
		if !ok {
			t.Fatalf("accepted %q, which is not a bulk answer to encoding/json", b)
		}
		if len(statuses) != len(got) {
			t.Fatalf("%q: %d items, encoding/json %d", b, len(got), len(statuses))
		}
		for i := range got {
			if got[i].status != statuses[i] || (got[i].err != nil) != errs[i] {
				t.Fatalf("%q: item %d status %d error %q, encoding/json %d %v", b, i, got[i].status, got[i].err, statuses[i], errs[i])
			}
		}
	})
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "trips-yellow-2018.01", "1234567", `q"uote`, `back\slash`, "tab\there", "é", "日本", "\x00", "\xff", "<a&b>", "\u2028"} {
		got := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil || back != strings.ToValidUTF8(s, "\uFFFD") {
			t.Errorf("appendJSONString(%q) = %s, which reads back as %q (%v)", s, got, back, err)
		}
		if gotBytes := appendJSONString(nil, []byte(s)); string(gotBytes) != string(got) {
			t.Errorf("string and []byte encodings of %q differ: %s, %s", s, got, gotBytes)
		}
	}
}
