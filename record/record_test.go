package record

import "testing"

func TestPositionCompare(t *testing.T) {
	tests := []struct {
		a, b Position
		want int
	}{
		{Position{Offset: 1}, Position{Offset: 2}, -1},
		{Position{Offset: 7}, Position{Offset: 7}, 0},
		{Position{Seq: "9"}, Position{Seq: "10"}, -1},
		{Position{Seq: "495900"}, Position{Seq: "495899"}, 1},
		{Position{Seq: "123", Sub: 2}, Position{Seq: "123", Sub: 1}, 1},
		{Position{Seq: "123", Sub: 0}, Position{Seq: "123", Sub: 0}, 0},
	}
	for _, tt := range tests {
		if got := tt.a.Compare(tt.b); got != tt.want {
			t.Errorf("%v.Compare(%v) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := tt.b.Compare(tt.a); got != -tt.want {
			t.Errorf("%v.Compare(%v) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
	}
}
