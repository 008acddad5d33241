package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sinkd/sinkd/buckets"
	"github.com/sinkd/sinkd/checkpoint"
	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/dlq"
	"github.com/sinkd/sinkd/internal/kgolog"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/schema/registry"
	"github.com/sinkd/sinkd/source/kafka"
	"github.com/sinkd/sinkd/source/kinesis"
	"github.com/sinkd/sinkd/store"
	"github.com/sinkd/sinkd/writers/opensearch"
	"github.com/sinkd/sinkd/writers/parquetsink"
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
	// (see templateProblems).
	badTemplate := func(path, tmpl string, compile func(string) error, err error) {
		for _, msg := range templateProblems(tmpl, s, compile, err) {
			problems = append(problems, cfg.Problem(path, "%s", msg))
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
				badTemplate(base+".opensearch.id", oc.ID, compileRaw(s), err)
			}
			for j, tmpl := range append([]string{oc.Index}, oc.Fanout...) {
				t, err := buckets.CompileRaw(tmpl, s, config.EventTime{Source: "broker"}, "UTC")
				if err != nil {
					path := base + ".opensearch.index"
					if j > 0 {
						path = fmt.Sprintf("%s.opensearch.also_index[%d]", base, j-1)
					}
					badTemplate(path, tmpl, compileRaw(s), err)
					continue
				}
				r.indexes = append(r.indexes, t)
			}
			if oc.VersionField != "" {
				f, ok := s.Lookup(oc.VersionField)
				if !ok {
					bad(base+".opensearch.version_field", fmt.Errorf("%q is not a schema field", oc.VersionField))
				} else {
					r.version = f.Column
				}
			}
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
	// fields is the file schema a schema change left (registry formats):
	// the next run merges the subject's latest schema into it.
	fields []config.Field
}

