#!/usr/bin/env bash
# make bench: sinkd's benchmarks on the local stack, results in docs/benchmarks.md.
#
#   scripts/bench/run.sh [extra flags for scripts/bench, e.g. -scenario a,d -events 500000]
#
# Starts the stack if needed (scripts/stack/stack.sh up), runs the Go
# micro-benchmarks, then the end-to-end scenarios (a) to (e) and the scaling
# sweep, all on sinkd's default memory settings, and rewrites
# docs/benchmarks.md with both. It takes about ten minutes on two cores when
# sinkd meets its targets, and stays under 25 when (d) and (e) are slow enough
# to be stopped (scripts/bench/main.go: defaultEvents). Benchmarks never gate
# CI: `make test` does not call this.
set -euo pipefail

cd "$(dirname "$0")/../.."

scripts/stack/stack.sh up

out=.cache/bench
mkdir -p "$out"
micro="$out/micro.txt"
packages=(./schema/ ./buckets/ ./writers/... ./store/ ./checkpoint/ ./source/... ./daemon/...)

echo "==> micro-benchmarks: go test -run '^\$' -bench . -benchmem ${packages[*]}"
# Packages without benchmarks print "no test files" or just "PASS"; keep the
# output whole, it is what the document shows.
# -p 1: packages benchmarked side by side would share the two cores.
go test -p 1 -run '^$' -bench . -benchmem -benchtime "${BENCHTIME:-1s}" "${packages[@]}" 2>&1 | tee "$micro"

echo "==> end-to-end scenarios"
command="make bench (scripts/bench/run.sh${*:+ $*})"
go run ./scripts/bench -scenario all -micro "$micro" -out docs/benchmarks.md -command "$command" "$@"
