package checkpoint

import (
	"context"
	"errors"
	"testing"

	"github.com/sinkd/sinkd/record"
	"github.com/sinkd/sinkd/store"
)

func newStore(t *testing.T) Store {
	t.Helper()
	s, prefix, err := store.Open(context.Background(), "file://"+t.TempDir()+"/cp", store.S3Config{})
	if err != nil {
		t.Fatal(err)
	}
	return Store{S: s, Prefix: prefix}
}

func manifest(instance string, seq uint64, partitions ...string) *Manifest {
	m := &Manifest{Instance: instance, Seq: seq, Partitions: map[string]*PartitionState{}}
	for _, p := range partitions {
		m.Partitions[p] = &PartitionState{Kind: record.Kafka, Restart: record.Position{Offset: int64(seq) * 10}}
	}
	return m
}

func TestWriteIsTheCommitPointAndFences(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.Write(ctx, manifest("a", 1, "t/0")); err != nil {
		t.Fatal(err)
	}
	// A second process with the same instance id loses the race.
	if err := s.Write(ctx, manifest("a", 1, "t/1")); !errors.Is(err, ErrFenced) {
		t.Fatalf("second write of a/1: %v, want ErrFenced", err)
	}
	got, err := s.Read(ctx, "a", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Partitions["t/0"]; !ok {
		t.Fatalf("the first manifest must stay: %+v", got)
	}
}

func TestFindNewestManifestNamingAPartition(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	for _, m := range []*Manifest{
		manifest("a", 3, "t/0", "t/1"),
		manifest("a", 4, "t/0", "t/1"), // died before committing this one to Kafka
		manifest("a", 5, "t/1"),        // restarted without t/0
		manifest("b", 9, "t/0"),
	} {
		if err := s.Write(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		instance string
		from     uint64
		part     string
		want     uint64 // 0: none
	}{
		{"a", 3, "t/0", 4}, // newer than the committed reference
		{"a", 3, "t/1", 5},
		{"a", 5, "t/0", 0}, // handed over cleanly: the commit alone is the truth
		{"a", 6, "t/1", 0},
		{"b", 1, "t/0", 9},
		{"c", 0, "t/0", 0},
	}
	for _, tt := range tests {
		m, err := s.Find(ctx, tt.instance, tt.from, tt.part)
		if err != nil {
			t.Fatal(err)
		}
		var got uint64
		if m != nil {
			got = m.Seq
		}
		if got != tt.want {
			t.Errorf("Find(%s, from %d, %s) = %d, want %d", tt.instance, tt.from, tt.part, got, tt.want)
		}
	}
	if latest, _ := s.Latest(ctx, "a"); latest == nil || latest.Seq != 5 {
		t.Errorf("Latest(a) = %+v, want seq 5", latest)
	}
	if err := s.Prune(ctx, "a", 1); err != nil {
		t.Fatal(err)
	}
	if seqs, _ := s.Seqs(ctx, "a"); len(seqs) != 1 || seqs[0] != 5 {
		t.Errorf("after Prune(keep 1): %v", seqs)
	}
}

func TestRef(t *testing.T) {
	tests := []struct {
		in       string
		instance string
		seq      uint64
		ok       bool
	}{
		{Ref("host-1", 42), "host-1", 42, true},
		{Ref("a:b", 7), "a:b", 7, true}, // the last colon separates the number
		{"", "", 0, false},
		{"sinkd:v1:x", "", 0, false},
		{"sinkd:v1:x:notanumber", "", 0, false},
		{"committed by another tool", "", 0, false},
	}
	for _, tt := range tests {
		inst, seq, ok := ParseRef(tt.in)
		if inst != tt.instance || seq != tt.seq || ok != tt.ok {
			t.Errorf("ParseRef(%q) = %q, %d, %v", tt.in, inst, seq, ok)
		}
	}
}
