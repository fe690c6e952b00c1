# shellcheck shell=bash
# Shared by scripts/start-ceph.sh and scripts/start-moto.sh (sourced, not
# run): logging, timed steps, Debian installs, and SigV4-signed curl requests
# as the test user, buckets and the env line. Expects ACCESS_KEY, SECRET_KEY
# and REGION (and, for the bucket and env helpers, ENDPOINT, BUCKET,
# LOCK_BUCKET and STATE) to be set.

# Progress goes to stderr: stdout carries only the env line.
log() { printf '%s\n' "$*" >&2; }
die() {
	log "${0##*/}: error: $*"
	exit 1
}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# step NAME CMD ARGS...: run one step and say how long it took.
step() {
	local name=$1 t0
	shift
	t0=$(now)
	log "==== $name"
	"$@"
	log "     $name: $(since "$t0") s"
}

APT_UPDATED=0
apt_install() {
	if ! command -v apt-get >/dev/null 2>&1; then
		die "apt-get not available; please install: $*"
	fi
	local sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		sudo=(sudo)
	fi
	if [[ $APT_UPDATED -eq 0 ]]; then
		"${sudo[@]}" apt-get update -qq >&2
		APT_UPDATED=1
	fi
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "$@" >&2
}

# s3 CURL-ARGS...: a bodiless curl request signed with SigV4 as the test
# user. curl 7.88 does not send x-amz-content-sha256, which Ceph's gateway
# requires; given the header, curl signs with its value as the payload hash.
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
s3() {
	curl -sS --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
		-H "x-amz-content-sha256: $EMPTY_SHA256" "$@"
}

# http_code CURL-ARGS...: the status of a signed request, 000 if no answer.
http_code() {
	s3 -o /dev/null -w '%{http_code}' --max-time 10 "$@" 2>/dev/null || true
}

# ensure_bucket NAME [HEADER]: create the bucket unless it exists already.
# Expects ENDPOINT. A fresh Ceph gateway makes its data pools on the first
# bucket, which can take longer than one request's timeout on a loaded
# machine: no answer (000) and server errors (5xx) are retried for up to
# BUCKET_TIMEOUT seconds (default 120), each try allowed 30 s. A PUT that
# timed out may still have made the bucket, so each try starts with HEAD.
ensure_bucket() {
	local bucket=$1 code deadline
	shift
	deadline=$(($(date +%s) + ${BUCKET_TIMEOUT:-120}))
	while :; do
		code=$(http_code --max-time 30 -I "$ENDPOINT/$bucket")
		if [[ $code == 404 ]]; then
			code=$(http_code --max-time 30 -X PUT "$@" "$ENDPOINT/$bucket")
			# 409: made by the PUT of an earlier try that timed out.
			[[ $code == 409 ]] && continue
		fi
		case $code in
		200) return 0 ;;
		000 | 5??) ;;
		*) die "bucket $bucket: HTTP $code" ;;
		esac
		(($(date +%s) < deadline)) ||
			die "bucket $bucket: no success within ${BUCKET_TIMEOUT:-120} s (last HTTP $code)"
		log "bucket $bucket: HTTP $code, trying again"
		sleep 2
	done
}

# ensure_buckets: the plain test bucket BUCKET and LOCK_BUCKET with Object
# Lock enabled (hence versioned).
ensure_buckets() {
	ensure_bucket "$BUCKET"
	ensure_bucket "$LOCK_BUCKET" -H 'x-amz-bucket-object-lock-enabled: true'
	# A lock bucket made by hand without Object Lock would fail the tests
	# in confusing ways: check it. (The "=" matters: curl 7.88 signs a bare
	# "?object-lock" differently from a checking server.)
	# (Read whole before grep: with pipefail, grep -q quitting early could
	# fail the pipe.)
	local conf
	conf=$(s3 --max-time 30 "$ENDPOINT/$LOCK_BUCKET?object-lock=" 2>/dev/null || true)
	[[ $conf == *'<ObjectLockEnabled>Enabled</ObjectLockEnabled>'* ]] ||
		die "bucket $LOCK_BUCKET exists without Object Lock; run scripts/stop-s3.sh"
}

# print_env VAR WHAT: the env line for the tests (VAR names the endpoint),
# on stdout and in STATE/env.
print_env() {
	local var=$1 what=$2 line
	# %q: values the caller chose stay one word each when eval'ed.
	line=$(printf 'export %s=%q AWS_ACCESS_KEY_ID=%q AWS_SECRET_ACCESS_KEY=%q AWS_REGION=%q CUSTODY_TEST_BUCKET=%q CUSTODY_TEST_LOCK_BUCKET=%q' \
		"$var" "$ENDPOINT" "$ACCESS_KEY" "$SECRET_KEY" "$REGION" "$BUCKET" "$LOCK_BUCKET")
	mkdir -p -- "$STATE"
	printf '%s\n' "$line" >"$STATE/env"
	log "$what ready on $ENDPOINT (env also in $STATE/env)"
	printf '%s\n' "$line"
}
