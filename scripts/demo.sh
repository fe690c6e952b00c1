#!/usr/bin/env bash
# Demo: create a vault, declare an incident over sample/, verify it, inspect
# it, and restore one preserved file byte for byte.
#
# Usage: scripts/demo.sh            (keeps the temp dir and prints its path)
#        KEEP=0 scripts/demo.sh     (removes the temp dir at the end)
#        CUSTODY_BIN=path           (use that binary instead of building
#                                    target/release/custody)
set -euo pipefail

# Run from the repository root whatever the caller's cwd is. `cd -P` resolves
# symlinks so that "$PWD/sample/..." names the files as custody records them.
cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

KEEP=${KEEP:-1}

section() {
	printf '\n==== %s ====\n' "$*"
}

# Print a command line as one could paste it into a shell.
show_cmd() {
	local out='$' a
	for a in "$@"; do
		if [[ $a =~ ^[A-Za-z0-9_./:=@+,%-]+$ ]]; then
			out+=" $a"
		else
			out+=" '${a//\'/\'\\\'\'}'"
		fi
	done
	printf '%s\n' "$out"
}

# Print a command, then run it.
run() {
	show_cmd "$@"
	"$@"
}

if [[ -n ${CUSTODY_BIN:-} ]]; then
	# scripts/test.sh runs the demo with the binary its tests just built.
	section "Binary (CUSTODY_BIN)"
	BIN=$CUSTODY_BIN
else
	section "Build (cargo build --release --locked)"
	cargo build --release --locked -q
	BIN=$ROOT/target/release/custody
fi
echo "binary: $BIN"

T=$(mktemp -d "${TMPDIR:-/tmp}/custody-demo.XXXXXX")
SERVER_PID=
cleanup() {
	if [[ -n $SERVER_PID ]]; then
		kill "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	if [[ "$KEEP" == 0 ]]; then
		rm -rf -- "$T"
	fi
}
trap cleanup EXIT

custody() {
	show_cmd custody "$@"
	"$BIN" "$@"
}

INCIDENT=INC-2026-001

section "1. Create a vault"
custody init --vault "$T/vault" --origin demo.custody.example/vault --key "$T/vault.key"

# Every later command that writes (a lifecycle entry, a custody event) signs
# with this key.
export CUSTODY_KEY=$T/vault.key

section "2. Declare incident $INCIDENT and preserve the sources of sample/custody.toml"
custody declare "$INCIDENT" \
	--title "Forged login tokens" \
	--severity sev1 \
	--discovered-at 2025-11-17T16:00:00+09:00 \
	--description "Login tokens signed with a stolen signing key" \
	--detection-source "customer complaints" \
	--regime kr-network-act --regime gdpr \
	--by demo-responder \
	--config sample/custody.toml \
	--vault "$T/vault"

section "3. The incident's lifecycle: an order, a hold, a late report, a fact"
custody incident order "$INCIDENT" --authority "Personal Information Protection Commission" \
	--reference PIPC-2025-118 --received-at 2025-11-20T10:00:00+09:00 \
	--source "auth servers" --from 2025-04-01T00:00:00+09:00 --until 2025-11-20T00:00:00+09:00 \
	--vault "$T/vault"
custody incident hold "$INCIDENT" --name preservation-order --reason "order PIPC-2025-118" \
	--authorisation "general counsel" --vault "$T/vault"
custody incident report "$INCIDENT" --regime kr-network-act --kind report --authority KISA \
	--filed-at 2025-11-19T21:35:00+09:00 --reference KISA-2025-7731 --channel portal --vault "$T/vault"
custody incident fact "$INCIDENT" "the stolen key also signed API tokens" \
	--learned-at 2025-11-20T09:00:00+09:00 --vault "$T/vault"
custody incident status "$INCIDENT" --vault "$T/vault" --at 2025-11-20T12:00:00+09:00

section "4. Verify the whole vault (exit 0 = no findings); the run is recorded"
custody verify --vault "$T/vault"

section "5. Show incident $INCIDENT (the access is recorded)"
custody show "$INCIDENT" --vault "$T/vault" --purpose "demo walk-through"

section "6. The log of segments and checkpoints"
custody log --vault "$T/vault"

section "7. Restore one artifact (recorded) and compare it with the original"
ARTIFACT=$ROOT/sample/logs/auth.log
printf '%s > %s\n' "$(show_cmd custody cat "$INCIDENT" "$ARTIFACT" --purpose "root-cause analysis" --vault "$T/vault")" "$T/auth.log"
"$BIN" cat "$INCIDENT" "$ARTIFACT" --purpose "root-cause analysis" --vault "$T/vault" >"$T/auth.log"
echo
echo "SHA-256 (restored, then original):"
run sha256sum "$T/auth.log" sample/logs/auth.log
if command -v b3sum >/dev/null 2>&1; then
	echo
	echo "BLAKE3 (restored, then original):"
	run b3sum "$T/auth.log" sample/logs/auth.log
else
	echo
	echo "(b3sum not installed: skipping the BLAKE3 comparison)"
fi
echo
run cmp "$T/auth.log" sample/logs/auth.log
echo "restored file is identical to the original"

