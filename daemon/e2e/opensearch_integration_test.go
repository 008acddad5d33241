//go:build integration

package e2e

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
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sinkd/sinkd/dlq"
	"github.com/sinkd/sinkd/taxi"
	"github.com/sinkd/sinkd/writers/opensearch/osfake"
)

// verifyWorkers is how many documents are fetched at the same time.
const verifyWorkers = 16

// tripTypes are the values of the taxi events' "type", one index each.
var tripTypes = []string{"yellow", "green", "fhv"}

// cluster is the OpenSearch that sinkd writes to in a test: the one named by
// $OPENSEARCH_URL, or else the fake on a loopback port of this process.
type cluster struct {
	url    string
	client *http.Client
	// base prefixes the run's index names, so that runs against a real
	// cluster never see each other's documents.
	base string
}

// openSearch adds an OpenSearch destination to the harness's route: one index
// per trip type (<run>-trips-{type}), the trip_id as document id. template,
// when not empty, is an index template body installed by sinkd at start.
func (h *harness) openSearch(template string) *cluster {
	h.t.Helper()
	c := &cluster{url: os.Getenv("OPENSEARCH_URL"), client: &http.Client{
		Timeout: 30 * time.Second,
		// One kept-alive connection per fetching goroutine.
		Transport: &http.Transport{MaxIdleConnsPerHost: verifyWorkers},
	}, base: h.topic}
	if c.url == "" {
		srv := httptest.NewServer(osfake.New())
		h.t.Cleanup(srv.Close)
		c.url = srv.URL
	} else {
		h.t.Cleanup(func() {
			for _, typ := range tripTypes {
				c.call(h.t, http.MethodDelete, "/"+c.index(typ), nil)
			}
			if template != "" {
				c.call(h.t, http.MethodDelete, "/_index_template/"+c.base+"-trips", nil)
			}
		})
	}
	c.url = strings.TrimRight(c.url, "/")
	route := fmt.Sprintf(`    opensearch:
      url: %s
      index: %s-trips-{type}
      id: "{trip_id}"
      flush_interval: 300ms
`, c.url, c.base)
	if template != "" {
		path := filepath.Join(h.dir, c.base+"-trips.json")
		if err := os.WriteFile(path, []byte(template), 0o644); err != nil {
			h.t.Fatal(err)
		}
		route += "      index_template: " + path + "\n"
	}
	h.extraRoute = route
	return c
}

func (c *cluster) index(typ string) string { return c.base + "-trips-" + typ }

