#!/usr/bin/env bash
# Remote ingest against local declare, in one run: the same generated log
# corpus preserved by `custody declare` into a local vault, and by
# `custody agent --once` streaming to `custody serve` over loopback (TLS,
# bearer token; the server re-hashes everything) into a local vault.
# Prints the median wall time of BENCH_RUNS runs of each, the throughput,
# and remote / local throughput, in two placements:
# - shared: everything may use every core, so the server's re-hashing
#   competes with the agent for the same cores (on 2 cores, remote ingest
#   does the agent's work plus the server's in the time local declare has
#   for its own);
# - split (with 2 cores or more, and taskset): the host's work on one core
#   and the server's on another, as if they were two machines. `custody
#   declare` and `custody agent` are pinned to the first CPU this script may
#   use and `custody serve` to the second, so
#   the ratio says what sending evidence to a server costs the host against
#   preserving it locally.
#
# Called by scripts/bench.sh unless BENCH_SERVICE=0.
#
# Env: BENCH_MIB (default 1024), BENCH_RUNS (default 3), BENCH_SEED (default
#      1), BENCH_TMPDIR (default $TMPDIR or /tmp), BENCH_SPLIT=0 (shared
#      placement only), CUSTODY_BIN (a custody binary to measure instead
#      of building this tree's).
# Needs: openssl (the server's certificate), curl (the webhook), GNU time
# (CPU seconds of each side), taskset (util-linux; the split placement).
set -euo pipefail

# A relative CUSTODY_BIN names a file from where the script was started.
if [[ -n ${CUSTODY_BIN:-} ]]; then
	CUSTODY_BIN=$(realpath -- "$CUSTODY_BIN")
fi
cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
MIB=${BENCH_MIB:-1024}
RUNS=${BENCH_RUNS:-3}
SEED=${BENCH_SEED:-1}

