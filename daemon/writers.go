package daemon

import (
	"github.com/sinkd/sinkd/writers"
	"github.com/sinkd/sinkd/writers/jsonlines"
)

// writerKinds are the writers a route configures under `writers:`, beside
// the built-in parquet and opensearch keys. Adding a writer is its package
// plus one line here (docs/design.md, "How to add a writer").
var writerKinds = writers.Kinds{
	jsonlines.Kind,
}
