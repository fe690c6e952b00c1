#!/usr/bin/env bash
# Full check of the project, from a fresh machine (Debian 12, root) or an
# already set-up one: installs the independent verifiers the tests use, then
# runs rustfmt, clippy, the test suite and the demo as a smoke test.
#
# Usage: scripts/test.sh               everything
#        scripts/test.sh --setup-only  only install the test dependencies
#
# Installs when missing:
#   b3sum                                  (Debian) BLAKE3 of restored files
#   golang-go golang-golang-x-mod-dev      (Debian) Go's sumdb/note and
#                                          sumdb/tlog check our checkpoints
#                                          and Merkle roots
#   .venv-test/ with securesystemslib      (PyPI) checks DSSE envelopes
#                                          (CUSTODY_PY=.venv-test/bin/python)
#   moto[server] in .venv-s3/, and Ceph    S3 servers on 127.0.0.1 for the
#   (ceph-mon ceph-osd radosgw             s3:// tests: scripts/start-moto.sh
#   ceph-common, Debian)                   and scripts/start-ceph.sh (left
#                                          running; scripts/stop-s3.sh stops)
#   chromium                               (Debian) renders `custody report
#                                          --format html` headless and dumps
#                                          the page it parsed
#   ... and case-utils                     (PyPI) case_validate checks the
#                                          CASE/UCO JSON-LD of export-case
#                                          (.venv-test/bin/case_validate)
#   ... and jwcrypto, cryptography         (PyPI) generate the key fixtures
#                                          and the service tests' TLS certificates,
#                                          and compute RFC 7638 thumbprints,
#                                          SPKI fingerprints and commitments
#   age                                    (Debian) decrypts key files sealed
#                                          with --seal-to
set -euo pipefail

cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

SETUP_ONLY=0
case "${1:-}" in
"") ;;
--setup-only) SETUP_ONLY=1 ;;
*)
	echo "usage: $0 [--setup-only]" >&2
	exit 2
	;;
esac

SECURESYSTEMSLIB_VERSION=1.6.0
CASE_UTILS_VERSION=0.18.0
JWCRYPTO_VERSION=1.5.6
VENV=$ROOT/.venv-test
TEST_LOG=$ROOT/target/test-output.log
rm -f -- "$TEST_LOG"

# ---------------------------------------------------------------- timing
TIMINGS=()
SCRIPT_START=$(date +%s.%N)
CURRENT_STEP=""
STEP_START=0

now() { date +%s.%N; }

