package parquetsink

import (
	"fmt"
	"io"
	"slices"

	"github.com/parquet-go/parquet-go"
)

// retireAfter is the row group size above which an encoder is replaced.
const retireAfter = 4 << 20

// encoder is one parquet-go writer of the pool and the batch of rows its
// holder collects for it.
type encoder struct {
	pw    *parquet.GenericWriter[any]
	batch rowBatch
}

// newWriter makes the parquet-go writer of an encoder.
func (w *Writer) newWriter(out io.Writer) *parquet.GenericWriter[any] {
	return parquet.NewGenericWriter[any](out, w.o.Schema,
		parquet.Compression(w.codec),
		// The output is already an in-memory buffer: no second one.
		parquet.WriteBufferSize(0),
		parquet.PageBufferSize(int(w.o.Config.PageSize.Bytes())),
		parquet.DataPageStatistics(true),
	)
}

// newEncoder creates an encoder, within the bound the caller checked.
func (w *Writer) newEncoder(out io.Writer) *encoder {
	w.encoders++
	w.o.Budget.Add(w.overhead)
	w.encoderGauge.Inc()
	return &encoder{pw: w.newWriter(out)}
}

func (w *Writer) dropEncoder() {
	w.encoders--
	w.o.Budget.Add(-w.overhead)
	w.encoderGauge.Dec()
}

// dropIdleEncoders gives the memory of unused encoders back.
func (w *Writer) dropIdleEncoders() {
	for range w.idle {
		w.dropEncoder()
	}
	clear(w.idle)
	w.idle = w.idle[:0]
}

// lease lends f an encoder, if one is to be had: an idle one, a new one
// while the pool is below its bound (one encoder stays back for one-shot row
// groups), or the one of the least recently written holder if that has not
// been written for stealAfter. It reports whether f got one.
func (w *Writer) lease(f *file) (bool, error) {
	var enc *encoder
	switch {
	case len(w.idle) > 0:
		enc = w.idle[len(w.idle)-1]
		w.idle[len(w.idle)-1] = nil
		w.idle = w.idle[:len(w.idle)-1]
		enc.pw.Reset(f.out)
	case w.encoders < w.maxEncoders-1:
		enc = w.newEncoder(f.out)
	case w.leases.Len() > 0 && w.now.Sub(w.leases.Front().Value.(*file).lastWrite) >= stealAfter:
		victim := w.leases.Front().Value.(*file)
		if err := w.finishRowGroup(victim); err != nil {
			return false, err
		}
		enc = w.unlease(victim)
		enc.pw.Reset(f.out)
		w.steals.Inc()
	default:
		return false, nil
	}
	f.enc = enc
	f.leaseElem = w.leases.PushBack(f)
	return true, nil
}

// unlease takes back f's encoder, which must hold no rows of f.
func (w *Writer) unlease(f *file) *encoder {
	enc := f.enc
	w.leases.Remove(f.leaseElem)
	f.enc, f.leaseElem = nil, nil
	w.charge(f, f.heldBytes())
	return enc
}

// takeOneShot returns the encoder for the row groups of files without one,
// writing into out.
func (w *Writer) takeOneShot(out io.Writer) *encoder {
	if w.oneShot == nil {
		w.oneShot = w.newEncoder(out)
	} else {
		w.oneShot.pw.Reset(out)
	}
	return w.oneShot
}

// recycle readies enc, which just closed a row group of f that had grown to
// built bytes, for its next one. parquet-go keeps the capacity a row group
// grew (buffers, dictionaries) across Reset, uncounted; measured with the
// taxi schema it stays near the overhead charged (≈260 KiB after 1,000-row
// groups, ≈480 KiB after 50,000-row ones), but dictionaries grow with
// distinct values, so an encoder that built a large row group is replaced
// rather than kept.
func (w *Writer) recycle(enc *encoder, f *file, built int64) {
	large := built > max(2*w.overhead, retireAfter)
	switch {
	case enc == w.oneShot && large:
		w.oneShot = nil
		w.dropEncoder()
	case enc == w.oneShot:
	case large:
		enc.pw = w.newWriter(f.out)
	default:
		enc.pw.Reset(f.out)
	}
}

// encoderOverhead estimates the memory of one encoder before its first row:
// measured with parquet-go v0.32 at about 18 KiB per column (buffers,
// dictionaries, statistics).
func encoderOverhead(s *parquet.Schema) int64 {
	return int64(len(s.Columns()))*18<<10 + 16<<10
}

// feed hands f's staged (and spooled) and batched rows to enc, which copies
// them.
func (w *Writer) feed(f *file, enc *encoder) error {
	if f.rowSpill.n > 0 {
		if err := w.loadRows(f); err != nil {
			return err
		}
	}
	n := f.staged.rows()
	if n > 0 {
		err := writeStaged(&f.staged, enc.pw, &w.columns)
		f.staged.release(&w.recycled)
		if err != nil {
			return fmt.Errorf("parquet encode into %s: %w", f.key, err)
		}
		f.encRows += int64(n)
	}
	if enc.batch.n > 0 {
		rows := enc.batch.take()
		if _, err := enc.pw.WriteRows(rows); err != nil {
			return fmt.Errorf("parquet encode into %s: %w", f.key, err)
		}
		f.encRows += int64(len(rows))
	}
	return nil
}

// writeStaged hands the staged rows to pw a column at a time.
func writeStaged(s *staging, pw *parquet.GenericWriter[any], feed *columnFeed) error {
	// Drop the references into the chunks, which release hands on.
	defer feed.reset()
	ws := pw.ColumnWriters()
	if err := s.appendColumns(feed, len(ws)); err != nil {
		return err
	}
	return feed.writeTo(ws)
}

// finishRowGroup turns every row of f not yet in a row group into one. A
// file without an encoder uses the one-shot encoder.
func (w *Writer) finishRowGroup(f *file) error {
	enc := f.enc
	if enc == nil {
		if f.staged.rows() == 0 && f.rowSpill.n == 0 {
			return nil
		}
		enc = w.takeOneShot(f.out)
	}
	if err := w.feed(f, enc); err != nil {
		return err
	}
	if f.encRows == 0 {
		return nil
	}
	built := enc.pw.Size()
	start := len(f.out.b)
	// Grown once to what the row group takes (an upper bound: its last
	// pages are not compressed yet) instead of by each page appended: for a
	// large row group that regrowth, a quarter more each time, copied its
	// bytes about four times over, a sixth of (a)'s CPU.
	f.out.b = slices.Grow(f.out.b, int(built)+len(w.tmpl.paths)*footerBytesPerColumn)
	if err := enc.pw.Close(); err != nil {
		return fmt.Errorf("parquet row group of %s: %w", f.key, err)
	}
	b, g, _, err := spliceRowGroup(f.out.b, start, f.flushed(), &w.tmpl, enc.pw.File().Metadata(), true)
	if err != nil {
		return fmt.Errorf("parquet row group of %s: %w", f.key, err)
	}
	f.out.b = b
	f.groups = append(f.groups, g)
	f.groupsMem += g.size()
	f.encRows = 0
	w.recycle(enc, f, built)
	w.rowGroups.Inc()
	w.charge(f, f.heldBytes())
	return nil
}
