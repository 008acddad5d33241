package osfake

import (
	"bytes"
	"io"
	"net/http"
	"strings"
)

// Stub answers GET / and _bulk with every item created, in OpenSearch's shape
// or in the shorter one filter_path asks for, and keeps nothing. It is for
// benchmarks that measure a client's own cost: it only counts the body's
// lines as they stream in, so that its work (in the benchmark's process)
// stays small. Unlike the fake, it checks nothing.
func Stub(w http.ResponseWriter, r *http.Request) {
	lines, chunk := 0, make([]byte, 64<<10)
	for {
		n, err := r.Body.Read(chunk)
		lines += bytes.Count(chunk[:n], []byte{'\n'})
		if err != nil {
			break
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Path == "/" {
		io.WriteString(w, `{"version":{"number":"2.11.0","distribution":"opensearch"}}`)
		return
	}
	items := lines / 2
	full := `{"index":{"_index":"trips-yellow-2018.01","_id":"1234567","_version":1,"result":"created","_shards":{"total":2,"successful":1,"failed":0},"_seq_no":42,"_primary_term":1,"status":201}}`
	head := `{"took":3,"errors":false,"items":[`
	if r.URL.Query().Get("filter_path") != "" {
		full, head = `{"index":{"status":201}}`, `{"errors":false,"items":[`
	}
	var out strings.Builder
	out.Grow(len(head) + items*(len(full)+1) + 2)
	out.WriteString(head)
	for i := range items {
		if i > 0 {
			out.WriteByte(',')
		}
		out.WriteString(full)
	}
	out.WriteString("]}")
	io.WriteString(w, out.String())
}
