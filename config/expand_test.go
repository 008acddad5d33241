package config

import (
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	env := map[string]string{"HOST": "kafka:9092", "EMPTY": "", "A": "a", "DOLLAR": "$x"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct {
		in, want string
		used     bool
		err      string
	}{
		{in: "plain", want: "plain"},
		{in: "${HOST}", want: "kafka:9092", used: true},
		{in: "tcp://${HOST}/x", want: "tcp://kafka:9092/x", used: true},
		{in: "${A}${A}-${A}", want: "aa-a", used: true},
		{in: "${UNSET}", err: "environment variable UNSET is not set"},
		{in: "a${UNSET}b${GONE}", err: "UNSET is not set (set it, or write ${UNSET:-default}; ${UNSET:-} allows empty); environment variable GONE is not set"},
		{in: "${UNSET:?the broker list}", err: "environment variable UNSET is not set: the broker list"},
		{in: "${EMPTY:?needed}", err: "environment variable EMPTY is empty: needed"},
		{in: "${EMPTY?needed}", want: "", used: true},
		{in: "${UNSET?}", err: "environment variable UNSET is not set"},
		{in: "${HOST:?needed}", want: "kafka:9092", used: true},
		{in: "${EMPTY}", want: "", used: true},
		{in: "${UNSET:-def}", want: "def", used: true},
		{in: "${EMPTY:-def}", want: "def", used: true},
		{in: "${HOST:-def}", want: "kafka:9092", used: true},
		{in: "${UNSET-def}", want: "def", used: true},
		{in: "${EMPTY-def}", want: "", used: true},
		{in: "${UNSET:-http://127.0.0.1:9000}", want: "http://127.0.0.1:9000", used: true},
		{in: "${UNSET:-}", want: "", used: true},
		{in: "$$", want: "$"},
		{in: "$${HOST}", want: "${HOST}"},
		{in: "pa$$word", want: "pa$word"},
		{in: "pa$word", want: "pa$word"},
		{in: "trailing$", want: "trailing$"},
		{in: "${DOLLAR}", want: "$x", used: true}, // values are not expanded again
		{in: "${HOST", err: "unterminated"},
		{in: "${}", err: "not a valid"},
		{in: "${1X}", err: "not a valid"},
		{in: "${A B}", err: "not a valid"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, used, err := expand(tt.in, lookup)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("expand(%q) error = %v, want one containing %q", tt.in, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("expand(%q): %v", tt.in, err)
			}
			if got != tt.want || used != tt.used {
				t.Errorf("expand(%q) = %q, %v; want %q, %v", tt.in, got, used, tt.want, tt.used)
			}
		})
	}
}
