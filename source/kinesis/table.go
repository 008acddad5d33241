// Over 500 lines on purpose: one concern, the DynamoDB lease table (balance,
// renew, take, checkpoint, release), whose conditional writes only make
// sense read together.

package kinesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/source"
)

// Lease items, after KCL's lease model: one item per shard, keyed by stream
// and shard id ("<stream>/<shard id>", so that streams may share a table),
// with its owner, a counter every owner bumps to show it is alive (and
// every take bumps to fence the previous owner), the checkpoint and the
// manifest reference. Instances also keep one heartbeat item each, so that
// an instance that holds nothing yet still counts when leases are balanced.
const (
	attrKey     = "leaseKey"
	attrOwner   = "leaseOwner"
	attrCounter = "leaseCounter"
	attrSeq     = "checkpoint"
	attrSub     = "checkpointSubSequenceNumber"
	attrAfter   = "checkpointAfter"
	attrRef     = "manifestRef"
	attrParents = "parentShardIds"
	// attrDrained: every record of the shard was handed to the pipeline, so
	// its children may start; SHARD_END follows with the commit.
	attrDrained = "drained"

	// shardEnd is the checkpoint of a shard read to its end and committed.
	shardEnd = "SHARD_END"
	// heartbeatPrefix keys the instances' heartbeat items (shard ids never
	// start with it).
	heartbeatPrefix = "instance:"
)

// tableLeases shares a stream's shards between instances through a DynamoDB
// table. A lease is expired when its counter has not moved for half of
// failover_time as seen by this instance (no clocks are compared across
// instances); leases are renewed and the table scanned ten times per
// failover_time, so a dead instance's shards are taken within failover_time.
// An owner that could not renew a lease for two fifths of failover_time gives
// it up as lost before anyone may take it. Renewal runs on its own goroutine,
// so that handing shards over (which waits for the pipeline) never delays it.
type tableLeases struct {
	db       *dynamodb.Client
	table    string
	stream   string
	instance string
	timeout  time.Duration
	expiry   time.Duration
	fence    time.Duration
	every    time.Duration
	log      *slog.Logger

	// mu serialises every write, so that a checkpoint always conditions on
	// the counter the last renewal set.
	mu     sync.Mutex
	held   map[string]*heldLease
	seen   map[string]observed
	last   []*item // the last scan, for view
	lastAt time.Time
}

type heldLease struct {
	counter int64
	renewed time.Time
	drained bool // marked drained by this instance: read to its end
}

// observed is a lease's owner and counter as last seen, and since when.
type observed struct {
	owner   string
	counter int64
	since   time.Time
}

// item is one lease item, decoded.
type item struct {
	key     string
	owner   string
	counter int64
	end     bool
	start   *source.Start
	ref     string
	parents []string
	drained bool
}

func newTableLeases(ctx context.Context, awsCfg aws.Config, cfg *Config, instance string, log *slog.Logger) (*tableLeases, error) {
	db := dynamodb.NewFromConfig(awsCfg, func(o *dynamodb.Options) {
		if cfg.DynamoDBEndpoint != "" {
			o.BaseEndpoint = aws.String(cfg.DynamoDBEndpoint)
		}
	})
	f := cfg.FailoverTime.D()
	t := &tableLeases{
		db: db, table: cfg.LeaseTable, stream: cfg.Stream, instance: instance, timeout: cfg.RequestTimeout.D(),
		expiry: f / 2, fence: f * 2 / 5, every: max(f/10, 100*time.Millisecond), log: log,
		held: map[string]*heldLease{}, seen: map[string]observed{},
	}
	if err := t.ensureTable(ctx); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *tableLeases) interval() time.Duration { return t.every }

func (t *tableLeases) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, t.timeout)
}

