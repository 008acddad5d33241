// Package kafka is sinkd's Kafka / Amazon MSK source: a franz-go consumer group
// member whose group callbacks hand partitions over through the checkpoint
// protocol, and whose commits carry a reference to the manifest that made them
// true.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sinkd/sinkd/internal/kafkaclient"
	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/source"
)

var _ source.Source = (*Source)(nil)

// Source reads records of the assigned partitions.
type Source struct {
	cl *kgo.Client
	// admin is a second client, outside the group: it lists offsets and
	// describes the group for Backlogs, and it outlives cl on Close to send
	// the static member's LeaveGroup that cl does not send.
	admin      *kgo.Client
	topics     []string
	group      string
	instanceID *string // group.instance.id when static membership is on
	reqTimeout time.Duration
	h          source.Handler
	log        *slog.Logger
	mu         sync.Mutex
	meta       map[record.PartitionID]string // commit metadata from the last offset fetch
	hwm        map[record.PartitionID]int64
	backlog    *backlogView
	closed     chan struct{}
	refreshed  chan struct{} // closed when the refresh loop has returned
}

// New connects a group member; it does not poll until Poll is called.
func New(ctx context.Context, cfg *Config, instanceID string, h source.Handler, log *slog.Logger, extra ...kgo.Opt) (*Source, error) {
	s := &Source{
		h: h, log: log, meta: map[record.PartitionID]string{}, hwm: map[record.PartitionID]int64{},
		topics: cfg.Topics, group: cfg.Group, reqTimeout: cfg.RequestTimeout.D(),
		backlog: newBacklogView(cfg.SessionTimeout.D(), cfg.Start == "earliest"),
		closed:  make(chan struct{}), refreshed: make(chan struct{}),
	}
	start := kgo.NewOffset().AtStart()
	switch cfg.Start {
	case "latest":
		start = kgo.NewOffset().AtEnd()
	case "timestamp":
		t, err := time.Parse(time.RFC3339, cfg.StartTimestamp)
		if err != nil {
			return nil, fmt.Errorf("kafka start_timestamp: %w", err)
		}
		start = kgo.NewOffset().AfterMilli(t.UnixMilli())
	}
	// What both clients need to reach and authenticate to the cluster.
	conn, err := kafkaclient.Opts(ctx, kafkaclient.Options{
		Brokers: cfg.Brokers, TLS: cfg.TLS, SASL: cfg.SASL,
		RequestTimeout: cfg.RequestTimeout.D(), RetryTimeout: cfg.RequestTimeout.D(),
		Logger: log,
	})
	if err != nil {
		return nil, err
	}
	opts := []kgo.Opt{
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topics...),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(start),
		kgo.FetchMaxBytes(int32(cfg.FetchMaxBytes.Bytes())),
		kgo.FetchMaxPartitionBytes(int32(cfg.PartitionBytes.Bytes())),
		kgo.SessionTimeout(cfg.SessionTimeout.D()),
		kgo.OnOffsetsFetched(s.onFetched),
		kgo.AdjustFetchOffsetsFn(s.adjust),
		kgo.OnPartitionsRevoked(s.onRevoked),
		kgo.OnPartitionsLost(s.onLost),
	}
	if cfg.StaticMembership {
		opts = append(opts, kgo.InstanceID(instanceID))
		s.instanceID = &instanceID
	}
	admin, err := kgo.NewClient(conn...)
	if err != nil {
		return nil, fmt.Errorf("kafka admin client: %w", err)
	}
	cl, err := kgo.NewClient(append(append(conn, opts...), extra...)...)
	if err != nil {
		admin.Close()
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	s.cl, s.admin = cl, admin
	go s.refresh()
	return s, nil
}

// Pause stops fetching; Resume starts again. Positions, checkpoints and
// metrics go on.
func (s *Source) Pause() { s.cl.PauseFetchTopics(s.topics...) }

func (s *Source) Resume() { s.cl.ResumeFetchTopics(s.topics...) }

