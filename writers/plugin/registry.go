// Package plugin is the list of writer kinds a route can configure under
// `writers:`, and what each is built from.
package plugin

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/store"
	"github.com/sinkd/sinkd/writers"
)

// Kind is one kind of writer a route can configure under `writers:` by its
// Name. The pipeline keeps a list of kinds (daemon/writers.go): adding a
// writer is its package plus one line there.
type Kind struct {
	// Name is the key under a route's `writers:` (lower case).
	Name string
	// Check reports the problems of a route's settings without touching the
	// network (`sinkd validate`). The settings are in r.Settings.
	Check func(r *Route) []config.Problem
	// New builds the route's writer; it is called only for a route that
	// configures this kind, after Check found nothing.
	New func(ctx context.Context, r *Route) (writers.Writer, error)
}

// Route is what a writer is built from: its route's configuration and the
// pipeline's services.
type Route struct {
	Config *config.Config
	Index  int // of the route in Config.Routes
	Name   string
	// Settings are the writer's own, as written under the route's
	// `writers.<kind>`; Decode reads them into a struct.
	Settings *yaml.Node
	Schema   *schema.Schema

	// Set only for New.

	// Background outlives the run's context: uploads continue through the
	// drain. It ends once the pipeline is done.
	Background context.Context
	Instance   string // sanitized: [A-Za-z0-9_-]
	Epoch      string // unique per process start
	Version    string
	// OpenStore opens a destination (shared with the pipeline, which aborts
	// the instance's orphaned uploads there at start) and returns its key
	// prefix.
	OpenStore  func(url string) (store.Store, string, error)
	DeadLetter writers.DeadLetter
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Budget is memory.budget, shared with the Parquet writers and the
	// source's fetch buffers: a writer that holds data in memory charges it
	// here and relieves pressure when it is over. Nil gives the writer a
	// budget of its own of memory.budget.
	Budget Budget
}

// Budget is the process's one memory bound (DESIGN §4). It counts, it does
// not allocate: writers Add what they hold (negative when they let go) and
// act when Over.
type Budget interface {
	Add(n int64)
	Used() int64
	Limit() int64
	Over() bool
}

// Path is the configuration path of the writer's settings, for problems.
func (r *Route) Path(kind string) string {
	return fmt.Sprintf("routes[%d].writers.%s", r.Index, kind)
}

// Decode reads the settings into v strictly: an unknown key is an error.
func (r *Route) Decode(v any) error {
	if r.Settings == nil {
		return nil
	}
	// yaml.v3 decodes strictly only from bytes.
	b, err := yaml.Marshal(r.Settings)
	if err != nil {
		return err
	}
	d := yaml.NewDecoder(bytes.NewReader(b))
	d.KnownFields(true)
	return d.Decode(v)
}

// Kinds is the list of registered writer kinds.
type Kinds []Kind

// Lookup finds a kind by name.
func (ks Kinds) Lookup(name string) (Kind, bool) {
	for _, k := range ks {
		if k.Name == name {
			return k, true
		}
	}
	return Kind{}, false
}

// Names lists the kinds' names, for messages.
func (ks Kinds) Names() string {
	names := make([]string, len(ks))
	for i, k := range ks {
		names[i] = k.Name
	}
	return strings.Join(names, ", ")
}
