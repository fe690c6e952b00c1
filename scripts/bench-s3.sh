#!/usr/bin/env bash
# Declare into a Ceph RADOS gateway next to the same declare on file://, in
# one run: 1 GiB of generated logs, and 20,000 small files (1 to 10 KiB).
# Prints, per task, the median wall time of BENCH_RUNS runs, the throughput,
# the ratio s3:// / file://, and the number of objects written (segments,
# packs, and one checkpoint update per segment): packs keep the object count
# near bytes / pack size, not near the file count.
#
# Starts Ceph with scripts/start-ceph.sh (idempotent; installs it if
# missing). Called by scripts/bench.sh unless BENCH_S3=0.
#
# Env: BENCH_MIB (default 1024), BENCH_RUNS (default 3), BENCH_SEED (default
#      1), BENCH_TMPDIR (default $TMPDIR or /tmp).
set -euo pipefail

cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
MIB=${BENCH_MIB:-1024}
RUNS=${BENCH_RUNS:-3}
SEED=${BENCH_SEED:-1}

log() { printf '[bench-s3 %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

cargo build --release --locked -q
BIN=$ROOT/target/release/custody

out=$(scripts/start-ceph.sh) && eval "$out"
export AWS_ENDPOINT_URL=$CUSTODY_TEST_CEPH_ENDPOINT AWS_ALLOW_HTTP=true
BUCKET=${CUSTODY_TEST_BUCKET:-custody-test}

T=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/custody-bench-s3.XXXXXX")
trap 'rm -rf -- "$T"' EXIT
export CUSTODY_KEY=$T/vault.key

log "generating a ${MIB} MiB log corpus and a 20,000-file corpus"
python3 scripts/gen-corpus.py "$T/logs" --size-mib "$MIB" --small-files 0 --seed "$SEED" >&2
python3 scripts/gen-corpus.py "$T/small" --size-mib 1 --small-files 20000 --seed "$SEED" >&2
find "$T/logs" "$T/small" -type f -print0 | xargs -0 cat >/dev/null

RESULTS=$T/results.tsv
: >"$RESULTS"
# run TASK CORPUS VAULT: init (untimed), declare (timed), count objects.
run() {
	local task=$1 corpus=$2 vault=$3 n=$4
	rm -f -- "$CUSTODY_KEY"
	"$BIN" init --vault "$vault" --origin bench.custody.example/s3 >/dev/null
	local start end
	start=$(date +%s.%N)
	"$BIN" declare "BENCH-$n" --title bench --path "$corpus" --vault "$vault" --quiet >/dev/null
	end=$(date +%s.%N)
	local counts
	counts=$("$BIN" verify --quick --json --quiet --no-record --vault "$vault" |
		python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["segments"], r["packs"])')
	local bytes
	bytes=$(du -sb "$corpus" | cut -f1)
	printf '%s\t%s\t%s\t%s\n' "$task" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" "$bytes" "$counts" >>"$RESULTS"
	log "$task run $n: $(tail -n1 "$RESULTS" | cut -f2) s"
}

for ((i = 1; i <= RUNS; i++)); do
	rm -rf -- "$T/v-logs" "$T/v-small"
	mkdir -p -- "$T/v-logs" "$T/v-small"
	nonce=$(date +%s%N)
	run logs-file "$T/logs" "$T/v-logs" "$i"
	run logs-s3 "$T/logs" "s3://$BUCKET/bench-logs-$nonce" "$i"
	run small-file "$T/small" "$T/v-small" "$i"
	run small-s3 "$T/small" "s3://$BUCKET/bench-small-$nonce" "$i"
done

python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    task, secs, nbytes, segs_packs = line.rstrip("\n").split("\t")
    segs, packs = map(int, segs_packs.split())
    r = rows.setdefault(task, {"s": [], "bytes": int(nbytes), "segs": segs, "packs": packs})
    r["s"].append(float(secs))
print()
print(f"{'task':<12} {'median s':>9} {'min s':>7} {'max s':>7} {'MiB/s':>8} {'segments':>9} {'packs':>6} {'object writes':>14}")
for task in ["logs-file", "logs-s3", "small-file", "small-s3"]:
    r = rows.get(task)
    if not r:
        continue
    med = statistics.median(r["s"])
    writes = r["segs"] + r["packs"] + r["segs"]  # + one checkpoint update per segment
    print(f"{task:<12} {med:>9.2f} {min(r['s']):>7.2f} {max(r['s']):>7.2f} "
          f"{r['bytes'] / 2**20 / med:>8.0f} {r['segs']:>9} {r['packs']:>6} {writes:>14}")
for kind in ["logs", "small"]:
    f, s = rows.get(f"{kind}-file"), rows.get(f"{kind}-s3")
    if f and s:
        print(f"{kind}: s3:// (Ceph) / file:// throughput {statistics.median(f['s']) / statistics.median(s['s']):.2f}x")
PY
