#!/usr/bin/env bash
# Starts a throwaway single-node Ceph with an S3 gateway on 127.0.0.1 for the
# test suite: one monitor, one memstore OSD (data in memory only) and one
# radosgw, with auth none between the daemons. Installs Debian's Ceph
# packages first when they are missing (root, or sudo).
#
# Usage: scripts/start-ceph.sh        progress on stderr, the client env on stdout
#        out=$(scripts/start-ceph.sh) && eval "$out"
#                                      (a bare eval "$(...)" would hide a failure)
#        or, once it has run:  . .s3-test/ceph/env
#
# Environment in (all optional):
#   CUSTODY_S3_STATE      state root (default <repo>/.s3-test); this script
#                         keeps everything in $CUSTODY_S3_STATE/ceph
#   CEPH_RGW_PORT         S3 gateway port (default 7480)
#   CEPH_MON_PORT         monitor port, msgr2 (default 3300)
#   CUSTODY_S3_ACCESS_KEY access key of the test user (default custody-test)
#   CUSTODY_S3_SECRET_KEY its secret (default custody-test-secret)
#
# Environment out: one line on stdout, also written to $STATE/env:
#   export CUSTODY_TEST_CEPH_ENDPOINT=http://127.0.0.1:7480
#          AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... AWS_REGION=us-east-1
#          CUSTODY_TEST_BUCKET=custody-test CUSTODY_TEST_LOCK_BUCKET=custody-lock
# scripts/start-moto.sh prints the same names (with CUSTODY_TEST_MOTO_ENDPOINT)
# and the same credentials, so both can be sourced together.
#
# Buckets, owned by the test user:
#   custody-test   plain
#   custody-lock   created with Object Lock enabled (hence versioned)
#
# Behaviour worth knowing (Ceph 16.2.15): conditional create (If-None-Match: *)
# is honoured on the plain bucket but ignored on the versioned lock bucket and
# on CompleteMultipartUpload; If-Match is compared with the unquoted ETag.
#
# Idempotent: when a gateway already answers on the port and accepts the test
# user's credentials, it only makes sure the buckets exist and prints the env.
# Otherwise it stops what a previous run left in the state dir, wipes it and
# starts a fresh cluster (memstore keeps nothing across restarts anyway).
# scripts/stop-s3.sh stops it and removes the state.
#
# Measured on this machine kind (Debian 12, 2 cores), 2026-11-28:
#   install (apt-get update + ceph-mon ceph-osd radosgw ceph-common): 40 s
#   start: 16 s (monitor 0.2 s, OSD up 3.7 s, gateway answering 9.3 s,
#          user 0.2 s, buckets 2.3 s: the first bucket makes the data pools)
#   second run (already up): 0.14 s; scripts/stop-s3.sh: 6 to 8 s
set -euo pipefail

cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

STATE_ROOT=${CUSTODY_S3_STATE:-$ROOT/.s3-test}
STATE=$STATE_ROOT/ceph
PORT=${CEPH_RGW_PORT:-7480}
MON_PORT=${CEPH_MON_PORT:-3300}
ACCESS_KEY=${CUSTODY_S3_ACCESS_KEY:-custody-test}
SECRET_KEY=${CUSTODY_S3_SECRET_KEY:-custody-test-secret}
REGION=us-east-1
BUCKET=custody-test
LOCK_BUCKET=custody-lock
ENDPOINT=http://127.0.0.1:$PORT
USER_ID=custody-test
CONF=$STATE/ceph.conf

# Bounds for the waits, in seconds.
OSD_UP_TIMEOUT=60
RGW_UP_TIMEOUT=120

# ---------------------------------------------------------------- helpers
# shellcheck source=scripts/lib-s3.sh
. "$ROOT/scripts/lib-s3.sh"

# ceph_cli ARGS...: the ceph CLI against our cluster, never hanging forever.
ceph_cli() {
	timeout 60 ceph -c "$CONF" --connect-timeout 30 "$@"
}

