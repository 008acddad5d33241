#!/usr/bin/env bash
# stack.sh runs the local stack of real servers that sinkd's integration tests
# and demo talk to (DESIGN §9): MinIO (S3), kinesalite (Kinesis), dynalite
# (DynamoDB) and a kfake Kafka broker, all on 127.0.0.1.
#
#   stack.sh up            install what is missing, start what is not running, write the env file
#   stack.sh down          stop every server
#   stack.sh status        show each server's pid and readiness
#   stack.sh env           print the env file (eval "$(scripts/stack/stack.sh env)")
#   stack.sh stop NAME     stop one server (minio, kinesalite, dynalite, kafka)
#   stack.sh start NAME    start one server again, same port and data directory
#
# Everything lives in .cache/stack/ at the repository root (or $SINKD_STACK_DIR):
# bin/ (binaries), node/ (npm packages), data/, logs/, pids/ and env.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
cache=${SINKD_STACK_DIR:-$repo_root/.cache/stack}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

# Pinned: a MinIO commit whose module builds with the Go toolchain in go.mod.
minio_version=v0.0.0-20260212201848-7aac2a2c5b7c

host=127.0.0.1
minio_port=19000
minio_console_port=19001
kinesalite_port=14567
dynalite_port=14568
kafka_port=19092
kafka_partitions=4
bucket=sinkd-test

servers=(minio kinesalite dynalite kafka)
ready_timeout=60 # seconds each server gets to answer a real request
stop_timeout=10  # seconds between TERM and KILL

bin=$cache/bin
pids=$cache/pids
logs=$cache/logs
data=$cache/data

say() { echo "stack: $*"; }
die() {
	echo "stack: error: $*" >&2
	exit 1
}

endpoint() {
	case $1 in
	minio) echo "http://$host:$minio_port" ;;
	kinesalite) echo "http://$host:$kinesalite_port" ;;
	dynalite) echo "http://$host:$dynalite_port" ;;
	kafka) echo "$host:$kafka_port" ;;
	*) die "unknown server '$1' (want one of: ${servers[*]})" ;;
	esac
}

# --- installation -----------------------------------------------------------

install_minio() {
	local stamp=$bin/.minio-version
	if [[ -x $bin/minio && -f $stamp && $(<"$stamp") == "$minio_version" ]]; then
		return
	fi
	say "installing minio $minio_version (go install, takes a few minutes the first time)"
	# Installed aside and renamed, so that a running MinIO's binary is never
	# overwritten in place.
	GOBIN=$bin/.minio-install go install "github.com/minio/minio@$minio_version" ||
		die "go install of minio failed"
	mv -f "$bin/.minio-install/minio" "$bin/minio"
	echo "$minio_version" >"$stamp"
}

# The helpers are built from this repository, again whenever a source file is
# newer than the binary, so they never lag behind their sources. Building next
# to the target and renaming keeps a running broker's binary intact.
install_go_helper() {
	local name=$1 pkg=$2 target=$bin/$1
	if [[ -x $target ]] && [[ -z $(find "$repo_root/$pkg" "$repo_root/go.mod" "$repo_root/go.sum" -newer "$target" -print -quit) ]]; then
		return
	fi
	(cd "$repo_root" && go build -o "$bin/.$name.new" "./$pkg") || die "go build ./$pkg failed"
	mv -f "$bin/.$name.new" "$target"
}

install_node_packages() {
	local dir=$cache/node
	mkdir -p "$dir"
	if [[ -d $dir/node_modules ]] && cmp -s "$script_dir/package-lock.json" "$dir/package-lock.json"; then
		return
	fi
	say "installing kinesalite and dynalite (npm ci)"
	cp "$script_dir/package.json" "$script_dir/package-lock.json" "$dir/"
	(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >"$logs/npm-ci.log" 2>&1) ||
		die "npm ci failed, see $logs/npm-ci.log"
}

install_all() {
	mkdir -p "$bin" "$pids" "$logs" "$data"
	command -v go >/dev/null || die "go is not on PATH"
	command -v node >/dev/null || die "node is not on PATH"
	command -v npm >/dev/null || die "npm is not on PATH"
	install_go_helper kafkabroker scripts/kafkabroker
	install_go_helper probe scripts/stack/probe
	install_node_packages
	install_minio
}

# --- processes ----------------------------------------------------------------

pid_file() { echo "$pids/$1.pid"; }

