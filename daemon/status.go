package daemon

import (
	"cmp"
	"context"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"time"

	dto "github.com/prometheus/client_model/go"
	"gopkg.in/yaml.v3"
)

// Status is the read-only snapshot that GET /status returns and / renders.
type Status struct {
	Pipeline string    `json:"pipeline"`
	Instance string    `json:"instance"`
	Version  string    `json:"version"`
	Time     time.Time `json:"time"`
	// State is "recovering", "waiting for the source …", "running" or "stopping".
	State       string            `json:"state"`
	Records     int64             `json:"records"`
	Bytes       int64             `json:"bytes"`
	Partitions  []PartitionStatus `json:"partitions"`
	Files       FileStatus        `json:"files"`
	Checkpoints CheckpointStatus  `json:"checkpoints"`
	DeadLetters []DeadLetterCount `json:"dead_letters"`
	// Config is the effective configuration, defaults applied, secrets masked.
	Config map[string]any `json:"config"`
}

type PartitionStatus struct {
	Stream     string  `json:"stream"`
	Partition  string  `json:"partition"`
	Next       string  `json:"next_position"`
	Lag        float64 `json:"lag_records"`
	DurableLag float64 `json:"durable_lag_records"`
}

type FileStatus struct {
	Open          float64 `json:"open"`
	BufferedBytes float64 `json:"buffered_bytes"` // what open files and fetched records hold (the spool)
	BudgetBytes   float64 `json:"budget_bytes"`   // what they may hold: memory.budget less its room for garbage
}

type CheckpointStatus struct {
	Count          int64     `json:"count"`
	LastSuccess    time.Time `json:"last_success"`
	Failures       float64   `json:"failures"`
	FilesCommitted float64   `json:"files_committed"`
	BytesCommitted float64   `json:"bytes_committed"`
}

type DeadLetterCount struct {
	Stage  string  `json:"stage"`
	Reason string  `json:"reason"`
	Count  float64 `json:"count"`
}

// Snapshot returns the pipeline's status: positions from the loop (asked
// through its control channel, so nothing is read while it changes), the
// rest from its metrics.
func (p *Pipeline) Snapshot(ctx context.Context) Status {
	st := p.Stats()
	s := Status{
		Pipeline: p.cfg.Pipeline, Instance: p.instance, Version: Version, Time: time.Now().UTC(),
		State: p.state(ctx), Records: st.Records, Bytes: st.Bytes, Config: maskedConfig(p.cfg),
	}
	s.Checkpoints.Count = st.Checkpoints
	next := map[string]string{}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_ = p.do(dctx, func() {
		for id, ps := range p.owned {
			next[id.Stream+"/"+partitionName(id.Shard, id.Partition)] = ps.next().String()
		}
	})
	cancel()
	parts := map[string]*PartitionStatus{}
	part := func(m *dto.Metric) *PartitionStatus {
		stream, partition := label(m, "stream"), label(m, "partition")
		k := stream + "/" + partition
		if parts[k] == nil {
			parts[k] = &PartitionStatus{Stream: stream, Partition: partition, Next: next[k]}
		}
		return parts[k]
	}
	families, _ := p.reg.Gather()
	for _, f := range families {
		for _, m := range f.GetMetric() {
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			switch f.GetName() {
			case "sinkd_source_lag_records":
				part(m).Lag = v
			case "sinkd_source_durable_lag_records":
				part(m).DurableLag = v
			case "sinkd_parquet_open_files":
				s.Files.Open += v
			case "sinkd_memory_buffered_bytes":
				s.Files.BufferedBytes += v
			case "sinkd_memory_budget_bytes":
				s.Files.BudgetBytes = v
			case "sinkd_checkpoint_last_success_timestamp_seconds":
				if v > 0 {
					s.Checkpoints.LastSuccess = time.Unix(0, int64(v*1e9)).UTC()
				}
			case "sinkd_checkpoint_failures_total":
				s.Checkpoints.Failures = v
			case "sinkd_checkpoint_files_committed_total":
				s.Checkpoints.FilesCommitted = v
			case "sinkd_checkpoint_bytes_committed_total":
				s.Checkpoints.BytesCommitted = v
			case "sinkd_dlq_records_total":
				if v > 0 {
					s.DeadLetters = append(s.DeadLetters, DeadLetterCount{Stage: label(m, "stage"), Reason: label(m, "reason"), Count: v})
				}
			}
		}
	}
	for _, ps := range parts {
		s.Partitions = append(s.Partitions, *ps)
	}
	slices.SortFunc(s.Partitions, func(a, b PartitionStatus) int {
		return cmp.Or(cmp.Compare(a.Stream, b.Stream), cmp.Compare(len(a.Partition), len(b.Partition)), cmp.Compare(a.Partition, b.Partition))
	})
	slices.SortFunc(s.DeadLetters, func(a, b DeadLetterCount) int { return cmp.Compare(b.Count, a.Count) })
	return s
}

