package parquetsink

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"
)

const (
	// minShrink is the least a file must stage for relief to turn its rows
	// into a row group: fewer make row groups of a few rows.
	minShrink = 8 << 10
	// quietWrites is how many writes skip relief after one that found
	// nothing of this writer's to free.
	quietWrites = 256
)

// relieve brings memory back under the budget, largest holders first. A
// file holding mostly rows turns them into a row group (compressed, several
// times smaller); encoded bytes go to the spool while it has room, so that
// files still grow to a part and to their target size. Only when memory and
// spool are both full do the files holding the most roll. As a last resort it
// waits for uploads to drain, which stops the pipeline from reading.
func (w *Writer) relieve(ctx context.Context) error {
	w.dropIdleEncoders()
	// Files with an encoder are charged a raw estimate between refreshes.
	for e := w.leases.Front(); e != nil; e = e.Next() {
		f := e.Value.(*file)
		w.charge(f, f.heldBytes())
	}
	if !w.o.Budget.AboveLow() {
		return nil
	}
	// Sorted once: choosing the largest again for every file acted on would
	// cost files² with thousands of buckets open.
	w.sortBySize(0, func(f *file) int64 { return f.held })
	for _, f := range w.bySize {
		if !w.o.Budget.AboveLow() {
			return nil
		}
		if err := w.shrink(f); err != nil {
			return err
		}
	}
	// The pool's chunks are kept while shrinking (the spilled files' chunks
	// go there, for the rows that come next), and given back only now.
	w.recycled.drop()
	// Memory and spool are both full: roll what holds the most in both, as
	// long as this writer holds its share (otherwise what is over is another
	// route's to relieve, and rolling here would only make small files).
	share := w.o.Budget.Limit() / int64(2*max(1, w.o.Routes))
	if w.o.Budget.AboveLow() && w.held > share {
		w.sortBySize(0, func(f *file) int64 { return f.held + f.spill.n + f.rowSpill.n })
		for _, f := range w.bySize {
			if !w.o.Budget.AboveLow() || w.held <= share {
				break
			}
			if w.files[f.bucket] == f {
				if err := w.roll(f, "memory"); err != nil {
					return err
				}
			}
		}
	}
	for w.o.Budget.AboveLow() {
		if len(w.sem)+len(w.smallSem) == 0 {
			w.quiet = quietWrites
			return nil // what is held belongs to other writers
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.uploaded:
		}
	}
	return nil
}

// sortBySize fills bySize with the open files holding more than least
// beyond their bookkeeping, largest first by key.
func (w *Writer) sortBySize(least int64, key func(*file) int64) {
	clear(w.bySize)
	w.bySize = w.bySize[:0]
	for _, f := range w.files {
		if f.held > fileOverhead+least || f.spill.n+f.rowSpill.n > 0 {
			w.bySize = append(w.bySize, f)
		}
	}
	slices.SortFunc(w.bySize, func(a, b *file) int { return cmp.Compare(key(b), key(a)) })
}

// shrink lowers what one file holds in memory without closing it.
func (w *Writer) shrink(f *file) error {
	if f.staged.mem+f.pendingEncoded() > f.held/2 {
		// Rows short of a row group wait in the spool, if it has room:
		// encoding them now would make a row group of a few rows.
		// Thousands of files each holding a little add up: spilling rows
		// costs one append whatever their number, while encoding fewer
		// than minShrink bytes of them is not worth a row group.
		spilled := false
		if f.enc == nil && f.staged.used()+f.rowSpill.n < w.stageLimit() && w.o.Spool.room(f.staged.used()) {
			spilled = w.spillRows(f) == nil
		}
		if !spilled && (f.enc != nil || f.staged.used()+f.rowSpill.n >= minShrink) {
			if err := w.finishRowGroup(f); err != nil {
				return err
			}
		}
	}
	n := int64(len(f.out.b))
	switch {
	case n == 0:
		return nil
	case f.spill.n+n >= w.o.PartSize:
		return w.sendPart(f)
	case w.o.Spool.room(n):
		if err := w.o.Spool.write(&f.spill, f.out.b); err != nil {
			if w.now.Sub(w.spoolWarned) >= time.Minute {
				w.spoolWarned = w.now
				w.o.Logger.Warn("spool write failed: files roll when memory is full until spool space frees", "dir", w.o.Spool.Dir(), "err", err)
			}
			return nil
		}
		f.out.b = nil
		w.charge(f, f.heldBytes())
	}
	return nil
}

// stageLimit is how much a file without an encoder stages before it borrows
// one: a fair share of the budget among the open files, within
// [minStageLimit, maxStageLimit].
//
// With a spool, staged rows may wait there: the share then counts half the
// spool too, up to maxSpooledStage, so that files with thousands of
// neighbours still make row groups of thousands of rows.
func (w *Writer) stageLimit() int64 {
	files := int64(4 * max(1, len(w.files)))
	if w.o.Spool.limit > 0 {
		return min(maxSpooledStage, max(minStageLimit, (w.o.Budget.Limit()+2*w.o.Spool.limit)/files))
	}
	return min(maxStageLimit, max(minStageLimit, w.o.Budget.Limit()/files))
}

// spillRows moves a file's staged rows to the spool.
func (w *Writer) spillRows(f *file) error {
	w.spillBuf = f.staged.marshal(w.spillBuf[:0])
	if err := w.o.Spool.write(&f.rowSpill, w.spillBuf); err != nil {
		return err
	}
	f.staged.release(&w.recycled)
	w.charge(f, f.heldBytes())
	return nil
}

// loadRows brings a file's spooled rows back in front of its staged ones.
func (w *Writer) loadRows(f *file) error {
	b, err := w.o.Spool.take(&f.rowSpill, 0)
	if err != nil {
		return fmt.Errorf("parquet rows of %s: %w", f.key, err)
	}
	var st staging
	if err := st.unmarshalAppend(b, &w.recycled); err != nil {
		return fmt.Errorf("parquet rows of %s: %w", f.key, err)
	}
	st.take(&f.staged)
	f.staged = st
	w.charge(f, f.heldBytes())
	return nil
}
