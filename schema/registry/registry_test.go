package registry_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	hamba "github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/schema/registry"
	"github.com/sinkd/sinkd/schema/registry/srfake"
)

const tripV1 = `{"type":"record","name":"Trip","namespace":"taxi","fields":[
 {"name":"trip_id","type":"long"},
 {"name":"fare","type":{"type":"record","name":"Fare","fields":[{"name":"amount","type":"double"}]}},
 {"name":"stops","type":{"type":"array","items":"int"}}]}`

const tripV2 = `{"type":"record","name":"Trip","namespace":"taxi","fields":[
 {"name":"trip_id","type":"long"},
 {"name":"fare","type":{"type":"record","name":"Fare","fields":[{"name":"amount","type":"double"}]}},
 {"name":"stops","type":{"type":"array","items":"int"}},
 {"name":"tip","type":["null","double"],"default":null}]}`

type fare struct {
	Amount float64 `avro:"amount"`
}

type trip struct {
	TripID int64   `avro:"trip_id"`
	Fare   fare    `avro:"fare"`
	Stops  []int32 `avro:"stops"`
}

func wire(id int, payload []byte) []byte {
	b := []byte{0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(id))
	return append(b, payload...)
}

func setup(t *testing.T) (*srfake.Registry, *httptest.Server, *registry.Client, int) {
	t.Helper()
	fake := srfake.New("u", "p")
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	cl, err := registry.NewClient(registry.Options{URL: srv.URL, Username: "u", Password: "p", Timeout: time.Second, Attempts: 3, Backoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sr.NewClient(sr.URLs(srv.URL), sr.BasicAuth("u", "p"))
	if err != nil {
		t.Fatal(err)
	}
	ss, err := admin.CreateSchema(context.Background(), "trips-value", sr.Schema{Schema: tripV1})
	if err != nil {
		t.Fatal(err)
	}
	return fake, srv, cl, ss.ID
}

func TestAvroInput(t *testing.T) {
	fake, srv, cl, id := setup(t)
	ctx := context.Background()
	in, err := registry.NewAvroInput(ctx, cl, "trips-value")
	if err != nil {
		t.Fatal(err)
	}
	if cols := in.Schema().Parquet().Columns(); len(cols) != 3 || strings.Join(cols[1], ".") != "fare.amount" || strings.Join(cols[2], ".") != "stops.list.element" {
		t.Fatalf("derived columns %v", cols)
	}
	payload, err := hamba.Marshal(hamba.MustParse(tripV1), trip{TripID: 9, Fare: fare{Amount: 4.5}, Stops: []int32{41, 24}})
	if err != nil {
		t.Fatal(err)
	}
	want, err := in.Schema().NewDecoder().Decode([]byte(`{"trip_id":9,"fare":{"amount":4.5},"stops":[41,24]}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		row, err := in.Decode(ctx, wire(id, payload), nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(row) != len(want) {
			t.Fatalf("row %v, want %v", row, want)
		}
		for i := range row {
			if row[i].String() != want[i].String() || row[i].DefinitionLevel() != want[i].DefinitionLevel() || row[i].RepetitionLevel() != want[i].RepetitionLevel() {
				t.Fatalf("row %v, want %v", row, want)
			}
		}
	}
	if n := fake.Requests["GET /schemas/ids/*"]; n != 1 {
		t.Errorf("%d fetches of the writer schema for 100 records, want 1 (cached)", n)
	}

	// Records at fault: each a *schema.Error with its class.
	admin, _ := sr.NewClient(sr.URLs(srv.URL), sr.BasicAuth("u", "p"))
	v2, err := admin.CreateSchema(ctx, "trips-value", sr.Schema{Schema: tripV2})
	if err != nil {
		t.Fatal(err)
	}
	for name, tt := range map[string]struct {
		value []byte
		class string
	}{
		"unknown id":     {wire(4242, payload), registry.ClassUnknownSchemaID},
		"wrong magic":    {append([]byte{1}, wire(id, payload)[1:]...), registry.ClassBadMagic},
		"short header":   {[]byte{0, 0, 1}, registry.ClassTruncatedHeader},
		"truncated avro": {wire(id, payload[:len(payload)-2]), schema.ClassMalformedAvro},
		"trailing byte":  {wire(id, append(append([]byte{}, payload...), 7)), schema.ClassMalformedAvro},
		"plain JSON":     {[]byte(`{"trip_id":1}`), registry.ClassBadMagic},
	} {
		_, err := in.Decode(ctx, tt.value, nil)
		var se *schema.Error
		if !errors.As(err, &se) || se.Class != tt.class {
			t.Errorf("%s: %v, want class %s", name, err, tt.class)
		}
	}
	// A record of an evolved schema is not at fault: it changes the file
	// schema.
	_, err = in.Decode(ctx, wire(v2.ID, payload), nil)
	var change *registry.SchemaChange
	if !errors.As(err, &change) || change.ID != v2.ID || len(change.Fields) != 4 || change.Fields[3].Name != "tip" {
		t.Errorf("evolved schema: %v, want a SchemaChange adding tip", err)
	}
}

// TestRegistryOutage: a registry that cannot be reached is an OutageError
// after the bounded attempts, not a record at fault, and the record decodes
// once the registry is back.
func TestRegistryOutage(t *testing.T) {
	fake, srv, _, id := setup(t)
	url := srv.URL
	srv.Close()
	cl, err := registry.NewClient(registry.Options{URL: url, Username: "u", Password: "p", Timeout: 200 * time.Millisecond, Attempts: 3, Backoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = cl.SchemaByID(context.Background(), id)
	var oe *registry.OutageError
	if !errors.As(err, &oe) {
		t.Fatalf("registry down: %v, want an OutageError", err)
	}
	var se *schema.Error
	if errors.As(err, &se) {
		t.Fatalf("an outage must not look like a record at fault: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %v: retries must be bounded", d)
	}
	// Back up on the same address.
	back := httptest.NewUnstartedServer(fake)
	l, err := newListener(url)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", url, err)
	}
	back.Listener = l
	back.Start()
	defer back.Close()
	if _, err := cl.SchemaByID(context.Background(), id); err != nil {
		t.Errorf("after the outage: %v", err)
	}
}

// TestDecodeWaitOutlastsOutage: DecodeWait holds a record while the registry
// is down (reporting the outage) and decodes it once the registry is back.
func TestDecodeWaitOutlastsOutage(t *testing.T) {
	fake, srv, cl, id := setup(t)
	ctx := context.Background()
	in, err := registry.NewAvroInput(ctx, cl, "trips-value")
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := hamba.Marshal(hamba.MustParse(tripV1), trip{TripID: 1, Stops: []int32{}})
	url := srv.URL
	srv.Close()
	outages := make(chan error, 100)
	done := make(chan error, 1)
	go func() {
		_, err := in.DecodeWait(ctx, wire(id, payload), nil, func(err error) { outages <- err })
		done <- err
	}()
	select {
	case <-outages:
	case err := <-done:
		t.Fatalf("DecodeWait returned during the outage: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no outage reported")
	}
	l, err := newListener(url)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", url, err)
	}
	back := httptest.NewUnstartedServer(fake)
	back.Listener = l
	back.Start()
	defer back.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("after the outage: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("DecodeWait did not return once the registry was back")
	}
}