// ensureTable creates the lease table unless it exists, and waits for it.
func (t *tableLeases) ensureTable(ctx context.Context) error {
	cctx, cancel := t.call(ctx)
	defer cancel()
	_, err := t.db.CreateTable(cctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(t.table),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(attrKey), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(attrKey), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("kinesis: creating lease table %s: %w", t.table, err)
	}
	// The waiter's default first delay is 20 s; a table is often ready in
	// milliseconds.
	w := dynamodb.NewTableExistsWaiter(t.db, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 100*time.Millisecond, 5*time.Second
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(t.table)}, 2*time.Minute); err != nil {
		return fmt.Errorf("kinesis: waiting for lease table %s: %w", t.table, err)
	}
	return nil
}

func (t *tableLeases) sync(ctx context.Context, shards []shard) ([]grant, []string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	items, err := t.scan(ctx)
	if err != nil {
		return nil, nil, err
	}
	t.last, t.lastAt = items, now
	byKey := map[string]*item{}
	for _, it := range items {
		byKey[it.key] = it
		o, ok := t.seen[it.key]
		if !ok || o.owner != it.owner || o.counter != it.counter {
			t.seen[it.key] = observed{owner: it.owner, counter: it.counter, since: now}
		}
	}
	for _, s := range shards {
		if byKey[s.id] == nil {
			it, err := t.create(ctx, s)
			if err != nil {
				return nil, nil, err
			}
			if it != nil {
				byKey[s.id] = it
				t.seen[s.id] = observed{since: now}
				t.last = append(t.last, it)
			}
		}
	}
	// A lease of this instance's id that it does not hold is a previous
	// run's (instance ids are unique per process): it is taken at once.
	alive := func(it *item) bool {
		return it.owner != "" && it.owner != t.instance && now.Sub(t.seen[it.key].since) < t.expiry
	}
	listed := map[string]bool{}
	for _, s := range shards {
		listed[s.id] = true
	}
	// Balance what can be read now: finished and drained shards (waiting
	// only for their files to commit) and children waiting for their parents
	// do not count.
	instances := map[string]bool{t.instance: true}
	active := 0
	for key, it := range byKey {
		if name, ok := strings.CutPrefix(key, heartbeatPrefix); ok {
			if now.Sub(t.seen[key].since) < t.expiry {
				instances[name] = true
			}
			continue
		}
		if !it.end && !it.drained && t.parentsDone(it, byKey, listed) {
			active++
		}
	}
	target := (active + len(instances) - 1) / len(instances)

	reading := t.reading()
	var giveUp []string
	if extra := len(reading) - target; extra > 0 {
		// One at a time: the others take it, then the counts are redone.
		giveUp = append(giveUp, reading[0])
	}
	var taken []grant
	keys := make([]string, 0, len(byKey))
	for key := range byKey {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		if len(reading)+len(taken) >= target {
			break
		}
		it := byKey[key]
		if strings.HasPrefix(key, heartbeatPrefix) || it.end || t.held[key] != nil || alive(it) || !t.parentsDone(it, byKey, listed) {
			continue
		}
		g, err := t.take(ctx, it, now)
		if err != nil {
			return taken, giveUp, err
		}
		if g != nil {
			taken = append(taken, *g)
		}
	}
	return taken, giveUp, nil
}

// parentsDone: a child is taken once each parent's lease says drained or
// SHARD_END; a parent neither leased nor listed has aged out of the stream.
func (t *tableLeases) parentsDone(it *item, byKey map[string]*item, listed map[string]bool) bool {
	for _, p := range it.parents {
		pl := byKey[p]
		if pl == nil && !listed[p] {
			continue
		}
		if pl == nil || !(pl.end || pl.drained) {
			return false
		}
	}
	return true
}

// reading are the held shards still being read (not drained), sorted.
func (t *tableLeases) reading() []string {
	out := make([]string, 0, len(t.held))
	for _, k := range t.sortedHeld() {
		if !t.held[k].drained {
			out = append(out, k)
		}
	}
	return out
}

