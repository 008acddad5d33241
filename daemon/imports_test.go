package daemon

import (
	"os/exec"
	"strings"
	"testing"
)

// The packages below the daemon must not import it (docs/design.md §2):
// writers, sources and the protocol are built and tested on their own, and
// the daemon only assembles them.
func TestPluginsDoNotImportTheDaemon(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	pkgs := []string{"../writers/...", "../source/...", "../schema/...", "../buckets/...", "../dlq/...", "../checkpoint/...", "../store/..."}
	out, err := exec.Command("go", append([]string{"list", "-deps", "-f", `{{.ImportPath}}`}, pkgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "github.com/sinkd/sinkd/daemon" || strings.HasPrefix(p, "github.com/sinkd/sinkd/daemon/") {
			t.Errorf("%s is imported by a package that must not depend on the daemon", p)
		}
	}
}
