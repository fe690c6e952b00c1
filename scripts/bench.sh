#!/usr/bin/env bash
# Throughput and memory benchmark of custody against plain pipelines, in one
# run, on a generated log corpus (warm page cache: dropping it is not
# possible here, so every task reads warm data after one warm-up read).
#
# Tasks, BENCH_RUNS repetitions each, interleaved round by round:
#   declare      custody init (untimed) + custody declare --path CORPUS into a
#                fresh vault
#   verify       custody verify (full) of that vault
#   verify-quick custody verify --quick
#   tar-zstd     tar -cf - -C CORPUS . | zstd -3 -T2 | b3sum
#   zstd-d-b3sum zstd -d < CORPUS.tar.zst | b3sum (made once, untimed): the
#                physical reference for verify
#   same-work    zstd -d < CORPUS.tar.zst | tee FIFO | b3sum, with
#                openssl dgst -sha256 FIFO alongside: verify's mandatory work on
#                the plaintext (decompress, SHA-256, BLAKE3) with standard
#                tools, SHA-256 by the fastest tool here (OpenSSL, SHA-NI where
#                the CPU has it; coreutils sha256sum has none). verify does
#                more (a second BLAKE3 per chunk, and every pack) but copies
#                less: tee and the pipes copy the plaintext several times
#                (see its CPU seconds)
#   b3sum        find CORPUS -type f -print0 | xargs -0 cat | b3sum
#   sha256sum    find CORPUS -type f -print0 | xargs -0 cat | sha256sum
#
# Env: BENCH_MIB (corpus size, default 1024), BENCH_RUNS (default 3),
#      BENCH_SMALL_FILES (default 2000), BENCH_SEED (default 1),
#      BENCH_TMPDIR (where the corpus and vault go; default $TMPDIR or /tmp).
# Output: a table on stdout and target/bench/results.json; then, unless
# BENCH_S3=0, scripts/bench-s3.sh (declare into Ceph next to file://).
set -euo pipefail

cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

