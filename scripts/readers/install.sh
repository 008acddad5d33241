#!/usr/bin/env bash
# install.sh installs DuckDB's Node API, pinned by package.json and
# package-lock.json beside this script, into .cache/readers/ at the repository
# root (or $SINKD_READERS_DIR), where query.js loads it from. Tests run it
# before their first query; it does nothing while the installed lock matches.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
cache=${SINKD_READERS_DIR:-$repo_root/.cache/readers}

die() {
	echo "readers: error: $*" >&2
	exit 1
}

command -v node >/dev/null || die "node is not on PATH"
command -v npm >/dev/null || die "npm is not on PATH"
mkdir -p "$cache"

# go test runs packages in parallel, and several may install at once on a cold
# cache: one installs, the others wait and then find it done.
exec 9>"$cache/.install.lock"
flock -w 600 9 || die "timed out waiting for another install (lock: $cache/.install.lock)"

# The stamp is written only after a successful install, so an interrupted one
# is never taken for a complete one.
stamp=$cache/installed-package-lock.json
if [[ -d $cache/node_modules/@duckdb/node-api ]] && cmp -s "$script_dir/package-lock.json" "$stamp"; then
	echo "readers: duckdb already installed in $cache"
	exit 0
fi

# npm install, not npm ci: the registry these machines reach serves the
# linux-x64 native binding but not the other platforms' ones, so the lock
# cannot list them and npm ci rejects it as out of sync. With exact pins and a
# lock that satisfies them, npm install installs the locked versions and
# checks their integrity hashes all the same.
rm -f "$stamp"
rm -rf "$cache/node_modules"
cp "$script_dir/package.json" "$script_dir/package-lock.json" "$cache/"
log=$cache/npm-install.log
if ! (cd "$cache" && npm install --no-save --no-audit --no-fund --loglevel=error >"$log" 2>&1); then
	grep -m 20 'npm error' "$log" >&2 || true
	die "npm install failed in $cache (full log: $log)"
fi
node -e 'require(process.argv[1])' "$cache/node_modules/@duckdb/node-api" ||
	die "@duckdb/node-api installed but does not load (native binding missing for $(node -p 'process.platform + "-" + process.arch')?)"
cp "$script_dir/package-lock.json" "$stamp"
echo "readers: installed duckdb into $cache"