// newPipeline builds the pipeline and recovers: it re-applies this instance's
// newest manifest and aborts the uploads of its earlier runs that no manifest
// commits. Sources connect last.
func newPipeline(ctx context.Context, cfg *config.Config, log *slog.Logger, reg *prometheus.Registry, o options) (*Pipeline, error) {
	if cfg.Source.Kafka == nil && cfg.Source.Kinesis == nil {
		return nil, errors.New("no source configured")
	}
	s, dec, err := openSchema(ctx, cfg, log, o.fields)
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	routes, err := compileRoutes(cfg, s)
	if err != nil {
		return nil, err
	}
	instance := unsafeInstance.ReplaceAllString(cfg.InstanceID, "-")
	// Every series carries the pipeline's name, so that two pipelines on
	// one stream (or one Prometheus job) stay apart.
	labeled := prometheus.WrapRegistererWith(prometheus.Labels{"pipeline": cfg.Pipeline}, reg)
	p := &Pipeline{
		cfg:      cfg,
		log:      log,
		reg:      reg,
		m:        newMetrics(labeled, Version),
		dec:      dec,
		routes:   routes,
		budget:   newBudget(cfg),
		stores:   map[string]store.Store{},
		prefixes: map[string]string{},
		instance: instance,
		epoch:    strconv.FormatInt(time.Now().UnixMilli(), 36),
		owned:    map[record.PartitionID]*partState{},
		applied:  map[string]bool{},
		control:  make(chan func()),
		batches:  make(chan batch, 2),
		loopDone: make(chan struct{}),
		fatal:    make(chan error, 1),
		ready:    make(chan struct{}),
		now:      time.Now(),
	}
	openStore := func(url string) (store.Store, string, error) {
		if st, ok := p.stores[url]; ok {
			return st, p.prefixes[url], nil
		}
		st, prefix, err := store.Open(ctx, url, cfg.S3, store.WithMetrics(labeled))
		if err != nil {
			return nil, "", fmt.Errorf("opening %s: %w", url, err)
		}
		p.stores[url], p.prefixes[url] = st, prefix
		return st, prefix, nil
	}
	pm := parquetsink.NewMetrics(labeled, p.budget)
	p.spool, err = parquetsink.OpenSpool(cfg.Memory.SpoolDir, cfg.Pipeline, instance, p.epoch, cfg.Memory.SpoolBudget.Bytes())
	if err != nil {
		return nil, err
	}
	p.spool.Register(labeled)
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
	for i, r := range routes {
		rc := cfg.Routes[i]
		if rc.Parquet != nil {
			st, prefix, err := openStore(rc.Parquet.Destination)
			if err != nil {
				return nil, err
			}
			r.pq, err = parquetsink.New(writerCtx, parquetsink.Options{
				Route: r.name, Config: *rc.Parquet, PartSize: cfg.S3.PartSize.Bytes(), Concurrency: cfg.S3.UploadConcurrency, SmallConcurrency: cfg.S3.CompleteConcurrency,
				MaxOpenFiles: cfg.Memory.MaxOpenFiles, MaxEncoders: cfg.Memory.MaxEncoders, Routes: parquetRoutes, Schema: s.Parquet(), Store: st, Prefix: prefix,
				Instance: instance, Epoch: p.epoch, CreatedBy: "sinkd version " + Version, Budget: p.budget, Spool: p.spool, Metrics: pm, Logger: log,
			})
			if err != nil {
				return nil, err
			}
		}
	}
	mst, mprefix, err := openStore(cfg.Checkpoint.Store)
	if err != nil {
		return nil, err
	}
	p.mstore = checkpoint.Store{S: mst, Prefix: mprefix}

	p.dlq, err = dlq.Open(cfg.DLQ, dlq.Options{Pipeline: cfg.Pipeline, Version: Version, Registerer: labeled, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("dead-letter sink: %w", err)
	}
	for i, r := range routes {
		oc := cfg.Routes[i].OpenSearch
		if oc == nil || oc.URL == "" {
			continue
		}
		r.os, err = opensearch.New(*oc, p.openSearchDeadLetter, opensearch.WithMetrics(labeled), opensearch.WithLogger(log))
		if err != nil {
			return nil, fmt.Errorf("opensearch (route %s): %w", r.name, err)
		}
		if err := r.os.Start(ctx); err != nil {
			return nil, fmt.Errorf("opensearch (route %s): %w", r.name, err)
		}
	}
	if k := cfg.Source.Kinesis; k != nil {
		p.backlogStreams = []string{k.Stream}
		p.src, err = kinesis.New(ctx, k, instance, p, log, kinesis.WithRegisterer(labeled))
	} else {
		p.backlogStreams = append([]string(nil), cfg.Source.Kafka.Topics...)
		p.src, err = kafka.New(ctx, cfg.Source.Kafka, instance, p, log, append([]kgo.Opt{kgo.WithLogger(kgolog.New(log))}, o.kafkaOpts...)...)
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Pipeline) openSearchDeadLetter(ctx context.Context, d opensearch.Doc, status int, errType, reason string) error {
	return p.deadLetter(ctx, d.Rec, dlq.StageOpenSearch, errType, reason,
		map[string]string{dlq.DetailIndex: d.Index, "id": d.ID, "status": strconv.Itoa(status)})
}

// recoverWithRetry retries recovery while the object store is unreachable or
// slow: exiting would only turn an outage into a restart loop. /readyz stays
// false meanwhile.
func (p *Pipeline) recoverWithRetry(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		// An attempt runs to its end even after SIGTERM (it is bounded by the
		// checkpoint timeout): a half-done recovery would only be redone.
		err := p.recover(context.WithoutCancel(ctx))
		if err == nil || ctx.Err() != nil {
			return err
		}
		p.log.Warn("recovery failed; retrying", "attempt", attempt+1, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(30*time.Second, time.Second<<min(attempt, 5))):
		}
	}
}

// abortConcurrency bounds the orphaned uploads aborted at once in recovery.
const abortConcurrency = 16

