package srfake

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
)

// registry returns a client of the registry under test: a real one when
// SINKD_SCHEMA_REGISTRY_URL is set (with SINKD_SCHEMA_REGISTRY_USER and
// _PASSWORD for basic auth), else the stand-in; and a prefix for subjects,
// unique per run so that runs against a real registry do not collide.
func registry(t *testing.T) (*sr.Client, string) {
	t.Helper()
	url := os.Getenv("SINKD_SCHEMA_REGISTRY_URL")
	var opts []sr.ClientOpt
	if url == "" {
		srv := httptest.NewServer(New("", ""))
		t.Cleanup(srv.Close)
		url = srv.URL
	} else if u := os.Getenv("SINKD_SCHEMA_REGISTRY_USER"); u != "" {
		opts = append(opts, sr.BasicAuth(u, os.Getenv("SINKD_SCHEMA_REGISTRY_PASSWORD")))
	}
	cl, err := sr.NewClient(append(opts, sr.URLs(url), sr.HTTPClient(&http.Client{Timeout: 10 * time.Second}))...)
	if err != nil {
		t.Fatal(err)
	}
	return cl, fmt.Sprintf("sinkd-test-%d-", time.Now().UnixNano())
}

const tripV1 = `{"type":"record","name":"Trip","namespace":"taxi","fields":[
 {"name":"trip_id","type":"long"},
 {"name":"fare","type":{"type":"record","name":"Fare","fields":[{"name":"amount","type":"double"}]}}]}`

// tripV2 adds an optional field: BACKWARD compatible.
const tripV2 = `{"type":"record","name":"Trip","namespace":"taxi","fields":[
 {"name":"trip_id","type":"long"},
 {"name":"fare","type":{"type":"record","name":"Fare","fields":[{"name":"amount","type":"double"}]}},
 {"name":"tip","type":["null","double"],"default":null}]}`

// tripBad adds a required field without a default: not BACKWARD compatible.
const tripBad = `{"type":"record","name":"Trip","namespace":"taxi","fields":[
 {"name":"trip_id","type":"long"},
 {"name":"fare","type":{"type":"record","name":"Fare","fields":[{"name":"amount","type":"double"}]}},
 {"name":"zone","type":"int"}]}`

func responseCode(err error) int {
	var re *sr.ResponseError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return 0
}

func TestRegistryVersionsAndIDs(t *testing.T) {
	cl, prefix := registry(t)
	ctx := context.Background()
	subject := prefix + "trips-value"

	v1, err := cl.CreateSchema(ctx, subject, sr.Schema{Schema: tripV1})
	if err != nil {
		t.Fatal(err)
	}
	if v1.Version != 1 || v1.ID < 1 {
		t.Fatalf("first registration: %+v", v1)
	}
	// The same schema again, even reformatted: same id, no new version.
	again, err := cl.CreateSchema(ctx, subject, sr.Schema{Schema: strings.ReplaceAll(tripV1, "\n", "")})
	if err != nil || again.ID != v1.ID || again.Version != 1 {
		t.Fatalf("re-registration: %+v, %v", again, err)
	}
	// Under another subject the same schema keeps its global id.
	other, err := cl.CreateSchema(ctx, prefix+"other-value", sr.Schema{Schema: tripV1})
	if err != nil || other.ID != v1.ID {
		t.Fatalf("other subject: %+v, %v (want id %d)", other, err, v1.ID)
	}

	v2, err := cl.CreateSchema(ctx, subject, sr.Schema{Schema: tripV2})
	if err != nil {
		t.Fatal(err)
	}
	if v2.Version != 2 || v2.ID == v1.ID {
		t.Fatalf("second version: %+v", v2)
	}
	latest, err := cl.SchemaByVersion(ctx, subject, -1)
	if err != nil || latest.ID != v2.ID || latest.Version != 2 {
		t.Fatalf("latest: %+v, %v", latest, err)
	}
	first, err := cl.SchemaByVersion(ctx, subject, 1)
	if err != nil || first.ID != v1.ID {
		t.Fatalf("version 1: %+v, %v", first, err)
	}
	byID, err := cl.SchemaByID(ctx, v2.ID)
	if err != nil || !strings.Contains(byID.Schema, `"tip"`) || byID.Type != sr.TypeAvro {
		t.Fatalf("by id: %+v, %v", byID, err)
	}
	versions, err := cl.SubjectVersions(ctx, subject)
	if err != nil || fmt.Sprint(versions) != "[1 2]" {
		t.Fatalf("versions: %v, %v", versions, err)
	}

	// An incompatible schema is refused with 409 under the default BACKWARD.
	if _, err := cl.CreateSchema(ctx, subject, sr.Schema{Schema: tripBad}); responseCode(err) != 409 {
		t.Errorf("incompatible schema: %v, want error code 409", err)
	}
	res, err := cl.CheckCompatibility(ctx, subject, -1, sr.Schema{Schema: tripBad})
	if err != nil || res.Is {
		t.Errorf("compatibility check of an incompatible schema: %+v, %v", res, err)
	}
	res, err = cl.CheckCompatibility(ctx, subject, -1, sr.Schema{Schema: tripV2})
	if err != nil || !res.Is {
		t.Errorf("compatibility check of a compatible schema: %+v, %v", res, err)
	}
	// With the subject at NONE it goes in.
	if r := cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatNone}, subject); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	if v3, err := cl.CreateSchema(ctx, subject, sr.Schema{Schema: tripBad}); err != nil || v3.Version != 3 {
		t.Errorf("registration at NONE: %+v, %v", v3, err)
	}

	// The documented errors.
	for name, tt := range map[string]struct {
		err  error
		code int
	}{
		"unknown id":      {func() error { _, err := cl.SchemaByID(ctx, 1<<30); return err }(), 40403},
		"unknown subject": {func() error { _, err := cl.SchemaByVersion(ctx, prefix+"nope", 1); return err }(), 40401},
		"unknown version": {func() error { _, err := cl.SchemaByVersion(ctx, subject, 99); return err }(), 40402},
		"invalid schema": {func() error {
			_, err := cl.CreateSchema(ctx, subject, sr.Schema{Schema: `{"type":"recrd"}`})
			return err
		}(), 42201},
	} {
		if got := responseCode(tt.err); got != tt.code {
			t.Errorf("%s: %v (code %d), want code %d", name, tt.err, got, tt.code)
		}
	}
}

func TestRegistryBasicAuth(t *testing.T) {
	if os.Getenv("SINKD_SCHEMA_REGISTRY_URL") != "" {
		t.Skip("the stand-in's own auth")
	}
	srv := httptest.NewServer(New("sinkd", "s3cret"))
	defer srv.Close()
	for _, tt := range []struct {
		user, pass string
		ok         bool
	}{{"sinkd", "s3cret", true}, {"sinkd", "wrong", false}, {"", "", false}} {
		opts := []sr.ClientOpt{sr.URLs(srv.URL)}
		if tt.user != "" {
			opts = append(opts, sr.BasicAuth(tt.user, tt.pass))
		}
		cl, err := sr.NewClient(opts...)
		if err != nil {
			t.Fatal(err)
		}
		_, err = cl.Subjects(context.Background())
		if (err == nil) != tt.ok {
			t.Errorf("user %q password %q: %v, want ok=%v", tt.user, tt.pass, err, tt.ok)
		}
	}
}
