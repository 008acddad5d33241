package jsonlines

import (
	"cmp"
	"slices"
	"time"
)

// quietWrites is how many writes skip relief after one that found the
// budget's excess held by other writers: sorting thousands of files again
// for every record would free nothing.
const quietWrites = 256

// relieve makes room for need more bytes under the budget, down to its low
// mark (an eighth under the limit) so that relief is not needed again for a
// while, largest holders first. Files that hold S3's least part size upload
// a part early (no smaller file results); then, while this writer holds more
// than half its fair share, the files holding the most roll. Rolling the
// largest, never the least recently written, keeps files as large as memory
// allows: each one rolled holds more than most open ones. Open files are
// never closed by a count.
func (w *Writer) relieve(need int64) error {
	limit := w.budget.Limit()
	if w.quiet > 0 && w.budget.Used() < limit+limit/16 {
		w.quiet--
		return nil
	}
	w.m.memoryFull.Inc()
	if w.now.Sub(w.fullWarned) >= time.Minute {
		w.fullWarned = w.now
		w.log.Warn("memory.budget reached: JSON-lines files upload parts early, then the files holding the most roll, which makes files smaller than target_file_size; raise memory.budget to keep more buckets open",
			"route", w.route, "budget_bytes", limit, "used_bytes", w.budget.Used(), "held_bytes", w.held, "open_files", len(w.files))
	}
	low := min(limit-limit/8, limit-need)
	// Sorted once per relief: choosing the largest again for every file
	// acted on would cost files² with thousands of buckets open.
	w.bySize = w.bySize[:0]
	for _, f := range w.files {
		if len(f.buf) > 0 {
			w.bySize = append(w.bySize, f)
		}
	}
	slices.SortFunc(w.bySize, func(a, b *file) int { return cmp.Compare(len(b.buf), len(a.buf)) })
	defer clear(w.bySize)

	// Files chosen until what they free brings the budget to its low mark.
	pick := func(ok func(*file) bool, enough func(freed int64) bool) []*file {
		var out []*file
		var freed int64
		for _, f := range w.bySize {
			if enough(freed) {
				break
			}
			if ok(f) {
				out = append(out, f)
				freed += f.held - fileOverhead
			}
		}
		return out
	}
	early := pick(func(f *file) bool { return len(f.buf) >= minPartSize },
		func(freed int64) bool { return w.budget.Used()-freed <= low })
	if len(early) > 0 {
		if err := w.sendParts(early); err != nil {
			return err
		}
		w.m.earlyParts.Add(float64(len(early)))
	}
	share := limit / int64(2*w.sharing)
	if w.budget.Used() > low && w.held > share {
		roll := pick(func(f *file) bool { return len(f.buf) > 0 && w.files[f.bucket] == f },
			func(freed int64) bool { return w.budget.Used()-freed <= low || w.held-freed <= share })
		if err := w.rollMany(roll, "memory"); err != nil {
			return err
		}
	}
	if w.budget.Used()+need > limit {
		w.quiet = quietWrites // what is over is held by other writers
	}
	return nil
}
