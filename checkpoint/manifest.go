// Package checkpoint holds the manifest: the one object whose atomic write is the
// commit point of a checkpoint (DESIGN §3), and the store that names, writes and
// finds manifests.
package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/store"
)

// Entry is one commit a manifest lists: what a committer applies, idempotently,
// once the manifest is written. Kind names the committer; the fields below
// Kind are what the object-store multipart committer needs, and Data carries
// what another kind (a table catalog's append, say) needs instead.
//
// The JSON keeps the names of the format's first version (an entry without a
// kind is a multipart upload), so that manifests written before kinds existed
// are still re-applied.
type Entry struct {
	Kind     string          `json:"kind,omitempty"` // "" or KindMultipart
	Store    string          `json:"store"`          // which destination (its URL): the committer resolves it
	Key      string          `json:"key,omitempty"`
	UploadID string          `json:"upload_id,omitempty"`
	Parts    []store.Part    `json:"parts,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
	Rows     int64           `json:"rows"`
	Bytes    int64           `json:"bytes"`
}

// Upload is the name entries had when every entry was a multipart upload.
type Upload = Entry

// PartitionState is where replay of one source partition must start, and which
// replayed records are already in committed files.
type PartitionState struct {
	Kind record.Kind `json:"kind"`
	// Restart is the first position that is not durable; After means the
	// position itself is durable and replay starts just after it.
	Restart record.Position `json:"restart"`
	After   bool            `json:"after"`
	// Committed holds, per route and bucket, the highest position of this
	// partition already in a committed file. Replayed records at or below it
	// are skipped, which makes replay exact for deterministic buckets.
	Committed map[string]map[string]record.Position `json:"committed,omitempty"`
}

// Restart is where replay of a partition starts: at Position, or just after
// it when After.
type Restart struct {
	Position record.Position
	After    bool
}

// Start is the state's restart point.
func (s *PartitionState) Start() Restart { return Restart{Position: s.Restart, After: s.After} }

// Manifest is checkpoint Seq of one instance.
type Manifest struct {
	Pipeline   string                     `json:"pipeline"`
	Instance   string                     `json:"instance"`
	Epoch      string                     `json:"epoch"`
	Seq        uint64                     `json:"seq"`
	Created    time.Time                  `json:"created"`
	Uploads    []Entry                    `json:"uploads,omitempty"` // the commits, of every kind
	Partitions map[string]*PartitionState `json:"partitions"`
}

// ErrFenced means another process already wrote this instance's next manifest:
// two processes run with the same instance id, and this one must stop.
var ErrFenced = errors.New("checkpoint: manifest already exists: another process runs with this instance_id")

// Store writes and reads manifests under <prefix>manifests/<instance>/<seq>.json.
type Store struct {
	S      store.Store
	Prefix string
}

func (s Store) dir(instance string) string { return s.Prefix + "manifests/" + instance + "/" }

func (s Store) key(instance string, seq uint64) string {
	return fmt.Sprintf("%s%020d.json", s.dir(instance), seq)
}

// Write stores m if no manifest with its instance and seq exists.
func (s Store) Write(ctx context.Context, m *Manifest) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	err = s.S.PutIfAbsent(ctx, s.key(m.Instance, m.Seq), body)
	if errors.Is(err, store.ErrExists) {
		return ErrFenced
	}
	return err
}

// Read loads one manifest.
func (s Store) Read(ctx context.Context, instance string, seq uint64) (*Manifest, error) {
	body, err := s.S.Get(ctx, s.key(instance, seq))
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("manifest %s/%d is corrupt: %w", instance, seq, err)
	}
	return &m, nil
}

// Seqs lists the manifest numbers of an instance, ascending.
func (s Store) Seqs(ctx context.Context, instance string) ([]uint64, error) {
	keys, err := s.S.List(ctx, s.dir(instance))
	if err != nil {
		return nil, err
	}
	seqs := make([]uint64, 0, len(keys))
	for _, k := range keys {
		name := strings.TrimSuffix(k[strings.LastIndexByte(k, '/')+1:], ".json")
		if n, err := strconv.ParseUint(name, 10, 64); err == nil {
			seqs = append(seqs, n)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	return seqs, nil
}

// Latest returns the newest manifest of an instance, or nil if it has none.
func (s Store) Latest(ctx context.Context, instance string) (*Manifest, error) {
	seqs, err := s.Seqs(ctx, instance)
	if err != nil || len(seqs) == 0 {
		return nil, err
	}
	return s.Read(ctx, instance, seqs[len(seqs)-1])
}

// Find returns the newest manifest of instance, no older than from, that holds
// state for partition p; nil if there is none (the partition was handed over
// cleanly and its committed source position alone is the truth).
func (s Store) Find(ctx context.Context, instance string, from uint64, p string) (*Manifest, error) {
	seqs, err := s.Seqs(ctx, instance)
	if err != nil {
		return nil, err
	}
	for i := len(seqs) - 1; i >= 0 && seqs[i] >= from; i-- {
		m, err := s.Read(ctx, instance, seqs[i])
		if errors.Is(err, store.ErrNotFound) {
			continue // removed by retention meanwhile
		}
		if err != nil {
			return nil, err
		}
		if _, ok := m.Partitions[p]; ok {
			return m, nil
		}
	}
	return nil, nil
}

// Prune deletes the manifests of instance older than the newest keep.
func (s Store) Prune(ctx context.Context, instance string, keep int) error {
	seqs, err := s.Seqs(ctx, instance)
	if err != nil {
		return err
	}
	for i := 0; i < len(seqs)-keep; i++ {
		if err := s.S.Delete(ctx, s.key(instance, seqs[i])); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return nil
}

// Ref is what a source stores beside its committed position (Kafka commit
// metadata) so that the partition's next owner finds the manifest.
func Ref(instance string, seq uint64) string {
	return "sinkd:v1:" + instance + ":" + strconv.FormatUint(seq, 10)
}

// ParseRef reverses Ref; ok is false for metadata sinkd did not write.
func ParseRef(s string) (instance string, seq uint64, ok bool) {
	rest, found := strings.CutPrefix(s, "sinkd:v1:")
	if !found {
		return "", 0, false
	}
	i := strings.LastIndexByte(rest, ':')
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.ParseUint(rest[i+1:], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return rest[:i], n, true
}