section "8. An auditor's bundle (the export is recorded), checked offline against the vault id"
VAULT_ID=$("$BIN" verify --vault "$T/vault" --json --quiet --no-record | python3 -c 'import json,sys; print(json.load(sys.stdin)["vault_id"])')
custody export "$INCIDENT" --out "$T/bundle.tar" --to "external auditor" --purpose "annual audit" --vault "$T/vault"
custody verify-bundle "$T/bundle.tar" --vault-id "$VAULT_ID" --extract "$T/extracted"
run bash -c "cd '$T/extracted' && sha256sum -c SHA256SUMS"

section "9. A signed manifest (in-toto statement in DSSE), checked offline"
custody manifest "$INCIDENT" --out "$T/manifest.json" --vault "$T/vault"
custody verify-manifest "$T/manifest.json" --vault-id "$VAULT_ID"

section "10. The chain of custody as a report for a regulator (Markdown and one HTML file)"
custody report "$INCIDENT" --format md --to "Personal Information Protection Commission" \
	--purpose "order PIPC-2025-118" --out "$T/report.md" --vault "$T/vault"
custody report "$INCIDENT" --format html --out "$T/report.html" --vault "$T/vault"
run head -n 24 "$T/report.md"

section "11. The same record as CASE/UCO JSON-LD for forensic tools"
custody export-case "$INCIDENT" --out "$T/case.jsonld" --to "forensic lab" --vault "$T/vault"

section "12. Key material: fingerprints and commitments, private keys never stored in clear"
# A copy of the sample key set plus a private signing key made for the demo.
# The private key is described (public part, fingerprints, commitment) and
# its file withheld; with --seal-to age1... it would be kept, encrypted.
mkdir -p -- "$T/app-keys"
cp -- sample/keys/* "$T/app-keys/"
if command -v openssl >/dev/null 2>&1; then
	run openssl genpkey -algorithm ed25519 -out "$T/app-keys/token-signing.pem"
	cp -- "$T/app-keys/token-signing.pem" "$T/app-keys/token-signing.backup.pem"
fi
custody declare "$INCIDENT" --title "Forged login tokens" --keys "$T/app-keys" --vault "$T/vault" --quiet
# Exit 1 means findings (here: the same private key in two files, keys
# published without their private key, files changed after discovery).
custody keys "$INCIDENT" --vault "$T/vault" || true
if [[ -f "$T/app-keys/token-signing.pem" ]]; then
	custody keys inspect "$T/app-keys/token-signing.pem"
fi

section "13. The service: an incident tool's webhook declares, an agent preserves, the server re-hashes"
# Plain HTTP on loopback keeps the demo short; in production the server has
# tls_cert, tls_key and client_ca (README "The service").
if command -v openssl >/dev/null 2>&1 && command -v curl >/dev/null 2>&1; then
	free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
	GRPC=$(free_port)
	HOOK=$(free_port)
	(umask 077 && openssl rand -hex 32 >"$T/agent.token" && openssl rand -hex 32 >"$T/hook.secret")
	cat >"$T/server.toml" <<EOF
vault = "$T/vault"
[serve]
listen = "127.0.0.1:$GRPC"
plaintext = true
webhook_listen = "127.0.0.1:$HOOK"
[[serve.token]]
name = "agent-web01"
sha256 = "$("$BIN" serve hash-token <"$T/agent.token")"
role = "agent"
[[serve.webhook]]
name = "tool"
kind = "generic"
secret_file = "$T/hook.secret"
EOF
	cat >"$T/agent.toml" <<EOF
[agent]
server = "http://127.0.0.1:$GRPC"
token_file = "$T/agent.token"
spool = "$T/spool"
[[source]]
name = "web-logs"
kind = "files"
paths = ["$ROOT/sample/logs"]
EOF
	show_cmd custody serve --config "$T/server.toml"
	"$BIN" serve --config "$T/server.toml" 2>"$T/serve.log" &
	SERVER_PID=$!
	for _ in $(seq 100); do
		grep -q 'gRPC on' "$T/serve.log" && break
		sleep 0.1
	done
	BODY='{"event":"triggered","id":"4711","title":"Forged login tokens (from the incident tool)","priority":"P1"}'
	TS=$(date +%s)
	SIG=$(printf '%s.%s' "$TS" "$BODY" | openssl dgst -sha256 -hmac "$(cat "$T/hook.secret")" -hex | awk '{print $NF}')
	run curl -s -X POST -H "X-Custody-Timestamp: $TS" -H "X-Custody-Signature: sha256=$SIG" \
		-d "$BODY" "http://127.0.0.1:$HOOK/webhook/tool"
	echo
	custody agent --once --host web01 --config "$T/agent.toml"
	kill "$SERVER_PID"
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=
	custody log --vault "$T/vault" | tail -n 12
	custody verify --vault "$T/vault" --vault-id "$VAULT_ID" --no-record
else
	echo "(skipped: needs openssl and curl)"
fi

section "Done"
if [[ "$KEEP" == 0 ]]; then
	echo "temp dir $T will be removed (KEEP=0)"
else
	echo "vault, key and restored file kept in: $T"
	echo "(run with KEEP=0 to remove it at the end)"
fi
