package parquetsink

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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
// Spills are appended to a few shared segment files rather than one file
// each: with 20,000 open buckets a relief makes 20,000 spills of a few KiB,
// and an open, write and close per spill cost more than the spill itself. A
// spill is the list of extents it was written to; releasing it frees their
// disk blocks at once (a hole punched in the segment), and a segment goes
// when no spill refers to it.
//
// One Spool is shared by every Parquet writer of a process, like Budget; its
// methods are safe for concurrent use.
type Spool struct {
	dir   string // owned by this process: cleared at start
	limit int64
	// used is the bytes of disk blocks the segments hold: live spills, and
	// released bytes whose blocks are not freed yet (shared with a live
	// spill, or on a filesystem that cannot punch holes). Written under mu,
	// read without it.
	used atomic.Int64

	spilled prometheus.Counter
	full    atomic.Bool // a write failed (disk full): treat as no room until space frees
	lock    *os.File

	mu      sync.Mutex
	block   int64      // the filesystem's block: what a punch frees, what used counts in
	segSize int64      // a segment this big takes no more appends
	cur     *segment   // appended to; nil until the first write
	open    []*segment // segments with a descriptor, least recently used first; cur is one
	names   uint64     // segment names
	// punch frees a byte range's disk blocks; nil once the filesystem said
	// it cannot.
	punch func(f *os.File, off, n int64) error
}

const (
	// A segment is a sixteenth of the bound, within [minSegment,
	// maxSegment]: big enough that rotating costs nothing next to the
	// spills, small enough that on a filesystem that cannot punch holes one
	// live spill keeps at most a segment of dead bytes counted (a sixteenth
	// of a bound of 16 MiB or more).
	minSegment = 1 << 20
	maxSegment = 64 << 20
	// spoolFiles bounds the segment descriptors open at once: the one
	// appended to and the most recently read or released others. With the
	// lock file a spool holds at most spoolFiles+1 descriptors, whatever the
	// number of open files or segments. Sixteen 64 MiB segments cover half
	// the default bound, so that rolling many files, whose spills are spread
	// over the segments written since they opened, rarely reopens one.
	spoolFiles = 16
)

// segment is one append-only file of the spool.
type segment struct {
	path  string
	f     *os.File // nil when closed (reopened on demand)
	size  int64    // bytes appended: where the next append goes
	alloc int64    // bytes of whole blocks holding data: its share of Spool.used
	refs  int      // live extents in it
	// edges counts, per block, the live extents that begin or end in it.
	// Spills are packed end to end, so a block at an extent's edge may hold
	// its neighbours' bytes too: it is freed when the last of them goes.
	// A block inside an extent is that extent's alone.
	edges     map[int64]int32
	peakEdges int // len(edges) when last rebuilt: Go maps do not shrink
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
	s.block = blockSize(s.dir)
	s.segSize = min(maxSegment, max(minSegment, limit/16))
	s.punch = punchHole
	return s, nil
}

