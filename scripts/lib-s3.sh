# shellcheck shell=bash
# Shared by scripts/start-ceph.sh and scripts/start-moto.sh (sourced, not
# run): logging, timed steps, Debian installs, and SigV4-signed curl requests
# as the test user. Expects ACCESS_KEY, SECRET_KEY and REGION to be set.

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
