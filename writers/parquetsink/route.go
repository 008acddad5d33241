package parquetsink

import (
	"context"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/buckets"
	"github.com/sinkd/sinkd/checkpoint"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/writers"
)

// Route is the Parquet destination of one route as the pipeline sees it
// (writers.Writer): it renders each record's bucket path and hands the row to
// the Writer.
type Route struct {
	w    *Writer
	path *buckets.Template
	dl   writers.DeadLetter
	buf  []byte // the path being rendered, reused
}

// NewRoute wraps w, whose files are placed by path; records path cannot place
// go to dl.
func NewRoute(w *Writer, path *buckets.Template, dl writers.DeadLetter) *Route {
	return &Route{w: w, path: path, dl: dl}
}

var _ writers.Writer = (*Route)(nil)
var _ writers.Roller = (*Route)(nil)

// Writer is the wrapped writer (status and tests read its counters).
func (r *Route) Writer() *Writer { return r.w }

// Name is the route's name: the manifest's replay filter has been keyed by it
// since the first manifest format.
func (r *Route) Name() string { return r.w.o.Route }

func (r *Route) Write(ctx context.Context, row parquet.Row, rec *record.Record, now time.Time) error {
	r.w.now = now
	path, err := r.path.Append(r.buf[:0], row, rec, now)
	r.buf = path
	if err != nil {
		return writers.TemplateFailure(ctx, r.dl, rec, err, r.w.o.Route, "path")
	}
	return r.w.Write(ctx, path, row, rec)
}

func (r *Route) Tick(now time.Time) error {
	r.w.SetNow(now)
	return r.w.Tick()
}

func (r *Route) Roll(roll writers.Roll) error {
	if !roll.Any() {
		return nil
	}
	return r.w.Roll(roll)
}

func (r *Route) Prepare(ctx context.Context, roll writers.Roll) (*writers.Prepared, error) {
	if err := r.Roll(roll); err != nil {
		return nil, err
	}
	prep, err := r.w.PreCommit(ctx)
	if err != nil {
		return nil, err
	}
	// The filter may learn the new highs now: the records are processed
	// either way, and they only become replayable if this checkpoint fails
	// and the process dies, which loses the filter too.
	for pid, highs := range prep.Highs {
		r.w.Restore(pid, highs)
	}
	return &writers.Prepared{Entries: prep.Uploads, OpenLow: prep.OpenLow, Open: r.w.OpenFiles(), Filter: r.w.Filters(), State: prep}, nil
}

func (r *Route) Committed(p *writers.Prepared, restart map[record.PartitionID]checkpoint.Restart) {
	r.w.Committed(p.State.(*Prepared))
	for pid, st := range restart {
		r.w.CommittedState(pid, st.Position, st.After)
	}
}

func (r *Route) Restore(id record.PartitionID, filter map[string]record.Position) {
	r.w.Restore(id, filter)
}

func (r *Route) Release(id record.PartitionID) { r.w.Forget(id) }

func (r *Route) Discard() { r.w.Discard() }

func (r *Route) Close(context.Context) error {
	r.w.Close()
	return nil
}
