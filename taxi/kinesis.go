package taxi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sinkd/sinkd/internal/awsconf"
	"github.com/sinkd/sinkd/internal/backoff"
	"github.com/sinkd/sinkd/source/kinesis/kpl"
)

// Kinesis service limits.
const (
	maxRecordBytes   = 1 << 20 // data plus partition key of one record
	maxPutRecords    = 500     // records per PutRecords
	maxPutBytes      = 5 << 20 // bytes per PutRecords
	maxAggregateRecs = 100     // user records per aggregate, like the KPL's default batching
)

const (
	callTimeout = 30 * time.Second
	putAttempts = 8 // PutRecords calls for one batch before giving up
)

// putBackoff spaces the retries of rejected entries: exponential from 100ms,
// capped at 5s, equal jitter (internal/backoff).
var putBackoff = backoff.Policy{Base: 100 * time.Millisecond, Max: 5 * time.Second}

// KinesisSink writes to a Kinesis data stream with PutRecords. The partition
// key is the record key (the trip_id). With aggregation, user records are
// packed into KPL aggregates whose Kinesis partition key is that of their
// first record; since every trip has its own id, nothing relies on per-key
// ordering across shards. A KinesisSink is not safe for concurrent use.
type KinesisSink struct {
	client    *kinesis.Client
	stream    string
	aggregate bool

	pending      []types.PutRecordsRequestEntry
	pendingBytes int
	users        []kpl.UserRecord // the aggregate being filled
	usersBytes   int              // kpl.SizeBound of users plus framing
}

// NewKinesisSink connects to stream (at endpoint when not empty, for
// kinesalite or a VPC endpoint) and, when shards > 0, creates it with that
// many shards unless it exists. Either way it waits until the stream is ACTIVE.
// Credentials come from the standard AWS chain.
func NewKinesisSink(ctx context.Context, stream, endpoint, region string, shards int32, aggregate bool) (*KinesisSink, error) {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	o := awsconf.Options{Region: region, Timeout: callTimeout}
	if endpoint != "" {
		o.DefaultRegion = awsconf.EmulatorRegion
	}
	cfg, err := awsconf.Load(ctx, o)
	if err != nil {
		return nil, err
	}
	client := kinesis.NewFromConfig(cfg, func(o *kinesis.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})
	if shards > 0 {
		_, err := client.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: &stream, ShardCount: &shards})
		var inUse *types.ResourceInUseException
		if err != nil && !errors.As(err, &inUse) {
			return nil, fmt.Errorf("create stream %s: %w", stream, err)
		}
	}
	waiter := kinesis.NewStreamExistsWaiter(client, func(o *kinesis.StreamExistsWaiterOptions) {
		o.MinDelay = 100 * time.Millisecond // kinesalite activates a stream in about half a second
		o.MaxDelay = 2 * time.Second
	})
	if err := waiter.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: &stream}, setupTimeout); err != nil {
		return nil, fmt.Errorf("wait for stream %s to be active: %w", stream, err)
	}
	return &KinesisSink{client: client, stream: stream, aggregate: aggregate}, nil
}

func (s *KinesisSink) Send(ctx context.Context, key, value []byte) error {
	if !s.aggregate {
		return s.add(ctx, key, value)
	}
	u := kpl.UserRecord{PartitionKey: string(key), Data: value}
	size := kpl.SizeBound(u)
	if kpl.Overhead+size+len(key) > maxRecordBytes {
		return s.add(ctx, key, value) // too big to aggregate; add says if it is too big at all
	}
	if len(s.users) == maxAggregateRecs || s.usersBytes+size > maxRecordBytes {
		if err := s.closeAggregate(ctx); err != nil {
			return err
		}
	}
	if len(s.users) == 0 {
		// The aggregate's own partition key is the first record's.
		s.usersBytes = kpl.Overhead + len(key)
	}
	s.users = append(s.users, u)
	s.usersBytes += size
	return nil
}

func (s *KinesisSink) closeAggregate(ctx context.Context) error {
	if len(s.users) == 0 {
		return nil
	}
	data, err := kpl.Aggregate(s.users)
	if err != nil {
		return err
	}
	key := s.users[0].PartitionKey
	s.users = s.users[:0]
	return s.add(ctx, []byte(key), data)
}

// add queues one Kinesis record, first sending the queue when the record
// would take it over a PutRecords limit.
func (s *KinesisSink) add(ctx context.Context, key, data []byte) error {
	size := len(key) + len(data)
	if size > maxRecordBytes {
		return fmt.Errorf("record with key %s is %d bytes, over Kinesis's limit of %d", key, size, maxRecordBytes)
	}
	if len(s.pending) == maxPutRecords || s.pendingBytes+size > maxPutBytes {
		if err := s.put(ctx); err != nil {
			return err
		}
	}
	s.pending = append(s.pending, types.PutRecordsRequestEntry{PartitionKey: aws.String(string(key)), Data: data})
	s.pendingBytes += size
	return nil
}

// put sends the queued records, retrying the entries Kinesis rejected
// (throttling, internal failures) with backoff. Whatever it returns, pending
// holds exactly the records not yet accepted, so a later Flush neither loses
// nor duplicates any.
func (s *KinesisSink) put(ctx context.Context) error {
	var lastErr error
	for attempt := 0; len(s.pending) > 0; attempt++ {
		if attempt == putAttempts {
			return fmt.Errorf("put %d records to %s: gave up after %d attempts: %w", len(s.pending), s.stream, putAttempts, lastErr)
		}
		if attempt > 0 {
			if err := putBackoff.Wait(ctx, attempt-1); err != nil {
				return err
			}
		}
		callCtx, cancel := context.WithTimeout(ctx, callTimeout)
		out, err := s.client.PutRecords(callCtx, &kinesis.PutRecordsInput{StreamName: &s.stream, Records: s.pending})
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			lastErr = err
		case len(out.Records) != len(s.pending):
			lastErr = fmt.Errorf("PutRecords answered %d results for %d records", len(out.Records), len(s.pending))
		default:
			lastErr = s.keepFailed(out.Records)
		}
	}
	return nil
}

// keepFailed drops the accepted entries from pending, in place and in order,
// and returns the last rejection.
func (s *KinesisSink) keepFailed(results []types.PutRecordsResultEntry) error {
	var lastErr error
	kept := s.pending[:0]
	s.pendingBytes = 0
	for i, r := range results {
		if r.ErrorCode == nil {
			continue
		}
		e := s.pending[i]
		kept = append(kept, e)
		s.pendingBytes += len(aws.ToString(e.PartitionKey)) + len(e.Data)
		lastErr = fmt.Errorf("%s: %s", *r.ErrorCode, aws.ToString(r.ErrorMessage))
	}
	s.pending = kept
	return lastErr
}

func (s *KinesisSink) Flush(ctx context.Context) error {
	if err := s.closeAggregate(ctx); err != nil {
		return err
	}
	if len(s.pending) == 0 {
		return nil
	}
	return s.put(ctx)
}

// Close releases nothing: the SDK client holds no resources of its own beyond
// idle HTTP connections.
func (s *KinesisSink) Close() {}
