package daemon

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sinkd/sinkd/checkpoint"
	"github.com/sinkd/sinkd/internal/backoff"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/source"
	"github.com/sinkd/sinkd/writers"
)

// ---- the checkpoint ----

// cpOptions say which files a checkpoint closes first, until when it starts
// closing them, and whether it commits the source positions itself (a revoke
// callback commits them instead).
type cpOptions struct {
	rollAll   bool
	roll      map[record.PartitionID]bool
	rollUntil time.Time
	commit    bool
}

// drainRollPercent: a drain starts closing files during the first 45% of
// shutdown.drain_timeout only, so that completing them fits in the rest.
// For a small file, rolling is one request (its last part) and completing it
// after the manifest is another of about the same cost: (e) in
// docs/benchmarks.md on local MinIO rolled 6,176 files in 10.3 s and
// completed them in 7.8 s. The last 10% is margin for the manifest, the
// source commit and leaving the group. Files still open then stay
// uncommitted: their records are read again at the next start (the
// manifest's restart points and replay filter make that exact).
const drainRollPercent = 45

// checkpoint runs the protocol of DESIGN §3.
func (p *Pipeline) checkpoint(ctx context.Context, o cpOptions) error {
	started := time.Now()
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Checkpoint.Timeout.D())
	defer cancel()
	err := p.checkpointOnce(ctx, o)
	p.m.cpDuration.Observe(time.Since(started).Seconds())
	p.healthMu.Lock()
	defer p.healthMu.Unlock()
	if err != nil {
		p.m.cpFailures.Inc()
		if p.firstFailure.IsZero() {
			p.firstFailure = time.Now()
		}
		return err
	}
	p.firstFailure = time.Time{}
	p.lastCPSuccess = time.Now()
	p.m.cpLastSuccess.SetToCurrentTime()
	return nil
}

func (p *Pipeline) checkpointOnce(ctx context.Context, o cpOptions) error {
	began := time.Now()
	roll := writers.Roll{All: o.rollAll, Partitions: o.roll, Reason: "handover", Until: o.rollUntil}
	if roll.Any() {
		// Every writer starts its last uploads before the first waits for
		// its own.
		for _, w := range p.dests {
			if r, ok := w.(writers.Roller); ok {
				if err := r.Roll(roll); err != nil {
					return err
				}
			}
		}
	}
	m, carried := p.coord.Next(), p.coord.Carried()
	preps := make([]*writers.Prepared, len(p.dests))
	openLow := map[record.PartitionID]record.Position{}
	open := 0
	for i, w := range p.dests {
		prep, err := w.Prepare(ctx, roll)
		if err != nil {
			return err
		}
		preps[i] = prep
		open += prep.Open
		m.Uploads = append(m.Uploads, prep.Entries...)
		for pid, low := range prep.OpenLow {
			if old, ok := openLow[pid]; !ok || low.Compare(old) < 0 {
				openLow[pid] = low
			}
		}
	}
	if err := p.dlq.Flush(ctx); err != nil {
		return fmt.Errorf("dead-letter flush: %w", err)
	}
	starts := make(map[record.PartitionID]source.Start, len(p.owned))
	restarts := make(map[record.PartitionID]checkpoint.Restart, len(p.owned))
	for id, st := range p.owned {
		ps := &checkpoint.PartitionState{Kind: p.src.Kind()}
		switch low, open := openLow[id]; {
		case open:
			ps.Restart = low
		case st.hasFloor:
			ps.Restart, ps.After = st.floor, st.floorAfter
		default:
			continue // nothing read and nothing known: the source's own start applies
		}
		restarts[id] = ps.Start()
		for i, w := range p.dests {
			if c := writers.PruneFilter(preps[i].Filter[id], ps.Start()); len(c) > 0 {
				if ps.Committed == nil {
					ps.Committed = map[string]map[string]record.Position{}
				}
				ps.Committed[w.Name()] = c
			}
		}
		m.Partitions[id.String()] = ps
		starts[id] = source.Start{Position: ps.Restart, After: ps.After}
	}
	if err := p.coord.Write(ctx, m); err != nil {
		return err
	}
	// Committed: from here on the manifest is the truth, and everything below
	// is an idempotent re-application of it.
	written := time.Now()
	p.log.Debug("checkpoint: manifest written", "seq", m.Seq, "uploads", len(m.Uploads), "partitions", len(m.Partitions),
		"prepare", written.Sub(began).String())
	p.lastStarts = starts
	for i, w := range p.dests {
		w.Committed(preps[i], restarts)
	}
	cerr := p.coord.Complete(ctx, m)
	if o.rollAll {
		p.leftOpen = open
		p.log.Info("drain: files committed", "files", len(m.Uploads), "left_open", open,
			"prepare", written.Sub(began).String(), "complete", time.Since(written).String())
	}
	if cerr != nil {
		return cerr
	}
	p.statsMu.Lock()
	p.stats.Checkpoints++
	for _, u := range m.Uploads[carried:] {
		p.stats.Files++
		p.stats.FileBytes += u.Bytes
		p.stats.FileRows += u.Rows
		if p.stats.Buckets == nil {
			p.stats.Buckets = map[string]bool{}
		}
		p.stats.Buckets[u.Store+"|"+u.Key[:strings.LastIndexByte(u.Key, '/')]] = true
	}
	p.statsMu.Unlock()
	if o.commit {
		if err := p.src.Commit(ctx, starts, p.coord.LastRef()); err != nil {
			// The manifest holds the truth; the next commit catches up.
			p.log.Warn("committing source positions failed", "err", err)
		} else {
			for id, start := range starts {
				if st := p.owned[id]; st != nil {
					st.committed = &start
				}
			}
		}
	}
	return nil
}

