package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sinkd/sinkd/internal/backoff"
	"github.com/sinkd/sinkd/store"
)

// Coordinator runs the commit side of the protocol (DESIGN §3) for one
// process: it numbers and writes manifests (the commit point), applies what
// they list through the committers, keeps what could not be applied yet in
// every later manifest, re-applies manifests a partition's new owner reads,
// and recovers at start (recovery.go). What goes into a manifest (writers'
// entries, partitions' restart points) is the pipeline's to gather.
//
// It is not safe for concurrent use: the pipeline's loop drives it.
type Coordinator struct {
	Manifests  Store
	Committers Committers
	Pipeline   string
	Instance   string
	Epoch      string
	// Concurrency bounds the entries applied at once.
	Concurrency int
	Log         *slog.Logger
	// Applied, when set, is told of every entry applied (metrics).
	Applied func(Entry)
	// AcceptLost, when set, is the reference of a manifest whose lost files
	// an operator accepts (sinkd run --accept-lost): an entry it lists that
	// fails as ErrLost, in any manifest re-applied, is logged, told to
	// Lost and counts as applied, so that sinkd resumes without its
	// records. Every other failure stays one.
	AcceptLost string
	// Lost, when set, is told of every lost file accepted (metrics).
	Lost func(Entry)
	// acceptable holds the entries AcceptLost's manifest lists, read by
	// Recover before anything is applied; accepted, those accepted so far
	// (reported once, however many manifests list them).
	acceptable map[string]bool
	acceptMu   sync.Mutex
	accepted   map[string]bool

	seq uint64
	// recoveredSeq is the first manifest seq this process writes: every
	// manifest of this instance below it existed when recovery ran.
	recoveredSeq uint64
	lastRef      string
	// uncompleted: entries a written manifest commits but that could not be
	// applied yet. Every later manifest lists them again, so that recovery
	// from any newer manifest still applies them.
	uncompleted []Entry
	applied     map[string]bool // manifests re-applied in this process
}

// ManifestsKept bounds the manifests kept per instance. A partition's next
// owner reads the newest manifest naming it, which is never older than the
// instance's last checkpoints while the partition is still unassigned.
const ManifestsKept = 200

// LastRef is the reference of the last manifest written ("" before the
// first): what a source stores beside the positions it commits.
func (c *Coordinator) LastRef() string { return c.lastRef }

// Next starts the next manifest: it already lists the entries earlier
// manifests committed but that are not applied yet.
func (c *Coordinator) Next() *Manifest {
	return &Manifest{
		Pipeline: c.Pipeline, Instance: c.Instance, Epoch: c.Epoch, Seq: c.seq, Created: time.Now().UTC(),
		Partitions: map[string]*PartitionState{},
		Uploads:    append([]Entry(nil), c.uncompleted...),
	}
}

// Carried is how many entries at the front of a manifest from Next were
// carried over from earlier ones.
func (c *Coordinator) Carried() int { return len(c.uncompleted) }

// Write writes m: the commit point. ErrFenced means another process runs
// with this instance id. After it, the manifest is the truth, and Apply
// re-applies it idempotently.
func (c *Coordinator) Write(ctx context.Context, m *Manifest) error {
	if err := c.Manifests.Write(ctx, m); err != nil {
		return fmt.Errorf("writing manifest %d: %w", m.Seq, err)
	}
	c.seq++
	c.lastRef = Ref(c.Instance, m.Seq)
	return nil
}

// Complete applies the entries of m, just written; those that fail are
// listed again by the next manifest, and the error says how many.
func (c *Coordinator) Complete(ctx context.Context, m *Manifest) error {
	failed, err := c.applyAll(ctx, m.Uploads)
	c.uncompleted = failed
	if errors.Is(err, ErrLost) {
		return lostError(Ref(m.Instance, m.Seq), len(failed), err)
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d uploads of manifest %d not completed yet (retried at the next checkpoint): %s", len(failed), m.Seq, failed[0].Key)
	}
	c.markApplied(Ref(m.Instance, m.Seq))
	if m.Seq%50 == 0 {
		if err := c.Manifests.Prune(ctx, c.Instance, ManifestsKept); err != nil {
			c.Log.Warn("pruning old manifests failed", "err", err)
		}
	}
	return nil
}

func (c *Coordinator) markApplied(ref string) {
	if c.applied == nil {
		c.applied = map[string]bool{}
	}
	c.applied[ref] = true
}

// Apply re-applies a manifest (once per process): it applies its entries.
func (c *Coordinator) Apply(ctx context.Context, m *Manifest) error {
	ref := Ref(m.Instance, m.Seq)
	if c.applied[ref] {
		return nil
	}
	failed, err := c.applyAll(ctx, m.Uploads)
	if errors.Is(err, ErrLost) {
		return lostError(ref, len(failed), err)
	}
	if len(failed) > 0 {
		return fmt.Errorf("re-applying manifest %s: %d uploads could not be completed (first %s)", ref, len(failed), failed[0].Key)
	}
	c.markApplied(ref)
	return nil
}

// lostError says what a lost file means for a manifest: it committed source
// positions past records that no file holds, so sinkd stops there rather than
// skip them, until an operator accepts the loss.
func lostError(ref string, failed int, err error) error {
	return fmt.Errorf("manifest %s (%d of its uploads not completed): %w; sinkd will not resume past records that no file holds "+
		"(docs/guarantees.md, \"The store must complete a multipart upload atomically\"); "+
		"to resume without them, start it once with --accept-lost %s (docs/operations.md, \"A lost file\")", ref, failed, err, ref)
}

