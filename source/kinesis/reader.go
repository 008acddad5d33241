package kinesis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"

	"github.com/sinkd/sinkd/internal/backoff"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/source"
	"github.com/sinkd/sinkd/source/kinesis/kpl"
)

// Per-shard read limits of Kinesis, shared by every consumer of the stream:
// 5 GetRecords calls and 2 MB per second.
const (
	minReadInterval = time.Second / 5
	shardBytesPerS  = 2 << 20
	// maxResultBytes is the most a GetRecords result holds on AWS. A
	// server that returns more (kinesalite does not cap results) gets a
	// lower record limit on the next call, so that memory stays bounded.
	maxResultBytes = 10 << 20
	// firstLimit is low because a first result's size is unknown:
	// 100 KPL-aggregated records of 45 KB are already 4.5 MB. The limit
	// doubles from there while results stay under 5 MB.
	firstLimit = 100
)

// expectedBytes is the record data a call with this limit is expected to
// return, from the bytes per record of the shard's last result (unknown
// before the first: then a full result).
func expectedBytes(limit int, perRecord int64) int64 {
	if perRecord <= 0 {
		return maxResultBytes
	}
	return min(maxResultBytes, int64(limit)*perRecord)
}

// nextLimit adapts the GetRecords record limit to the size of the last
// result: lower when it went over maxResultBytes, back up toward the
// configured limit when it was well under.
func nextLimit(limit, configured, bytes int) int {
	switch {
	case bytes > maxResultBytes:
		return max(1, int(int64(limit)*maxResultBytes/int64(bytes)))
	case bytes < maxResultBytes/2 && limit < configured:
		return min(configured, 2*limit)
	}
	return limit
}

// readBackoff spaces the calls after a throttle or a failure: exponential
// from 200ms, capped at 10s, with equal jitter (internal/backoff) so that
// readers throttled together do not retry together.
var readBackoff = backoff.Policy{Base: 200 * time.Millisecond, Max: 10 * time.Second}

// reader polls one owned shard and queues what it reads for Poll.
type reader struct {
	s           *Source
	generation  uint64 // of the Source when the reader started
	shard       string
	start       *source.Start // nil: the configured start position
	child       bool          // has parents: never started at LATEST
	cancel      context.CancelFunc
	done        chan struct{}
	behind      atomic.Int64 // MillisBehindLatest of the last read; -1 before it
	lastArrival atomic.Int64 // of the last record queued, Unix ms
	// drained: every record, up to SHARD_END, was handed to the pipeline;
	// marked: the leases know it. Both set under Source.mu.
	drained, marked bool
	// finished: committed past the end; set under Source.mu.
	finished bool

	mu      sync.Mutex
	last    record.Position // last user record queued
	hasLast bool
	ended   bool // SHARD_END read: the shard is closed and read to its end
}

func (s *Source) startReader(shard string, start *source.Start, child bool) *reader {
	ctx, cancel := context.WithCancel(s.life)
	r := &reader{s: s, generation: s.generation.Load(), shard: shard, start: start, child: child, cancel: cancel, done: make(chan struct{})}
	r.behind.Store(-1)
	go r.run(ctx)
	return r
}

// stop ends reading and waits until nothing more is queued from this shard.
func (r *reader) stop() {
	r.cancel()
	<-r.done
}

// unprocessed tells whether records queued from the shard are past done, the
// last one the pipeline processed (none when done.Seq is empty).
func (r *reader) unprocessed(done record.Position) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hasLast && (done.Seq == "" || done.Compare(r.last) < 0)
}

// complete tells whether the shard is read to its end and st, a committed
// restart point, is past its last record: nothing of it needs reading again.
func (r *reader) complete(st *source.Start) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.ended {
		return false
	}
	if !r.hasLast {
		return true
	}
	if st == nil {
		return false
	}
	c := st.Position.Compare(r.last)
	return c > 0 || (c == 0 && st.After)
}

