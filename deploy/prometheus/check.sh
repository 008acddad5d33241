#!/bin/sh
# Checks the Prometheus rules and runs their unit tests with promtool,
# installing promtool from Debian's prometheus package when it is missing.
#
#   deploy/prometheus/check.sh
set -eu

here=$(cd "$(dirname "$0")" && pwd)

if ! command -v promtool >/dev/null 2>&1; then
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "check.sh: promtool not found and apt-get unavailable; install promtool (prometheus package) first" >&2
		exit 1
	fi
	sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		sudo="sudo"
	fi
	echo "check.sh: installing promtool (Debian package prometheus)" >&2
	# Only /usr/bin/promtool is used. On a host that runs systemd the package
	# also enables a Prometheus server: install promtool by hand there if
	# that is unwanted.
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >&2 ||
		{ $sudo apt-get update -q >&2 && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >&2; }
fi

cd "$here"
promtool check rules sinkd-rules.yaml
promtool test rules sinkd-rules.test.yaml
