package writers

import "github.com/sinkd/sinkd/record"

// ReplayFilter is a file writer's replay filter: bucket → partition → the
// highest position already in a committed file. A replayed record at or
// below it is skipped, which is what makes replay exactly-once. The zero
// value is not usable: make one with NewReplayFilter.
type ReplayFilter map[string]map[record.PartitionID]record.Position

// NewReplayFilter returns an empty filter.
func NewReplayFilter() ReplayFilter { return ReplayFilter{} }

// Replayed reports whether a committed file of bucket already holds the
// record at pos of partition pid. bucket is a []byte so that the lookup
// does not allocate.
func (f ReplayFilter) Replayed(bucket []byte, pid record.PartitionID, pos record.Position) bool {
	if len(f) == 0 {
		return false
	}
	if m, ok := f[string(bucket)]; ok {
		if c, ok := m[pid]; ok && pos.Compare(c) <= 0 {
			return true
		}
	}
	return false
}

// Restore installs the committed positions of a partition (from a manifest
// or a checkpoint's highs), bucket by bucket, replacing what was there.
func (f ReplayFilter) Restore(pid record.PartitionID, buckets map[string]record.Position) {
	for b, pos := range buckets {
		f.set(b, pid, pos)
	}
}

// Raise sets the position of pid in bucket to pos unless it is already
// higher.
func (f ReplayFilter) Raise(bucket string, pid record.PartitionID, pos record.Position) {
	if old, ok := f[bucket][pid]; ok && pos.Compare(old) <= 0 {
		return
	}
	f.set(bucket, pid, pos)
}

func (f ReplayFilter) set(bucket string, pid record.PartitionID, pos record.Position) {
	m := f[bucket]
	if m == nil {
		m = map[record.PartitionID]record.Position{}
		f[bucket] = m
	}
	m[pid] = pos
}

// Release drops what the filter holds of a partition the writer no longer
// owns.
func (f ReplayFilter) Release(pid record.PartitionID) {
	for b, m := range f {
		delete(m, pid)
		if len(m) == 0 {
			delete(f, b)
		}
	}
}

// Prune drops the entries of pid that replay from restart (or just after
// it, with after) can no longer reach, and returns the ones kept (nil when
// none).
func (f ReplayFilter) Prune(pid record.PartitionID, restart record.Position, after bool) map[string]record.Position {
	var out map[string]record.Position
	for b, m := range f {
		c, ok := m[pid]
		if !ok {
			continue
		}
		if cmp := c.Compare(restart); cmp < 0 || (after && cmp == 0) {
			delete(m, pid)
			if len(m) == 0 {
				delete(f, b)
			}
			continue
		}
		if out == nil {
			out = map[string]record.Position{}
		}
		out[b] = c
	}
	return out
}

// ByPartition is the filter turned around, as the manifest lists it:
// partition → bucket → position.
func (f ReplayFilter) ByPartition() map[record.PartitionID]map[string]record.Position {
	out := map[record.PartitionID]map[string]record.Position{}
	for b, m := range f {
		for pid, pos := range m {
			if out[pid] == nil {
				out[pid] = map[string]record.Position{}
			}
			out[pid][b] = pos
		}
	}
	return out
}