MIB=${BENCH_MIB:-1024}
RUNS=${BENCH_RUNS:-3}
SMALL=${BENCH_SMALL_FILES:-2000}
SEED=${BENCH_SEED:-1}
OUT_JSON=$ROOT/target/bench/results.json

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- tools
APT_UPDATED=0
apt_install() {
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

missing=()
[[ -x /usr/bin/time ]] || missing+=(time)
command -v zstd >/dev/null 2>&1 || missing+=(zstd)
command -v b3sum >/dev/null 2>&1 || missing+=(b3sum)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if ((${#missing[@]})); then
	log "installing: ${missing[*]}"
	apt_install "${missing[@]}"
fi
command -v python3 >/dev/null 2>&1 || {
	echo "bench: python3 is needed" >&2
	exit 2
}

log "building release binary"
cargo build --release --locked -q
BIN=$ROOT/target/release/custody

T=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/custody-bench.XXXXXX")
trap 'rm -rf -- "$T"' EXIT
C=$T/corpus
V=$T/vault
K=$T/vault.key
RESULTS=$T/results.tsv
: >"$RESULTS"

# ---------------------------------------------------------------- corpus
log "generating a ${MIB} MiB corpus with ${SMALL} small files (seed ${SEED})"
python3 scripts/gen-corpus.py "$C" --size-mib "$MIB" --small-files "$SMALL" --seed "$SEED"
BYTES=$(find "$C" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", s }')
FILES=$(find "$C" -type f | wc -l)
log "corpus: $BYTES bytes in $FILES files"

log "warm-up read of the corpus"
find "$C" -type f -print0 | xargs -0 cat >/dev/null

# ---------------------------------------------------------------- measuring
# measure TASK RUN CMD...: time CMD (wall seconds, peak RSS KiB, CPU seconds
# user + system), append a row. For a pipeline run through bash -c, the peak
# RSS is that of its largest process and the CPU time that of all of them.
measure() {
	local task=$1 run=$2
	shift 2
	if ! /usr/bin/time -f '%e %M %U %S' -o "$T/time.out" "$@" >"$T/task.out"; then
		echo "bench: task '$task' (run $run) failed:" >&2
		tail -n 20 "$T/task.out" >&2 || true
		exit 1
	fi
	local secs rss user sys cpu
	read -r secs rss user sys <"$T/time.out"
	cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
	printf '%s\t%s\t%s\t%s\t%s\n' "$task" "$run" "$secs" "$rss" "$cpu" >>"$RESULTS"
	log "$(printf '%-14s run %d: %7.2f s  %6.2f CPU s  %8.1f MiB peak RSS' "$task" "$run" "$secs" "$cpu" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')")"
}

log "compressing the corpus once for the zstd -d references"
tar -cf - -C "$C" . | zstd -3 -T2 -q -o "$T/corpus.tar.zst"
mkfifo -- "$T/sha256.fifo"

VAULT_BYTES=0
for ((run = 1; run <= RUNS; run++)); do
	rm -rf -- "$V" "$K"
	"$BIN" init --vault "$V" --origin bench.custody.example/vault --key "$K" >/dev/null
	measure declare "$run" "$BIN" declare "BENCH-$run" --title "benchmark run $run" \
		--path "$C" --vault "$V" --key "$K" --quiet
	VAULT_BYTES=$(du -sb "$V" | cut -f1)
	measure verify "$run" "$BIN" verify --vault "$V"
	measure verify-quick "$run" "$BIN" verify --quick --vault "$V"
	# shellcheck disable=SC2016 # $1 expands inside bash -c
	measure tar-zstd-b3sum "$run" bash -c \
		'set -o pipefail; tar -cf - -C "$1" . | zstd -3 -T2 -q | b3sum' _ "$C"
	# shellcheck disable=SC2016 # $1 expands inside bash -c
	measure zstd-d-b3sum "$run" bash -c \
		'set -o pipefail; zstd -d -q -c "$1" | b3sum' _ "$T/corpus.tar.zst"
	# openssl reads a FIFO as a job of the timed shell, which waits for it,
	# so its time counts (a process substitution would not be waited for).
	# shellcheck disable=SC2016 # $1..$3 expand inside bash -c
	measure same-work "$run" bash -c \
		'set -o pipefail; openssl dgst -sha256 -out "$3" "$2" &
		zstd -d -q -c "$1" | tee -- "$2" | b3sum || { kill "$!"; exit 1; }
		wait "$!"' _ "$T/corpus.tar.zst" "$T/sha256.fifo" "$T/same-work.sha256"
	# shellcheck disable=SC2016 # $1 expands inside bash -c
	measure b3sum "$run" bash -c \
		'set -o pipefail; find "$1" -type f -print0 | xargs -0 cat | b3sum' _ "$C"
	# shellcheck disable=SC2016 # $1 expands inside bash -c
	measure sha256sum "$run" bash -c \
		'set -o pipefail; find "$1" -type f -print0 | xargs -0 cat | sha256sum' _ "$C"
done

# ---------------------------------------------------------------- report
mkdir -p -- "$(dirname -- "$OUT_JSON")"
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown)

python3 - "$RESULTS" "$OUT_JSON" "$BYTES" "$FILES" "$SMALL" "$SEED" "$RUNS" "$VAULT_BYTES" \
	"$COMMIT" "$CPU" "$(nproc)" "$(uname -r)" <<'PY'
import json, statistics, sys, time

(results, out_json, nbytes, files, small, seed, runs, vault_bytes,
 commit, cpu, nproc, kernel) = sys.argv[1:]
nbytes, files, small, seed, runs, vault_bytes = map(int, (nbytes, files, small, seed, runs, vault_bytes))
mib = nbytes / (1024 * 1024)

order = ["declare", "verify", "verify-quick", "tar-zstd-b3sum", "zstd-d-b3sum", "same-work",
         "b3sum", "sha256sum"]
commands = {
    "declare": "custody declare ID --path CORPUS (fresh vault)",
    "verify": "custody verify",
    "verify-quick": "custody verify --quick",
    "tar-zstd-b3sum": "tar -cf - -C CORPUS . | zstd -3 -T2 | b3sum",
    "zstd-d-b3sum": "zstd -d < CORPUS.tar.zst | b3sum",
    "same-work": "zstd -d < CORPUS.tar.zst | tee FIFO | b3sum; openssl dgst -sha256 FIFO",
    "b3sum": "find CORPUS -type f -print0 | xargs -0 cat | b3sum",
    "sha256sum": "find CORPUS -type f -print0 | xargs -0 cat | sha256sum",
}
rows = {}
for line in open(results):
    task, _run, secs, rss, cpu_s = line.rstrip("\n").split("\t")
    r = rows.setdefault(task, {"seconds": [], "rss_kib": [], "cpu_seconds": []})
    r["seconds"].append(float(secs))
    r["rss_kib"].append(int(rss))
    r["cpu_seconds"].append(float(cpu_s))

tasks = []
for task in order:
    r = rows.get(task)
    if not r:
        continue
    med = statistics.median(r["seconds"])
    tasks.append({
        "task": task,
        "command": commands[task],
        "seconds": r["seconds"],
        "median_s": med,
        "min_s": min(r["seconds"]),
        "max_s": max(r["seconds"]),
        "mib_per_s": round(mib / med, 1) if med > 0 else None,
        "peak_rss_mib": round(max(r["rss_kib"]) / 1024, 1),
        "cpu_seconds": r["cpu_seconds"],
        "median_cpu_s": statistics.median(r["cpu_seconds"]),
    })
by = {t["task"]: t for t in tasks}
ratio = None
if "declare" in by and "tar-zstd-b3sum" in by and by["declare"]["median_s"] > 0:
    ratio = by["tar-zstd-b3sum"]["median_s"] / by["declare"]["median_s"]
declare_rss = by["declare"]["peak_rss_mib"] if "declare" in by else None
def verify_vs(ref):
    """Throughput of verify relative to the reference row `ref` (above 1:
    verify is faster)."""
    if "verify" in by and ref in by and by["verify"]["median_s"] > 0:
        return by[ref]["median_s"] / by["verify"]["median_s"]
    return None
verify_ratio = verify_vs("zstd-d-b3sum")
same_work_ratio = verify_vs("same-work")

print()
print(f"corpus: {mib:.1f} MiB in {files} files ({small} small), {runs} runs per task, warm page cache")
print(f"machine: {nproc} cores, {cpu}, kernel {kernel}; custody at {commit}")
print()
hdr = (f"{'task':<16} {'median s':>9} {'min s':>8} {'max s':>8} {'MiB/s':>8} {'CPU s':>7} "
       f"{'peak RSS MiB':>13}")
print(hdr)
print("-" * len(hdr))
for t in tasks:
    print(f"{t['task']:<16} {t['median_s']:>9.2f} {t['min_s']:>8.2f} {t['max_s']:>8.2f} "
          f"{t['mib_per_s']:>8.0f} {t['median_cpu_s']:>7.2f} {t['peak_rss_mib']:>13.1f}")
print()
if vault_bytes:
    print(f"vault size after one declare: {vault_bytes / 2**20:.1f} MiB "
          f"({nbytes / vault_bytes:.1f}x smaller than the corpus)")
if ratio is not None:
    print(f"custody declare / (tar | zstd -3 -T2 | b3sum) throughput: {ratio:.2f}x")
if verify_ratio is not None:
    print(f"custody verify / (zstd -d | b3sum) throughput: {verify_ratio:.2f}x "
          f"(verify takes {1 / verify_ratio:.2f}x its time)")
if same_work_ratio is not None:
    print(f"custody verify / same-work (zstd -d, openssl SHA-256, b3sum) throughput: "
          f"{same_work_ratio:.2f}x (verify takes {1 / same_work_ratio:.2f}x its time)")
if declare_rss is not None:
    verdict = "yes" if declare_rss < 256 else "NO"
    print(f"declare peak RSS < 256 MiB: {verdict} ({declare_rss:.1f} MiB)")

doc = {
    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "commit": commit,
    "machine": {"nproc": int(nproc), "cpu": cpu, "kernel": kernel},
    "corpus": {"bytes": nbytes, "mib": round(mib, 1), "files": files, "small_files": small,
               "seed": seed, "generator": "scripts/gen-corpus.py"},
    "cache": "warm",
    "runs": runs,
    "tasks": tasks,
    "vault_bytes_after_declare": vault_bytes,
    "declare_vs_tar_zstd_b3sum_throughput": None if ratio is None else round(ratio, 3),
    "verify_vs_zstd_d_b3sum_throughput": None if verify_ratio is None else round(verify_ratio, 3),
    "verify_vs_same_work_throughput": None if same_work_ratio is None else round(same_work_ratio, 3),
    "declare_peak_rss_mib": declare_rss,
    "declare_peak_rss_under_256_mib": None if declare_rss is None else declare_rss < 256,
}
with open(out_json, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
print(f"\nresults written to {out_json}")
PY

# verify-proof on a synthetic log of one million segments (criterion).
log "criterion: verify_proof on a 1M-segment log"
cargo bench --locked --bench proof 2>/dev/null | grep -E "^verify_proof|time:" || {
	echo "bench: the criterion benchmark failed" >&2
	exit 1
}

# Declare into a Ceph gateway next to file:// (FORMAT.md §11.1), unless
# BENCH_S3=0.
if [[ "${BENCH_S3:-1}" != 0 ]]; then
	log "s3:// (Ceph) next to file://"
	scripts/bench-s3.sh
fi
