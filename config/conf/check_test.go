package conf

import (
	"errors"
	"testing"
)

// TestCheckPaths: a block's issues keep their paths when added under
// another block, and no issues is a nil error (not a nil Issues in an
// interface, which would not be nil).
func TestCheckPaths(t *testing.T) {
	var inner Check
	inner.Required("topic", "")
	inner.At("brokers").Errorf(Index(1), "bad")
	inner.Errorf("", "whole block")

	var outer Check
	outer.Add("dlq.kafka", inner.Issues())
	want := []Issue{
		{"dlq.kafka.topic", "is required"},
		{"dlq.kafka.brokers[1]", "bad"},
		{"dlq.kafka", "whole block"},
	}
	got := outer.Issues()
	if len(got) != len(want) {
		t.Fatalf("issues %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("issue %d = %v, want %v", i, got[i], want[i])
		}
	}
	if err := (Issues(nil)).Err(); err != nil {
		t.Errorf("no issues: Err() = %v, want nil", err)
	}
	var is Issues
	if err := outer.Issues().Err(); !errors.As(err, &is) || len(is) != 3 {
		t.Errorf("Err() = %v, want the three issues", err)
	}
}
