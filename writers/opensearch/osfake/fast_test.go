package osfake

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
)

// The fast paths must agree with the general code wherever they answer: an
// answer written by writeFastAnswer is byte for byte writeJSON's, a document
// scanFlat and applyFlat accept is accepted by decodeJSON and apply with the
// same new fields, and an action line parseActionFast reads is the op
// parseAction reads.

func TestFastAnswerMatchesGeneral(t *testing.T) {
	outs := []itemOut{
		{fast: true, r: okResult{"index", "trips-yellow-2018.01", "1", "created", 1, 0, 201}},
		{fast: true, r: okResult{"create", "trips-green-2018.01", "2", "created", 1, 1, 201}},
		{fast: true, r: okResult{"index", "odd<&>\"é", "x\\y", "updated", 7, 12, 200}},
		{fast: true, r: okResult{"create", "a<b", "c&d>e", "created", 1, 13, 201}},
	}
	filters := []string{
		"", // no filter
		"errors,error,status,items.*.status,items.*.error", // what sinkd asks
		"items.index.status", "items.*._shards.total", "items.*._shards", "items", "items.*", "errors",
		"took", "nothing", "**.status", "**", "items.*._i*", "items.create", "errors,items.index._id,took",
	}
	for _, fp := range filters {
		for _, n := range []int{1, 2, 3, 4} {
			fast, general := httptest.NewRecorder(), httptest.NewRecorder()
			var fw, gw http.ResponseWriter = fast, general
			if fp != "" {
				paths, bad := parseFilterPath(fp)
				if bad != "" {
					t.Fatal(bad)
				}
				fw, gw = &filterWriter{ResponseWriter: fast, paths: paths}, &filterWriter{ResponseWriter: general, paths: paths}
			}
			writeFastAnswer(fw, 3, outs[:n])
			items := make([]any, n)
			for i, it := range outs[:n] {
				items[i] = map[string]any{it.r.action: it.result()}
			}
			writeJSON(gw, http.StatusOK, map[string]any{"took": int64(3), "errors": false, "items": items})
			if got, want := fast.Body.String(), general.Body.String(); got != want {
				t.Errorf("filter_path %q, %d items:\n fast    %s\n general %s", fp, n, got, want)
			}
		}
	}
}

var flatSeeds = []string{
	`{"trip_id":1234567,"type":"yellow","vendor_id":2,"pickup_datetime":"2018-01-01T00:21:05Z","fare_amount":4.5,"store_and_fwd":false,"x":null}`,
	`{}`, ` { "a" : 1 , "b":"2" } `, `{"a":1,"a":"x"}`, `{"a":"x","a":1}`, `{"_id":1}`, `{"":1}`,
	`{"a":1}x`, `{"a":1}}`, `{"a":01}`, `{"a":1.}`, `{"a":-}`, `{"a":1e}`, `{"a":1e999}`, `{"a":tru}`, `{"a":truex}`,
	`{"a":"\u0041"}`, "{\"a\":\"\x01\"}", "{\"a\xff\":1}", `{"a":[1]}`, `{"a":{"b":1}}`, `[1]`, `"x"`, ``, `{"a":1,}`,
	`{"n":"42"}`, `{"n":" 42 "}`, `{"n":"x"}`, `{"b":"true"}`, `{"b":""}`, `{"b":"yes"}`, `{"d":"2018-01-01"}`,
	`{"d":1514764800000}`, `{"d":"tomorrow"}`, `{"o":1}`, `{"o":null}`, `{"big":123456789012345678901234567890}`,
}

// flatMapping is what earlier documents mapped, for the seeds to meet.
var flatMapping = mapping{"n": typeLong, "f": typeDouble, "b": typeBoolean, "d": typeDate, "o": typeObject, "k": typeKeyword}

func checkFlat(t *testing.T, doc []byte) {
	fields, ok := scanFlat(doc, nil)
	if !ok {
		return
	}
	v, err := decodeJSON(doc)
	obj, isObj := v.(map[string]any)
	if err != nil || !isObj {
		t.Fatalf("%q: scanFlat accepts what decodeJSON refuses (%v)", doc, err)
	}
	added, ok := flatMapping.applyFlat(fields)
	if !ok {
		return
	}
	want, merr := flatMapping.apply(obj, "1")
	if merr != nil {
		t.Fatalf("%q: applyFlat accepts what apply refuses: %s", doc, merr.reason)
	}
	if added == nil {
		added = mapping{}
	}
	if !maps.Equal(added, want) {
		t.Fatalf("%q: applyFlat adds %v, apply %v", doc, added, want)
	}
}

func TestFlatMatchesGeneral(t *testing.T) {
	for _, s := range flatSeeds {
		checkFlat(t, []byte(s))
	}
	// The taxi trip takes the fast path.
	if _, ok := scanFlat([]byte(flatSeeds[0]), nil); !ok {
		t.Error("a taxi trip does not take the fast path")
	}
}

func FuzzFlatDocument(f *testing.F) {
	for _, s := range flatSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkFlat)
}

var actionSeeds = []string{
	`{"index":{"_index":"a","_id":"1"}}`, `{"create":{"_index":"a","_id":"1"}}`, `{"index":{}}`, `{"delete":{"_index":"a","_id":"1"}}`,
	`{"index":{"_index":"a","_id":"1","version":3,"version_type":"external"}}`, `{"index":{"_index":"a","version":-3}}`,
	`{"index":{"_index":"a","version":03}}`, `{"index":{"_index":"a","version":1.5}}`, `{"index":{"_index":"a","version":99999999999999999999}}`,
	`{"index":{"_index":"a","_index":"b"}}`, `{"index":{"_index":"a"}} `, `{"index":{"_index":"a"}}}`, `{"upsert":{"_index":"a"}}`,
	`{"index":{"_index":"a","colour":"red"}}`, `{"index":{"_index":"a\u0041"}}`, "{\"index\":{\"_index\":\"a\xff\"}}", `{"index":{"_index":1}}`,
	`{"index":{"_index":"a"},"create":{}}`, `{ "index":{"_index":"a"}}`, `{"index":{"version":-0}}`,
}

func checkAction(t *testing.T, line []byte) {
	fast, ok := parseActionFast(line, "path")
	if !ok {
		return
	}
	want, err := parseAction(line, 1, "path")
	if err != nil {
		t.Fatalf("%q: parseActionFast accepts what parseAction refuses: %s", line, err.reason)
	}
	if !reflect.DeepEqual(fast, want) {
		t.Fatalf("%q: parseActionFast reads %+v, parseAction %+v", line, fast, want)
	}
}

func TestActionFastMatchesGeneral(t *testing.T) {
	for _, s := range actionSeeds {
		checkAction(t, []byte(s))
	}
	if _, ok := parseActionFast([]byte(actionSeeds[0]), ""); !ok {
		t.Error("sinkd's action line does not take the fast path")
	}
}

func FuzzActionLine(f *testing.F) {
	for _, s := range actionSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkAction)
}