// loadAcceptable reads the manifest AcceptLost names and notes its entries.
func (c *Coordinator) loadAcceptable(ctx context.Context) error {
	if c.AcceptLost == "" || c.acceptable != nil {
		return nil
	}
	inst, seq, ok := ParseRef(c.AcceptLost)
	if !ok {
		return fmt.Errorf("--accept-lost %q is not a manifest reference (sinkd:v1:INSTANCE:SEQ, as the error that named the lost file gives it)", c.AcceptLost)
	}
	m, err := c.Manifests.Read(ctx, inst, seq)
	if err != nil {
		return fmt.Errorf("reading manifest %s, whose lost files --accept-lost accepts: %w", c.AcceptLost, err)
	}
	c.acceptable = make(map[string]bool, len(m.Uploads))
	for _, e := range m.Uploads {
		c.acceptable[entryID(e)] = true
	}
	return nil
}

// accept reports a lost file the operator accepted, the first time only.
func (c *Coordinator) accept(e Entry, err error) {
	c.acceptMu.Lock()
	defer c.acceptMu.Unlock()
	if c.accepted[entryID(e)] {
		return
	}
	if c.accepted == nil {
		c.accepted = map[string]bool{}
	}
	c.accepted[entryID(e)] = true
	c.Log.Error("a lost file is accepted: the archive will not hold its records",
		"key", e.Key, "upload", e.UploadID, "rows", e.Rows, "accepted_by", c.AcceptLost, "err", err)
	if c.Lost != nil {
		c.Lost(e)
	}
}

// entryID tells entries apart across manifests: an upload id is unique
// within its destination.
func entryID(e Entry) string { return e.Store + "\x00" + e.Key + "\x00" + e.UploadID }

// applyAll applies entries in parallel, each retried a few times, and
// returns those that could not be applied and an error among theirs,
// ErrLost's if any.
func (c *Coordinator) applyAll(ctx context.Context, entries []Entry) (failed []Entry, firstErr error) {
	// Completing is a small request per file: many at once keep a
	// checkpoint short even when memory pressure rolled many small files.
	sem := make(chan struct{}, max(1, c.Concurrency))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, e := range entries {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := c.applyOne(ctx, e)
			if err == nil {
				return
			}
			c.Log.Warn("completing an upload failed", "key", e.Key, "err", err)
			mu.Lock()
			failed = append(failed, e)
			if firstErr == nil || (errors.Is(err, ErrLost) && !errors.Is(firstErr, ErrLost)) {
				firstErr = err
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return failed, firstErr
}

func (c *Coordinator) applyOne(ctx context.Context, e Entry) error {
	// 100ms doubling, 5 attempts, equal jitter (internal/backoff).
	wait := backoff.Policy{Base: 100 * time.Millisecond, Max: 2 * time.Second}
	for attempt := 0; ; attempt++ {
		err := c.Committers.Apply(ctx, e)
		if err == nil {
			if c.Applied != nil {
				c.Applied(e)
			}
			return nil
		}
		if errors.Is(err, ErrLost) && c.acceptable[entryID(e)] {
			c.accept(e, err)
			return nil
		}
		if ctx.Err() != nil || attempt == 4 || errors.Is(err, ErrLost) {
			return err
		}
		if err := wait.Wait(ctx, attempt); err != nil {
			return err
		}
	}
}

// State is where a newly assigned partition's replay starts and which
// replayed records committed files already hold: the state the manifest that
// ref names (or a newer one of the same instance) records, after re-applying
// that manifest. ref is what the source stored beside the committed
// position; committed says whether there is such a position. nil means the
// source's committed position alone is the truth.
func (c *Coordinator) State(ctx context.Context, ref string, committed bool, partition string) (*PartitionState, error) {
	inst, seq, ok := ParseRef(ref)
	if !ok {
		if committed {
			return nil, nil // a position sinkd did not commit: it is the truth
		}
		// Never committed: a run of this instance may have written a
		// manifest naming the partition and died before its first commit.
		// Without that manifest's filter, replay from the start would
		// write again what its files hold.
		return c.ownState(ctx, partition)
	}
	m, err := c.Manifests.Find(ctx, inst, seq, partition)
	if err != nil || m == nil {
		return nil, err
	}
	if err := c.Apply(ctx, m); err != nil {
		return nil, err
	}
	return m.Partitions[partition], nil
}

// ownState is the partition's state in the newest manifest of this
// instance that recovery saw. A manifest written later by a dead run (its
// write still in flight when this process started) is not trusted: recovery
// has already aborted the uploads it lists.
func (c *Coordinator) ownState(ctx context.Context, partition string) (*PartitionState, error) {
	seqs, err := c.Manifests.Seqs(ctx, c.Instance)
	if err != nil {
		return nil, err
	}
	for i := len(seqs) - 1; i >= 0; i-- {
		if seqs[i] >= c.recoveredSeq {
			continue
		}
		m, err := c.Manifests.Read(ctx, c.Instance, seqs[i])
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if st, ok := m.Partitions[partition]; ok {
			if err := c.Apply(ctx, m); err != nil {
				return nil, err
			}
			return st, nil
		}
	}
	return nil, nil
}