func (t *tableLeases) drained(ctx context.Context, shards []string) ([]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var lost []string
	var errs []error
	for _, key := range shards {
		h := t.held[key]
		if h == nil {
			lost = append(lost, key)
			continue
		}
		c, err := t.update(ctx, key, h.counter, "SET "+attrCounter+" = :next, "+attrDrained+" = :true",
			map[string]types.AttributeValue{":true": &types.AttributeValueMemberBOOL{Value: true}})
		switch {
		case err == nil:
			h.counter, h.renewed, h.drained = c, time.Now(), true
		case isConditionFailed(err):
			delete(t.held, key)
			lost = append(lost, key)
		default:
			errs = append(errs, fmt.Errorf("kinesis: marking %s drained: %w", key, err))
		}
	}
	return lost, errors.Join(errs...)
}

// view: a lease is live when this instance holds it, or when its counter
// moved within three renewal intervals: an owner that missed two renewals in
// a row has stopped reading, well before its lease may be taken.
func (t *tableLeases) view() map[string]leaseView {
	t.mu.Lock()
	defer t.mu.Unlock()
	stale := 3 * t.every
	out := make(map[string]leaseView, len(t.last))
	for _, it := range t.last {
		if strings.HasPrefix(it.key, heartbeatPrefix) {
			continue
		}
		v := leaseView{end: it.end, drained: it.drained, start: it.start}
		switch {
		case t.held[it.key] != nil:
			v.live, v.held = true, true
		case it.owner != "" && it.owner != t.instance:
			v.live = t.lastAt.Sub(t.seen[it.key].since) < stale
		}
		out[it.key] = v
	}
	return out
}

func (t *tableLeases) sortedHeld() []string {
	out := make([]string, 0, len(t.held))
	for k := range t.held {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// keepAlive renews the held leases and the heartbeat until ctx ends, and
// reports the leases lost.
func (t *tableLeases) keepAlive(ctx context.Context, lost func([]string)) {
	tick := time.NewTicker(t.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		t.mu.Lock()
		gone := t.renew(ctx, time.Now())
		err := t.heartbeat(ctx)
		t.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			t.log.Warn("kinesis: lease table heartbeat failed", "err", err)
		}
		if len(gone) > 0 {
			lost(gone)
		}
	}
}

// renew bumps the counter of every held lease. A failed condition means
// another instance took it; a lease not renewed for the fencing time is
// given up as lost too, before anyone may take it.
func (t *tableLeases) renew(ctx context.Context, now time.Time) []string {
	var lost []string
	for _, key := range t.sortedHeld() {
		h := t.held[key]
		c, err := t.update(ctx, key, h.counter, "SET "+attrCounter+" = :next", nil)
		switch {
		case err == nil:
			h.counter, h.renewed = c, now
		case isConditionFailed(err):
			delete(t.held, key)
			lost = append(lost, key)
		case now.Sub(h.renewed) > t.fence:
			t.log.Warn("kinesis: lease not renewed in time; giving it up", "shard", key, "err", err)
			delete(t.held, key)
			lost = append(lost, key)
		default:
			t.log.Warn("kinesis: renewing lease failed; retrying", "shard", key, "err", err)
		}
	}
	return lost
}

// update applies expr, which must set the counter to :next, to a held lease
// if this instance still holds it at counter; it returns the new counter.
func (t *tableLeases) update(ctx context.Context, key string, counter int64, expr string, values map[string]types.AttributeValue) (int64, error) {
	vals := map[string]types.AttributeValue{
		":me": str(t.instance), ":c": num(counter), ":next": num(counter + 1),
	}
	for k, v := range values {
		vals[k] = v
	}
	cctx, cancel := t.call(ctx)
	defer cancel()
	_, err := t.db.UpdateItem(cctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(t.table),
		Key:                       map[string]types.AttributeValue{attrKey: str(t.dbKey(key))},
		UpdateExpression:          aws.String(expr),
		ConditionExpression:       aws.String(attrOwner + " = :me AND " + attrCounter + " = :c"),
		ExpressionAttributeValues: vals,
	})
	if err != nil {
		return 0, err
	}
	return counter + 1, nil
}