# alive NAME: whether the daemon whose pid is in $STATE/NAME.pid runs.
alive() {
	local pid
	pid=$(cat -- "$STATE/$1.pid" 2>/dev/null) || return 1
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

show_logs() {
	local f
	for f in "$STATE"/log/*.log; do
		[[ -f $f ]] || continue
		log "---- tail of $f"
		tail -n 30 -- "$f" >&2
	done
}

fail_with_logs() {
	show_logs
	die "$*"
}

# ---------------------------------------------------------------- steps
setup_curl() {
	command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
	# --aws-sigv4 came with curl 7.75; Debian 12 has 7.88.
	curl --help all 2>/dev/null | grep -q -- '--aws-sigv4' ||
		die "curl $(curl --version | head -n1 | cut -d' ' -f2) has no --aws-sigv4 (needs 7.75 or newer)"
}

install_ceph() {
	local missing=() cmd
	for cmd in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool; do
		command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
	done
	if ((${#missing[@]})); then
		log "missing: ${missing[*]}; installing Debian's Ceph"
		apt_install ceph-mon ceph-osd radosgw ceph-common
	fi
	log "$(ceph --version)"
}

# Stop whatever a previous run left in the state dir, then wipe it.
clean_state() {
	local name program pid i
	for name in rgw osd mon; do
		case $name in
		rgw) program=radosgw ;;
		*) program=ceph-$name ;;
		esac
		alive "$name" || continue
		pid=$(cat -- "$STATE/$name.pid")
		# A stale pid file may name a pid that another program has now.
		tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$program" || continue
		log "stopping leftover $program (pid $pid)"
		kill "$pid" 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		kill -9 "$pid" 2>/dev/null || true
	done
	rm -rf -- "$STATE"
	mkdir -p -- "$STATE"/{mon.a,osd.0,rgw,run,log}
}

write_conf() {
	local fsid
	fsid=$(cat /proc/sys/kernel/random/uuid)
	# Unix socket paths are limited to 107 bytes.
	((${#STATE} + 30 < 107)) ||
		die "state dir path too long for Ceph's admin sockets: $STATE (set CUSTODY_S3_STATE)"
	cat >"$CONF" <<EOF
# Written by scripts/start-ceph.sh: throwaway single-node test cluster.
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$MON_PORT
mon initial members = a
public network = 127.0.0.0/8

# No cephx: a test cluster on loopback. The gateway still needs the monitor
# connection mode spelled out, or it cannot talk to the monitor.
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
ms mon client mode = crc secure

# One OSD: pools of size one, few placement groups, no autoscaler and no
# warnings about the lack of redundancy.
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
# The monitor refuses to start when its disk has under 5% free, even though
# this cluster keeps its objects in memory and its monitor store is a few
# MiB: on a machine with a big, busy disk that stopped the test suite.
mon data avail crit = 0
mon data avail warn = 0

# Objects live in memory (up to 4 GiB), nothing on disk.
osd objectstore = memstore
memstore device bytes = 4294967296

# Everything under the state dir.
run dir = $STATE/run
admin socket = $STATE/run/\$name.asok
log file = $STATE/log/\$name.log
keyring = $STATE/keyring

[mon.a]
mon data = $STATE/mon.a

[osd.0]
osd data = $STATE/osd.0

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$PORT
rgw data = $STATE/rgw
rgw dns name = localhost
EOF
	touch -- "$STATE/keyring"
	echo "$fsid" >"$STATE/fsid"
}

# The daemons fork into the background; their stdio must not hold on to
# ours, or `eval "$(scripts/start-ceph.sh)"` would never return.
start_mon() {
	monmaptool --create --fsid "$(cat -- "$STATE/fsid")" \
		--addv a "[v2:127.0.0.1:$MON_PORT]" "$STATE/monmap" >/dev/null
	ceph-mon -c "$CONF" -i a --mkfs --monmap "$STATE/monmap" \
		</dev/null >>"$STATE/log/mkfs.log" 2>&1 ||
		fail_with_logs "ceph-mon --mkfs failed"
	ceph-mon -c "$CONF" -i a --pid-file "$STATE/mon.pid" \
		</dev/null >>"$STATE/log/daemons.log" 2>&1 ||
		fail_with_logs "ceph-mon did not start (is port $MON_PORT free? set CEPH_MON_PORT)"
}

start_osd() {
	local uuid i
	uuid=$(cat /proc/sys/kernel/random/uuid)
	ceph_cli osd new "$uuid" >/dev/null 2>>"$STATE/log/mkfs.log" ||
		fail_with_logs "the monitor did not answer 'ceph osd new'"
	ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$uuid" \
		</dev/null >>"$STATE/log/mkfs.log" 2>&1 ||
		fail_with_logs "ceph-osd --mkfs failed"
	ceph-osd -c "$CONF" -i 0 --pid-file "$STATE/osd.pid" \
		</dev/null >>"$STATE/log/daemons.log" 2>&1 ||
		fail_with_logs "ceph-osd did not start"
	for ((i = 0; i < OSD_UP_TIMEOUT; i++)); do
		if ceph_cli osd stat 2>/dev/null | grep -q '1 up'; then
			return 0
		fi
		sleep 1
	done
	fail_with_logs "the OSD was not up after ${OSD_UP_TIMEOUT} s"
}

start_rgw() {
	local i
	radosgw -c "$CONF" -n client.rgw.a --pid-file "$STATE/rgw.pid" \
		</dev/null >>"$STATE/log/daemons.log" 2>&1 ||
		fail_with_logs "radosgw did not start"
	# On its first start the gateway creates its pools; that takes a while.
	for ((i = 0; i < RGW_UP_TIMEOUT; i++)); do
		if curl -s -o /dev/null --max-time 2 "$ENDPOINT/"; then
			return 0
		fi
		# Give the pid file a moment to appear before calling it dead.
		if ((i > 5)) && ! alive rgw; then
			fail_with_logs "radosgw exited before answering on $ENDPOINT"
		fi
		sleep 1
	done
	fail_with_logs "the gateway did not answer on $ENDPOINT after ${RGW_UP_TIMEOUT} s"
}

create_user() {
	if timeout 60 radosgw-admin -c "$CONF" user info --uid="$USER_ID" >/dev/null 2>&1; then
		return 0
	fi
	timeout 60 radosgw-admin -c "$CONF" user create --uid="$USER_ID" \
		--display-name="custody test user" \
		--access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" \
		>/dev/null 2>>"$STATE/log/mkfs.log" ||
		fail_with_logs "radosgw-admin user create failed"
}

# ---------------------------------------------------------------- main
T_START=$(now)
setup_curl

# Already running? Anonymous requests get an answer from any S3 server; a
# signed ListBuckets that names the test user as owner comes only from a
# gateway that knows it (moto, which takes any credentials, names another).
code=$(http_code "$ENDPOINT/")
if [[ $code == 200 && $(s3 --max-time 10 "$ENDPOINT/" 2>/dev/null || true) == *"<ID>$USER_ID</ID>"* ]]; then
	log "a gateway already answers on $ENDPOINT with the test user"
	ensure_buckets
	print_env CUSTODY_TEST_CEPH_ENDPOINT 'Ceph S3 gateway'
	exit 0
elif [[ $code != 000 ]]; then
	die "something else answers on $ENDPOINT (HTTP $code to the test user); free the port or set CEPH_RGW_PORT"
fi

step "install Ceph (if missing)" install_ceph
step "clean state dir $STATE" clean_state
write_conf
step "start monitor" start_mon
step "start OSD (memstore)" start_osd
step "start gateway on $ENDPOINT" start_rgw
step "create test user $USER_ID" create_user
step "create buckets" ensure_buckets
log "total: $(since "$T_START") s"
print_env CUSTODY_TEST_CEPH_ENDPOINT 'Ceph S3 gateway'
