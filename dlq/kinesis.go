package dlq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sinkd/sinkd/internal/awsconf"
	"github.com/sinkd/sinkd/internal/backoff"
)

// Kinesis limits (PutRecords): 500 records and 5 MiB per call, 1 MiB per
// record (data plus partition key).
const (
	kinesisBatchRecords = 500
	kinesisBatchBytes   = 5 << 20
	kinesisRecordLimit  = 1<<20 - 64 // room for the 32-byte partition key
	kinesisCallTimeout  = 15 * time.Second
	kinesisHTTPTimeout  = 30 * time.Second
)

// kinesisSink batches JSON envelopes into PutRecords calls from one
// goroutine. Entries the stream refuses (FailedRecordCount) are retried on
// their own with backoff; the others are acknowledged.
type kinesisSink struct {
	api     *kinesis.Client
	stream  string
	opts    Options
	metrics *metrics
	ledger  *ledger
	log     *slog.Logger

	queue  chan *kinesisEntry
	closed atomic.Bool
	stop   context.CancelFunc
	done   chan struct{}
}

type kinesisEntry struct {
	data      []byte
	key       string
	ticket    uint64
	attempt   int
	notBefore time.Time
}

// NewKinesis returns a sink that writes to a Kinesis data stream.
func NewKinesis(ctx context.Context, cfg KinesisConfig, o Options) (Sink, error) {
	if cfg.Stream == "" {
		return nil, errors.New("dlq kinesis: no stream")
	}
	o = o.withDefaults()
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("dlq metrics: %w", err)
	}
	api, err := kinesisClient(cfg.Endpoint, cfg.Region, o.Logger)
	if err != nil {
		return nil, fmt.Errorf("dlq kinesis: %w", err)
	}
	if err := checkStream(ctx, api, cfg, o.Logger); err != nil {
		return nil, err
	}
	life, stop := context.WithCancel(context.Background())
	s := &kinesisSink{
		api: api, stream: cfg.Stream, opts: o, metrics: m,
		ledger: newLedger(o.MaxBuffered, m.buffered),
		log:    o.Logger.With("dlq", "kinesis", "stream", cfg.Stream),
		// The ledger admits at most MaxBuffered letters, so Send never
		// blocks on this channel.
		queue: make(chan *kinesisEntry, o.MaxBuffered),
		stop:  stop,
		done:  make(chan struct{}),
	}
	go s.pump(life)
	return s, nil
}

// kinesisClient builds a client with a bounded HTTP timeout; endpoint ""
// means AWS.
func kinesisClient(endpoint, region string, log *slog.Logger) (*kinesis.Client, error) {
	o := awsconf.Options{Region: region, Timeout: kinesisHTTPTimeout, Logger: log}
	if endpoint != "" {
		o.DefaultRegion = awsconf.EmulatorRegion
	}
	cfg, err := awsconf.Load(context.Background(), o)
	if errors.Is(err, awsconf.ErrNoRegion) {
		return nil, errors.New("no AWS region (set region or AWS_REGION)")
	}
	if err != nil {
		return nil, err
	}
	return kinesis.NewFromConfig(cfg, func(o *kinesis.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	}), nil
}

func (s *kinesisSink) Send(ctx context.Context, l *Letter) error {
	if s.closed.Load() {
		return errClosed
	}
	l = fitValue(s.opts.stamp(l), kinesisRecordLimit, jsonSize)
	data, err := ToJSON(l)
	if err != nil {
		return fmt.Errorf("dlq kinesis: encode %s: %w", l.ID(), err)
	}
	ticket, err := s.ledger.admit(ctx)
	if err != nil {
		return err
	}
	s.metrics.counted(l)
	s.queue <- &kinesisEntry{data: data, key: l.ID(), ticket: ticket}
	return nil
}

func (s *kinesisSink) Flush(ctx context.Context) error { return s.ledger.wait(ctx) }

func (s *kinesisSink) Close(ctx context.Context) error {
	s.closed.Store(true)
	err := s.Flush(ctx)
	s.stop()
	<-s.done
	if err != nil {
		return fmt.Errorf("dlq kinesis close: %w", err)
	}
	return nil
}

// pump sends batches until ctx ends: entries due for a retry first, then
// whatever is queued, within the PutRecords limits.
func (s *kinesisSink) pump(ctx context.Context) {
	defer close(s.done)
	var waiting []*kinesisEntry // failed entries, in the order they are due
	for {
		var batch []*kinesisEntry
		size := 0
		fits := func(e *kinesisEntry) bool {
			return len(batch) < kinesisBatchRecords && size+len(e.data)+len(e.key) <= kinesisBatchBytes
		}
		now := time.Now()
		kept := waiting[:0]
		for _, e := range waiting {
			if !e.notBefore.After(now) && fits(e) {
				batch = append(batch, e)
				size += len(e.data) + len(e.key)
			} else {
				kept = append(kept, e)
			}
		}
		waiting = kept
	drain:
		for {
			if len(batch) >= kinesisBatchRecords {
				break
			}
			select {
			case e := <-s.queue:
				if !fits(e) {
					waiting = append(waiting, e) // first in the next batch
					break drain
				}
				batch = append(batch, e)
				size += len(e.data) + len(e.key)
			default:
				break drain
			}
		}
		if len(batch) == 0 {
			if !s.idle(ctx, &waiting) {
				return
			}
			continue
		}
		waiting = append(waiting, s.put(ctx, batch)...)
	}
}

