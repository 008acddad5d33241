package kafka

import (
	"testing"
	"time"

	"github.com/sinkd/sinkd/record"
)

// TestBacklogRule drives the view through rounds of observations and checks
// GroupRecords and Pending after the last one.
func TestBacklogRule(t *testing.T) {
	const session = 45 * time.Second
	p0 := record.PartitionID{Stream: "t", Partition: 0}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	owned := map[record.PartitionID]bool{p0: true}
	none := map[record.PartitionID]bool{}
	type round struct {
		after  time.Duration // since t0
		end    int64
		commit *commit // nil: no commit for the partition
		owned  map[record.PartitionID]bool
	}
	c := func(off int64, meta string) *commit { return &commit{offset: off, meta: meta} }
	for _, tt := range []struct {
		name        string
		earliest    bool
		rounds      []round
		wantRecords int64
		wantPending bool
	}{
		{"owned and checkpointing: not pending", true, []round{
			{0, 100, c(40, "m1"), owned},
			{30 * time.Second, 100, c(40, "m2"), owned}, // offset held back by open files, new manifest
			{70 * time.Second, 100, c(40, "m3"), owned},
		}, 60, false},
		{"owner stopped checkpointing for longer than the session: pending", true, []round{
			{0, 100, c(40, "m1"), owned},
			{10 * time.Second, 100, c(40, "m2"), owned},
			{56 * time.Second, 100, c(40, "m2"), owned},
		}, 60, true},
		{"owner stopped checkpointing, within the session: not yet", true, []round{
			{0, 100, c(40, "m1"), owned},
			{10 * time.Second, 100, c(40, "m2"), owned},
			{54 * time.Second, 100, c(40, "m2"), owned},
		}, 60, false},
		{"stale but everything read: not pending", true, []round{
			{0, 100, c(100, "m1"), owned},
			{60 * time.Second, 100, c(100, "m1"), owned},
		}, 0, false},
		{"unowned in a stable group past the grace: pending", true, []round{
			{0, 100, c(40, "m1"), none},
			{11 * time.Second, 100, c(40, "m2"), none},
		}, 60, true},
		{"unowned briefly (a rebalance): not pending", true, []round{
			{0, 100, c(40, "m1"), none},
			{4 * time.Second, 100, c(40, "m2"), owned},
			{20 * time.Second, 100, c(40, "m3"), owned},
		}, 60, false},
		{"rebalancing (assignment unknown) keeps the last ownership", true, []round{
			{0, 100, c(40, "m1"), owned},
			{20 * time.Second, 100, c(40, "m2"), nil},
		}, 60, false},
		{"never committed, from earliest: lag from the log start", true, []round{
			{0, 100, nil, none},
			{12 * time.Second, 100, nil, none},
		}, 100, true},
		{"never committed, from latest: unknown", false, []round{
			{0, 100, nil, none},
			{12 * time.Second, 100, nil, none},
		}, -1, false},
		{"commit ahead of a stale end offset: 0, not negative", true, []round{
			{0, 100, c(120, "m1"), owned},
		}, 0, false},
		{"first sight of a stale commit counts from first sight", true, []round{
			{0, 100, c(40, "m1"), owned},
			{40 * time.Second, 100, c(40, "m1"), owned},
		}, 60, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := newBacklogView(session, tt.earliest)
			for _, r := range tt.rounds {
				o := observation{
					at:      t0.Add(r.after),
					ends:    map[record.PartitionID]int64{p0: r.end},
					starts:  map[record.PartitionID]int64{p0: 0},
					commits: map[record.PartitionID]commit{},
					owned:   r.owned,
				}
				if r.commit != nil {
					o.commits[p0] = *r.commit
				}
				v.observe(o)
			}
			got := v.get()
			if len(got) != 1 {
				t.Fatalf("%d backlogs, want 1", len(got))
			}
			if got[0].GroupRecords != tt.wantRecords || got[0].Pending != tt.wantPending {
				t.Fatalf("GroupRecords %d, Pending %v; want %d, %v", got[0].GroupRecords, got[0].Pending, tt.wantRecords, tt.wantPending)
			}
			if got[0].PendingMillis != -1 {
				t.Fatalf("PendingMillis %d, want -1 (Kafka does not know record ages here)", got[0].PendingMillis)
			}
		})
	}
}

// TestBacklogFailedReads: a round whose commit read failed changes nothing
// known about commits; the partition list comes from the end offsets alone.
func TestBacklogFailedReads(t *testing.T) {
	p0 := record.PartitionID{Stream: "t", Partition: 0}
	p1 := record.PartitionID{Stream: "t", Partition: 1}
	t0 := time.Now()
	v := newBacklogView(45*time.Second, true)
	v.observe(observation{at: t0, ends: map[record.PartitionID]int64{p0: 10},
		commits: map[record.PartitionID]commit{p0: {offset: 4, meta: "a"}}})
	v.observe(observation{at: t0.Add(2 * time.Second), ends: map[record.PartitionID]int64{p0: 12, p1: 5}})
	got := v.get()
	if len(got) != 2 || got[0].ID != p0 || got[1].ID != p1 {
		t.Fatalf("backlogs %+v, want partitions 0 and 1 in order", got)
	}
	if got[0].GroupRecords != 8 {
		t.Errorf("partition 0: GroupRecords %d, want 8 (end 12 minus the last known commit 4)", got[0].GroupRecords)
	}
	if got[1].GroupRecords != -1 {
		t.Errorf("partition 1: GroupRecords %d, want -1 (commit never read)", got[1].GroupRecords)
	}
}
