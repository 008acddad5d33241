package writers

import (
	"context"
	"errors"

	"github.com/sinkd/sinkd/buckets"
	"github.com/sinkd/sinkd/dlq"
	"github.com/sinkd/sinkd/record"
)

// TemplateFailure dead-letters a record one of a route's templates cannot
// render (a field it needs is missing, say); what names the template.
func TemplateFailure(ctx context.Context, dl DeadLetter, rec *record.Record, err error, routeName, what string) error {
	class := "other"
	var be *buckets.Error
	if errors.As(err, &be) {
		class = be.Class
	}
	return dl(ctx, rec, string(dlq.StageBucket), class, err.Error(), map[string]string{"route": routeName, "template": what})
}