// blockSize is the filesystem's block size at dir (4 KiB when it does not
// say). A larger value than the real one only makes used count more.
func blockSize(dir string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err == nil {
		if b := int64(st.Blksize); b >= 512 && b&(b-1) == 0 {
			return b
		}
	}
	return 4 << 10
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

// room tells whether n more bytes fit. A write of n bytes adds at most
// roundUp(n) of blocks, so that a write room allowed is not refused at the
// bound (unless another writer's came first).
func (s *Spool) room(n int64) bool {
	return s.limit > 0 && !s.full.Load() && s.used.Load()+s.roundUp(n) <= s.limit
}

// Close removes the directory; what is in it is of no use to a next start.
func (s *Spool) Close() error {
	if s.dir == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, seg := range s.open {
		seg.f.Close()
		seg.f = nil
	}
	s.open, s.cur = nil, nil
	err := os.RemoveAll(s.dir)
	s.lock.Close()
	return err
}

// spill is one open file's bytes on disk: the front of its next part, in
// the extents it was appended to, in order.
type spill struct {
	ext []extent
	n   int64
}

// extent is n bytes of a spill at off in seg.
type extent struct {
	seg    *segment
	off, n int64
}

// errSpoolBound refuses a write that another writer's, between room and
// write, left no room for.
var errSpoolBound = errors.New("spool: no room left within memory.spool_budget")

// write appends b to the spill: one write to the current segment, which
// rotates at segSize. On failure (a full disk, say) the spill keeps what it
// had, and the spool refuses more until a spill is released.
func (s *Spool) write(sp *spill, b []byte) error {
	n := int64(len(b))
	if n == 0 {
		return nil
	}
	if s.limit <= 0 {
		return errSpoolBound
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	seg, off := s.cur, int64(0)
	rotate := seg == nil || (seg.size > 0 && seg.size+n > s.segSize)
	if !rotate {
		off = seg.size
	}
	// The blocks this write adds: the one it starts in may hold the
	// previous spill's tail already.
	grow := s.roundUp(off+n) - s.roundUp(off)
	if s.used.Load()+grow > s.limit {
		return errSpoolBound
	}
	if rotate {
		var err error
		if seg, err = s.rotate(); err != nil {
			s.full.Store(true)
			return fmt.Errorf("spool: %w", err)
		}
	}
	if _, err := seg.f.WriteAt(b, off); err != nil {
		// The partial extent is forgotten: the next append overwrites it.
		_ = seg.f.Truncate(off)
		s.full.Store(true)
		return fmt.Errorf("spool: %w", err)
	}
	seg.size += n
	seg.alloc += grow
	s.used.Add(grow)
	if k := len(sp.ext) - 1; k >= 0 && sp.ext[k].seg == seg && sp.ext[k].off+sp.ext[k].n == off {
		// Appended right after its own previous write: one extent.
		s.unpin(sp.ext[k])
		sp.ext[k].n += n
		s.pin(sp.ext[k])
	} else {
		e := extent{seg: seg, off: off, n: n}
		s.pin(e)
		seg.refs++
		sp.ext = append(sp.ext, e)
	}
	sp.n += n
	if s.spilled != nil {
		s.spilled.Add(float64(n))
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
	s.mu.Lock()
	defer s.mu.Unlock()
	var pos int64
	for _, e := range sp.ext {
		f, err := s.file(e.seg)
		if err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		if _, err := f.ReadAt(b[pos:pos+e.n], e.off); err != nil {
			return nil, fmt.Errorf("spool: reading %s: %w", e.seg.path, err)
		}
		pos += e.n
	}
	s.releaseLocked(sp)
	return b, nil
}

// release drops a spill without reading it.
func (s *Spool) release(sp *spill) {
	if len(sp.ext) == 0 {
		return
	}
	s.mu.Lock()
	s.releaseLocked(sp)
	s.mu.Unlock()
}

func (s *Spool) releaseLocked(sp *spill) {
	for _, e := range sp.ext {
		s.drop(e)
	}
	s.full.Store(false)
	ext := sp.ext[:0]
	clear(sp.ext) // no pointer to a segment that may go
	if cap(ext) > 16 {
		ext = nil // a file that once spilled a lot keeps no big slice
	}
	*sp = spill{ext: ext}
}

// drop releases one extent: the blocks no live extent shares any more are
// freed, and a segment that nothing refers to goes.
func (s *Spool) drop(e extent) {
	seg := e.seg
	s.unpin(e)
	seg.refs--
	if seg.refs == 0 {
		s.empty(seg)
		return
	}
	if s.punch == nil {
		// The filesystem cannot free part of a file: the bytes stay on disk,
		// and counted in used, until their segment goes, so that used never
		// understates the disk the spool holds. The spool then fills, and
		// refuses spills, earlier than its bound would: files roll sooner,
		// but the bound holds.
		return
	}
	first, last := e.off/s.block, (e.off+e.n-1)/s.block
	if !s.freeBlock(seg, first) {
		first++
	}
	if last >= first && !s.freeBlock(seg, last) {
		last--
	}
	if first <= last {
		s.punchBlocks(seg, first, last)
	}
}

// punchBlocks frees blocks first to last of seg. What it cannot free stays
// counted until the segment goes.
func (s *Spool) punchBlocks(seg *segment, first, last int64) {
	f, err := s.file(seg)
	if err != nil {
		return
	}
	off, n := first*s.block, (last-first+1)*s.block
	if err := s.punch(f, off, n); err != nil {
		if errors.Is(err, errors.ErrUnsupported) {
			s.punch = nil
		}
		return
	}
	seg.alloc -= n
	s.used.Add(-n)
}

// freeBlock tells whether a block of seg holds no live byte: no live extent
// has an edge in it, and it is not the current segment's partly written
// last block, which the next append goes on filling.
func (s *Spool) freeBlock(seg *segment, b int64) bool {
	return seg.edges[b] == 0 && !(seg == s.cur && b == seg.size/s.block)
}

// empty drops a segment no spill refers to: the current one is truncated and
// appended to again, any other is deleted.
func (s *Spool) empty(seg *segment) {
	s.used.Add(-seg.alloc)
	seg.alloc = 0
	clear(seg.edges)
	if seg == s.cur {
		if err := seg.f.Truncate(0); err == nil {
			seg.size = 0
			return
		}
		s.cur = nil
	}
	s.closeFile(seg)
	_ = os.Remove(seg.path)
}

// rotate starts a new segment for appends. The one it replaces keeps its
// live spills; its last block, no longer filled by appends, is freed if no
// live spill shares it.
func (s *Spool) rotate() (*segment, error) {
	s.names++
	path := filepath.Join(s.dir, fmt.Sprintf("%08d.seg", s.names))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	old := s.cur
	seg := &segment{path: path, edges: map[int64]int32{}}
	s.cur = seg
	s.opened(seg, f)
	if old != nil {
		if old.refs == 0 {
			s.empty(old)
		} else if tail := old.size / s.block; old.size%s.block != 0 && s.punch != nil && s.freeBlock(old, tail) {
			s.punchBlocks(old, tail, tail)
		}
	}
	return seg, nil
}

// roundUp is n rounded up to whole blocks.
func (s *Spool) roundUp(n int64) int64 {
	return (n + s.block - 1) / s.block * s.block
}

// pin and unpin count a live extent in the blocks at its edges.
func (s *Spool) pin(e extent) {
	first, last := e.off/s.block, (e.off+e.n-1)/s.block
	e.seg.edges[first]++
	if last != first {
		e.seg.edges[last]++
	}
	e.seg.peakEdges = max(e.seg.peakEdges, len(e.seg.edges))
}

func (s *Spool) unpin(e extent) {
	seg := e.seg
	for _, b := range [2]int64{e.off / s.block, (e.off + e.n - 1) / s.block} {
		if seg.edges[b]--; seg.edges[b] == 0 {
			delete(seg.edges, b)
		}
		if e.off/s.block == (e.off+e.n-1)/s.block {
			break
		}
	}
	// A segment that once held thousands of small spills and now holds a
	// few would keep its map's peak size for as long as it lives.
	if n := len(seg.edges); seg.peakEdges > 1024 && n < seg.peakEdges/8 {
		edges := make(map[int64]int32, n)
		for b, c := range seg.edges {
			edges[b] = c
		}
		seg.edges, seg.peakEdges = edges, n
	}
}

// file is seg's descriptor, opened if it was closed. At most spoolFiles are
// open: opening one closes the least recently used other than the current.
func (s *Spool) file(seg *segment) (*os.File, error) {
	if seg.f != nil {
		i := slices.Index(s.open, seg)
		copy(s.open[i:], s.open[i+1:])
		s.open[len(s.open)-1] = seg
		return seg.f, nil
	}
	f, err := os.OpenFile(seg.path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	s.opened(seg, f)
	return f, nil
}

func (s *Spool) opened(seg *segment, f *os.File) {
	if len(s.open) >= spoolFiles {
		for _, o := range s.open {
			if o != s.cur && o != seg {
				s.closeFile(o)
				break
			}
		}
	}
	seg.f = f
	s.open = append(s.open, seg)
}

func (s *Spool) closeFile(seg *segment) {
	if seg.f == nil {
		return
	}
	seg.f.Close()
	seg.f = nil
	s.open = slices.DeleteFunc(s.open, func(o *segment) bool { return o == seg })
}