log() { printf '[bench-service %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ -n ${CUSTODY_BIN:-} ]]; then
	BIN=$CUSTODY_BIN
else
	cargo build --release --locked -q
	BIN=$ROOT/target/release/custody
fi

T=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/custody-bench-service.XXXXXX")
SERVER_PID=
cleanup() {
	[[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
	rm -rf -- "$T"
}
trap cleanup EXIT

log "generating a ${MIB} MiB log corpus"
python3 scripts/gen-corpus.py "$T/logs" --size-mib "$MIB" --small-files 2000 --seed "$SEED" >&2
find "$T/logs" -type f -print0 | xargs -0 cat >/dev/null

# A CA and the server's certificate (for 127.0.0.1), a token, a webhook
# secret.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj "/CN=bench CA" -keyout "$T/ca.key" -out "$T/ca.pem" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-subj /CN=localhost -keyout "$T/server.key" -out "$T/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$T/server.ext"
openssl x509 -req -in "$T/server.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
	-days 2 -extfile "$T/server.ext" -out "$T/server.pem" 2>/dev/null
chmod 600 "$T/server.key"
(umask 077 && openssl rand -hex 32 >"$T/agent.token" && openssl rand -hex 32 >"$T/hook.secret")
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

RESULTS=$T/results.tsv
: >"$RESULTS"
secs() { awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'; }

# CPU seconds (user + system) a running process has used.
cpu_secs() {
	awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}

# The placement of the run in progress: "shared" or "split"; in "split",
# HOST and SERVER prefix the commands of each side.
PLACE=shared
HOST=()
SERVER=()

local_run() {
	local n=$1 v=$T/v-local-$1
	mkdir -p -- "$v"
	"$BIN" init --vault "$v" --key "$T/local-$n.key" --origin bench.custody.example/local >/dev/null
	local start end
	start=$(date +%s.%N)
	command time -f '%U %S' -o "$T/local-$n.time" \
		"${HOST[@]}" "$BIN" declare "BENCH-$n" --title bench --path "$T/logs" --vault "$v" --key "$T/local-$n.key" --quiet >/dev/null
	end=$(date +%s.%N)
	printf '%s\tlocal\t%s\n' "$PLACE" "$(secs "$start" "$end")" >>"$RESULTS"
	log "$PLACE local run $n: $(tail -n1 "$RESULTS" | cut -f3) s; CPU $(awk '{ print $1 + $2 }' "$T/local-$n.time") s"
	rm -rf -- "$v"
}

remote_run() {
	local n=$1 v=$T/v-remote-$1 grpc webhook
	mkdir -p -- "$v" "$T/spool-$n"
	"$BIN" init --vault "$v" --key "$T/remote-$n.key" --origin bench.custody.example/remote >/dev/null
	grpc=$(port)
	webhook=$(port)
	cat >"$T/server-$n.toml" <<EOF
vault = "$v"
key = "$T/remote-$n.key"
[serve]
listen = "127.0.0.1:$grpc"
tls_cert = "$T/server.pem"
tls_key = "$T/server.key"
webhook_listen = "127.0.0.1:$webhook"
heartbeat_secs = 0
[[serve.token]]
name = "bench-agent"
sha256 = "$("$BIN" serve hash-token <"$T/agent.token")"
role = "agent"
[[serve.webhook]]
name = "bench"
kind = "generic"
secret_file = "$T/hook.secret"
EOF
	cat >"$T/agent-$n.toml" <<EOF
[agent]
server = "https://127.0.0.1:$grpc"
ca = "$T/ca.pem"
token_file = "$T/agent.token"
spool = "$T/spool-$n"
follow_secs = 0
[[source]]
name = "logs"
kind = "files"
paths = ["$T/logs"]
EOF
	"${SERVER[@]}" "$BIN" serve --config "$T/server-$n.toml" 2>"$T/serve-$n.log" &
	SERVER_PID=$!
	for _ in $(seq 100); do
		grep -q 'gRPC on' "$T/serve-$n.log" && break
		sleep 0.1
	done
	local body ts sig
	body="{\"event\":\"triggered\",\"id\":\"$n\",\"title\":\"bench\"}"
	ts=$(date +%s)
	sig=$(printf '%s.%s' "$ts" "$body" | openssl dgst -sha256 -hmac "$(cat "$T/hook.secret")" -hex | awk '{print $NF}')
	curl -sf -X POST -H "X-Custody-Timestamp: $ts" -H "X-Custody-Signature: sha256=$sig" \
		-d "$body" "http://127.0.0.1:$webhook/webhook/bench" >/dev/null
	local start end
	local cpu0
	cpu0=$(cpu_secs "$SERVER_PID")
	start=$(date +%s.%N)
	command time -f '%U %S' -o "$T/agent-$n.time" \
		"${HOST[@]}" "$BIN" agent --once --config "$T/agent-$n.toml" 2>"$T/agent-$n.log"
	end=$(date +%s.%N)
	local agent_cpu server_cpu
	agent_cpu=$(awk '{ print $1 + $2 }' "$T/agent-$n.time")
	server_cpu=$(awk -v a="$cpu0" -v b="$(cpu_secs "$SERVER_PID")" 'BEGIN { print b - a }')
	printf '%s\tremote\t%s\n' "$PLACE" "$(secs "$start" "$end")" >>"$RESULTS"
	log "$PLACE remote run $n: $(tail -n1 "$RESULTS" | cut -f3) s ($(grep -o '[0-9]* pack(s) sent' "$T/agent-$n.log")); CPU: agent $agent_cpu s, server $server_cpu s"
	kill "$SERVER_PID"
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=
	"$BIN" verify --vault "$v" --quiet --no-record >/dev/null ||
		{ log "remote run $n: the vault does not verify"; exit 1; }
	rm -rf -- "$v" "$T/spool-$n"
}

for ((i = 1; i <= RUNS; i++)); do
	local_run "$i"
	remote_run "$i"
done
# The first two CPUs this process may use (in a container they need not be
# 0 and 1).
read -r CPU_A CPU_B < <(python3 -c 'import os; print(*sorted(os.sched_getaffinity(0))[:2])')
if [[ ${BENCH_SPLIT:-1} != 0 && -n ${CPU_B:-} ]] && command -v taskset >/dev/null; then
	PLACE=split
	HOST=(taskset -c "$CPU_A")
	SERVER=(taskset -c "$CPU_B")
	for ((i = 1; i <= RUNS; i++)); do
		local_run "$i"
		remote_run "$i"
	done
fi

python3 - "$RESULTS" "$(du -sb "$T/logs" | cut -f1)" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    place, task, secs = line.split()
    rows.setdefault((place, task), []).append(float(secs))
nbytes = int(sys.argv[2])
print()
print(f"{'placement':<10} {'task':<8} {'median s':>9} {'min s':>7} {'max s':>7} {'MiB/s':>8}")
for place in ["shared", "split"]:
    for task in ["local", "remote"]:
        r = rows.get((place, task))
        if not r:
            continue
        med = statistics.median(r)
        print(f"{place:<10} {task:<8} {med:>9.2f} {min(r):>7.2f} {max(r):>7.2f} {nbytes / 2**20 / med:>8.0f}")
for place, what in [("shared", "all cores shared by both sides"), ("split", "host on one core, server on another")]:
    if (place, "remote") in rows:
        ratio = statistics.median(rows[(place, "local")]) / statistics.median(rows[(place, "remote")])
        print(f"remote ingest / local declare throughput, {what}: {ratio:.2f}x (target 0.80x or better)")
PY
