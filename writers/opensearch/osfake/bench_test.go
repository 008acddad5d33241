package osfake

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/sinkd/sinkd/taxi"
)

// BenchmarkBulk is the fake's CPU per document for the requests sinkd sends
// in benchmark (b): batches of 5,000 taxi trips (flush_docs' default) to
// trips-{type}-{yyyy.MM}, each id new, the answer filtered as sinkd asks. The
// fake shares the two cores of the benchmark machine with sinkd, so what it
// spends is taken from sinkd.
func BenchmarkBulk(b *testing.B) {
	const batch = 5000
	g := taxi.NewGenerator(1, taxi.DefaultStart())
	var body bytes.Buffer
	bodies := make([][]byte, 20)
	for i := range bodies {
		body.Reset()
		for range batch {
			t := g.Next()
			fmt.Fprintf(&body, `{"index":{"_index":"trips-%s-%s","_id":%q}}`+"\n", t.Type, t.PickupDatetime.Format("2006.01"), strconv.FormatInt(t.TripID, 10))
			body.Write(t.AppendJSON(nil))
			body.WriteByte('\n')
		}
		bodies[i] = bytes.Clone(body.Bytes())
	}
	s := New()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/_bulk?filter_path=errors,error,status,items.*.status,items.*.error", bytes.NewReader(bodies[i%len(bodies)])))
		if rec.Code != http.StatusOK || !bytes.HasPrefix(rec.Body.Bytes(), []byte(`{"errors":false`)) {
			b.Fatalf("answer %d: %.200s", rec.Code, rec.Body.Bytes())
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/doc")
}
