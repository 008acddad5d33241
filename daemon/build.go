package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sinkd/sinkd/buckets"
	"github.com/sinkd/sinkd/checkpoint"
	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/dlq"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/schema/registry"
	"github.com/sinkd/sinkd/source"
	"github.com/sinkd/sinkd/source/kafka"
	"github.com/sinkd/sinkd/source/kinesis"
	"github.com/sinkd/sinkd/store"
	"github.com/sinkd/sinkd/writers"
	"github.com/sinkd/sinkd/writers/opensearch"
	"github.com/sinkd/sinkd/writers/parquetsink"
	"github.com/sinkd/sinkd/writers/plugin"
)

// Version is set at build time (-ldflags "-X github.com/sinkd/sinkd/daemon.Version=…").
var Version = "dev"

var unsafeInstance = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// compileRoutes checks every template against the schema and returns the
// problems with their lines, before anything connects anywhere.
func compileRoutes(cfg *config.Config, s *schema.Schema) ([]*route, error) {
	var problems []config.Problem
	bad := func(path string, err error) {
		problems = append(problems, cfg.Problem(path, "%v", err))
	}
	// badTemplate reports every problem of a template, not only the first
	// (see writers.TemplateProblems).
	badTemplate := func(path, tmpl string, compile func(string) error, err error) {
		for _, msg := range writers.TemplateProblems(tmpl, s, compile, err) {
			problems = append(problems, cfg.Problem(path, "%s", msg))
		}
	}
	if slices.ContainsFunc(cfg.Routes, func(r config.Route) bool { return r.Parquet != nil }) {
		if err := parquetsink.CheckSchema(s.Parquet()); err != nil {
			bad("schema", err)
		}
	}
	var routes []*route
	for i, rc := range cfg.Routes {
		base := fmt.Sprintf("routes[%d]", i)
		r := &route{name: rc.Name, version: -1}
		var err error
		if rc.When != nil {
			if r.cond, err = buckets.NewCondition(rc.When, s); err != nil {
				bad(base+".when", err)
			}
		}
		if pc := rc.Parquet; pc != nil {
			if r.path, err = buckets.Compile(pc.Path, s, pc.EventTime, pc.TimeZone); err != nil {
				badTemplate(base+".parquet.path", pc.Path, func(t string) error {
					_, err := buckets.Compile(t, s, pc.EventTime, pc.TimeZone)
					return err
				}, err)
			}
			r.storeURL = pc.Destination
		}
		if oc := rc.OpenSearch; oc != nil && oc.URL != "" {
			if r.id, err = buckets.CompileRaw(oc.ID, s, config.EventTime{Source: "broker"}, "UTC"); err != nil {
				badTemplate(base+".opensearch.id", oc.ID, writers.CompileRaw(s), err)
			}
			for j, tmpl := range append([]string{oc.Index}, oc.Fanout...) {
				t, err := buckets.CompileRaw(tmpl, s, config.EventTime{Source: "broker"}, "UTC")
				if err != nil {
					path := base + ".opensearch.index"
					if j > 0 {
						path = fmt.Sprintf("%s.opensearch.also_index[%d]", base, j-1)
					}
					badTemplate(path, tmpl, writers.CompileRaw(s), err)
					continue
				}
				r.indexes = append(r.indexes, t)
			}
			if oc.VersionField != "" {
				f, ok := s.Lookup(oc.VersionField)
				switch {
				case !ok:
					bad(base+".opensearch.version_field", fmt.Errorf("%q is not a schema field", oc.VersionField))
				case !slices.Contains(config.VersionTypes, f.Kind.String()):
					// Checked by validate for json; an avro schema is known only now.
					bad(base+".opensearch.version_field", fmt.Errorf("%q is a %s field; an external version is a whole number: use an int32, int64 or timestamp field", oc.VersionField, f.Kind))
				default:
					r.version = f.Column
				}
			}
		}
		for _, name := range slices.Sorted(maps.Keys(rc.Writers)) {
			k, ok := writerKinds.Lookup(name)
			if !ok {
				problems = append(problems, cfg.Problem(base+".writers."+name, "unknown writer %q (this build has: %s)", name, writerKinds.Names()))
				continue
			}
			settings := rc.Writers[name]
			problems = append(problems, k.Check(&plugin.Route{Config: cfg, Index: i, Name: rc.Name, Settings: &settings, Schema: s})...)
			r.plugins = append(r.plugins, k)
		}
		routes = append(routes, r)
	}
	if len(problems) > 0 {
		return nil, config.NewProblems(problems...)
	}
	return routes, nil
}