// restartPoints are the positions the last manifest recorded: the true
// restart points, which the source commits.
func (p *Pipeline) restartPoints() map[record.PartitionID]source.Start {
	out := make(map[record.PartitionID]source.Start, len(p.lastStarts))
	for id, st := range p.lastStarts {
		out[id] = st
	}
	return out
}

// recoverWithRetry retries recovery while the object store is unreachable or
// slow: exiting would only turn an outage into a restart loop. /readyz stays
// false meanwhile.
func (p *Pipeline) recoverWithRetry(ctx context.Context) error {
	// Exponential from 1s, capped at 30s, equal jitter (internal/backoff).
	recoverBackoff := backoff.Policy{Base: time.Second, Max: 30 * time.Second}
	for attempt := 0; ; attempt++ {
		// An attempt runs to its end even after SIGTERM (it is bounded by the
		// checkpoint timeout): a half-done recovery would only be redone.
		err := p.recover(context.WithoutCancel(ctx))
		if err == nil || ctx.Err() != nil {
			return err
		}
		p.log.Warn("recovery failed; retrying", "attempt", attempt+1, "err", err)
		if err := recoverBackoff.Wait(ctx, attempt); err != nil {
			return err
		}
	}
}

// recover re-applies the newest manifest of this instance, fences earlier
// runs, then aborts every in-progress upload of this instance that no
// manifest commits: those are the files that were open when the previous run
// died.
func (p *Pipeline) recover(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Checkpoint.Timeout.D())
	defer cancel()
	var dests []checkpoint.Destination
	for url, st := range p.stores {
		dests = append(dests, checkpoint.Destination{URL: url, Store: st, Prefix: p.prefixes[url]})
	}
	latest, aborted, err := p.coord.Recover(ctx, dests)
	if err != nil {
		return err
	}
	if latest != nil {
		p.log.Info("recovered from manifest", "seq", latest.Seq, "uploads", len(latest.Uploads))
	}
	if aborted > 0 {
		p.log.Info("aborted uploads of files that were open when the previous run stopped", "count", aborted)
	}
	return nil
}