// idle blocks until a letter is queued or a retry is due; false when ctx
// ended.
func (s *kinesisSink) idle(ctx context.Context, waiting *[]*kinesisEntry) bool {
	var due <-chan time.Time
	if len(*waiting) > 0 {
		next := (*waiting)[0].notBefore
		for _, e := range *waiting {
			if e.notBefore.Before(next) {
				next = e.notBefore
			}
		}
		t := time.NewTimer(time.Until(next))
		defer t.Stop()
		due = t.C
	}
	select {
	case e := <-s.queue:
		*waiting = append(*waiting, e)
		return true
	case <-due:
		return true
	case <-ctx.Done():
		return false
	}
}

// put writes one batch and returns the entries to retry.
func (s *kinesisSink) put(ctx context.Context, batch []*kinesisEntry) []*kinesisEntry {
	in := &kinesis.PutRecordsInput{StreamName: aws.String(s.stream)}
	for _, e := range batch {
		in.Records = append(in.Records, types.PutRecordsRequestEntry{Data: e.data, PartitionKey: aws.String(e.key)})
	}
	callCtx, cancel := context.WithTimeout(ctx, kinesisCallTimeout)
	out, err := s.api.PutRecords(callCtx, in)
	cancel()
	if ctx.Err() != nil {
		return nil // closing: Close reports what is left
	}
	var failed []*kinesisEntry
	switch {
	case err != nil:
		failed = batch
		s.log.Warn("dead letters not written, retrying", "err", err, "letters", len(batch))
	case len(out.Records) != len(batch):
		failed = batch
		s.log.Warn("PutRecords answered a different number of entries, retrying", "sent", len(batch), "got", len(out.Records))
	default:
		var code, msg string
		for i, r := range out.Records {
			if r.ErrorCode != nil {
				failed = append(failed, batch[i])
				code, msg = aws.ToString(r.ErrorCode), aws.ToString(r.ErrorMessage)
				continue
			}
			s.ledger.settle(batch[i].ticket)
		}
		if len(failed) > 0 {
			s.log.Warn("dead letters refused by the stream, retrying", "failed", len(failed), "code", code, "message", msg)
		}
	}
	now := time.Now()
	for _, e := range failed {
		s.metrics.retries.Inc()
		e.notBefore = now.Add(retryDelay(e.attempt))
		e.attempt++
	}
	return failed
}

// checkStream creates the dead-letter stream when it is missing and allowed
// to (one shard, provisioned: a dead-letter stream is small, and kinesalite
// knows no on-demand mode), and waits until it is active.
func checkStream(ctx context.Context, api *kinesis.Client, cfg KinesisConfig, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// DescribeStream rather than DescribeStreamSummary: kinesalite has only the former.
	describe := func() (*kinesis.DescribeStreamOutput, error) {
		call, cancel := context.WithTimeout(ctx, kinesisCallTimeout)
		defer cancel()
		return api.DescribeStream(call, &kinesis.DescribeStreamInput{StreamName: aws.String(cfg.Stream), Limit: aws.Int32(1)})
	}
	_, err := describe()
	var missing *types.ResourceNotFoundException
	// A lookup that fails for another reason (a slow endpoint, a timeout)
	// is tried again before the check is given up.
	lookup := backoff.Policy{Base: time.Second, Max: 2 * time.Second}
	for attempt := 0; err != nil && !errors.As(err, &missing) && attempt < 2; attempt++ {
		if lookup.Wait(ctx, attempt) != nil {
			break
		}
		_, err = describe()
	}
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &missing):
		log.Warn("could not look up the dead-letter stream; will retry when writing", "stream", cfg.Stream, "err", err)
		return nil
	case !cfg.Creates():
		return fmt.Errorf("dlq kinesis: the dead-letter stream %q does not exist, and dlq.kinesis.create is false: create it, or allow sinkd to", cfg.Stream)
	}
	call, ccancel := context.WithTimeout(ctx, kinesisCallTimeout)
	_, err = api.CreateStream(call, &kinesis.CreateStreamInput{StreamName: aws.String(cfg.Stream), ShardCount: aws.Int32(1)})
	ccancel()
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("dlq kinesis: the dead-letter stream %q does not exist and could not be created: %w (create it, or grant kinesis:CreateStream)", cfg.Stream, err)
	}
	for {
		out, err := describe()
		if err == nil && out.StreamDescription.StreamStatus == types.StreamStatusActive {
			log.Info("created the dead-letter stream", "stream", cfg.Stream)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dlq kinesis: the created dead-letter stream %q did not become active within a minute", cfg.Stream)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
