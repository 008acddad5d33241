package daemon

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sinkd/sinkd/checkpoint"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/source"
	"github.com/sinkd/sinkd/writers/parquetsink"
)

// ---- the checkpoint ----

// cpOptions say which files a checkpoint closes first and whether it commits
// the source positions itself (a revoke callback commits them instead).
type cpOptions struct {
	rollAll bool
	roll    map[record.PartitionID]bool
	commit  bool
}

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
	if o.rollAll || len(o.roll) > 0 {
		for _, r := range p.routes {
			if r.pq != nil {
				if err := r.pq.RollPartitions(o.roll, "handover"); err != nil {
					return err
				}
			}
		}
	}
	m := &checkpoint.Manifest{
		Pipeline: p.cfg.Pipeline, Instance: p.instance, Epoch: p.epoch, Seq: p.seq, Created: time.Now().UTC(),
		Partitions: map[string]*checkpoint.PartitionState{},
		Uploads:    append([]checkpoint.Upload(nil), p.uncompleted...),
	}
	carried := len(m.Uploads)
	preps := make([]*parquetsink.Prepared, len(p.routes))
	openLow := map[record.PartitionID]record.Position{}
	for i, r := range p.routes {
		if r.pq == nil {
			continue
		}
		prep, err := r.pq.PreCommit(ctx)
		if err != nil {
			return err
		}
		preps[i] = prep
		for _, u := range prep.Uploads {
			u.Store = r.storeURL
			m.Uploads = append(m.Uploads, u)
		}
		for pid, low := range prep.OpenLow {
			if old, ok := openLow[pid]; !ok || low.Compare(old) < 0 {
				openLow[pid] = low
			}
		}
		// The filter may learn the new highs now: the records are processed
		// either way, and they only become replayable if this checkpoint fails
		// and the process dies, which loses the filter too.
		for pid, highs := range prep.Highs {
			r.pq.Restore(pid, highs)
		}
	}
	for _, r := range p.routes {
		if r.os != nil {
			if err := r.os.Flush(ctx); err != nil {
				return fmt.Errorf("opensearch flush (route %s): %w", r.name, err)
			}
		}
	}
	if err := p.dlq.Flush(ctx); err != nil {
		return fmt.Errorf("dead-letter flush: %w", err)
	}
	starts := make(map[record.PartitionID]source.Start, len(p.owned))
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
		for _, r := range p.routes {
			if r.pq == nil {
				continue
			}
			if c := r.pq.CommittedState(id, ps.Restart, ps.After); len(c) > 0 {
				if ps.Committed == nil {
					ps.Committed = map[string]map[string]record.Position{}
				}
				ps.Committed[r.name] = c
			}
		}
		m.Partitions[id.String()] = ps
		starts[id] = source.Start{Position: ps.Restart, After: ps.After}
	}
	if err := p.mstore.Write(ctx, m); err != nil {
		return fmt.Errorf("writing manifest %d: %w", m.Seq, err)
	}
	// Committed: from here on the manifest is the truth, and everything below
	// is an idempotent re-application of it.
	written := time.Now()
	p.log.Debug("checkpoint: manifest written", "seq", m.Seq, "uploads", len(m.Uploads), "partitions", len(m.Partitions),
		"prepare", written.Sub(began).String())
	p.seq++
	p.lastRef = checkpoint.Ref(p.instance, m.Seq)
	p.lastStarts = starts
	for i, r := range p.routes {
		if preps[i] != nil {
			r.pq.Committed(preps[i])
		}
	}
	failed := p.complete(ctx, m.Uploads)
	p.uncompleted = failed
	if o.rollAll {
		p.log.Info("drain: files committed", "files", len(m.Uploads), "prepare", written.Sub(began).String(), "complete", time.Since(written).String())
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d uploads of manifest %d not completed yet (retried at the next checkpoint): %s", len(failed), m.Seq, failed[0].Key)
	}
	p.applied[p.lastRef] = true
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
		if err := p.src.Commit(ctx, starts, p.lastRef); err != nil {
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
	if m.Seq%50 == 0 {
		if err := p.mstore.Prune(ctx, p.instance, manifestsKept); err != nil {
			p.log.Warn("pruning old manifests failed", "err", err)
		}
	}
	return nil
}

// manifestsKept bounds the manifests kept per instance. A partition's next
// owner reads the newest manifest naming it, which is never older than the
// instance's last checkpoints while the partition is still unassigned.
const manifestsKept = 200

// restartPoints are the positions the last manifest recorded: the true
// restart points, which the source commits.
func (p *Pipeline) restartPoints() map[record.PartitionID]source.Start {
	out := make(map[record.PartitionID]source.Start, len(p.lastStarts))
	for id, st := range p.lastStarts {
		out[id] = st
	}
	return out
}

// complete finishes uploads in parallel, each retried a few times, and
// returns those that could not be completed.
func (p *Pipeline) complete(ctx context.Context, uploads []checkpoint.Upload) []checkpoint.Upload {
	// Completing is a small request per file: many at once keep a
	// checkpoint short even when memory pressure rolled many small files.
	sem := make(chan struct{}, p.cfg.S3.CompleteConcurrency)
	var mu sync.Mutex
	var failed []checkpoint.Upload
	var wg sync.WaitGroup
	for _, u := range uploads {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := p.completeOne(ctx, u)
			if err == nil {
				return
			}
			p.log.Warn("completing an upload failed", "key", u.Key, "err", err)
			mu.Lock()
			failed = append(failed, u)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return failed
}

func (p *Pipeline) completeOne(ctx context.Context, u checkpoint.Upload) error {
	s, ok := p.stores[u.Store]
	if !ok {
		return fmt.Errorf("the manifest names destination %s, which this configuration does not have", u.Store)
	}
	for attempt := 0; ; attempt++ {
		err := s.CompleteUpload(ctx, u.Key, u.UploadID, u.Parts)
		if err == nil {
			p.m.cpFiles.Inc()
			p.m.cpBytes.Add(float64(u.Bytes))
			return nil
		}
		if ctx.Err() != nil || attempt == 4 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(100<<attempt) * time.Millisecond):
		}
	}
}

// apply re-applies a manifest (once per process): it completes its uploads.
func (p *Pipeline) apply(ctx context.Context, m *checkpoint.Manifest) error {
	ref := checkpoint.Ref(m.Instance, m.Seq)
	if p.applied[ref] {
		return nil
	}
	if failed := p.complete(ctx, m.Uploads); len(failed) > 0 {
		return fmt.Errorf("re-applying manifest %s: %d uploads could not be completed (first %s)", ref, len(failed), failed[0].Key)
	}
	p.applied[ref] = true
	return nil
}
