package osfake

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
)

// okResult is a successful index or create item, kept as values: building
// the map of every item, filtering it and marshalling it through reflection
// cost the fake more than all of sinkd's work on the document.
type okResult struct {
	action, index, id, result string
	version, seqNo            int64
	status                    int
}

// itemOut is one item's answer: r when fast, else the map in OpenSearch's shape.
type itemOut struct {
	m    map[string]any
	fast bool
	r    okResult
}

// result is the item's answer as a map, the form the general path filters
// and marshals.
func (it itemOut) result() map[string]any {
	if !it.fast {
		return it.m
	}
	o := op{action: it.r.action, index: it.r.index, id: it.r.id}
	return itemResult(o, it.r.status, it.r.result, it.r.version, it.r.seqNo)
}

// writeFastAnswer writes the answer of a bulk request whose items all
// succeeded, byte for byte what writeJSON writes for it: the keys in
// encoding/json's sorted order, filter_path applied. What a filter keeps of
// an item depends on its action and the names of its members, never on their
// values, so the filter runs once per action on a sample item and its
// verdict is applied to every item with that action.
func writeFastAnswer(w http.ResponseWriter, took int64, outs []itemOut) {
	var paths [][]string
	if fw, ok := w.(*filterWriter); ok {
		paths = fw.paths
	}
	// kept[action] is the sample item's result after filtering: nil when the
	// filter drops such items.
	kept := map[string]*itemShape{}
	for _, it := range outs {
		a := it.r.action
		if _, ok := kept[a]; ok {
			continue
		}
		sample := itemOut{fast: true, r: okResult{action: a, result: "created", status: http.StatusCreated}}.result()
		var inner any = sample
		if paths != nil {
			f, _ := filterJSON(map[string]any{"items": []any{map[string]any{a: sample}}}, paths).(map[string]any)
			items, _ := f["items"].([]any)
			inner = nil
			if len(items) == 1 {
				item, _ := items[0].(map[string]any)
				inner = item[a]
			}
		}
		kept[a] = newItemShape(inner)
	}
	keepErrors, keepTook := true, true
	if paths != nil {
		top, _ := filterJSON(map[string]any{"took": took, "errors": false}, paths).(map[string]any)
		_, keepErrors = top["errors"]
		_, keepTook = top["took"]
	}

	b := make([]byte, 0, 64+len(outs)*32)
	b = append(b, '{')
	sep := func() {
		if len(b) > 1 {
			b = append(b, ',')
		}
	}
	if keepErrors {
		sep()
		b = append(b, `"errors":false`...)
	}
	first := true
	for _, it := range outs {
		shape := kept[it.r.action]
		if shape == nil {
			continue
		}
		if first {
			sep()
			b = append(b, `"items":[`...)
			first = false
		} else {
			b = append(b, ',')
		}
		b = append(b, `{`...)
		b = appendString(b, it.r.action)
		b = append(b, `:{`...)
		b = shape.append(b, it.r)
		b = append(b, `}}`...)
	}
	if !first {
		b = append(b, ']')
	}
	if keepTook {
		sep()
		b = append(b, `"took":`...)
		b = strconv.AppendInt(b, took, 10)
	}
	b = append(b, '}')
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// itemShape is the members a filter keeps of a successful item, sorted, with
// the value of the one that is the same for every item (_shards) encoded once.
type itemShape struct {
	keys   []string
	shards []byte
}

func newItemShape(inner any) *itemShape {
	m, ok := inner.(map[string]any)
	if !ok || len(m) == 0 {
		return nil
	}
	s := &itemShape{}
	for k, v := range m {
		s.keys = append(s.keys, k)
		if k == "_shards" {
			s.shards, _ = json.Marshal(v)
		}
	}
	sort.Strings(s.keys)
	return s
}

func (s *itemShape) append(b []byte, r okResult) []byte {
	for i, k := range s.keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		switch k {
		case "_id":
			b = appendString(b, r.id)
		case "_index":
			b = appendString(b, r.index)
		case "_primary_term":
			b = append(b, '1')
		case "_seq_no":
			b = strconv.AppendInt(b, r.seqNo, 10)
		case "_shards":
			b = append(b, s.shards...)
		case "_version":
			b = strconv.AppendInt(b, r.version, 10)
		case "result":
			b = appendString(b, r.result)
		case "status":
			b = strconv.AppendInt(b, int64(r.status), 10)
		}
	}
	return b
}

// appendString appends s as encoding/json writes it (which escapes <, > and
// & too): plain ASCII directly, anything else through encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
