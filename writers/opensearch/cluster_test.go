package opensearch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sinkd/sinkd/writers/opensearch/osfake"
)

// cluster is what a test writes to: the in-process fake, or the real cluster
// named by OPENSEARCH_URL.
type cluster struct {
	url  string
	fake *osfake.Server // nil against a real cluster
	http *http.Client
}

// newCluster starts the fake with opts, or uses OPENSEARCH_URL when set.
func newCluster(t *testing.T, opts ...osfake.Option) *cluster {
	t.Helper()
	if u := os.Getenv("OPENSEARCH_URL"); u != "" {
		return &cluster{url: strings.TrimSuffix(u, "/"), http: &http.Client{Timeout: 30 * time.Second}}
	}
	fake := osfake.New(opts...)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	return &cluster{url: srv.URL, fake: fake, http: &http.Client{Timeout: 30 * time.Second}}
}

// fakeOnly returns the fake, skipping the test against a real cluster: faults
// cannot be injected into a cluster we do not control.
func fakeOnly(t *testing.T, opts ...osfake.Option) (*cluster, *osfake.Server) {
	t.Helper()
	if os.Getenv("OPENSEARCH_URL") != "" {
		t.Skip("fault injection and fake instrumentation need the in-process fake; OPENSEARCH_URL is set")
	}
	c := newCluster(t, opts...)
	return c, c.fake
}

