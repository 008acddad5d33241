package kinesis

import (
	"context"
	"sync"
	"time"

	"github.com/sinkd/sinkd/checkpoint"
	"github.com/sinkd/sinkd/source"
)

// progress is what a lease stores of its shard.
type progress struct {
	Start *source.Start // restart point; nil when never committed
	End   bool          // read to SHARD_END and committed past its last record
	Ref   string        // the manifest reference stored beside
}

// grant is a lease newly held, with what it stores.
type grant struct {
	shard string
	// child: the shard has parents, so it is read from its first record
	// whatever the configured start (a child's records all follow data that
	// its parents held).
	child bool
	progress
}

// leaseView is one shard's lease as last seen.
type leaseView struct {
	// live: held by this instance, or by another that keeps renewing it;
	// held: by this instance.
	live, held bool
	// end: read to its end and committed; drained: read to its end.
	end, drained bool
	start        *source.Start // the lease's checkpoint; nil when never committed
}

// leaser decides which shards this instance reads.
type leaser interface {
	// sync, given the listed shards, returns the leases newly taken and the
	// held shards to give up (balancing).
	sync(ctx context.Context, shards []shard) (taken []grant, giveUp []string, err error)
	// keepAlive renews the held leases until ctx ends, reporting those lost.
	keepAlive(ctx context.Context, lost func([]string))
	// checkpoint stores progress in held leases, fenced: the shards whose
	// lease another instance took meanwhile are returned as lost.
	checkpoint(ctx context.Context, ps map[string]progress) (lost []string, err error)
	// drained records, in held leases, that every record of the shards was
	// handed to the pipeline: their children may start, before the parents'
	// last files are committed (SHARD_END still waits for that commit). The
	// shards whose lease another instance took meanwhile are returned as lost.
	drained(ctx context.Context, shards []string) (lost []string, err error)
	// release gives held leases up, keeping their progress.
	release(ctx context.Context, shards []string) error
	// view is what the last sync saw of each shard's lease, for backlogs.
	view() map[string]leaseView
	// leave tells the other instances this one is gone.
	leave(ctx context.Context)
	// interval is how often sync runs.
	interval() time.Duration
}

// localLeases: without a lease table, this instance owns every shard. The
// restart points then live only in its own manifests: every shard it takes
// refers the pipeline to its newest manifest naming the shard. Which shards
// are drained or finished is known only in memory, so after a restart a
// closed parent is read again from its manifest position to its end before
// its children start.
type localLeases struct {
	ref string

	mu       sync.Mutex
	held     map[string]bool
	finished map[string]bool
	drain    map[string]bool // drained: every record handed to the pipeline
	listed   []shard
}

func newLocalLeases(instance string) *localLeases {
	// Seq 0: the pipeline looks for the newest manifest of the instance that
	// names the shard.
	return &localLeases{ref: checkpoint.Ref(instance, 0), held: map[string]bool{}, finished: map[string]bool{}, drain: map[string]bool{}}
}

func (l *localLeases) sync(_ context.Context, shards []shard) ([]grant, []string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.listed = shards
	listed := map[string]bool{}
	for _, s := range shards {
		listed[s.id] = true
	}
	var taken []grant
	for _, s := range shards {
		if l.held[s.id] || l.finished[s.id] || !parentsDone(s, listed, l.finished, l.drain) {
			continue
		}
		l.held[s.id] = true
		taken = append(taken, grant{shard: s.id, child: len(s.parents) > 0, progress: progress{Ref: l.ref}})
	}
	return taken, nil, nil
}

// parentsDone: a child starts once every parent still listed is drained or
// finished (a parent no longer listed has aged out of the stream).
func parentsDone(s shard, listed, finished, drained map[string]bool) bool {
	for _, p := range s.parents {
		if listed[p] && !finished[p] && !drained[p] {
			return false
		}
	}
	return true
}

func (l *localLeases) drained(_ context.Context, shards []string) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range shards {
		l.drain[s] = true
	}
	return nil, nil
}

// view: this instance reads every shard it holds; the others wait for their
// parents or for the next sync.
func (l *localLeases) view() map[string]leaseView {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]leaseView, len(l.listed))
	for _, s := range l.listed {
		out[s.id] = leaseView{live: l.held[s.id], held: l.held[s.id], end: l.finished[s.id], drained: l.drain[s.id]}
	}
	return out
}

func (l *localLeases) checkpoint(_ context.Context, ps map[string]progress) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for shard, p := range ps {
		if p.End {
			l.finished[shard] = true
		}
	}
	return nil, nil
}

func (l *localLeases) release(_ context.Context, shards []string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range shards {
		delete(l.held, s)
	}
	return nil
}

func (l *localLeases) leave(context.Context) {}

func (l *localLeases) keepAlive(context.Context, func([]string)) {}

// interval: local leases cost nothing to sync; a second is how long a child
// waits for its finished parent.
func (l *localLeases) interval() time.Duration { return time.Second }
