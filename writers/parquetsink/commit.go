package parquetsink

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/sinkd/sinkd/checkpoint"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/store"
	"github.com/sinkd/sinkd/writers"
)

// Restore installs the committed positions of a partition from a manifest.
func (w *Writer) Restore(p record.PartitionID, buckets map[string]record.Position) {
	w.committed.Restore(p, buckets)
}

// Forget drops what the writer remembers of a partition it no longer owns.
func (w *Writer) Forget(p record.PartitionID) { w.committed.Release(p) }

// ErrUploadLost means an open or closed file's multipart upload disappeared
// before it was committed. Its rows are not in any committed file, so the
// process must stop and replay from the last manifest.
var ErrUploadLost = writers.ErrLost

// Prepared is what one writer contributes to a checkpoint.
type Prepared struct {
	Uploads []checkpoint.Entry
	// Highs: partition → bucket → highest position in the files being committed.
	Highs map[record.PartitionID]map[string]record.Position
	// OpenLow: partition → lowest position still only in open files.
	OpenLow map[record.PartitionID]record.Position
	closing int
}

// PreCommit waits until every closed file is fully uploaded (not completed)
// and reports the uploads and positions the manifest must record.
func (w *Writer) PreCommit(ctx context.Context) (*Prepared, error) {
	p := &Prepared{
		Highs:   map[record.PartitionID]map[string]record.Position{},
		OpenLow: map[record.PartitionID]record.Position{},
		closing: len(w.closing),
	}
	for _, f := range w.closing {
		if err := waitGroup(ctx, &f.up.wg); err != nil {
			return nil, fmt.Errorf("waiting for the parts of %s: %w", f.key, err)
		}
		f.up.mu.Lock()
		err, parts, n := f.up.err, append([]store.Part(nil), f.up.parts...), f.up.bytes
		f.up.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("upload of %s failed: %w", f.key, err)
		}
		p.Uploads = append(p.Uploads, checkpoint.Entry{Kind: checkpoint.KindMultipart, Store: w.o.Destination, Key: f.key, UploadID: f.up.id, Parts: parts, Rows: f.rows, Bytes: n})
		for pid, s := range f.spans {
			m := p.Highs[pid]
			if m == nil {
				m = map[string]record.Position{}
				p.Highs[pid] = m
			}
			if old, ok := m[f.bucket]; !ok || s.last.Compare(old) > 0 {
				m[f.bucket] = s.last
			}
		}
	}
	for _, f := range w.files {
		for pid, s := range f.spans {
			if old, ok := p.OpenLow[pid]; !ok || s.first.Compare(old) < 0 {
				p.OpenLow[pid] = s.first
			}
		}
	}
	return p, nil
}

// Committed is called once the manifest holding p is written: the files are the
// coordinator's to complete, and their positions become the replay filter.
func (w *Writer) Committed(p *Prepared) {
	w.closing = append(w.closing[:0], w.closing[p.closing:]...)
	for pid, buckets := range p.Highs {
		w.Restore(pid, buckets)
	}
}

// CommittedState returns the replay filter of a partition, without the
// entries that replay from restart can no longer reach.
func (w *Writer) CommittedState(pid record.PartitionID, restart record.Position, after bool) map[string]record.Position {
	return w.committed.Prune(pid, restart, after)
}

// Filters is the replay filter of every partition: partition → bucket →
// the highest position already in a committed file.
func (w *Writer) Filters() map[record.PartitionID]map[string]record.Position {
	return w.committed.ByPartition()
}

// Discard drops every file not yet committed, open or closed, and forgets
// the replay filter: the pipeline lost its partitions and will read them again
// from the last manifest. The uploads are aborted in the background once
// their parts are done (recovery at the next start catches any that fail).
func (w *Writer) Discard() {
	drop := append([]*file(nil), w.closing...)
	for _, f := range w.files {
		if f.enc != nil {
			f.enc.pw.Reset(io.Discard) // the row group being built is thrown away
			f.enc.batch.take()
			f.encRows = 0
			w.idle = append(w.idle, w.unlease(f))
		}
		// The abort below may outlive a store outage: it needs the file's
		// upload, not its bytes.
		f.out.b, f.groups, f.groupsMem = nil, nil, 0
		f.staged.release(&w.recycled)
		w.o.Spool.release(&f.spill)
		w.o.Spool.release(&f.rowSpill)
		w.charge(f, 0)
		drop = append(drop, f)
		w.o.Metrics.openFiles.WithLabelValues(w.o.Route).Dec()
	}
	w.files = map[string]*file{}
	w.closing = nil
	w.committed = writers.NewReplayFilter()
	for _, f := range drop {
		w.bg.Add(1)
		go func() {
			defer w.bg.Done()
			f.up.wg.Wait()
			<-f.up.created
			if f.up.id == "" {
				return
			}
			ctx, cancel := context.WithTimeout(w.ctx, time.Minute)
			defer cancel()
			if err := w.o.Store.AbortUpload(ctx, f.key, f.up.id); err != nil {
				w.o.Logger.Warn("aborting a discarded upload failed; the next start aborts it", "key", f.key, "err", err)
			}
		}()
	}
}

// waitGroup waits for a file's part uploads until ctx ends, starting no
// goroutine (see inflight).
func waitGroup(ctx context.Context, wg *inflight) error { return wg.wait(ctx) }