// Check compiles everything that can be checked without a network: the
// schema and every template. `sinkd validate` runs it.
func Check(cfg *config.Config) error {
	if cfg.Schema.Registry != nil {
		return nil // the schema, and so the templates, come from the registry at start
	}
	fields := cfg.Schema.Fields
	if cfg.Schema.CDC != nil {
		fields = schema.CDCFields(fields)
	}
	s, err := schema.New(fields)
	if err != nil {
		return config.NewProblems(cfg.Problem("schema", "%v", err))
	}
	_, err = compileRoutes(cfg, s)
	return err
}

// options are for tests and the demo.
type options struct {
	kafkaOpts []kgo.Opt
	// afterStep, when set, runs after each construction step of newPipeline
	// with the step's name; an error it returns fails the construction
	// there (tests prove that every earlier step is then closed).
	afterStep func(step string) error
	// fields is the file schema a schema change left (registry formats):
	// the next run merges the subject's latest schema into it.
	fields []config.Field
	// schemaChanges counts writer schemas across the runs a schema change
	// restarts (sinkd_schema_changes_total); nil makes a new one.
	schemaChanges *registry.Changes
	// acceptLost is sinkd run --accept-lost: the manifest whose lost files
	// the operator accepts (checkpoint.Coordinator.AcceptLost).
	acceptLost string
}

func (o options) step(name string) error {
	if o.afterStep == nil {
		return nil
	}
	return o.afterStep(name)
}

// errNeverRan answers group callbacks of a pipeline closed before it ran:
// it holds nothing to hand over, and its partitions' last commit stands.
var errNeverRan = errors.New("the pipeline was closed before it ran")

// closeTimeout bounds closing what a pipeline that never ran has started:
// nothing is buffered then, so this only caps a peer that does not answer.
const closeTimeout = 10 * time.Second