func partitionName(shard string, partition int32) string {
	if shard != "" {
		return shard
	}
	return strconv.Itoa(int(partition))
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func (p *Pipeline) state(ctx context.Context) string {
	select {
	case <-p.loopDone:
		return "stopping"
	default:
	}
	select {
	case <-p.ready:
	default:
		return "recovering"
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := p.src.Ping(pctx); err != nil {
		where, _ := sourceWhere(p.cfg)
		return "waiting for the source " + where + ": " + err.Error()
	}
	return "running"
}

var secretKey = regexp.MustCompile(`(?i)password|secret|token|session|access_key|private`)

// maskedConfig is the configuration as YAML keys, secrets replaced by
// "(set)" and credentials removed from URLs.
func maskedConfig(cfg any) map[string]any {
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return nil
	}
	var m map[string]any
	if yaml.Unmarshal(b, &m) != nil {
		return nil
	}
	mask(m)
	return m
}

func mask(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok {
				switch {
				case secretKey.MatchString(k) && s != "":
					v[k] = "(set)"
				default:
					if u, err := url.Parse(s); err == nil && u.User != nil {
						u.User = url.User("(masked)")
						v[k] = u.String()
					}
				}
				continue
			}
			mask(x)
		}
	case []any:
		for _, x := range v {
			mask(x)
		}
	}
}

func serveStatus(mux *http.ServeMux, p *Pipeline) {
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(p.Snapshot(r.Context()))
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		s := p.Snapshot(r.Context())
		cfg, _ := yaml.Marshal(s.Config)
		_ = statusPage.Execute(w, struct {
			Status
			ConfigYAML string
		}{s, string(cfg)})
	})
}

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"mib": func(b float64) string { return strconv.FormatFloat(b/(1<<20), 'f', 1, 64) + " MiB" },
	"num": func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) },
	"f64": func(n int64) float64 { return float64(n) },
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.Format(time.RFC3339) + " (" + time.Since(t).Round(time.Second).String() + " ago)"
	},
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>sinkd {{.Pipeline}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}.num{text-align:right;font-variant-numeric:tabular-nums}
.state{display:inline-block;padding:.2em .6em;border-radius:4px;background:#e6f4ea}
pre{background:#f7f7f7;padding:1em;overflow:auto}
</style></head><body>
<h1>sinkd · pipeline {{.Pipeline}}</h1>
<p><span class="state" id="state">{{.State}}</span> instance {{.Instance}} · version {{.Version}} · {{.Time.Format "2006-01-02 15:04:05 UTC"}}</p>
<p id="totals">{{.Records}} records read ({{mib (f64 .Bytes)}})</p>
<h2>Partitions</h2>
<table id="partitions"><tr><th>stream</th><th>partition</th><th>next position</th><th class="num">lag (records)</th><th class="num">durable lag</th></tr>
{{range .Partitions}}<tr><td>{{.Stream}}</td><td>{{.Partition}}</td><td>{{.Next}}</td><td class="num">{{num .Lag}}</td><td class="num">{{num .DurableLag}}</td></tr>
{{else}}<tr><td colspan="5">no partition owned</td></tr>{{end}}</table>
<h2>Files and spool</h2>
<p id="files">{{num .Files.Open}} open files · {{mib .Files.BufferedBytes}} buffered of the {{mib .Files.BudgetBytes}} that files and fetched records may hold</p>
<h2>Checkpoints</h2>
<p id="checkpoints">{{.Checkpoints.Count}} checkpoints · last success {{when .Checkpoints.LastSuccess}} · {{num .Checkpoints.FilesCommitted}} files and {{mib .Checkpoints.BytesCommitted}} committed · {{num .Checkpoints.Failures}} failures</p>
<h2>Dead letters</h2>
<table id="dead-letters"><tr><th>stage</th><th>reason</th><th class="num">letters</th></tr>
{{range .DeadLetters}}<tr><td>{{.Stage}}</td><td>{{.Reason}}</td><td class="num">{{num .Count}}</td></tr>
{{else}}<tr><td colspan="3">none</td></tr>{{end}}</table>
<h2>Configuration</h2>
<pre id="config">{{.ConfigYAML}}</pre>
<p><a href="/status">/status</a> (JSON) · <a href="/metrics">/metrics</a></p>
</body></html>
`))
