package opensearch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/sinkd/sinkd/internal/backoff"
)

// send delivers items, whose bytes are in body, until each one is indexed,
// accepted as a conflict or dead-lettered. Rejected items and failed
// requests are retried while ctx lives; only permanent failures
// (credentials, malformed requests, a failing dead-letter path) end it early.
// bufs holds the answers; body is sent as it is the first time.
func (w *Writer) send(ctx context.Context, bufs *buffers, body []byte, items []item) error {
	pending := items
	stalled := 0 // consecutive rounds without progress: they lengthen the wait
	for round := 0; len(pending) > 0; round++ {
		if round > 0 {
			if err := sleep(ctx, w.backoff.Delay(stalled)); err != nil {
				return err
			}
		}
		err := w.api.bulk(ctx, bufs, body, len(pending))
		var tooLarge *tooLargeError
		switch {
		case err == nil:
			retry, err := w.settle(ctx, body, pending, bufs.results)
			if err != nil {
				return err
			}
			if len(retry) < len(pending) {
				stalled = 0
			} else {
				stalled++
			}
			if len(retry) > 0 {
				body, pending = subset(body, retry)
			} else {
				pending = nil
			}
		case errors.As(err, &tooLarge):
			return w.split(ctx, bufs, body, pending, tooLarge)
		case isPermanent(err) || ctx.Err() != nil:
			return err
		default:
			stalled++
			w.log.Warn("bulk request failed, retrying", "docs", len(pending), "err", err)
		}
	}
	return nil
}

// subset copies the bytes of items out of body into a new body (retries and
// splits are rare: they may allocate).
func subset(body []byte, items []item) ([]byte, []item) {
	size := 0
	for _, it := range items {
		size += it.end - it.start
	}
	out := make([]byte, 0, size)
	moved := make([]item, len(items))
	for i, it := range items {
		start := len(out)
		out = append(out, body[it.start:it.end]...)
		moved[i] = item{start: start, meta: start + it.meta - it.start, end: len(out), version: it.version, rec: it.rec}
	}
	return out, moved
}

// split answers a 413: halves are sent one after the other until they fit; a
// single document too large for the cluster is dead-lettered.
func (w *Writer) split(ctx context.Context, bufs *buffers, body []byte, items []item, cause *tooLargeError) error {
	if len(items) == 1 {
		return w.deadLetter(ctx, items[0].doc(body), http.StatusRequestEntityTooLarge, "request_entity_too_large", cause.Error())
	}
	w.metrics.retries.WithLabelValues("split_413").Inc()
	half := len(items) / 2
	b, its := subset(body, items[:half])
	if err := w.send(ctx, bufs, b, its); err != nil {
		return err
	}
	b, its = subset(body, items[half:])
	return w.send(ctx, bufs, b, its)
}

// settle classifies each item of a bulk answer and returns those to retry.
func (w *Writer) settle(ctx context.Context, body []byte, items []item, results []itemStatus) ([]item, error) {
	if len(results) != len(items) {
		return nil, fmt.Errorf("opensearch: bulk response has %d items for %d documents", len(results), len(items))
	}
	var retry []item
	var indexed, conflicts int
	for i, it := range items {
		r := results[i]
		switch outcome := classify(r.status, it.version > 0 || w.action == "create"); outcome {
		case outcomeIndexed:
			indexed++
		case outcomeConflictOK:
			conflicts++
		case outcomeRetry:
			w.metrics.retried.Inc()
			w.metrics.retries.WithLabelValues(retryReason(r.status)).Inc()
			retry = append(retry, it)
		case outcomeDeadLetter:
			errType, reason := "unknown", fmt.Sprintf("status %d without an error body", r.status)
			if r.err != nil {
				var e itemError
				if json.Unmarshal(r.err, &e) == nil {
					errType, reason = e.Type, e.describe()
				}
			}
			if err := w.deadLetter(ctx, it.doc(body), r.status, errType, reason); err != nil {
				return nil, err
			}
		}
	}
	w.metrics.indexed.Add(float64(indexed))
	w.metrics.conflictOK.Add(float64(conflicts))
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

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error { return backoff.Sleep(ctx, d) }