// newPipeline builds the pipeline and recovers: it re-applies this instance's
// newest manifest and aborts the uploads of its earlier runs that no manifest
// commits. Sources connect last. When a step fails, everything the earlier
// steps started is closed before it returns.
func newPipeline(ctx context.Context, cfg *config.Config, log *slog.Logger, reg *prometheus.Registry, o options) (_ *Pipeline, err error) {
	if cfg.Source.Kafka == nil && cfg.Source.Kinesis == nil {
		return nil, errors.New("no source configured")
	}
	if o.schemaChanges == nil {
		o.schemaChanges = registry.NewChanges()
	}
	s, dec, err := openSchema(ctx, cfg, log, o.fields, o.schemaChanges)
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	instance := unsafeInstance.ReplaceAllString(cfg.InstanceID, "-")
	// Every series carries the pipeline's name, so that two pipelines on
	// one stream (or one Prometheus job) stay apart.
	labeled := prometheus.WrapRegistererWith(prometheus.Labels{"pipeline": cfg.Pipeline}, reg)
	labeled.MustRegister(o.schemaChanges.Collector())
	p := &Pipeline{
		cfg:       cfg,
		log:       log,
		reg:       reg,
		m:         newMetrics(labeled, Version),
		dec:       dec,
		budget:    newBudget(cfg),
		stores:    map[string]store.Store{},
		prefixes:  map[string]string{},
		instance:  instance,
		epoch:     strconv.FormatInt(time.Now().UnixMilli(), 36),
		owned:     map[record.PartitionID]*partState{},
		control:   make(chan func()),
		batches:   make(chan batch, 2),
		loopDone:  make(chan struct{}),
		afterLoop: make(chan struct{}, 1),
		fatal:     make(chan error, 1),
		ready:     make(chan struct{}),
		neverRan:  make(chan struct{}),
		now:       time.Now(),
	}
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
			defer cancel()
			p.closeBuilt(cctx)
		}
	}()
	if err := o.step("schema"); err != nil {
		return nil, err
	}
	if p.routes, err = compileRoutes(cfg, s); err != nil {
		return nil, err
	}
	openStore := func(url string) (store.Store, string, error) {
		if st, ok := p.stores[url]; ok {
			return st, p.prefixes[url], nil
		}
		st, prefix, err := store.Open(ctx, url, cfg.S3, store.WithMetrics(labeled), store.WithLogger(log))
		if err != nil {
			return nil, "", fmt.Errorf("opening %s: %w", url, err)
		}
		p.stores[url], p.prefixes[url] = st, prefix
		return st, prefix, nil
	}
	pm := parquetsink.NewMetrics(labeled, p.budget)
	spool, err := parquetsink.OpenSpool(cfg.Memory.SpoolDir, cfg.Pipeline, instance, p.epoch, cfg.Memory.SpoolBudget.Bytes())
	if err != nil {
		return nil, err
	}
	p.spool = spool
	p.spool.Register(labeled)
	if err := o.step("spool"); err != nil {
		return nil, err
	}
	// Uploads must outlive the run context: the drain after SIGTERM still
	// needs them. Run cancels this context when it is done.
	writerCtx, stopWriters := context.WithCancel(context.WithoutCancel(ctx))
	p.stopWriters = stopWriters
	parquetRoutes := 0
	for _, rc := range cfg.Routes {
		if rc.Parquet != nil {
			parquetRoutes++
		}
	}
	for i, r := range p.routes {
		rc := cfg.Routes[i]
		if rc.Parquet != nil {
			st, prefix, err := openStore(rc.Parquet.Destination)
			if err != nil {
				return nil, err
			}
			w, err := parquetsink.New(writerCtx, parquetsink.Options{
				Route: r.name, Config: *rc.Parquet, PartSize: cfg.S3.PartSize.Bytes(), Concurrency: cfg.S3.UploadConcurrency, SmallConcurrency: cfg.S3.CompleteConcurrency,
				MaxOpenFiles: cfg.Memory.MaxOpenFiles, MaxEncoders: cfg.Memory.MaxEncoders, Routes: parquetRoutes, Schema: s.Parquet(), Store: st, Destination: r.storeURL, Prefix: prefix,
				Instance: instance, Epoch: p.epoch, CreatedBy: "sinkd version " + Version, Budget: p.budget, Spool: p.spool, Metrics: pm, Logger: log,
			})
			if err != nil {
				return nil, err
			}
			r.dests = append(r.dests, parquetsink.NewRoute(w, r.path, p.writerDeadLetter))
			if err := o.step("parquet " + r.name); err != nil {
				return nil, err
			}
		}
	}
	mst, mprefix, err := openStore(cfg.Checkpoint.Store)
	if err != nil {
		return nil, err
	}
	p.coord = &checkpoint.Coordinator{
		Manifests: checkpoint.Store{S: mst, Prefix: mprefix}, Pipeline: cfg.Pipeline, Instance: instance, Epoch: p.epoch,
		Committers:  checkpoint.Committers{checkpoint.KindMultipart: checkpoint.Multipart{Stores: p.stores}},
		Concurrency: cfg.S3.CompleteConcurrency, Log: log,
		Applied: func(e checkpoint.Entry) {
			p.m.cpFiles.Inc()
			p.m.cpBytes.Add(float64(e.Bytes))
		},
		AcceptLost: o.acceptLost,
		Lost:       func(checkpoint.Entry) { p.m.cpFilesLost.Inc() },
	}
	if err := o.step("checkpoint store"); err != nil {
		return nil, err
	}

	if p.dlq, err = dlq.Open(ctx, cfg.DLQ, dlq.Options{Pipeline: cfg.Pipeline, Version: Version, Registerer: labeled, Logger: log}); err != nil {
		return nil, fmt.Errorf("dead-letter sink: %w", err)
	}
	if err := o.step("dead letters"); err != nil {
		return nil, err
	}
	for i, r := range p.routes {
		for _, k := range r.plugins {
			settings := cfg.Routes[i].Writers[k.Name]
			w, err := k.New(ctx, &plugin.Route{
				Config: cfg, Index: i, Name: r.name, Settings: &settings, Schema: s,
				Background: writerCtx, Instance: instance, Epoch: p.epoch, Version: Version,
				OpenStore: openStore, DeadLetter: p.writerDeadLetter, Registerer: labeled, Logger: log,
				Budget: p.budget,
			})
			if err != nil {
				return nil, fmt.Errorf("writer %s (route %s): %w", k.Name, r.name, err)
			}
			r.dests = append(r.dests, w)
		}
	}
	for i, r := range p.routes {
		oc := cfg.Routes[i].OpenSearch
		if oc == nil || oc.URL == "" {
			continue
		}
		w, err := opensearch.New(ctx, *oc, opensearch.DocDeadLetter(p.writerDeadLetter), opensearch.WithMetrics(labeled), opensearch.WithLogger(log))
		if err != nil {
			return nil, fmt.Errorf("opensearch (route %s): %w", r.name, err)
		}
		// Listed before it starts, so that it is closed with the rest if it
		// does not.
		r.dests = append(r.dests, opensearch.NewRoute(w, r.name, r.id, r.indexes, r.version, p.writerDeadLetter))
		if err := w.Start(ctx); err != nil {
			return nil, fmt.Errorf("opensearch (route %s): %w", r.name, err)
		}
		if err := o.step("opensearch " + r.name); err != nil {
			return nil, err
		}
	}
	for _, r := range p.routes {
		p.dests = append(p.dests, r.dests...)
	}
	// Assigned only on success: a typed nil in the interface would look
	// like a source to close.
	var src source.Source
	if k := cfg.Source.Kinesis; k != nil {
		p.backlogStreams = []string{k.Stream}
		var ks *kinesis.Source
		if ks, err = kinesis.New(ctx, k, instance, p, log, kinesis.WithRegisterer(labeled)); err == nil {
			src = ks
		}
	} else {
		p.backlogStreams = append([]string(nil), cfg.Source.Kafka.Topics...)
		var ks *kafka.Source
		if ks, err = kafka.New(ctx, cfg.Source.Kafka, instance, p, log, o.kafkaOpts...); err == nil {
			src = ks
		}
	}
	if err != nil {
		return nil, err
	}
	p.src = src
	if err := o.step("source"); err != nil {
		return nil, err
	}
	return p, nil
}

