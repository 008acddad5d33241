package checkpoint

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/sinkd/sinkd/store"
)

// abortConcurrency bounds the orphaned uploads aborted at once in recovery.
const abortConcurrency = 16

// Destination is an object store data files go to, and the key prefix
// under which recovery looks for this instance's unfinished uploads.
type Destination struct {
	URL    string
	Store  store.Store
	Prefix string
}

// Recover re-applies the newest manifest of this instance, fences earlier
// runs, then aborts every in-progress upload of this instance in dests that
// no manifest commits: those are the files that were open when the previous
// run died. It returns the newest manifest (nil when there is none) and how
// many uploads it aborted.
func (c *Coordinator) Recover(ctx context.Context, dests []Destination) (latest *Manifest, aborted int, err error) {
	if err := c.loadAcceptable(ctx); err != nil {
		return nil, 0, err
	}
	latest, err = c.Manifests.Latest(ctx, c.Instance)
	if err != nil {
		return nil, 0, fmt.Errorf("reading the last manifest: %w", err)
	}
	if latest != nil {
		// Once applied, every upload of the manifest is a complete object,
		// so an upload still listed as in progress (a store can leave one
		// behind when a process dies inside CompleteMultipartUpload) is
		// aborted below with the orphans.
		if err := c.Apply(ctx, latest); err != nil {
			return nil, 0, err
		}
		c.seq = latest.Seq + 1
	}
	// Fence earlier runs before aborting their uploads: a dead run's
	// manifest write still in flight (a slow store, a drain cut short) must
	// not land after this recovery aborted what it lists. Taking the next
	// seq first makes such a late write fail; if it landed first, the
	// conditional write fails here and recovery starts over with it.
	fence := &Manifest{
		Pipeline: c.Pipeline, Instance: c.Instance, Epoch: c.Epoch, Seq: c.seq, Created: time.Now().UTC(),
		Partitions: map[string]*PartitionState{},
	}
	if err := c.Manifests.Write(ctx, fence); err != nil {
		return nil, 0, fmt.Errorf("fencing earlier runs with manifest %d: %w", fence.Seq, err)
	}
	c.seq++
	c.recoveredSeq = c.seq
	for _, d := range dests {
		n, err := c.abortOrphans(ctx, d)
		aborted += n
		if err != nil {
			return nil, aborted, err
		}
	}
	return latest, aborted, nil
}

func (c *Coordinator) abortOrphans(ctx context.Context, d Destination) (int, error) {
	uploads, err := d.Store.ListUploads(ctx, d.Prefix)
	if err != nil {
		return 0, fmt.Errorf("listing uploads under %s: %w", d.URL, err)
	}
	// A killed run can leave hundreds of open files, and the source
	// joins its group only after recovery: aborting them one by one
	// (tens of milliseconds each) delays the restart by seconds.
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		first   error
		aborted int
		sem     = make(chan struct{}, abortConcurrency)
	)
	for _, u := range uploads {
		inst, ok := InstanceOf(u.Key)
		if !ok || inst != c.Instance {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := d.Store.AbortUpload(ctx, u.Key, u.UploadID)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = fmt.Errorf("aborting orphaned upload %s: %w", u.Key, err)
			}
			if err == nil {
				aborted++
			}
		}()
	}
	wg.Wait()
	return aborted, first
}