// Ping checks that a broker answers, for readiness.
func (s *Source) Ping(ctx context.Context) error { return s.cl.Ping(ctx) }

func pid(topic string, p int32) record.PartitionID {
	return record.PartitionID{Stream: topic, Partition: p}
}

func (s *Source) onFetched(_ context.Context, _ *kgo.Client, resp *kmsg.OffsetFetchResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Old and new response versions carry offsets in different places.
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.Metadata != nil {
				s.meta[pid(t.Topic, p.Partition)] = *p.Metadata
			}
		}
	}
	for _, g := range resp.Groups {
		for _, t := range g.Topics {
			for _, p := range t.Partitions {
				if p.Metadata != nil {
					s.meta[pid(t.Topic, p.Partition)] = *p.Metadata
				}
			}
		}
	}
	return nil
}

func (s *Source) adjust(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	var as []source.Assignment
	s.mu.Lock()
	for topic, ps := range offsets {
		for p, o := range ps {
			id := pid(topic, p)
			a := source.Assignment{ID: id, Ref: s.meta[id]}
			if committed := o.EpochOffset().Offset; committed >= 0 {
				a.Committed = &source.Start{Position: record.Position{Offset: committed}}
			}
			as = append(as, a)
		}
	}
	s.mu.Unlock()
	starts, err := s.h.Assigned(ctx, as)
	if err != nil {
		s.log.Error("taking over partitions failed; the group will retry", "err", err)
		return nil, err
	}
	for id, at := range starts {
		offsets[id.Stream][id.Partition] = kgo.NewOffset().At(offset(at)).WithEpoch(-1)
	}
	return offsets, nil
}

func ids(m map[string][]int32) []record.PartitionID {
	var out []record.PartitionID
	for t, ps := range m {
		for _, p := range ps {
			out = append(out, pid(t, p))
		}
	}
	return out
}

func (s *Source) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	ps := ids(revoked)
	if len(ps) == 0 {
		return
	}
	starts, ref, err := s.h.Revoked(ctx, ps)
	if err != nil {
		s.log.Error("could not checkpoint revoked partitions; their next owner replays from the last commit", "err", err)
		return
	}
	if err := s.Commit(ctx, starts, ref); err != nil {
		s.log.Error("commit of revoked partitions failed; their next owner recovers from the manifest", "err", err)
	}
}

func (s *Source) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	if ps := ids(lost); len(ps) > 0 {
		s.h.Lost(ps)
	}
}

// offset is the Kafka offset to read next.
func offset(st source.Start) int64 {
	if st.After {
		return st.Position.Offset + 1
	}
	return st.Position.Offset
}

func (s *Source) Kind() record.Kind { return record.Kafka }

// Poll returns the next records of owned partitions, at most max.
func (s *Source) Poll(ctx context.Context, max int) ([]record.Record, error) {
	fs := s.cl.PollRecords(ctx, max)
	if fs.IsClientClosed() {
		return nil, source.ErrClosed
	}
	fs.EachError(func(t string, p int32, err error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return
		}
		// Fetch errors are retried by the client; surface them in the log.
		s.log.Warn("kafka fetch error", "topic", t, "partition", p, "err", err)
	})
	out := make([]record.Record, 0, fs.NumRecords())
	s.mu.Lock()
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) > 0 || p.HighWatermark > 0 {
			s.hwm[pid(p.Topic, p.Partition)] = p.HighWatermark
		}
	})
	s.mu.Unlock()
	fs.EachRecord(func(r *kgo.Record) {
		rec := record.Record{
			Source:    record.Kafka,
			Partition: pid(r.Topic, r.Partition),
			Position:  record.Position{Offset: r.Offset},
			Key:       r.Key,
			Value:     r.Value,
			Timestamp: r.Timestamp,
		}
		if len(r.Headers) > 0 {
			rec.Headers = make([]record.Header, len(r.Headers))
			for i, h := range r.Headers {
				rec.Headers[i] = record.Header{Key: h.Key, Value: h.Value}
			}
		}
		out = append(out, rec)
	})
	return out, nil
}