# alive PID: the process exists and is not a zombie (an orphaned server that
# a non-reaping parent never collects must not look alive forever).
alive() {
	kill -0 "$1" 2>/dev/null || return 1
	local stat
	stat=$(<"/proc/$1/stat") 2>/dev/null || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

# The program a server's process runs, to tell our server from an unrelated
# process that reused a stale pid.
program() {
	case $1 in
	minio) echo "$bin/minio" ;;
	kinesalite | dynalite) echo "serve.js $1" ;;
	kafka) echo "$bin/kafkabroker" ;;
	esac
}

# running NAME prints the server's pid when its recorded process is alive.
running() {
	local file pid
	file=$(pid_file "$1")
	[[ -f $file ]] || return 1
	pid=$(<"$file")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	alive "$pid" || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(program "$1")" || return 1
	echo "$pid"
}

probe() {
	case $1 in
	minio) "$bin/probe" s3 "$(endpoint minio)" "$bucket" ;;
	kinesalite) "$bin/probe" kinesis "$(endpoint kinesalite)" ;;
	dynalite) "$bin/probe" dynamodb "$(endpoint dynalite)" ;;
	kafka) "$bin/probe" kafka "$(endpoint kafka)" ;;
	esac
}

launch() {
	local name=$1 log=$logs/$1.log
	case $name in
	minio)
		mkdir -p "$data/minio"
		(cd "$data" && MINIO_ROOT_USER=minioadmin MINIO_ROOT_PASSWORD=minioadmin MINIO_UPDATE=off \
			exec "$bin/minio" server --quiet --address "$host:$minio_port" \
			--console-address "$host:$minio_console_port" "$data/minio" \
			</dev/null >"$log" 2>&1 9>&-) &
		;;
	kinesalite | dynalite)
		local port=$kinesalite_port
		[[ $name == dynalite ]] && port=$dynalite_port
		mkdir -p "$data/$name"
		(cd "$data" && NODE_PATH=$cache/node/node_modules \
			exec node "$script_dir/serve.js" "$name" "$port" "$data/$name" </dev/null >"$log" 2>&1 9>&-) &
		;;
	kafka)
		mkdir -p "$data/kafka"
		(cd "$data" && exec "$bin/kafkabroker" -host "$host" -port "$kafka_port" \
			-partitions "$kafka_partitions" -data "$data/kafka" </dev/null >"$log" 2>&1 9>&-) &
		;;
	esac
	echo $! >"$(pid_file "$name")"
}

ports() {
	case $1 in
	minio) echo "$minio_port $minio_console_port" ;;
	kinesalite) echo "$kinesalite_port" ;;
	dynalite) echo "$dynalite_port" ;;
	kafka) echo "$kafka_port" ;;
	esac
}

# port_owner PORT prints the pid of the process listening on PORT, found
# through the kernel's socket tables (no ss or lsof on a bare machine).
port_owner() {
	local port_hex inode fd
	port_hex=$(printf ':%04X' "$1")
	inode=$(awk -v p="$port_hex" '$4 == "0A" && substr($2, length($2) - 4) == p { print $10; exit }' \
		/proc/net/tcp /proc/net/tcp6 2>/dev/null)
	[[ -n $inode ]] || return 1
	for fd in /proc/[0-9]*/fd/*; do
		if [[ $(readlink "$fd" 2>/dev/null) == "socket:[$inode]" ]]; then
			fd=${fd#/proc/}
			echo "${fd%%/*}"
			return 0
		fi
	done
	return 1
}

# free_ports NAME makes sure nothing else listens on the server's ports. A
# stack server that another checkout of this repository left running (a CI
# clone after a developer's session, say) is stopped by its pid; anything
# else is reported, never killed.
free_ports() {
	local name=$1 port owner cmdline
	for port in $(ports "$name"); do
		owner=$(port_owner "$port") || continue
		cmdline=$(tr '\0' ' ' <"/proc/$owner/cmdline" 2>/dev/null || true)
		case $cmdline in
		*/.cache/stack/bin/minio\ server* | *scripts/stack/serve.js\ "$name"\ * | */.cache/stack/bin/kafkabroker\ *)
			say "stopping the $name that another checkout left on port $port (pid $owner: $cmdline)"
			stop_pid "$name" "$owner"
			;;
		*) die "port $port, needed by $name, is in use by pid $owner ($cmdline)" ;;
		esac
	done
}