// closeBuilt closes what newPipeline started, newest first, for a pipeline
// that will never run: a later construction step failed, or what serves it
// could not start. (Run closes the source, the writers and the spool itself;
// closeSinks the rest.) It is safe on a partly built pipeline.
func (p *Pipeline) closeBuilt(ctx context.Context) {
	// The source may own partitions already: leaving the group calls back,
	// and nothing may be committed by a pipeline that never recovered.
	close(p.neverRan)
	if p.src != nil {
		p.src.Close()
	}
	if p.stopWriters != nil {
		p.stopWriters()
	}
	for _, r := range p.routes {
		for _, w := range r.dests {
			if err := w.Close(ctx); err != nil {
				p.log.Warn("closing a writer failed", "writer", w.Name(), "err", err)
			}
		}
	}
	if p.spool != nil {
		if err := p.spool.Close(); err != nil {
			p.log.Warn("removing the spool directory failed", "err", err)
		}
	}
	_ = p.closeSinks(ctx)
}

// closeSinks closes what Run does not: the dead-letter sink and the schema
// registry's connections. It returns the dead-letter sink's error: letters it
// could not make durable.
func (p *Pipeline) closeSinks(ctx context.Context) error {
	var err error
	if p.dlq != nil {
		err = p.dlq.Close(ctx)
	}
	if c, ok := p.dec.(interface{ Close() }); ok {
		c.Close()
	}
	return err
}

// newBudget is what files and fetched records may hold: memory.budget less
// the runtime's room for garbage, with the source's fetch buffers set aside.
func newBudget(cfg *config.Config) *parquetsink.Budget {
	b := parquetsink.NewBudget(cfg.Memory.Budget.Bytes() - cfg.GarbageRoom())
	b.Reserve(cfg.Source.MemoryBytes())
	return b
}

// openSchema builds the schema and the decoder of record values: from the
// configured fields for JSON, from the registry's subject (merged into
// fields, the file schema of an earlier run in this process) for Avro and
// Protobuf.
func openSchema(ctx context.Context, cfg *config.Config, log *slog.Logger, fields []config.Field, changes *registry.Changes) (*schema.Schema, decoder, error) {
	if cfg.Schema.Registry != nil {
		in, err := registry.Open(ctx, *cfg.Schema.Registry, cfg.Schema.Format, fields, cfg.Schema.CDC, changes)
		if err != nil {
			return nil, nil, err
		}
		return in.Schema(), &registryDecoder{in: in, log: log}, nil
	}
	if cdc := cfg.Schema.CDC; cdc != nil {
		s, err := schema.New(schema.CDCFields(cfg.Schema.Fields))
		if err != nil {
			return nil, nil, err
		}
		d, err := s.NewCDCDecoder(cdc.Deletes == "keep")
		if err != nil {
			return nil, nil, err
		}
		return s, cdcDecoder{d}, nil
	}
	s, err := schema.New(cfg.Schema.Fields)
	if err != nil {
		return nil, nil, err
	}
	return s, jsonDecoder{s.NewDecoder()}, nil
}

type cdcDecoder struct{ d *schema.CDCDecoder }

func (c cdcDecoder) Decode(_ context.Context, value []byte, row parquet.Row) (parquet.Row, error) {
	return c.d.Decode(value, row)
}

type jsonDecoder struct{ d *schema.Decoder }

func (j jsonDecoder) Decode(_ context.Context, value []byte, row parquet.Row) (parquet.Row, error) {
	return j.d.Decode(value, row)
}

type registryDecoder struct {
	in  *registry.Input
	log *slog.Logger
}

// Close releases the registry client's connections.
func (a *registryDecoder) Close() { a.in.Close() }

// Decode waits out registry outages: the pipeline stops reading rather than
// dead-letter good records or exit.
func (a *registryDecoder) Decode(ctx context.Context, value []byte, row parquet.Row) (parquet.Row, error) {
	return a.in.DecodeWait(ctx, value, row, func(err error) {
		a.log.Warn("schema registry unavailable; retrying", "error", err)
	})
}
