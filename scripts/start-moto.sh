#!/usr/bin/env bash
# Starts moto's S3 server on 127.0.0.1 for the test suite, in the background,
# from a venv it creates when missing (<repo>/.venv-s3, moto[server] pinned).
# moto keeps everything in memory and does not check signatures; requests are
# signed anyway, the same way as for Ceph (scripts/start-ceph.sh).
#
# Usage: scripts/start-moto.sh        progress on stderr, the client env on stdout
#        out=$(scripts/start-moto.sh) && eval "$out"
#                                      (a bare eval "$(...)" would hide a failure)
#        or, once it has run:  . .s3-test/moto/env
#
# Environment in (all optional):
#   CUSTODY_S3_STATE      state root (default <repo>/.s3-test); this script
#                         keeps its pid file and log in $CUSTODY_S3_STATE/moto
#   MOTO_PORT             port (default 5000)
#   CUSTODY_S3_ACCESS_KEY access key used (default custody-test)
#   CUSTODY_S3_SECRET_KEY its secret (default custody-test-secret)
#
# Environment out: one line on stdout, also written to $STATE/env:
#   export CUSTODY_TEST_MOTO_ENDPOINT=http://127.0.0.1:5000
#          AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... AWS_REGION=us-east-1
#          CUSTODY_TEST_BUCKET=custody-test CUSTODY_TEST_LOCK_BUCKET=custody-lock
#
# Buckets:
#   custody-test   plain
#   custody-lock   created with Object Lock enabled (hence versioned)
#
# Behaviour worth knowing (moto 5.2.5): conditional create (If-None-Match: *)
# and If-Match are honoured on both buckets. COMPLIANCE retention can be
# shortened, and GetObjectRetention is broken: read HEAD's
# x-amz-object-lock-* headers instead.
#
# Idempotent: when moto already answers on the port, it only makes sure the
# buckets exist and prints the env; anything else on the port is an error. scripts/stop-s3.sh stops it.
#
# Measured on this machine kind (Debian 12, 2 cores), 2026-11-28:
#   venv + pip install moto[server]==5.2.5: 29 to 36 s (no pip cache: 29 s)
#   start (server answering, buckets made):  0.7 s to 1.3 s
#   second run (already up):                 0.12 s
set -euo pipefail

cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

MOTO_VERSION=5.2.5
VENV=$ROOT/.venv-s3
STATE_ROOT=${CUSTODY_S3_STATE:-$ROOT/.s3-test}
STATE=$STATE_ROOT/moto
PORT=${MOTO_PORT:-5000}
ACCESS_KEY=${CUSTODY_S3_ACCESS_KEY:-custody-test}
SECRET_KEY=${CUSTODY_S3_SECRET_KEY:-custody-test-secret}
REGION=us-east-1
BUCKET=custody-test
LOCK_BUCKET=custody-lock
ENDPOINT=http://127.0.0.1:$PORT

# Bound for the wait, in seconds.
UP_TIMEOUT=60

# ---------------------------------------------------------------- helpers
# shellcheck source=scripts/lib-s3.sh
. "$ROOT/scripts/lib-s3.sh"

# alive: whether the moto_server whose pid is in $STATE/moto.pid runs.
alive() {
	local pid
	pid=$(cat -- "$STATE/moto.pid" 2>/dev/null) || return 1
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

fail_with_log() {
	if [[ -f $STATE/moto.log ]]; then
		log "---- tail of $STATE/moto.log"
		tail -n 30 -- "$STATE/moto.log" >&2
	fi
	die "$*"
}

# ---------------------------------------------------------------- steps
setup_curl() {
	command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
	# --aws-sigv4 came with curl 7.75; Debian 12 has 7.88.
	curl --help all 2>/dev/null | grep -q -- '--aws-sigv4' ||
		die "curl $(curl --version | head -n1 | cut -d' ' -f2) has no --aws-sigv4 (needs 7.75 or newer)"
}

venv_ok() {
	[[ -x $VENV/bin/moto_server ]] &&
		[[ $("$VENV/bin/python" -c 'import moto; print(moto.__version__)' 2>/dev/null) == "$MOTO_VERSION" ]]
}

setup_venv() {
	if venv_ok; then
		log "$VENV already has moto $MOTO_VERSION"
		return 0
	fi
	rm -rf -- "$VENV"
	# The machine's python3 may be Debian's, whose venv needs python3-venv.
	if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
		rm -rf -- "$VENV"
		apt_install python3-venv python3-pip
		python3 -m venv "$VENV"
	fi
	"$VENV/bin/python" -m pip install -q --disable-pip-version-check \
		"moto[server]==$MOTO_VERSION" >&2
	venv_ok || die "moto $MOTO_VERSION did not install into $VENV"
}

start_moto() {
	local i
	# Whatever a previous run left (a server that stopped answering) goes.
	# (A stale pid file may name a pid that another program has now.)
	if alive; then
		local pid
		pid=$(cat -- "$STATE/moto.pid")
		if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q moto_server; then
			log "stopping unresponsive moto_server (pid $pid)"
			kill "$pid" 2>/dev/null || true
			sleep 1
		fi
	fi
	rm -rf -- "$STATE"
	mkdir -p -- "$STATE"
	# setsid: out of the caller's process group, so a Ctrl-C there does not
	# reach it; its stdio goes to the log, so `eval "$(...)"` returns.
	setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" \
		</dev/null >"$STATE/moto.log" 2>&1 &
	echo $! >"$STATE/moto.pid"
	for ((i = 0; i < UP_TIMEOUT * 5; i++)); do
		if curl -s -o /dev/null --max-time 2 "$ENDPOINT/"; then
			return 0
		fi
		alive || fail_with_log "moto_server exited before answering on $ENDPOINT"
		sleep 0.2
	done
	fail_with_log "moto did not answer on $ENDPOINT after ${UP_TIMEOUT} s"
}

# ---------------------------------------------------------------- main
T_START=$(now)
setup_curl

# Already running? moto answers its own /moto-api/; other S3 servers do not.
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$ENDPOINT/moto-api/" || true)
if [[ $code == 200 ]]; then
	log "moto already answers on $ENDPOINT"
	alive || log "note: it was not started from $STATE; scripts/stop-s3.sh will not stop it"
	ensure_buckets
	print_env CUSTODY_TEST_MOTO_ENDPOINT 'moto S3 server'
	exit 0
elif [[ $code != 000 ]]; then
	die "something else answers on $ENDPOINT (HTTP $code on /moto-api/); free the port or set MOTO_PORT"
fi

step "venv $VENV with moto $MOTO_VERSION" setup_venv
step "start moto on $ENDPOINT" start_moto
step "create buckets" ensure_buckets
log "total: $(since "$T_START") s"
print_env CUSTODY_TEST_MOTO_ENDPOINT 'moto S3 server'
