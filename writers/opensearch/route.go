package opensearch

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sinkd/sinkd/buckets"
	"github.com/sinkd/sinkd/checkpoint"
	"github.com/sinkd/sinkd/dlq"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/schema"
	"github.com/sinkd/sinkd/writers"
)

// Route is the OpenSearch destination of one route as the pipeline sees it
// (writers.Writer). Documents have deterministic ids, so replay overwrites
// and there is nothing to commit: its prepare is a flush, and the replay
// filter, restore and release are the Parquet writer's concern only.
type Route struct {
	w       *Writer
	name    string
	id      *buckets.Template
	indexes []*buckets.Template
	version int // column of the external version field, -1 when none
	dl      writers.DeadLetter
	buf     []byte // id and index of the document being written
}

// NewRoute wraps w for route name: id and indexes render each document's id
// and the indexes it goes to; version is the column of the external version,
// -1 for none.
func NewRoute(w *Writer, name string, id *buckets.Template, indexes []*buckets.Template, version int, dl writers.DeadLetter) *Route {
	return &Route{w: w, name: name, id: id, indexes: indexes, version: version, dl: dl}
}

var _ writers.Writer = (*Route)(nil)

// DocDeadLetter adapts a writers.DeadLetter to the documents the cluster
// rejects for good.
func DocDeadLetter(dl writers.DeadLetter) DeadLetter {
	return func(ctx context.Context, d Doc, status int, errType, reason string) error {
		return dl(ctx, d.Rec, string(dlq.StageOpenSearch), errType, reason,
			map[string]string{dlq.DetailIndex: d.Index, "id": d.ID, "status": strconv.Itoa(status)})
	}
}

// Writer is the wrapped writer.
func (r *Route) Writer() *Writer { return r.w }

func (r *Route) Name() string { return r.name + "/opensearch" }

func (r *Route) Write(ctx context.Context, row parquet.Row, rec *record.Record, now time.Time) error {
	// Id and index are rendered into one buffer the route keeps (id first,
	// then each index after it): the writer copies them, so nothing is
	// allocated per document.
	buf, err := r.id.Append(r.buf[:0], row, rec, now)
	if err != nil {
		return writers.TemplateFailure(ctx, r.dl, rec, err, r.name, "id")
	}
	idLen := len(buf)
	var version int64
	if r.version >= 0 {
		if v, ok := schema.Value(row, r.version); ok && !v.IsNull() {
			version = v.Int64()
		}
	}
	for _, t := range r.indexes {
		buf, err = t.Append(buf[:idLen], row, rec, now)
		if err != nil {
			if err := writers.TemplateFailure(ctx, r.dl, rec, err, r.name, "index"); err != nil {
				return err
			}
			continue
		}
		if err := r.w.WriteBytes(ctx, buf[idLen:], buf[:idLen], version, rec.Value, rec); err != nil {
			return err
		}
	}
	r.buf = buf[:0]
	return nil
}

func (r *Route) Tick(time.Time) error { return nil }

// Prepare flushes: it returns once every document written before it is
// settled (indexed or dead-lettered).
func (r *Route) Prepare(ctx context.Context, _ writers.Roll) (*writers.Prepared, error) {
	if err := r.w.Flush(ctx); err != nil {
		return nil, fmt.Errorf("opensearch flush (route %s): %w", r.name, err)
	}
	return &writers.Prepared{}, nil
}

func (r *Route) Committed(*writers.Prepared, map[record.PartitionID]checkpoint.Restart) {}
func (r *Route) Restore(record.PartitionID, map[string]record.Position)                 {}
func (r *Route) Release(record.PartitionID)                                             {}

// Discard keeps what is buffered: documents sent again on replay overwrite
// themselves.
func (r *Route) Discard() {}

func (r *Route) Close(ctx context.Context) error { return r.w.Close(ctx) }