// indexPrefix is unique per test, so that runs against a shared cluster do
// not see each other's documents; the indexes are deleted afterwards.
func (c *cluster) indexPrefix(t *testing.T) string {
	t.Helper()
	p := fmt.Sprintf("sinkd-test-%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), time.Now().UnixNano()%1e6)
	t.Cleanup(func() {
		req, _ := http.NewRequest(http.MethodDelete, c.url+"/"+p+"-*", nil)
		if resp, err := c.http.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	return p
}

func (c *cluster) call(t *testing.T, method, path string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, c.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// count refreshes and counts the documents of an index expression.
func (c *cluster) count(t *testing.T, expr string) int {
	t.Helper()
	if st, b := c.call(t, http.MethodPost, "/"+expr+"/_refresh", nil); st != http.StatusOK {
		t.Fatalf("refresh %s: %d %s", expr, st, b)
	}
	st, b := c.call(t, http.MethodGet, "/"+expr+"/_count", nil)
	if st != http.StatusOK {
		t.Fatalf("count %s: %d %s", expr, st, b)
	}
	var r struct{ Count int }
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r.Count
}

type storedDoc struct {
	Found   bool            `json:"found"`
	Version int64           `json:"_version"`
	Source  json.RawMessage `json:"_source"`
}

func (c *cluster) get(t *testing.T, index, id string) storedDoc {
	t.Helper()
	st, b := c.call(t, http.MethodGet, "/"+index+"/_doc/"+id, nil)
	var d storedDoc
	if err := json.Unmarshal(b, &d); err != nil || (st != http.StatusOK && st != http.StatusNotFound) {
		t.Fatalf("get %s/%s: %d %s", index, id, st, b)
	}
	return d
}

// deadLetters collects what the writer dead-letters.
type deadLetters struct {
	mu    sync.Mutex
	items []deadLetter
}

type deadLetter struct {
	doc             Doc
	status          int
	errType, reason string
}

func (d *deadLetters) record(_ context.Context, doc Doc, status int, errType, reason string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.items = append(d.items, deadLetter{doc, status, errType, reason})
	return nil
}

func (d *deadLetters) all() []deadLetter {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]deadLetter(nil), d.items...)
}

// startWriter builds and starts a writer on c, closing it at the end of the test.
func startWriter(t *testing.T, c *cluster, cfg Config, dl *deadLetters, opts ...Option) (*Writer, *prometheus.Registry) {
	t.Helper()
	cfg.URL = c.url
	reg := prometheus.NewRegistry()
	opts = append([]Option{WithMetrics(reg), WithRetryBackoff(5*time.Millisecond, 200*time.Millisecond)}, opts...)
	w, err := New(context.Background(), cfg, dl.record, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		w.Close(ctx)
	})
	return w, reg
}

// docsTotal reads sinkd_opensearch_docs_total{result} from the registry the
// writer registered on.
func docsTotal(reg *prometheus.Registry, w *Writer, result string) int {
	var m dto.Metric
	if err := w.metrics.docs.WithLabelValues(result).Write(&m); err != nil {
		panic(err)
	}
	families, err := reg.Gather()
	if err != nil || len(families) == 0 {
		panic("writer metrics are not registered")
	}
	return int(m.GetCounter().GetValue())
}

// trip is a taxi-like event of DESIGN §10.
type trip struct {
	TripID          int64   `json:"trip_id"`
	Type            string  `json:"type"`
	VendorID        int     `json:"vendor_id"`
	PickupDatetime  string  `json:"pickup_datetime"`
	DropoffDatetime string  `json:"dropoff_datetime"`
	PickupLocation  int     `json:"pickup_location_id"`
	DropoffLocation int     `json:"dropoff_location_id"`
	PickupLat       float64 `json:"pickup_latitude"`
	PickupLon       float64 `json:"pickup_longitude"`
	PassengerCount  int     `json:"passenger_count"`
	TripDistance    float64 `json:"trip_distance"`
	FareAmount      float64 `json:"fare_amount"`
	TipAmount       float64 `json:"tip_amount"`
	TotalAmount     float64 `json:"total_amount"`
	PaymentType     string  `json:"payment_type"`
	StoreAndFwd     bool    `json:"store_and_fwd"`
}

var tripTypes = []string{"yellow", "green", "fhv"}

// trips makes n documents with unique ids routed to prefix-{type}. Decimals
// always carry a fraction, so that dynamic mapping makes them doubles.
func trips(prefix string, n int, seed uint64) []Doc {
	rng := rand.New(rand.NewPCG(seed, 7))
	base := time.Date(2018, 1, 1, 0, 0, 0, 0, time.UTC)
	docs := make([]Doc, n)
	for i := range docs {
		pickup := base.Add(time.Duration(rng.IntN(30*24*3600)) * time.Second)
		tr := trip{
			TripID: int64(1_000_000 + i), Type: tripTypes[rng.IntN(3)], VendorID: 1 + rng.IntN(2),
			PickupDatetime: pickup.Format(time.RFC3339), DropoffDatetime: pickup.Add(time.Duration(60+rng.IntN(3600)) * time.Second).Format(time.RFC3339),
			PickupLocation: 1 + rng.IntN(265), DropoffLocation: 1 + rng.IntN(265),
			PickupLat: 40.5 + rng.Float64()/2 + 0.0001, PickupLon: -74.2 + rng.Float64()/2 + 0.0001,
			PassengerCount: 1 + rng.IntN(5), TripDistance: 0.5 + float64(rng.IntN(300))/10,
			FareAmount: 2.5 + float64(rng.IntN(600))/10, TipAmount: 0.5 + float64(rng.IntN(100))/10,
			PaymentType: []string{"credit", "cash"}[rng.IntN(2)], StoreAndFwd: rng.IntN(50) == 0,
		}
		tr.TotalAmount = tr.FareAmount + tr.TipAmount + 0.3
		body, _ := json.Marshal(tr)
		docs[i] = Doc{Index: prefix + "-" + tr.Type, ID: fmt.Sprint(tr.TripID), Body: body}
	}
	return docs
}

func writeAll(t *testing.T, w *Writer, docs []Doc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute) // hang detection only: -race on a loaded 2-core box is slow
	defer cancel()
	for _, d := range docs {
		if err := w.Write(ctx, d); err != nil {
			t.Fatalf("write %s/%s: %v", d.Index, d.ID, err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

func perIndex(docs []Doc) map[string]int {
	ids := map[string]map[string]bool{}
	for _, d := range docs {
		if ids[d.Index] == nil {
			ids[d.Index] = map[string]bool{}
		}
		ids[d.Index][d.ID] = true
	}
	out := map[string]int{}
	for idx, set := range ids {
		out[idx] = len(set)
	}
	return out
}

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%v: %s", err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}