# step NAME CMD ARGS...: run one step, record its duration.
step() {
	local name=$1
	shift
	CURRENT_STEP=$name
	STEP_START=$(now)
	printf '\n==== %s ====\n' "$name"
	"$@"
	local secs
	secs=$(awk -v a="$STEP_START" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
	TIMINGS+=("$(printf '%-28s %8ss  ok' "$name" "$secs")")
	CURRENT_STEP=""
}

summary() {
	local rc=$?
	if [[ -n "$CURRENT_STEP" ]]; then
		local secs
		secs=$(awk -v a="$STEP_START" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
		TIMINGS+=("$(printf '%-28s %8ss  FAILED (exit %d)' "$CURRENT_STEP" "$secs" "$rc")")
	fi
	printf '\n==== timings ====\n'
	local t
	for t in "${TIMINGS[@]}"; do
		printf '%s\n' "$t"
	done
	printf '%-28s %8ss\n' total "$(awk -v a="$SCRIPT_START" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')"
	if [[ -f $TEST_LOG ]]; then
		# Totals over all of cargo test's "test result:" lines.
		awk '/^test result:/ {
			for (i = 1; i <= NF; i++) {
				if ($i ~ /^passed/) p += $(i - 1)
				if ($i ~ /^failed/) f += $(i - 1)
				if ($i ~ /^ignored/) s += $(i - 1)
			}
		}
		END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$TEST_LOG"
	fi
	if [[ $rc -eq 0 ]]; then
		echo "scripts/test.sh: all steps passed"
	else
		echo "scripts/test.sh: FAILED in step: ${CURRENT_STEP:-?}" >&2
	fi
}
trap summary EXIT

# ---------------------------------------------------------------- setup
APT_UPDATED=0
apt_install() {
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "apt-get not available; please install: $*" >&2
		return 1
	fi
	local sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		sudo=(sudo)
	fi
	if [[ $APT_UPDATED -eq 0 ]]; then
		"${sudo[@]}" apt-get update -qq
		APT_UPDATED=1
	fi
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "$@"
}

GO_X_MOD=/usr/share/gocode/src/golang.org/x/mod/sumdb

setup_system_packages() {
	local missing=()
	command -v b3sum >/dev/null 2>&1 || missing+=(b3sum)
	command -v age >/dev/null 2>&1 || missing+=(age)
	command -v go >/dev/null 2>&1 || missing+=(golang-go)
	[[ -d $GO_X_MOD/note && -d $GO_X_MOD/tlog ]] || missing+=(golang-golang-x-mod-dev)
	if ((${#missing[@]})); then
		echo "installing: ${missing[*]}"
		apt_install "${missing[@]}"
	else
		echo "b3sum, age, go and golang.org/x/mod already installed"
	fi
	b3sum --version
	echo "age $(age --version)"
	go version
}

setup_chromium() {
	if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
		echo "chromium already installed"
	else
		echo "installing: chromium"
		apt_install chromium
	fi
	local bin
	bin=$(command -v chromium || command -v chromium-browser)
	"$bin" --version 2>/dev/null
}

venv_ok() {
	[[ -x $VENV/bin/python ]] &&
		"$VENV/bin/python" -c 'import securesystemslib, cryptography, jwcrypto' >/dev/null 2>&1 &&
		case_utils_ok
}

# case-utils at the pinned version, with its case_validate beside the python.
case_utils_ok() {
	[[ -x $VENV/bin/case_validate ]] &&
		"$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('case-utils') != '$CASE_UTILS_VERSION')" >/dev/null 2>&1
}

setup_python_venv() {
	if venv_ok; then
		echo "$VENV already has securesystemslib, case-utils and jwcrypto"
	else
		# An older venv (securesystemslib only) is upgraded in place.
		if ! [[ -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
			rm -rf -- "$VENV"
			# The machine's python3 may be Debian's, whose venv needs python3-venv.
			if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
				rm -rf -- "$VENV"
				apt_install python3-venv python3-pip
				python3 -m venv "$VENV"
			fi
		fi
		"$VENV/bin/python" -m pip install -q --disable-pip-version-check \
			"securesystemslib[crypto]==$SECURESYSTEMSLIB_VERSION" \
			"case-utils==$CASE_UTILS_VERSION" \
			"jwcrypto==$JWCRYPTO_VERSION"
		venv_ok
	fi
	"$VENV/bin/python" -c 'import securesystemslib; print("securesystemslib", securesystemslib.__version__)'
	"$VENV/bin/python" -c "import importlib.metadata as m; print('case-utils', m.version('case-utils'))"
}

step "install b3sum, go" setup_system_packages
step "python venv (.venv-test)" setup_python_venv
step "install chromium" setup_chromium

# S3 servers: each script is idempotent and prints the environment the
# tests need (endpoint, credentials, buckets).
# A server that does not start stops the run here, with its logs, rather
# than failing every S3 test later.
start_s3() {
	local out
	out=$(scripts/start-moto.sh) || return
	eval "$out"
	out=$(scripts/start-ceph.sh) || return
	eval "$out"
	export CUSTODY_TEST_MOTO_ENDPOINT CUSTODY_TEST_CEPH_ENDPOINT
}
step "S3 servers (moto, Ceph)" start_s3

# The interop tests fail, rather than skip, when a verifier is missing.
export CUSTODY_REQUIRE_INTEROP=1
if command -v go >/dev/null 2>&1; then
	# Go needs a build cache; give it one when HOME is unset (as in some CI).
	if [[ -z "${HOME:-}" && -z "${GOCACHE:-}" ]]; then
		export GOCACHE=$ROOT/target/go-cache
	fi
fi
export CUSTODY_PY=$VENV/bin/python
echo
echo "CUSTODY_REQUIRE_INTEROP=$CUSTODY_REQUIRE_INTEROP CUSTODY_PY=$CUSTODY_PY"

if [[ $SETUP_ONLY -eq 1 ]]; then
	exit 0
fi

# ---------------------------------------------------------------- checks
step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --all-targets --locked -- -D warnings
run_tests() {
	mkdir -p -- "$(dirname -- "$TEST_LOG")"
	{ cargo test --locked --all-targets && cargo test --locked --doc; } 2>&1 | tee "$TEST_LOG"
}
step "cargo test" run_tests
# The demo runs on the binary the tests built (a release build would take
# minutes more).
smoke_demo() { KEEP=0 CUSTODY_BIN=$ROOT/target/debug/custody scripts/demo.sh >/dev/null; }
step "demo (smoke test)" smoke_demo