func (c *cluster) call(t *testing.T, method, path string, body []byte) (int, []byte) {
	t.Helper()
	status, b, err := c.do(method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return status, b
}

// do makes one request; unlike call it is safe off the test's goroutine.
func (c *cluster) do(method, path string, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.url+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (c *cluster) count(t *testing.T, expr string) int {
	t.Helper()
	status, body := c.call(t, http.MethodGet, "/"+expr+"/_count", nil)
	var r struct {
		Count int `json:"count"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &r) != nil {
		t.Fatalf("_count of %s: %d %s", expr, status, body)
	}
	return r.Count
}

// storedDoc is what GET _doc answers.
type storedDoc struct {
	Found   bool            `json:"found"`
	Version int64           `json:"_version"`
	Source  json.RawMessage `json:"_source"`
}

// verify checks the indexes against want (trip_id → JSON body): _count per
// type index equals the inputs of that type, no document is anywhere else
// under the run's prefix, and each input of fetch (every input when nil) is
// stored under its id in its type's index, equal field by field. It returns
// the fetched documents' versions.
func (c *cluster) verify(t *testing.T, want map[int64][]byte, fetch []int64) map[int64]int64 {
	t.Helper()
	started := time.Now()
	if status, body := c.call(t, http.MethodPost, "/"+c.base+"-trips-*/_refresh", nil); status != http.StatusOK {
		t.Fatalf("_refresh: %d %s", status, body)
	}
	typeOf := make(map[int64]string, len(want))
	perType := map[string]int{}
	for id, body := range want {
		var doc struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatalf("input %d: %v", id, err)
		}
		typeOf[id] = doc.Type
		perType[doc.Type]++
	}
	counts := map[string]int{}
	for _, typ := range tripTypes {
		counts[typ] = c.count(t, c.index(typ))
		if counts[typ] != perType[typ] {
			t.Errorf("index %s holds %d documents, want %d (one per trip_id)", c.index(typ), counts[typ], perType[typ])
		}
	}
	if total := c.count(t, c.base+"-trips-*"); total != len(want) {
		t.Errorf("the run's indexes hold %d documents, want %d", total, len(want))
	}

	ids := make(chan int64)
	var mu sync.Mutex
	versions := make(map[int64]int64, len(want))
	missing, differing := 0, 0
	var wg sync.WaitGroup
	for range verifyWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				status, body, err := c.do(http.MethodGet, "/"+c.index(typeOf[id])+"/_doc/"+strconv.FormatInt(id, 10), nil)
				var d storedDoc
				ok := err == nil && status == http.StatusOK && json.Unmarshal(body, &d) == nil && d.Found
				same := ok && sameJSON(d.Source, want[id])
				mu.Lock()
				switch {
				case !ok:
					if missing++; missing < 5 {
						t.Errorf("trip_id %d: not in %s (%d %s %v)", id, c.index(typeOf[id]), status, body, err)
					}
				case !same:
					if differing++; differing < 5 {
						t.Errorf("trip_id %d: stored %s, want %s", id, d.Source, want[id])
					}
				default:
					versions[id] = d.Version
				}
				mu.Unlock()
			}
		}()
	}
	if fetch == nil {
		for id := range want {
			fetch = append(fetch, id)
		}
	}
	for _, id := range fetch {
		ids <- id
	}
	close(ids)
	wg.Wait()
	rewritten := 0
	for _, v := range versions {
		if v > 1 {
			rewritten++
		}
	}
	t.Logf("opensearch: counts %v for %d inputs; %d documents fetched and compared in %s, %d missing, %d differing, %d written more than once",
		counts, len(want), len(fetch), time.Since(started).Round(time.Millisecond), missing, differing, rewritten)
	if t.Failed() {
		t.FailNow()
	}
	return versions
}

// sameJSON compares two JSON documents field by field, numbers as written.
func sameJSON(a, b []byte) bool {
	decode := func(b []byte) (any, error) {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var v any
		err := d.Decode(&v)
		return v, err
	}
	va, err1 := decode(a)
	vb, err2 := decode(b)
	return err1 == nil && err2 == nil && reflect.DeepEqual(va, vb)
}

// TestOpenSearchCrashAndReplay: 100,000 trips go to Parquet and to one
// OpenSearch index per type while sinkd is SIGKILLed six times; then a second
// consumer group replays the whole topic. After each pass every type index
// counts exactly one document per trip_id of its type, a random tenth of
// them fetched by id equal their input field by field, and after the replay
// each of those has been overwritten rather than duplicated.
func TestOpenSearchCrashAndReplay(t *testing.T) {
	h := newHarness(t, "osreplay")
	// A restarted instance takes its partitions back at once instead of
	// waiting for the killed member's session to expire.
	h.static = true
	h.targetFile = "2MiB"
	h.fileAge = "1500ms"
	search := h.openSearch("")
	produced := h.produceAsync(100_000, 4, 0, 71, 5000)
	seed := time.Now().UnixNano()
	t.Logf("kill schedule seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 13))
	const kills = 6
	for i := range kills {
		p := h.start("os-1")
		if i%2 == 1 {
			p.waitLine("manifest written", 30*time.Second)
			time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
		} else {
			time.Sleep(time.Duration(2500+rng.IntN(3000)) * time.Millisecond)
		}
		if p.exited() {
			t.Fatalf("sinkd exited by itself before kill %d: %v; log tail:\n%s", i+1, p.err, tail(p.logFile.Name(), 15))
		}
		p.kill(t)
	}
	commits, files, aborted, recoveries := h.logCounts("os-1")
	t.Logf("%d SIGKILLs; before the last run: %d checkpoints committed %d files, %d recoveries, %d open uploads aborted",
		kills, commits, files, recoveries, aborted)
	if commits < 1 || recoveries < 3 {
		t.Fatalf("the killed runs did too little work to prove anything")
	}
	produced()
	h.finalRun("os-1", 3*time.Minute)
	// Every document is counted; a random tenth is fetched and compared
	// (fetching all 100,000 takes minutes on a loaded two-core machine).
	var sample []int64
	for id := range h.inputs {
		if rng.IntN(10) == 0 {
			sample = append(sample, id)
		}
	}
	first := search.verify(t, h.inputs, sample)

	// The replay: a new group reads the topic from the start, into a fresh
	// S3 prefix and the same indexes.
	h.group += "-replay"
	h.prefix += "replay/"
	h.finalRun("os-2", 3*time.Minute)
	second := search.verify(t, h.inputs, sample)
	notRewritten := 0
	for id, v := range second {
		if v <= first[id] {
			notRewritten++
		}
	}
	t.Logf("replay: %d of %d documents overwritten in place", len(second)-notRewritten, len(second))
	if notRewritten > 0 {
		t.Fatalf("%d documents were not written again by the replay: it did not go through OpenSearch", notRewritten)
	}
}

// TestOpenSearchMappingConflict: an index template maps "note" as a long.
// Trips carrying a note that is not a number pass the schema (unknown keys
// are ignored) and reach Parquet, but OpenSearch refuses them: each must
// reach the dead-letter topic at stage opensearch with its index, id, status
// and reason, and every other trip must be indexed.
func TestOpenSearchMappingConflict(t *testing.T) {
	h := newHarness(t, "osmap")
	h.dlqTopic = h.topic + "-dlq"
	createTopic(t, h.env.KafkaBrokers, h.dlqTopic)
	search := h.openSearch(fmt.Sprintf(`{"index_patterns":["%s-trips-*"],"template":{"mappings":{"properties":{"note":{"type":"long"}}}}}`, h.topic))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sink, err := taxi.NewKafkaSink(ctx, strings.Split(h.env.KafkaBrokers, ","), h.topic, 4)
	if err != nil {
		t.Fatal(err)
	}
	g := taxi.NewGenerator(72, taxi.DefaultStart())
	conflicting := map[int64]bool{}
	indexable := map[int64][]byte{}
	for i := range 10_000 {
		trip := g.Next()
		v := trip.AppendJSON(nil)
		switch {
		case i%100 == 7:
			v = append(v[:len(v)-1], `,"note":"call back"}`...)
			conflicting[trip.TripID] = true
		case i%10 == 3:
			v = append(v[:len(v)-1], `,"note":42}`...)
			indexable[trip.TripID] = v
		default:
			indexable[trip.TripID] = v
		}
		h.inputs[trip.TripID] = v
		if err := sink.Send(ctx, []byte(strconv.FormatInt(trip.TripID, 10)), v); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sink.Close()

	p := h.start("osmap-1")
	p.waitRunning(t)
	h.waitDrained(2*time.Minute, p)
	p.stop(t, time.Minute)

	lettered := map[int64]bool{}
	wrong := 0
	letters := readLetters(t, h.env.KafkaBrokers, h.dlqTopic)
	for _, l := range letters {
		trip := tripIDOf(t, l.Record.Key)
		in := h.inputs[trip]
		var doc struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(in, &doc)
		d := l.Details
		if !conflicting[trip] || l.Stage != dlq.StageOpenSearch || l.Class != "mapper_parsing_exception" ||
			d[dlq.DetailIndex] != search.index(doc.Type) || d["id"] != strconv.FormatInt(trip, 10) || d["status"] != "400" ||
			!strings.Contains(l.Message, "note") || !bytes.Equal(l.Record.Value, in) {
			if wrong++; wrong < 5 {
				t.Errorf("trip_id %d: unexpected letter %s/%s details %v message %q", trip, l.Stage, l.Class, d, l.Message)
			}
		}
		lettered[trip] = true
	}
	missing := 0
	for trip := range conflicting {
		if !lettered[trip] {
			if missing++; missing < 5 {
				t.Errorf("conflicting trip_id %d has no dead letter", trip)
			}
		}
	}
	t.Logf("%d conflicting trips: %d letters (%d unique trips), %d missing, %d wrong", len(conflicting), len(letters), len(lettered), missing, wrong)
	if len(letters) > 0 {
		t.Logf("e.g. %s", letters[0].Message)
	}
	if missing+wrong > 0 {
		t.FailNow()
	}
	search.verify(t, indexable, nil)
	h.verify("trips")
}