# wait_ready NAME PID polls with real requests until the server answers.
wait_ready() {
	local name=$1 pid=$2 log=$logs/$1.log deadline=$((SECONDS + ready_timeout))
	until probe "$name" >"$logs/$name.probe.log" 2>&1; do
		if ! alive "$pid"; then
			die "$name (pid $pid) exited before it was ready; see $log"
		fi
		if ((SECONDS >= deadline)); then
			die "$name (pid $pid) not ready after ${ready_timeout}s ($(tail -n1 "$logs/$name.probe.log")); see $log"
		fi
		sleep 0.2
	done
}

start_one() {
	local name=$1 pid state=started
	if pid=$(running "$name") && probe "$name" >/dev/null 2>&1; then
		state=reused
	else
		if pid=$(running "$name"); then
			# Alive but not answering: a half-started or wedged server.
			stop_pid "$name" "$pid"
		fi
		free_ports "$name"
		launch "$name"
		pid=$(<"$(pid_file "$name")")
		wait_ready "$name" "$pid"
	fi
	say "$name ready at $(endpoint "$name") (pid $pid, $state)"
}

stop_pid() {
	local name=$1 pid=$2 deadline=$((SECONDS + stop_timeout))
	kill -TERM "$pid" 2>/dev/null || true
	while alive "$pid"; do
		if ((SECONDS >= deadline)); then
			say "$name (pid $pid) ignored TERM for ${stop_timeout}s, killing it"
			kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.1
	done
	# The server is not our child, so poll until the kernel has taken it down.
	deadline=$((SECONDS + stop_timeout))
	while alive "$pid"; do
		((SECONDS < deadline)) || die "$name (pid $pid) survived SIGKILL"
		sleep 0.1
	done
}

stop_one() {
	local name=$1 pid
	if pid=$(running "$name"); then
		stop_pid "$name" "$pid"
		say "$name stopped (pid $pid)"
	else
		say "$name not running"
	fi
	rm -f "$(pid_file "$name")"
}

write_env() {
	local tmp=$cache/.env.new
	cat >"$tmp" <<EOF
export SINKD_KAFKA_BROKERS=$(endpoint kafka)
export SINKD_KAFKA_TOPIC=taxi-trips
export SINKD_S3_ENDPOINT=$(endpoint minio)
export SINKD_S3_BUCKET=$bucket
export SINKD_KINESIS_ENDPOINT=$(endpoint kinesalite)
export SINKD_KINESIS_STREAM=taxi-trips
export SINKD_DYNAMODB_ENDPOINT=$(endpoint dynalite)
export SINKD_DLQ_TOPIC=sinkd-dlq
export SINKD_DLQ_STREAM=sinkd-dlq
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=minioadmin
export AWS_SECRET_ACCESS_KEY=minioadmin
export SINKD_STACK_DIR=$cache
EOF
	mv -f "$tmp" "$cache/env"
}

# --- commands -----------------------------------------------------------------

cmd_up() {
	install_all
	local name
	for name in "${servers[@]}"; do
		start_one "$name"
	done
	write_env
	say "env written to $cache/env"
}

cmd_down() {
	local name
	for name in "${servers[@]}"; do
		stop_one "$name"
	done
}

cmd_status() {
	local name pid down=0
	for name in "${servers[@]}"; do
		if ! pid=$(running "$name"); then
			say "$name stopped"
			down=1
		elif [[ -x $bin/probe ]] && probe "$name" >/dev/null 2>&1; then
			say "$name ready at $(endpoint "$name") (pid $pid)"
		else
			say "$name running but not answering at $(endpoint "$name") (pid $pid); see $logs/$name.log"
			down=1
		fi
	done
	return "$down"
}

cmd_env() {
	[[ -f $cache/env ]] || die "no env file at $cache/env; run: $0 up"
	cat "$cache/env"
}

usage() {
	sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# lock serializes concurrent invocations (tests that stop and start servers,
# a make test in another terminal) so none sees another's half-done work.
# launch closes fd 9 in the servers: a server holding it would hold the lock.
lock() {
	command -v flock >/dev/null || return 0
	exec 9>"$cache/.lock"
	flock 9
}

main() {
	(($# >= 1)) || usage
	[[ $1 == env ]] || lock
	case $1 in
	up | down | status | env)
		(($# == 1)) || usage
		"cmd_$1"
		;;
	start)
		(($# == 2)) || usage
		endpoint "$2" >/dev/null
		install_all
		start_one "$2"
		write_env
		;;
	stop)
		(($# == 2)) || usage
		endpoint "$2" >/dev/null
		stop_one "$2"
		;;
	*) usage ;;
	esac
}

main "$@"
