package opensearch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"
)

// send delivers items until each one is indexed, accepted as a conflict or
// dead-lettered. Rejected items and failed requests are retried while ctx
// lives; only permanent failures (credentials, malformed requests, a failing
// dead-letter path) end it early.
func (w *Writer) send(ctx context.Context, items []item) error {
	pending := items
	stalled := 0 // consecutive rounds without progress: they lengthen the wait
	for round := 0; len(pending) > 0; round++ {
		if round > 0 {
			if err := sleep(ctx, w.backoff.delay(stalled)); err != nil {
				return err
			}
		}
		resp, err := w.api.bulk(ctx, pending)
		var tooLarge *tooLargeError
		switch {
		case err == nil:
			retry, err := w.settle(ctx, pending, resp)
			if err != nil {
				return err
			}
			if len(retry) < len(pending) {
				stalled = 0
			} else {
				stalled++
			}
			pending = retry
		case errors.As(err, &tooLarge):
			return w.split(ctx, pending, tooLarge)
		case isPermanent(err) || ctx.Err() != nil:
			return err
		default:
			stalled++
			w.log.Warn("bulk request failed, retrying", "docs", len(pending), "err", err)
		}
	}
	return nil
}

// split answers a 413: halves are sent one after the other until they fit; a
// single document too large for the cluster is dead-lettered.
func (w *Writer) split(ctx context.Context, items []item, cause *tooLargeError) error {
	if len(items) == 1 {
		return w.deadLetter(ctx, items[0].doc, http.StatusRequestEntityTooLarge, "request_entity_too_large", cause.Error())
	}
	w.metrics.retries.WithLabelValues("split_413").Inc()
	half := len(items) / 2
	if err := w.send(ctx, items[:half]); err != nil {
		return err
	}
	return w.send(ctx, items[half:])
}

// settle classifies each item of a bulk response and returns those to retry.
func (w *Writer) settle(ctx context.Context, items []item, resp *bulkResponse) ([]item, error) {
	if len(resp.Items) != len(items) {
		return nil, fmt.Errorf("opensearch: bulk response has %d items for %d documents", len(resp.Items), len(items))
	}
	var retry []item
	for i, it := range items {
		r := resp.Items[i].result()
		if r == nil {
			return nil, fmt.Errorf("opensearch: bulk response item %d has no known action", i)
		}
		switch outcome := classify(r.Status, it.doc.Version > 0 || w.action == "create"); outcome {
		case outcomeIndexed, outcomeConflictOK:
			w.metrics.docs.WithLabelValues(outcome.String()).Inc()
		case outcomeRetry:
			w.metrics.docs.WithLabelValues("retried").Inc()
			w.metrics.retries.WithLabelValues(retryReason(r.Status)).Inc()
			retry = append(retry, it)
		case outcomeDeadLetter:
			errType, reason := "unknown", fmt.Sprintf("status %d without an error body", r.Status)
			if r.Error != nil {
				errType, reason = r.Error.Type, r.Error.describe()
			}
			if err := w.deadLetter(ctx, it.doc, r.Status, errType, reason); err != nil {
				return nil, err
			}
		}
	}
	return retry, nil
}

type outcome int

const (
	outcomeIndexed outcome = iota
	outcomeConflictOK
	outcomeRetry
	outcomeDeadLetter
)

func (o outcome) String() string {
	switch o {
	case outcomeIndexed:
		return "indexed"
	case outcomeConflictOK:
		return "conflict_ok"
	case outcomeRetry:
		return "retried"
	}
	return "dead_lettered"
}

// classify decides an item's fate from its status. A 409 is success when the
// document was sent with create (its deterministic id is already there) or
// with an external version (an equal or newer version is already there).
func classify(status int, conflictMeansPresent bool) outcome {
	switch {
	case status >= 200 && status < 300:
		return outcomeIndexed
	case status == http.StatusConflict && conflictMeansPresent:
		return outcomeConflictOK
	case status == http.StatusTooManyRequests || status >= 500:
		return outcomeRetry
	}
	return outcomeDeadLetter
}

func retryReason(status int) string {
	if status == http.StatusTooManyRequests {
		return "item_429"
	}
	return "item_5xx"
}

// backoff computes waits with exponential growth and jitter.
type backoff struct{ min, max time.Duration }

// delay returns a wait in [d/2, d) for d = min·2^attempt capped at max, so
// that retrying senders spread out instead of hitting the cluster together.
func (b backoff) delay(attempt int) time.Duration {
	d := b.max
	if attempt < 30 {
		d = min(b.min<<attempt, b.max)
	}
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
