#!/usr/bin/env bash
# Stops the test S3 servers that scripts/start-ceph.sh and scripts/start-moto.sh
# started, by the pid files in their state dirs, and removes the state dirs
# (Ceph's memstore and moto keep their data in memory: nothing is lost that a
# restart would keep). Safe to run when nothing runs. Keeps the moto venv
# (<repo>/.venv-s3) and the installed packages.
#
# Usage: scripts/stop-s3.sh
#
# Environment in (optional):
#   CUSTODY_S3_STATE   state root (default <repo>/.s3-test), as for the
#                      start scripts: $CUSTODY_S3_STATE/ceph and .../moto
set -euo pipefail

cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

STATE_ROOT=${CUSTODY_S3_STATE:-$ROOT/.s3-test}

# Seconds a server gets to exit after SIGTERM before SIGKILL.
STOP_TIMEOUT=15

log() { printf '%s\n' "$*" >&2; }

# stop_pid FILE PROGRAM: stop the process whose pid is in FILE, provided it
# still is PROGRAM (a stale pid file may name a pid that was reused since).
stop_pid() {
	local file=$1 program=$2 pid i
	pid=$(cat -- "$file" 2>/dev/null) || return 0
	if ! [[ $pid =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null; then
		log "$program: not running (stale $file)"
		return 0
	fi
	if ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$program"; then
		log "$program: pid $pid is now another program; leaving it alone"
		return 0
	fi
	log "$program: stopping pid $pid"
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.2
	done
	log "$program: still running after ${STOP_TIMEOUT} s; killing it"
	kill -KILL "$pid" 2>/dev/null || true
	for ((i = 0; i < 25; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.2
	done
	log "$program: pid $pid did not exit"
	return 1
}

rc=0

# Ceph: the gateway first, the monitor last.
stop_pid "$STATE_ROOT/ceph/rgw.pid" radosgw || rc=1
stop_pid "$STATE_ROOT/ceph/osd.pid" ceph-osd || rc=1
stop_pid "$STATE_ROOT/ceph/mon.pid" ceph-mon || rc=1
stop_pid "$STATE_ROOT/moto/moto.pid" moto_server || rc=1

if [[ $rc -ne 0 ]]; then
	log "stop-s3.sh: some servers did not stop; state kept in $STATE_ROOT"
	exit 1
fi

rm -rf -- "$STATE_ROOT/ceph" "$STATE_ROOT/moto"
# The root too, when nothing else was put there.
rmdir -- "$STATE_ROOT" 2>/dev/null || true
log "test S3 servers stopped; state removed"