// recover re-applies the newest manifest of this instance, then aborts every
// in-progress upload of this instance that it does not commit: those are the
// files that were open when the previous run died.
func (p *Pipeline) recover(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Checkpoint.Timeout.D())
	defer cancel()
	latest, err := p.mstore.Latest(ctx, p.instance)
	if err != nil {
		return fmt.Errorf("reading the last manifest: %w", err)
	}
	if latest != nil {
		// Once applied, every upload of the manifest is a complete object,
		// so an upload still listed as in progress (a store can leave one
		// behind when a process dies inside CompleteMultipartUpload) is
		// aborted below with the orphans.
		if err := p.apply(ctx, latest); err != nil {
			return err
		}
		p.seq = latest.Seq + 1
		p.log.Info("recovered from manifest", "seq", latest.Seq, "uploads", len(latest.Uploads))
	}
	// Fence earlier runs before aborting their uploads: a dead run's
	// manifest write still in flight (a slow store, a drain cut short) must
	// not land after this recovery aborted what it lists. Taking the next
	// seq first makes such a late write fail; if it landed first, the
	// conditional write fails here and recovery starts over with it.
	fence := &checkpoint.Manifest{
		Pipeline: p.cfg.Pipeline, Instance: p.instance, Epoch: p.epoch, Seq: p.seq, Created: time.Now().UTC(),
		Partitions: map[string]*checkpoint.PartitionState{},
	}
	if err := p.mstore.Write(ctx, fence); err != nil {
		return fmt.Errorf("fencing earlier runs with manifest %d: %w", fence.Seq, err)
	}
	p.seq++
	p.recoveredSeq = p.seq
	aborted := 0
	for url, st := range p.stores {
		uploads, err := st.ListUploads(ctx, p.prefixes[url])
		if err != nil {
			return fmt.Errorf("listing uploads under %s: %w", url, err)
		}
		// A killed run can leave hundreds of open files, and the source
		// joins its group only after recovery: aborting them one by one
		// (tens of milliseconds each) delays the restart by seconds.
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			first error
			sem   = make(chan struct{}, abortConcurrency)
		)
		for _, u := range uploads {
			inst, ok := parquetsink.InstanceOf(u.Key)
			if !ok || inst != p.instance {
				continue
			}
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				err := st.AbortUpload(ctx, u.Key, u.UploadID)
				mu.Lock()
				defer mu.Unlock()
				if err != nil && first == nil {
					first = fmt.Errorf("aborting orphaned upload %s: %w", u.Key, err)
				}
				if err == nil {
					aborted++
				}
			}()
		}
		wg.Wait()
		if first != nil {
			return first
		}
	}
	if aborted > 0 {
		p.log.Info("aborted uploads of files that were open when the previous run stopped", "count", aborted)
	}
	return nil
}

// newBudget is memory.budget with the source's fetch buffers set aside.
func newBudget(cfg *config.Config) *parquetsink.Budget {
	b := parquetsink.NewBudget(cfg.Memory.Budget.Bytes())
	b.Reserve(cfg.Source.MemoryBytes())
	return b
}

// openSchema builds the schema and the decoder of record values: from the
// configured fields for JSON, from the registry's subject (merged into
// fields, the file schema of an earlier run in this process) for Avro and
// Protobuf.
func openSchema(ctx context.Context, cfg *config.Config, log *slog.Logger, fields []config.Field) (*schema.Schema, decoder, error) {
	if cfg.Schema.Registry != nil {
		in, err := registry.Open(ctx, *cfg.Schema.Registry, cfg.Schema.Format, fields, cfg.Schema.CDC)
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

// Decode waits out registry outages: the pipeline stops reading rather than
// dead-letter good records or exit.
func (a *registryDecoder) Decode(ctx context.Context, value []byte, row parquet.Row) (parquet.Row, error) {
	return a.in.DecodeWait(ctx, value, row, func(err error) {
		a.log.Warn("schema registry unavailable; retrying", "error", err)
	})
}