// heartbeat bumps this instance's own item, creating it first.
func (t *tableLeases) heartbeat(ctx context.Context) error {
	cctx, cancel := t.call(ctx)
	defer cancel()
	_, err := t.db.UpdateItem(cctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(t.table),
		Key:                       map[string]types.AttributeValue{attrKey: str(t.dbKey(heartbeatPrefix + t.instance))},
		UpdateExpression:          aws.String("SET " + attrOwner + " = :me ADD " + attrCounter + " :one"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":me": str(t.instance), ":one": num(1)},
	})
	if err != nil {
		return fmt.Errorf("kinesis: lease table heartbeat: %w", err)
	}
	return nil
}

// scan reads every item of the table.
func (t *tableLeases) scan(ctx context.Context) ([]*item, error) {
	var out []*item
	in := &dynamodb.ScanInput{TableName: aws.String(t.table), ConsistentRead: aws.Bool(true)}
	for {
		cctx, cancel := t.call(ctx)
		resp, err := t.db.Scan(cctx, in)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("kinesis: scanning lease table %s: %w", t.table, err)
		}
		for _, av := range resp.Items {
			it := decode(av)
			if key, ok := t.ownKey(it.key); ok {
				it.key = key
				out = append(out, it)
			}
		}
		if len(resp.LastEvaluatedKey) == 0 {
			return out, nil
		}
		in.ExclusiveStartKey = resp.LastEvaluatedKey
	}
}

// create adds a free lease for a new shard; nil when another instance just did.
func (t *tableLeases) create(ctx context.Context, s shard) (*item, error) {
	av := map[string]types.AttributeValue{attrKey: str(t.dbKey(s.id)), attrCounter: num(0)}
	if len(s.parents) > 0 {
		av[attrParents] = &types.AttributeValueMemberSS{Value: s.parents}
	}
	cctx, cancel := t.call(ctx)
	defer cancel()
	_, err := t.db.PutItem(cctx, &dynamodb.PutItemInput{
		TableName: aws.String(t.table), Item: av,
		ConditionExpression: aws.String("attribute_not_exists(" + attrKey + ")"),
	})
	if isConditionFailed(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kinesis: creating lease of %s: %w", s.id, err)
	}
	return &item{key: s.id, parents: s.parents}, nil
}

// take claims a free or expired lease: the condition on the counter and
// owner seen makes exactly one of several takers win, and fences the former
// owner, whose next renewal or checkpoint fails.
func (t *tableLeases) take(ctx context.Context, it *item, now time.Time) (*grant, error) {
	cond := attrCounter + " = :c AND "
	vals := map[string]types.AttributeValue{":me": str(t.instance), ":c": num(it.counter), ":next": num(it.counter + 1)}
	if it.owner == "" {
		cond += "attribute_not_exists(" + attrOwner + ")"
	} else {
		cond += attrOwner + " = :was"
		vals[":was"] = str(it.owner)
	}
	cctx, cancel := t.call(ctx)
	defer cancel()
	_, err := t.db.UpdateItem(cctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(t.table),
		Key:                       map[string]types.AttributeValue{attrKey: str(t.dbKey(it.key))},
		UpdateExpression:          aws.String("SET " + attrOwner + " = :me, " + attrCounter + " = :next"),
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeValues: vals,
	})
	if isConditionFailed(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kinesis: taking lease of %s: %w", it.key, err)
	}
	t.held[it.key] = &heldLease{counter: it.counter + 1, renewed: now}
	if it.owner != "" {
		t.log.Info("kinesis: took an expired lease", "shard", it.key, "from", it.owner)
	}
	return &grant{shard: it.key, child: len(it.parents) > 0, progress: progress{Start: it.start, Ref: it.ref}}, nil
}

