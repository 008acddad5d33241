package parquetsink

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
)

// Spool is a bounded local directory where open files keep encoded row groups
// that do not make a part yet (S3 parts are at least 5 MiB), so that thousands
// of open buckets can grow to a part, and to their target size or age,
// without holding their bytes in memory (DESIGN §4). It is a cache: a crash
// loses it and the source replays; a start clears it.
//
// One Spool is shared by every Parquet writer of a process, like Budget.
type Spool struct {
	dir   string // owned by this process: cleared at start
	limit int64
	used  atomic.Int64
	names atomic.Uint64 // unique spill file names across writers

	spilled prometheus.Counter
	full    atomic.Bool // a write failed (disk full): treat as no room until space frees
	lock    *os.File
}

// OpenSpool makes this process's spool directory under root and bounds it at
// limit bytes; it removes what earlier runs of the same pipeline and instance
// left there. A limit of 0 turns spilling off: when memory is full, files roll
// instead.
//
// Only directories named after this pipeline and instance whose lock no live
// process holds are removed, never root itself nor anything else in it: root
// may be shared, or may hold things sinkd did not create.
func OpenSpool(root, pipeline, instance, epoch string, limit int64) (*Spool, error) {
	s := &Spool{limit: limit}
	if limit <= 0 {
		return s, nil
	}
	if root == "" {
		return nil, errors.New("spool: no directory")
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w (set memory.spool_dir to a writable directory, or memory.spool_budget: 0 to spill nothing)", err)
	}
	name := safeName(pipeline) + "." + safeName(instance) + "."
	old, _ := filepath.Glob(filepath.Join(root, name+"*"))
	for _, dir := range old {
		if lock, err := lockDir(dir); err == nil {
			_ = os.RemoveAll(dir)
			lock.Close()
		}
	}
	s.dir = filepath.Join(root, name+safeName(epoch))
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	lock, err := lockDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s.lock = lock
	return s, nil
}

// lockDir takes the directory's lock file, which its process holds for as
// long as it lives (the kernel drops it when the process dies).
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s is in use by a live process: %w", dir, err)
	}
	return f, nil
}

// safeName keeps a name usable as one path element.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

// Register exports the spool's use and bound.
func (s *Spool) Register(reg prometheus.Registerer) {
	s.spilled = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sinkd_spool_written_bytes_total", Help: "Encoded Parquet bytes written to the local spool (memory.spool_dir) because memory was full.",
	})
	reg.MustRegister(s.spilled,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sinkd_spool_bytes", Help: "Bytes of open files held in the local spool.",
		}, func() float64 { return float64(s.Used()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sinkd_spool_budget_bytes", Help: "The configured spool bound (memory.spool_budget); 0 spills nothing.",
		}, func() float64 { return float64(s.Limit()) }))
}

// Dir is the directory the spool writes into ("" when spilling is off).
func (s *Spool) Dir() string { return s.dir }
func (s *Spool) Used() int64 { return s.used.Load() }
func (s *Spool) Limit() int64 {
	return s.limit
}

// room tells whether n more bytes fit.
func (s *Spool) room(n int64) bool {
	return s.limit > 0 && !s.full.Load() && s.used.Load()+n <= s.limit
}

// Close removes the directory; what is in it is of no use to a next start.
func (s *Spool) Close() error {
	if s.dir == "" {
		return nil
	}
	err := os.RemoveAll(s.dir)
	s.lock.Close()
	return err
}

// spill is one open file's bytes on disk: the front of its next part.
type spill struct {
	path string
	n    int64
}

// write appends b to the spill, creating it on first use. On failure (a full
// disk, say) the spill keeps what it had, and the spool refuses more until a
// spill is released.
func (s *Spool) write(sp *spill, b []byte) error {
	if sp.path == "" {
		sp.path = filepath.Join(s.dir, fmt.Sprintf("%08d.spill", s.names.Add(1)))
	}
	// Not kept open: thousands of open files would need thousands of
	// descriptors.
	f, err := os.OpenFile(sp.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		s.full.Store(true)
		return fmt.Errorf("spool: %w", err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Truncate(sp.path, sp.n)
		s.full.Store(true)
		return fmt.Errorf("spool: %w", err)
	}
	sp.n += int64(len(b))
	s.used.Add(int64(len(b)))
	if s.spilled != nil {
		s.spilled.Add(float64(len(b)))
	}
	return nil
}

// take reads the spill into the front of a buffer with room for extra more
// bytes, and releases it.
func (s *Spool) take(sp *spill, extra int) ([]byte, error) {
	if sp.n == 0 {
		return make([]byte, 0, extra), nil
	}
	b := make([]byte, sp.n, sp.n+int64(extra))
	f, err := os.Open(sp.path)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("spool: reading %s: %w", sp.path, err)
	}
	s.release(sp)
	return b, nil
}

// release drops a spill without reading it.
func (s *Spool) release(sp *spill) {
	if sp.path == "" {
		return
	}
	_ = os.Remove(sp.path)
	s.used.Add(-sp.n)
	s.full.Store(false)
	*sp = spill{}
}