// Lags counts records between the next position and the last high watermark.
func (s *Source) Lags(next map[record.PartitionID]record.Position) map[record.PartitionID]source.Lag {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[record.PartitionID]source.Lag, len(next))
	for id, n := range next {
		if h, ok := s.hwm[id]; ok {
			out[id] = source.Lag{Records: max(h-n.Offset, 0), MillisBehind: -1}
		}
	}
	return out
}

// Commit commits restart offsets with ref as their metadata, synchronously.
func (s *Source) Commit(ctx context.Context, starts map[record.PartitionID]source.Start, ref string) error {
	offsets := make(map[record.PartitionID]int64, len(starts))
	for id, st := range starts {
		offsets[id] = offset(st)
	}
	return s.commit(ctx, offsets, ref)
}

func (s *Source) commit(ctx context.Context, offsets map[record.PartitionID]int64, ref string) error {
	if len(offsets) == 0 {
		return nil
	}
	m := map[string]map[int32]kgo.EpochOffset{}
	for id, o := range offsets {
		if m[id.Stream] == nil {
			m[id.Stream] = map[int32]kgo.EpochOffset{}
		}
		m[id.Stream][id.Partition] = kgo.EpochOffset{Epoch: -1, Offset: o}
	}
	ctx = kgo.PreCommitFnContext(ctx, func(req *kmsg.OffsetCommitRequest) error {
		for i := range req.Topics {
			for j := range req.Topics[i].Partitions {
				req.Topics[i].Partitions[j].Metadata = &ref
			}
		}
		return nil
	})
	var cerr error
	s.cl.CommitOffsetsSync(ctx, m, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil && cerr == nil {
					cerr = fmt.Errorf("commit %s/%d: %w", t.Topic, p.Partition, err)
				}
			}
		}
	})
	return cerr
}

// Close leaves the group (revoking, and so checkpointing, what it owns).
func (s *Source) Close() {
	select {
	case <-s.closed:
		return
	default:
		close(s.closed)
	}
	<-s.refreshed
	s.cl.Close()
	s.leaveStatic()
	s.admin.Close()
}

// leaveTimeout bounds the LeaveGroup sent on Close.
const leaveTimeout = 5 * time.Second

// leaveStatic sends the LeaveGroup that franz-go's Close does not send for a
// static member (it expects the member back and lets the session keep its
// partitions). sinkd closes its source only when it stops for good, after a
// drain or on a fatal error, so the partitions should move now rather than
// after session_timeout. A restart with the same instance_id still joins at
// once; it just gets a rebalance instead of its old assignment verbatim.
func (s *Source) leaveStatic() {
	if s.instanceID == nil {
		return // a dynamic member left in cl.Close
	}
	memberID, _ := s.cl.GroupMetadata()
	// Short: this runs inside the drain's deadline, and if the broker cannot
	// be reached the session timeout frees the partitions anyway.
	ctx, cancel := context.WithTimeout(context.Background(), min(s.reqTimeout, leaveTimeout))
	defer cancel()
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Group = s.group
	m := kmsg.NewLeaveGroupRequestMember()
	// With our member id the broker fences the request instead of evicting
	// a newer process that has already taken over the same instance id.
	m.MemberID = memberID
	m.InstanceID = s.instanceID
	m.Reason = kmsg.StringPtr("sinkd stopping")
	req.Members = append(req.Members, m)
	resp, err := req.RequestWith(ctx, s.admin)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
		for _, rm := range resp.Members {
			if err == nil {
				err = kerr.ErrorForCode(rm.ErrorCode)
			}
		}
	}
	switch {
	case err == nil:
		s.log.Info("left the consumer group", "group", s.group, "instance_id", *s.instanceID)
	case errors.Is(err, kerr.UnknownMemberID):
		// Never joined, already left (franz-go leaves a static member
		// itself after a cooperative revoke), or expired.
	default:
		s.log.Warn("leaving the consumer group failed; its partitions move after session_timeout", "group", s.group, "instance_id", *s.instanceID, "err", err)
	}
}
