// Package examples embeds the example configurations so that `sinkd demo` runs
// the same file a user can read and copy.
package examples

import _ "embed"

//go:embed demo.yaml
var Demo []byte
