package daemon

import (
	"github.com/sinkd/sinkd/writers/jsonlines"
	"github.com/sinkd/sinkd/writers/plugin"
)

// writerKinds are the writers a route configures under `writers:`, beside
// the built-in parquet and opensearch keys. Adding a writer is its package
// plus one line here (docs/design.md, "How to add a writer").
var writerKinds = plugin.Kinds{
	jsonlines.Kind,
}