func (t *tableLeases) checkpoint(ctx context.Context, ps map[string]progress) ([]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var lost []string
	var errs []error
	for key, p := range ps {
		h := t.held[key]
		if h == nil {
			lost = append(lost, key)
			continue
		}
		vals := map[string]types.AttributeValue{":ref": str(p.Ref)}
		expr := "SET " + attrRef + " = :ref, " + attrCounter + " = :next, " + attrSeq + " = :seq"
		if p.End {
			vals[":seq"] = str(shardEnd)
			expr += " REMOVE " + attrSub + ", " + attrAfter
		} else {
			vals[":seq"], vals[":sub"], vals[":after"] = str(p.Start.Position.Seq), num(p.Start.Position.Sub), &types.AttributeValueMemberBOOL{Value: p.Start.After}
			expr += ", " + attrSub + " = :sub, " + attrAfter + " = :after"
		}
		c, err := t.update(ctx, key, h.counter, expr, vals)
		switch {
		case err == nil:
			h.counter, h.renewed = c, time.Now()
		case isConditionFailed(err):
			delete(t.held, key)
			lost = append(lost, key)
		default:
			errs = append(errs, fmt.Errorf("kinesis: checkpoint of %s: %w", key, err))
		}
	}
	return lost, errors.Join(errs...)
}

func (t *tableLeases) release(ctx context.Context, shards []string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	for _, key := range shards {
		h := t.held[key]
		if h == nil {
			continue
		}
		delete(t.held, key)
		if _, err := t.update(ctx, key, h.counter, "SET "+attrCounter+" = :next REMOVE "+attrOwner, nil); err != nil && !isConditionFailed(err) {
			errs = append(errs, fmt.Errorf("kinesis: releasing lease of %s: %w", key, err))
		}
	}
	return errors.Join(errs...)
}

// leave deletes the heartbeat item, so that the others rebalance at once.
func (t *tableLeases) leave(ctx context.Context) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cctx, cancel := t.call(ctx)
	defer cancel()
	if _, err := t.db.DeleteItem(cctx, &dynamodb.DeleteItemInput{
		TableName: aws.String(t.table), Key: map[string]types.AttributeValue{attrKey: str(t.dbKey(heartbeatPrefix + t.instance))},
	}); err != nil {
		t.log.Warn("kinesis: removing this instance's heartbeat failed; it expires after failover_time", "err", err)
	}
}

// dbKey is the table key of a shard's lease or of an instance's heartbeat:
// scoped by stream, so that one table can serve several streams (shard ids
// repeat from one stream to the next).
func (t *tableLeases) dbKey(key string) string {
	if name, ok := strings.CutPrefix(key, heartbeatPrefix); ok {
		return heartbeatPrefix + t.stream + "/" + name
	}
	return t.stream + "/" + key
}

// ownKey maps a table key back; false for another stream's items (and for
// items older than stream scoping).
func (t *tableLeases) ownKey(db string) (string, bool) {
	if name, ok := strings.CutPrefix(db, heartbeatPrefix+t.stream+"/"); ok {
		return heartbeatPrefix + name, true
	}
	return strings.CutPrefix(db, t.stream+"/")
}

func decode(av map[string]types.AttributeValue) *item {
	it := &item{}
	getS := func(name string) string {
		if v, ok := av[name].(*types.AttributeValueMemberS); ok {
			return v.Value
		}
		return ""
	}
	getN := func(name string) int64 {
		if v, ok := av[name].(*types.AttributeValueMemberN); ok {
			n, _ := strconv.ParseInt(v.Value, 10, 64)
			return n
		}
		return 0
	}
	it.key, it.owner, it.counter, it.ref = getS(attrKey), getS(attrOwner), getN(attrCounter), getS(attrRef)
	if v, ok := av[attrParents].(*types.AttributeValueMemberSS); ok {
		it.parents = v.Value
	}
	if v, ok := av[attrDrained].(*types.AttributeValueMemberBOOL); ok {
		it.drained = v.Value
	}
	switch seq := getS(attrSeq); seq {
	case "":
	case shardEnd:
		it.end = true
	default:
		after := false
		if v, ok := av[attrAfter].(*types.AttributeValueMemberBOOL); ok {
			after = v.Value
		}
		it.start = &source.Start{Position: record.Position{Seq: seq, Sub: getN(attrSub)}, After: after}
	}
	return it
}

func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

func isConditionFailed(err error) bool {
	var e *types.ConditionalCheckFailedException
	return errors.As(err, &e)
}
