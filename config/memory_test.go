package config

import (
	"strings"
	"testing"

	"github.com/sinkd/sinkd/writers/parquetsink"
)

// TestGarbageRoom: the room left for garbage is half the budget, at most
// 256 MiB, and never so much that files keep less than MinBudget once the
// source's share is set aside.
func TestGarbageRoom(t *testing.T) {
	const MiB = 1 << 20
	kinesis := strings.Replace(crossYAML, "  kafka:\n    brokers: [127.0.0.1:9092]\n    topics: [trips]\n    group: g\n", "  kinesis: {stream: trips}\n", 1)
	tests := []struct {
		name   string
		src    string
		memory string
		room   int64
	}{
		{"default budget", crossYAML, "", 128 * MiB},
		{"large budget: capped", crossYAML, "memory: {budget: 4GiB}\n", 256 * MiB},
		{"half would leave files too little", crossYAML, "memory: {budget: 64MiB}\n", 64*MiB - 32*MiB - 16*MiB},
		{"nothing to spare", crossYAML, "memory: {budget: 48MiB}\n", 0},
		{"kinesis sets aside more for its source", kinesis, "memory: {budget: 96MiB}\n", 96*MiB - 40*MiB - 16*MiB},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateEnv(t)
			cfg, err := Parse("room.yaml", []byte(tt.src+tt.memory))
			if err != nil {
				t.Fatal(err)
			}
			room := cfg.GarbageRoom()
			if room != tt.room {
				t.Errorf("GarbageRoom() = %d MiB, want %d MiB", room/MiB, tt.room/MiB)
			}
			if files := cfg.Memory.Budget.Bytes() - cfg.Source.MemoryBytes() - room; files < int64(parquetsink.MinBudget) {
				t.Errorf("files keep %d MiB, less than the least budget (%d MiB)", files/MiB, parquetsink.MinBudget/MiB)
			}
		})
	}
}