func (r *reader) run(ctx context.Context) {
	defer close(r.done)
	log := r.s.log.With("shard", r.shard)
	var iter *string
	failures := 0
	// Start low: the first result's size is unknown.
	limit := min(r.s.cfg.MaxRecords, firstLimit)
	var perRecord int64 // bytes per record of the last result
	for ctx.Err() == nil {
		if r.s.paused.Load() {
			// The iterator may expire meanwhile; it is then re-acquired.
			sleep(ctx, r.s.cfg.PollInterval.D())
			continue
		}
		if iter == nil {
			it, err := r.iterator(ctx)
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("kinesis: getting a shard iterator failed; retrying", "err", err)
				}
				failures++
				sleep(ctx, failureWait(failures))
				continue
			}
			iter = it
		}
		// Room for the result is reserved before the call, so that memory
		// stays bounded however many shards this instance reads.
		reserved := fetchOverhead * expectedBytes(limit, perRecord)
		if r.s.queue.acquire(ctx, reserved) != nil {
			return
		}
		cctx, cancel := r.s.call(ctx)
		resp, err := r.s.api.GetRecords(cctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(int32(limit))},
			func(o *kinesis.Options) { o.RetryMaxAttempts = 1 }) // throttles are counted and backed off here
		cancel()
		if err != nil {
			r.s.queue.release(reserved)
			if ctx.Err() != nil {
				return
			}
			failures++
			switch {
			case isThrottle(err):
				r.s.m.throttles.Inc()
				log.Debug("kinesis: read throttled; backing off", "err", err)
			case isExpired(err):
				r.s.m.expired.Inc()
				log.Info("kinesis: shard iterator expired; re-acquiring it from the last position")
				iter = nil
				continue
			default:
				r.s.m.readErrors.Inc()
				log.Warn("kinesis: GetRecords failed; retrying", "err", err)
				iter = nil
			}
			sleep(ctx, failureWait(failures))
			continue
		}
		failures = 0
		r.s.m.reads.Inc()
		r.behind.Store(behindLatest(resp, limit, time.Now()))
		bytes := 0
		if len(resp.Records) == 0 {
			r.s.queue.release(reserved)
		} else {
			recs := r.convert(resp.Records)
			for _, rec := range resp.Records {
				bytes += len(rec.Data)
			}
			perRecord = int64(bytes / len(resp.Records))
			limit = nextLimit(limit, r.s.cfg.MaxRecords, bytes)
			r.s.queue.resize(reserved, queuedSize(recs))
			// Last set before the batch is queued: Lags never sees records
			// the pipeline may have that last does not cover.
			r.mu.Lock()
			prevLast, prevHas := r.last, r.hasLast
			r.last, r.hasLast = recs[len(recs)-1].Position, true
			r.mu.Unlock()
			r.lastArrival.Store(recs[len(recs)-1].Timestamp.UnixMilli())
			select {
			case r.s.out <- batch{generation: r.generation, recs: recs}:
			case <-ctx.Done():
				r.s.queue.release(queuedSize(recs))
				r.mu.Lock()
				r.last, r.hasLast = prevLast, prevHas
				r.mu.Unlock()
				return
			}
		}
		if resp.NextShardIterator == nil {
			r.mu.Lock()
			r.ended = true
			r.mu.Unlock()
			r.behind.Store(0)
			log.Info("kinesis: shard read to its end (SHARD_END)")
			// Behind every record of the shard: when Poll takes it, the
			// pipeline has them all, and the children may start.
			select {
			case r.s.out <- batch{generation: r.generation, end: r.shard}:
			case <-ctx.Done():
			}
			return
		}
		iter = resp.NextShardIterator
		// Stay within the shard's budget of reads and bytes per second.
		wait := max(r.s.cfg.PollInterval.D(), minReadInterval, time.Duration(bytes)*time.Second/shardBytesPerS)
		sleep(ctx, wait)
	}
}

// behindLatest is how far behind the tip a read left the shard: Kinesis's
// MillisBehindLatest, except that a full result (as many records as asked
// for) is never caught up, whatever a server says (emulators report 0): then
// the age of its last record, at least 1 ms, so that lag never reads 0 while
// records are unread.
func behindLatest(resp *kinesis.GetRecordsOutput, limit int, now time.Time) int64 {
	ms := aws.ToInt64(resp.MillisBehindLatest)
	if n := len(resp.Records); n > 0 && n >= limit && resp.NextShardIterator != nil {
		age := now.Sub(aws.ToTime(resp.Records[n-1].ApproximateArrivalTimestamp)).Milliseconds()
		ms = max(ms, age, 1)
	}
	return ms
}

