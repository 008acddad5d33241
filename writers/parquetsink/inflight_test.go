package parquetsink

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sinkd/sinkd/store"
)

// stallingStore is a real local store whose UploadPart hangs until release
// is closed: a store that stops answering mid-checkpoint.
type stallingStore struct {
	store.Store
	stalled chan struct{} // closed once the first UploadPart is hanging
	release chan struct{}
	once    bool
}

func (s *stallingStore) UploadPart(ctx context.Context, key, uploadID string, number int32, body []byte) (store.Part, error) {
	if !s.once {
		s.once = true
		close(s.stalled)
	}
	<-s.release
	return s.Store.UploadPart(ctx, key, uploadID, number, body)
}

// waiters counts goroutines parked in a checkpoint's wait for uploads.
func waiters() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "parquetsink.waitGroup") {
			n++
		}
	}
	return n
}

// TestTimedOutCheckpointLeavesNoGoroutine: while the store hangs on a
// file's last part, checkpoints time out again and again; none of them may
// leave a goroutine behind, and once the store answers, one checkpoint
// completes and nothing the writer started outlives Close.
func TestTimedOutCheckpointLeavesNoGoroutine(t *testing.T) {
	before := goleak.IgnoreCurrent()
	st := &stallingStore{stalled: make(chan struct{}), release: make(chan struct{})}
	released := false
	release := func() {
		if !released {
			released = true
			close(st.release)
		}
	}
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newFixture(t, func(o *Options) {
		st.Store = o.Store
		o.Store = st
	})
	w, err := New(ctx, f.w.o) // the same options, over the stalling store
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := w.Write(ctx, []byte("b"), testRow(int64(i), noise(i, 50)), rec(0, int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.RollPartitions(nil, "test"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-st.stalled:
	case <-time.After(10 * time.Second):
		t.Fatal("the last part never reached the store")
	}

	const attempts = 50
	for range attempts {
		cctx, ccancel := context.WithTimeout(ctx, time.Millisecond)
		_, err := w.PreCommit(cctx)
		ccancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("checkpoint against a hung store: %v, want a deadline error", err)
		}
	}
	if n := waiters(); n != 0 {
		t.Errorf("%d goroutines left waiting by %d timed-out checkpoints, want 0", n, attempts)
	}

	release()
	prep, err := w.PreCommit(ctx)
	if err != nil {
		t.Fatalf("checkpoint once the store answers: %v", err)
	}
	if len(prep.Uploads) != 1 {
		t.Fatalf("%d uploads prepared, want 1", len(prep.Uploads))
	}
	w.Committed(prep)
	cancel()
	w.Close()
	goleak.VerifyNone(t, before)
}