// iterator gets a shard iterator where iteratorInput says.
func (r *reader) iterator(ctx context.Context) (*string, error) {
	r.mu.Lock()
	var last *record.Position
	if r.hasLast {
		last = &r.last
	}
	in, err := iteratorInput(r.s.cfg, r.shard, last, r.start, r.child)
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	cctx, cancel := r.s.call(ctx)
	defer cancel()
	out, err := r.s.api.GetShardIterator(cctx, in)
	if err != nil {
		if isThrottle(err) {
			r.s.m.throttles.Inc()
		}
		return nil, err
	}
	return out.ShardIterator, nil
}

// iteratorInput starts after the last record queued, else at the start
// position: a committed one (the pipeline drops what it already processed, so
// starting at the position itself is safe and keeps the rest of a KPL
// aggregate), or the configured one for a shard never committed. A child
// shard is never started at LATEST: its parents were read to their end, and
// its records follow theirs. (A shard started at LATEST whose iterator
// expires before its first record starts at LATEST again: there is no
// position to resume from.)
func iteratorInput(cfg *Config, shard string, last *record.Position, start *source.Start, child bool) (*kinesis.GetShardIteratorInput, error) {
	in := &kinesis.GetShardIteratorInput{StreamName: aws.String(cfg.Stream), ShardId: aws.String(shard)}
	switch {
	case last != nil:
		// Every user record of the last Kinesis record was queued with it.
		in.ShardIteratorType, in.StartingSequenceNumber = types.ShardIteratorTypeAfterSequenceNumber, aws.String(last.Seq)
	case start != nil:
		in.ShardIteratorType, in.StartingSequenceNumber = types.ShardIteratorTypeAtSequenceNumber, aws.String(start.Position.Seq)
	case cfg.Start == "latest" && !child:
		in.ShardIteratorType = types.ShardIteratorTypeLatest
	case cfg.Start == "at_timestamp":
		t, err := time.Parse(time.RFC3339, cfg.StartTime)
		if err != nil {
			return nil, fmt.Errorf("kinesis start_timestamp: %w", err)
		}
		in.ShardIteratorType, in.Timestamp = types.ShardIteratorTypeAtTimestamp, aws.Time(t)
	default:
		in.ShardIteratorType = types.ShardIteratorTypeTrimHorizon
	}
	return in, nil
}

// convert unpacks KPL aggregates: each user record gets its index as its
// sub-sequence number. A corrupt aggregate travels whole, marked as failed,
// to the dead-letter path.
func (r *reader) convert(in []types.Record) []record.Record {
	out := make([]record.Record, 0, len(in))
	pid := r.s.pid(r.shard)
	for _, kr := range in {
		seq, pk := aws.ToString(kr.SequenceNumber), aws.ToString(kr.PartitionKey)
		ts := aws.ToTime(kr.ApproximateArrivalTimestamp)
		users, err := kpl.Deaggregate(kr.Data, pk)
		if err != nil {
			class := kpl.ClassMalformed
			var ke *kpl.Error
			if errors.As(err, &ke) {
				class = ke.Class
			}
			r.s.m.badAggregates.Inc()
			out = append(out, record.Record{
				Source: record.Kinesis, Partition: pid, Position: record.Position{Seq: seq},
				Key: []byte(pk), Value: kr.Data, Timestamp: ts,
				Failure: &record.Failure{Stage: "kpl", Class: class, Message: err.Error()},
			})
			continue
		}
		for i, u := range users {
			out = append(out, record.Record{
				Source: record.Kinesis, Partition: pid, Position: record.Position{Seq: seq, Sub: int64(i)},
				Key: []byte(u.PartitionKey), Value: u.Data, Timestamp: ts,
			})
		}
	}
	return out
}

func isThrottle(err error) bool {
	var pte *types.ProvisionedThroughputExceededException
	var lee *types.LimitExceededException
	var kte *types.KMSThrottlingException
	if errors.As(err, &pte) || errors.As(err, &lee) || errors.As(err, &kte) {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "ThrottlingException"
}

func isExpired(err error) bool {
	var e *types.ExpiredIteratorException
	return errors.As(err, &e)
}

// failureWait is the wait after n (≥ 1) consecutive failures.
func failureWait(n int) time.Duration { return readBackoff.Delay(n - 1) }

// sleep waits d or until ctx ends; the loop checks ctx itself.
func sleep(ctx context.Context, d time.Duration) { _ = backoff.Sleep(ctx, d) }
