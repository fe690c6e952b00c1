#!/usr/bin/env bash
# Throughput and memory benchmark of custody against plain pipelines and two
# backup tools (restic 0.14, borg 1.2), in one run, on generated log corpora
# (scripts/gen-corpus.py). Warm page cache: dropping it is not possible here,
# so every task reads warm data: its input is read once, untimed, right
# before it (borg drops what it reads from the cache, POSIX_FADV_DONTNEED).
#
# Every task runs BENCH_RUNS times, interleaved round by round. Each round
# starts from a fresh copy WORK of the base corpus (so the base corpus never
# changes), a fresh vault and fresh repositories (init is untimed). Stored
# sizes are those of the last round.
#
# Main corpus (BENCH_MIB, live and rotated logs plus small files):
#   declare          custody declare ID --path WORK into a fresh vault
#   restic-backup    restic backup WORK into a fresh repository (version 2,
#                    compression auto, local disk, fixed password)
#   borg-create      borg create --compression zstd,3 into a fresh repository
#                    (--encryption=none, local disk)
#   tar-zstd-b3sum   tar -cf - -C CORPUS . | zstd -3 -T2 | b3sum
#   cp-sync          cp -r CORPUS DEST && sync: the physical write reference
#   verify           custody verify (full) of the vault after that declare
#   verify-quick     custody verify --quick
#   restic-check     restic check --read-data of the repository after one backup
#   borg-check       borg check --verify-data of the repository after one create
#   restic-open      restic cat config: what every restic command pays first
#                    (opening the repository, deriving the key from the password)
#   zstd-d-b3sum     zstd -d < CORPUS.tar.zst | b3sum (made once, untimed): the
#                    physical reference for verify
#   same-work        zstd -d < CORPUS.tar.zst | tee FIFO | b3sum, with
#                    openssl dgst -sha256 FIFO alongside: verify's mandatory work on
#                    the plaintext (decompress, SHA-256, BLAKE3) with standard
#                    tools, SHA-256 by the fastest tool here (OpenSSL, SHA-NI where
#                    the CPU has it; coreutils sha256sum has none). verify does
#                    more (a second BLAKE3 per chunk, and every pack) but copies
#                    less: tee and the pipes copy the plaintext several times
#                    (see its CPU seconds)
#   b3sum            find CORPUS -type f -print0 | xargs -0 cat | b3sum
#   sha256sum        find CORPUS -type f -print0 | xargs -0 cat | sha256sum
#   redeclare        custody declare, same incident id, same vault, unchanged WORK
#   restic-rebackup  restic backup again, same repository, unchanged WORK
#   borg-recreate    borg create of a second archive, unchanged WORK
#   declare-append   after gen-corpus.py --append-percent BENCH_APPEND_PERCENT
#                    WORK (untimed; appends to the live large logs): custody
#                    declare again into the same vault
#   restic-append    restic backup again after the append
#   borg-append      borg create of a third archive after the append
#
# Small set (BENCH_SMALL_FILES files of 1 to 10 KiB, gen-corpus.py
# --small-only) and "joined": the same bytes concatenated into one file:
#   small-declare, small-restic, small-borg, small-tar-zstd, and the
#   joined-* counterparts: custody declare, restic backup, borg create (fresh
#   vault or repository each) and tar | zstd -3 -T2 | b3sum. Per extra small
#   file: (median small-X - median joined-X) / BENCH_SMALL_FILES, in µs.
#   small-verify, small-restic-check, small-borg-check: custody verify,
#   restic check --read-data and borg check --verify-data of what the small
#   set's backups stored (memory grows with the files a store holds; raise
#   BENCH_SMALL_FILES to see how).
#
# One large file (BENCH_BIG_MIB, gen-corpus.py --single-file):
#   big-declare      custody declare of that one file into a fresh vault
#   big-verify       custody verify of that vault
#
# Stored bytes (du -sb): the vault and both repositories after the first
# backup, after the unchanged re-run and after the append; the small-set
# stores; the one-file vault.
#
# Env: BENCH_MIB (main corpus size, default 1024), BENCH_RUNS (default 3),
#      BENCH_CORPUS_SMALL_FILES (small files inside the main corpus, default
#      2000), BENCH_SMALL_FILES (files in the small set, default 20000),
#      BENCH_BIG_MIB (the one large file, default BENCH_MIB),
#      BENCH_APPEND_PERCENT (default 1), BENCH_SEED (default 1),
#      BENCH_TMPDIR (where corpora, vaults and repositories go; default
#      $TMPDIR or /tmp), CUSTODY_BIN (a custody binary to use instead of
#      building target/release/custody), BENCH_CRITERION=0 (skip the criterion
#      verify-proof benchmark), BENCH_S3=0 (skip scripts/bench-s3.sh),
#      BENCH_SERVICE=0 (skip scripts/bench-service.sh).
# Installs with apt-get what is missing: time, zstd, b3sum, openssl, restic,
# borgbackup.
# Output: a table and ratios on stdout and target/bench/results.json; then the
# criterion verify-proof benchmark and, unless BENCH_S3=0, scripts/bench-s3.sh
# (declare into Ceph next to file://), and unless BENCH_SERVICE=0,
# scripts/bench-service.sh (remote ingest through the service next to local
# declare).
set -euo pipefail

cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

MIB=${BENCH_MIB:-1024}
RUNS=${BENCH_RUNS:-3}
CORPUS_SMALL=${BENCH_CORPUS_SMALL_FILES:-2000}
SMALL=${BENCH_SMALL_FILES:-20000}
BIG_MIB=${BENCH_BIG_MIB:-$MIB}
APPEND_PERCENT=${BENCH_APPEND_PERCENT:-1}
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
		"${sudo[@]}" apt-get update -qq >&2
		APT_UPDATED=1
	fi
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "$@" >&2
}

missing=()
[[ -x /usr/bin/time ]] || missing+=(time)
command -v zstd >/dev/null 2>&1 || missing+=(zstd)
command -v b3sum >/dev/null 2>&1 || missing+=(b3sum)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v restic >/dev/null 2>&1 || missing+=(restic)
command -v borg >/dev/null 2>&1 || missing+=(borgbackup)
if ((${#missing[@]})); then
	log "installing: ${missing[*]}"
	apt_install "${missing[@]}"
fi
command -v python3 >/dev/null 2>&1 || {
	echo "bench: python3 is needed" >&2
	exit 2
}

if [[ -n ${CUSTODY_BIN:-} ]]; then
	BIN=$(realpath -- "$CUSTODY_BIN")
	log "using $BIN (CUSTODY_BIN, not rebuilt)"
else
	log "building release binary"
	cargo build --release --locked -q
	BIN=$ROOT/target/release/custody
fi

T=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/custody-bench.XXXXXX")
cleanup() {
	chmod -R u+w -- "$T" 2>/dev/null || true # read-only files of held packs
	rm -rf -- "$T"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

C=$T/corpus     # the base corpus, never changed
W=$T/work       # a fresh copy of it per round: declared, backed up, appended to
S=$T/small      # the small set
J=$T/joined     # the small set's bytes in one file, joined/all.log
B=$T/big        # one large file, big/all.log
K=$T/vault.key  # one signing key for every vault
RESULTS=$T/results.tsv
META=$T/meta.tsv
: >"$RESULTS"
: >"$META"
mkdir -p -- "$T/tmp"

# Peers: state under $T, removed with it. restic 0.14 cannot make a
# repository without a password (and always encrypts): a fixed one.
export TMPDIR=$T/tmp # restic check's temporary cache goes here
export RESTIC_PASSWORD=custody-bench
export RESTIC_CACHE_DIR=$T/restic-cache
export BORG_BASE_DIR=$T/borg-base # borg's cache (files cache), config, security dirs
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

# meta KEY VALUE: a fact for the report (a later line for the same key wins).
meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }
# dir_bytes DIR: bytes in the regular files under DIR.
dir_bytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", s }'; }
# stored_bytes DIR: bytes a vault or repository takes on disk, as du sees them.
stored_bytes() { du -sb -- "$1" | cut -f1; }

# ---------------------------------------------------------------- corpora
log "generating a ${MIB} MiB corpus with ${CORPUS_SMALL} small files (seed ${SEED})"
python3 scripts/gen-corpus.py "$C" --size-mib "$MIB" --small-files "$CORPUS_SMALL" --seed "$SEED"
log "generating the small set: ${SMALL} files of 1 to 10 KiB"
python3 scripts/gen-corpus.py "$S" --small-only --small-files "$SMALL" --seed "$SEED"
mkdir -p -- "$J"
find "$S" -type f -print0 | sort -z | xargs -0 cat >"$J/all.log"
log "generating one ${BIG_MIB} MiB file"
python3 scripts/gen-corpus.py "$B" --single-file --size-mib "$BIG_MIB" --seed "$SEED"

meta corpus_bytes "$(dir_bytes "$C")"
meta corpus_files "$(find "$C" -type f | wc -l)"
meta corpus_small_files "$CORPUS_SMALL"
meta small_bytes "$(dir_bytes "$S")"
meta small_files "$(find "$S" -type f | wc -l)"
meta big_bytes "$(dir_bytes "$B")"
meta append_percent "$APPEND_PERCENT"
meta seed "$SEED"
meta runs "$RUNS"

log "warm-up read of the corpora"
find "$C" "$S" "$J" "$B" -type f -print0 | xargs -0 cat >/dev/null

log "compressing the corpus once for the zstd -d references"
tar -cf - -C "$C" . | zstd -3 -T2 -q -o "$T/corpus.tar.zst"
mkfifo -- "$T/sha256.fifo"

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
	log "$(printf '%-20s run %d: %7.2f s  %6.2f CPU s  %8.1f MiB peak RSS' "$task" "$run" "$secs" "$cpu" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')")"
}

# Fresh stores (untimed). One key serves every vault.
new_vault() {
	rm -rf -- "$1"
	"$BIN" init --vault "$1" --origin bench.custody.example/vault --key "$K" >/dev/null
}
new_restic() {
	rm -rf -- "$1"
	restic init --quiet --repository-version 2 -r "$1" >/dev/null
}
new_borg() {
	rm -rf -- "$1"
	borg init --encryption=none "$1"
}

# The timed commands, one per tool.
# warm DIR: read DIR into the page cache (untimed). borg reads its input
# with POSIX_FADV_DONTNEED, dropping it from the cache; without this, the
# task after a borg run would read from disk.
warm() {
	find "$1" -type f -print0 | xargs -0 cat >/dev/null
}
custody_declare() { # custody_declare TASK RUN VAULT PATH
	warm "$4"
	measure "$1" "$2" "$BIN" declare "BENCH-$2" --title "benchmark run $2" \
		--path "$4" --vault "$3" --key "$K" --quiet
}
restic_backup() { # restic_backup TASK RUN REPO PATH
	warm "$4"
	measure "$1" "$2" restic -r "$3" backup --quiet --host bench "$4"
}
borg_create() { # borg_create TASK RUN REPO::ARCHIVE PATH
	warm "$4"
	measure "$1" "$2" borg create --compression zstd,3 "$3" "$4"
}
tar_zstd_b3sum() { # tar_zstd_b3sum TASK RUN DIR
	warm "$3"
	# shellcheck disable=SC2016 # $1 expands inside bash -c
	measure "$1" "$2" bash -c \
		'set -o pipefail; tar -cf - -C "$1" . | zstd -3 -T2 -q | b3sum' _ "$3"
}

# main_round RUN: the main corpus tasks, in the order of the header.
main_round() {
	local run=$1 v=$T/vault r=$T/restic b=$T/borg
	rm -rf -- "$W"
	cp -a -- "$C" "$W"
	sync # the copy's dirty pages, so that no timed task pays for them
	new_vault "$v"
	new_restic "$r"
	new_borg "$b"

	# First backup.
	custody_declare declare "$run" "$v" "$W"
	restic_backup restic-backup "$run" "$r" "$W"
	borg_create borg-create "$run" "$b::first" "$W"
	tar_zstd_b3sum tar-zstd-b3sum "$run" "$C"
	# shellcheck disable=SC2016 # $1, $2 expand inside bash -c
	warm "$C"
	measure cp-sync "$run" bash -c 'cp -r -- "$1" "$2" && sync' _ "$C" "$T/copy"
	rm -rf -- "$T/copy"
	meta stored_custody_first "$(stored_bytes "$v")"
	meta stored_restic_first "$(stored_bytes "$r")"
	meta stored_borg_first "$(stored_bytes "$b")"

	# Verify and check what one backup stored, and the physical references.
	measure verify "$run" "$BIN" verify --vault "$v"
	measure verify-quick "$run" "$BIN" verify --quick --vault "$v"
	measure restic-check "$run" restic -r "$r" check --read-data
	measure borg-check "$run" borg check --verify-data "$b"
	measure restic-open "$run" restic -r "$r" cat config
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
	warm "$C"
	measure b3sum "$run" bash -c \
		'set -o pipefail; find "$1" -type f -print0 | xargs -0 cat | b3sum' _ "$C"
	# shellcheck disable=SC2016 # $1 expands inside bash -c
	warm "$C"
	measure sha256sum "$run" bash -c \
		'set -o pipefail; find "$1" -type f -print0 | xargs -0 cat | sha256sum' _ "$C"

	# Again over the unchanged corpus, into the same vault and repositories.
	custody_declare redeclare "$run" "$v" "$W"
	restic_backup restic-rebackup "$run" "$r" "$W"
	borg_create borg-recreate "$run" "$b::again" "$W"
	meta stored_custody_again "$(stored_bytes "$v")"
	meta stored_restic_again "$(stored_bytes "$r")"
	meta stored_borg_again "$(stored_bytes "$b")"

	# After appending to the live large logs.
	python3 scripts/gen-corpus.py "$W" --append-percent "$APPEND_PERCENT" --seed "$SEED" 2>/dev/null
	sync
	meta appended_bytes "$(dir_bytes "$W")"
	custody_declare declare-append "$run" "$v" "$W"
	restic_backup restic-append "$run" "$r" "$W"
	borg_create borg-append "$run" "$b::append" "$W"
	meta stored_custody_final "$(stored_bytes "$v")"
	meta stored_restic_final "$(stored_bytes "$r")"
	meta stored_borg_final "$(stored_bytes "$b")"
	rm -rf -- "$v" "$r" "$b" "$W"
}

# small_round RUN: each tool over the small set, then over the same bytes in
# one file, each into a fresh vault or repository.
small_round() {
	local run=$1 set
	local -A dir=([small]=$S [joined]=$J)
	for set in small joined; do
		new_vault "$T/vault-$set"
		custody_declare "$set-declare" "$run" "$T/vault-$set" "${dir[$set]}"
	done
	for set in small joined; do
		new_restic "$T/restic-$set"
		restic_backup "$set-restic" "$run" "$T/restic-$set" "${dir[$set]}"
	done
	for set in small joined; do
		new_borg "$T/borg-$set"
		borg_create "$set-borg" "$run" "$T/borg-$set::first" "${dir[$set]}"
	done
	for set in small joined; do
		tar_zstd_b3sum "$set-tar-zstd" "$run" "${dir[$set]}"
	done
	measure small-verify "$run" "$BIN" verify --vault "$T/vault-small"
	measure small-restic-check "$run" restic -r "$T/restic-small" check --read-data
	measure small-borg-check "$run" borg check --verify-data "$T/borg-small"
	meta stored_custody_small "$(stored_bytes "$T/vault-small")"
	meta stored_restic_small "$(stored_bytes "$T/restic-small")"
	meta stored_borg_small "$(stored_bytes "$T/borg-small")"
	rm -rf -- "$T"/vault-{small,joined} "$T"/restic-{small,joined} "$T"/borg-{small,joined}
}

# big_round RUN: the one large file.
big_round() {
	local run=$1 v=$T/vault-big
	new_vault "$v"
	custody_declare big-declare "$run" "$v" "$B"
	measure big-verify "$run" "$BIN" verify --vault "$v"
	meta stored_custody_big "$(stored_bytes "$v")"
	rm -rf -- "$v"
}

for ((run = 1; run <= RUNS; run++)); do
	log "round $run of $RUNS"
	main_round "$run"
	small_round "$run"
	big_round "$run"
done

# ---------------------------------------------------------------- report
meta commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
meta custody_bin "$BIN"
meta custody_version "$("$BIN" --version)"
meta restic_version "$(restic version | head -n1)"
meta borg_version "$(borg --version)"
meta cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown)"
meta nproc "$(nproc)"
meta kernel "$(uname -r)"
mkdir -p -- "$(dirname -- "$OUT_JSON")"

python3 - "$RESULTS" "$META" "$OUT_JSON" <<'PY'
import json, statistics, sys, time

results, meta_path, out_json = sys.argv[1:]
meta = {}
for line in open(meta_path):
    k, v = line.rstrip("\n").split("\t", 1)
    meta[k] = v
num = lambda k: int(meta[k])
MiB = 2**20
ap = meta["append_percent"]

# (task, input bytes, command); sections in the order of the header.
sections = [
    (f"main corpus, first backup ({num('corpus_bytes') / MiB:.1f} MiB in {num('corpus_files')} files, "
     f"{num('corpus_small_files')} of them small)", [
        ("declare", "corpus_bytes", "custody declare ID --path WORK (fresh vault)"),
        ("restic-backup", "corpus_bytes", "restic backup WORK (fresh repository v2, compression auto)"),
        ("borg-create", "corpus_bytes", "borg create --compression zstd,3 (fresh repository, no encryption)"),
        ("tar-zstd-b3sum", "corpus_bytes", "tar -cf - -C CORPUS . | zstd -3 -T2 | b3sum"),
        ("cp-sync", "corpus_bytes", "cp -r CORPUS DEST && sync"),
    ]),
    ("verify and check what one backup stored", [
        ("verify", "corpus_bytes", "custody verify"),
        ("verify-quick", "corpus_bytes", "custody verify --quick"),
        ("restic-check", "corpus_bytes", "restic check --read-data"),
        ("borg-check", "corpus_bytes", "borg check --verify-data"),
        ("restic-open", None, "restic cat config: restic's fixed cost per command"),
        ("zstd-d-b3sum", "corpus_bytes", "zstd -d < CORPUS.tar.zst | b3sum"),
        ("same-work", "corpus_bytes", "zstd -d < CORPUS.tar.zst | tee FIFO | b3sum; openssl dgst -sha256 FIFO"),
        ("b3sum", "corpus_bytes", "find CORPUS -type f -print0 | xargs -0 cat | b3sum"),
        ("sha256sum", "corpus_bytes", "find CORPUS -type f -print0 | xargs -0 cat | sha256sum"),
    ]),
    ("again over the unchanged corpus, same vault and repositories", [
        ("redeclare", "corpus_bytes", "custody declare ID --path WORK again (same vault, same id)"),
        ("restic-rebackup", "corpus_bytes", "restic backup WORK again (parent snapshot)"),
        ("borg-recreate", "corpus_bytes", "borg create of a second archive (files cache)"),
    ]),
    (f"after appending {ap}% to the live large logs ({num('appended_bytes') / MiB:.1f} MiB)", [
        ("declare-append", "appended_bytes", f"custody declare again after --append-percent {ap}"),
        ("restic-append", "appended_bytes", f"restic backup again after --append-percent {ap}"),
        ("borg-append", "appended_bytes", f"borg create of a third archive after --append-percent {ap}"),
    ]),
    (f"small set: {num('small_files')} files of 1-10 KiB ({num('small_bytes') / MiB:.1f} MiB)", [
        ("small-declare", "small_bytes", "custody declare of the small set (fresh vault)"),
        ("small-restic", "small_bytes", "restic backup of the small set (fresh repository)"),
        ("small-borg", "small_bytes", "borg create of the small set (fresh repository)"),
        ("small-tar-zstd", "small_bytes", "tar | zstd -3 -T2 | b3sum of the small set"),
        ("small-verify", "small_bytes", "custody verify of the small set's vault"),
        ("small-restic-check", "small_bytes", "restic check --read-data of the small set's repository"),
        ("small-borg-check", "small_bytes", "borg check --verify-data of the small set's repository"),
    ]),
    ("joined: the small set's bytes in one file", [
        ("joined-declare", "small_bytes", "custody declare of the joined file (fresh vault)"),
        ("joined-restic", "small_bytes", "restic backup of the joined file (fresh repository)"),
        ("joined-borg", "small_bytes", "borg create of the joined file (fresh repository)"),
        ("joined-tar-zstd", "small_bytes", "tar | zstd -3 -T2 | b3sum of the joined file"),
    ]),
    (f"one large file ({num('big_bytes') / MiB:.1f} MiB)", [
        ("big-declare", "big_bytes", "custody declare of one large file (fresh vault)"),
        ("big-verify", "big_bytes", "custody verify of that vault"),
    ]),
]

rows = {}
for line in open(results):
    task, _run, secs, rss, cpu_s = line.rstrip("\n").split("\t")
    r = rows.setdefault(task, {"seconds": [], "rss_kib": [], "cpu_seconds": []})
    r["seconds"].append(float(secs))
    r["rss_kib"].append(int(rss))
    r["cpu_seconds"].append(float(cpu_s))

by = {}
for _title, tasks in sections:
    for task, bytes_key, command in tasks:
        r = rows.get(task)
        if not r:
            continue
        med = statistics.median(r["seconds"])
        nbytes = num(bytes_key) if bytes_key else None
        by[task] = {
            "task": task,
            "command": command,
            "input_bytes": nbytes,
            "seconds": r["seconds"],
            "median_s": med,
            "min_s": min(r["seconds"]),
            "max_s": max(r["seconds"]),
            "mib_per_s": round(nbytes / MiB / med, 1) if nbytes and med > 0 else None,
            "cpu_seconds": r["cpu_seconds"],
            "median_cpu_s": statistics.median(r["cpu_seconds"]),
            "peak_rss_mib": round(max(r["rss_kib"]) / 1024, 1),
        }

print()
print(f"{meta['runs']} runs per task, interleaved; warm page cache; seed {meta['seed']}")
print(f"machine: {meta['nproc']} cores, {meta['cpu']}, kernel {meta['kernel']}")
print(f"custody: {meta['custody_version']} ({meta['custody_bin']}, tree at {meta['commit']}); "
      f"{meta['restic_version']}; {meta['borg_version']}")
print()
hdr = f"{'task':<18} {'median s':>9} {'min-max s':>13} {'MiB/s':>8} {'CPU s':>7} {'peak RSS MiB':>13}"
print(hdr)
print("-" * len(hdr))
for title, tasks in sections:
    print(f"# {title}")
    for task, _b, _c in tasks:
        t = by.get(task)
        if not t:
            continue
        spread = f"{t['min_s']:.2f}-{t['max_s']:.2f}"
        mibps = "-" if t["mib_per_s"] is None else f"{t['mib_per_s']:.0f}"
        print(f"{task:<18} {t['median_s']:>9.2f} {spread:>13} {mibps:>8} "
              f"{t['median_cpu_s']:>7.2f} {t['peak_rss_mib']:>13.1f}")

ratios = {}
def throughput(a, b):
    """Throughput of task a over that of task b (above 1: a is faster)."""
    if a in by and b in by and by[a]["mib_per_s"] and by[b]["mib_per_s"]:
        return by[a]["mib_per_s"] / by[b]["mib_per_s"]
    return None

def show(label, key, a, b):
    x = throughput(a, b)
    ratios[key] = None if x is None else round(x, 3)
    if x is not None:
        print(f"  {label:<46} {x:>6.2f}x  (takes {1 / x:.2f}x the time)")

print()
print("Ratios of throughput, custody / peer, medians (above 1: custody is faster)")
show("declare / tar | zstd -3 -T2 | b3sum", "declare_vs_tar_zstd_b3sum", "declare", "tar-zstd-b3sum")
show("declare / restic backup", "declare_vs_restic_backup", "declare", "restic-backup")
show("declare / borg create", "declare_vs_borg_create", "declare", "borg-create")
show("declare / cp -r + sync", "declare_vs_cp_sync", "declare", "cp-sync")
show("redeclare / restic backup, unchanged", "redeclare_vs_restic_rebackup", "redeclare", "restic-rebackup")
show("redeclare / borg create, unchanged", "redeclare_vs_borg_recreate", "redeclare", "borg-recreate")
show(f"declare-append / restic backup, +{ap}%", "declare_append_vs_restic_append", "declare-append", "restic-append")
show(f"declare-append / borg create, +{ap}%", "declare_append_vs_borg_append", "declare-append", "borg-append")
show("verify / zstd -d | b3sum", "verify_vs_zstd_d_b3sum", "verify", "zstd-d-b3sum")
show("verify / same-work (zstd -d, openssl, b3sum)", "verify_vs_same_work", "verify", "same-work")
show("verify / restic check --read-data", "verify_vs_restic_check", "verify", "restic-check")
show("verify / borg check --verify-data", "verify_vs_borg_check", "verify", "borg-check")
show("small-verify / restic check, small set", "small_verify_vs_restic_check", "small-verify", "small-restic-check")
show("small-verify / borg check, small set", "small_verify_vs_borg_check", "small-verify", "small-borg-check")
show("big-declare / declare (one file / corpus)", "big_declare_vs_declare", "big-declare", "declare")
show("big-verify / verify (one file / corpus)", "big_verify_vs_verify", "big-verify", "verify")

print()
print("Second and third backup: time of the first / time of this one (above 1: faster than the first)")
speedups = {}
for tool, first, again, append in [("custody declare", "declare", "redeclare", "declare-append"),
                                   ("restic backup", "restic-backup", "restic-rebackup", "restic-append"),
                                   ("borg create", "borg-create", "borg-recreate", "borg-append")]:
    if first in by and again in by and append in by:
        f = by[first]["median_s"]
        s_again = f / by[again]["median_s"] if by[again]["median_s"] > 0 else None
        s_append = f / by[append]["median_s"] if by[append]["median_s"] > 0 else None
        speedups[first] = {"unchanged": None if s_again is None else round(s_again, 3),
                           "after_append": None if s_append is None else round(s_append, 3)}
        fmt = lambda x: "-" if x is None else f"{x:.2f}x"
        print(f"  {tool:<16} unchanged: {fmt(s_again):>8}   after +{ap}%: {fmt(s_append):>8}")

print()
nfiles = num("small_files")
print(f"Per extra small file, µs: (median over {nfiles} small files - median over the same bytes "
      f"in one file) / {nfiles}; and plain median / {nfiles}")
per_file = {}
for tool, small, joined in [("custody declare", "small-declare", "joined-declare"),
                            ("restic backup", "small-restic", "joined-restic"),
                            ("borg create", "small-borg", "joined-borg"),
                            ("tar|zstd|b3sum", "small-tar-zstd", "joined-tar-zstd")]:
    if small in by and joined in by:
        extra = (by[small]["median_s"] - by[joined]["median_s"]) / nfiles * 1e6
        plain = by[small]["median_s"] / nfiles * 1e6
        per_file[small] = {"extra_us": round(extra, 1), "time_per_file_us": round(plain, 1)}
        print(f"  {tool:<16} {extra:>8.1f} µs extra   {plain:>8.1f} µs per file")
def per_file_ratio(a, b):
    if a in per_file and b in per_file and per_file[b]["extra_us"] > 0:
        return per_file[a]["extra_us"] / per_file[b]["extra_us"]
    return None
for peer, key in [("restic", "small-restic"), ("borg", "small-borg")]:
    x = per_file_ratio("small-declare", key)
    ratios[f"per_file_extra_custody_vs_{peer}"] = None if x is None else round(x, 3)
    if x is not None:
        print(f"  custody / {peer} extra µs per file: {x:.2f}x")

print()
print("Peak RSS, MiB (largest over runs)")
rss = {t: by[t]["peak_rss_mib"] for t in by}
for group in [("declare", "restic-backup", "borg-create", "tar-zstd-b3sum"),
              ("redeclare", "restic-rebackup", "borg-recreate"),
              ("verify", "restic-check", "borg-check", "zstd-d-b3sum"),
              ("small-declare", "small-restic", "small-borg"),
              ("small-verify", "small-restic-check", "small-borg-check"),
              ("big-declare", "big-verify")]:
    print("  " + "   ".join(f"{t} {rss[t]:.1f}" for t in group if t in rss))
declare_rss = max((rss[t] for t in ("declare", "redeclare", "declare-append", "small-declare", "big-declare")
                   if t in rss), default=None)
if declare_rss is not None:
    print(f"  custody declare peak RSS <= 128 MiB (the target): {'yes' if declare_rss <= 128 else 'NO'} "
          f"({declare_rss:.1f} MiB, largest of all declare tasks)")

print()
stored = {k[len("stored_"):]: int(v) for k, v in meta.items() if k.startswith("stored_")}
cb = num("corpus_bytes")
print(f"Stored bytes (du -sb), last round; corpus {cb / MiB:.1f} MiB; growth by the second "
      f"(unchanged) and third (+{ap}%) backup")
for tool in ["custody", "restic", "borg"]:
    first, again, final = (stored.get(f"{tool}_{k}") for k in ("first", "again", "final"))
    small = stored.get(f"{tool}_small")
    if first:
        print(f"  {tool:<8} one backup {first / MiB:>7.1f} MiB ({cb / first:.2f}x smaller); "
              f"+ unchanged {(again - first) / MiB:>5.2f} MiB; + after {ap}% {(final - again) / MiB:>5.2f} MiB; "
              f"small set {small / MiB:.1f} MiB")
if stored.get("custody_big"):
    print(f"  custody  one large file {stored['custody_big'] / MiB:.1f} MiB "
          f"({num('big_bytes') / stored['custody_big']:.2f}x smaller)")

notes = [
    "restic 0.14 compresses with zstd in mode 'auto' (repository version 2): its level cannot "
    "be chosen (only auto, off or max), so restic does not run zstd -3 as custody, borg and "
    "tar | zstd do.",
    "restic always encrypts and needs a password (a fixed one here); borg runs with "
    "--encryption=none; custody signs but does not encrypt. Every restic command first opens the "
    "repository and derives its key from the password (restic-open: a fixed cost that weighs on "
    "small corpora and cancels out of the per-file cost).",
    "restic and borg skip files whose metadata is unchanged (restic: the parent snapshot; borg: "
    "its files cache); custody declare reads every file again and checks every chunk's BLAKE3, "
    "taking the whole-file digests from the last artifact only when every chunk is the same.",
    "borg create and borg check use one core; restic, custody and zstd -T2 use more.",
]
print()
print("Notes")
for n in notes:
    print(f"  - {n}")

doc = {
    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "commit": meta["commit"],
    "custody": {"binary": meta["custody_bin"], "version": meta["custody_version"]},
    "peers": {"restic": meta["restic_version"], "borg": meta["borg_version"]},
    "machine": {"nproc": int(meta["nproc"]), "cpu": meta["cpu"], "kernel": meta["kernel"]},
    "corpus": {"bytes": cb, "mib": round(cb / MiB, 1), "files": num("corpus_files"),
               "small_files": num("corpus_small_files"), "seed": int(meta["seed"]),
               "append_percent": float(ap), "bytes_after_append": num("appended_bytes"),
               "generator": "scripts/gen-corpus.py"},
    "small_set": {"files": nfiles, "bytes": num("small_bytes")},
    "big_file": {"bytes": num("big_bytes")},
    "cache": "warm",
    "runs": int(meta["runs"]),
    "tasks": list(by.values()),
    "ratios_throughput_custody_over_peer": ratios,
    "speedup_over_first_backup": speedups,
    "per_small_file_us": per_file,
    "stored_bytes": stored,
    "declare_peak_rss_mib": declare_rss,
    "declare_peak_rss_under_256_mib": None if declare_rss is None else declare_rss < 256,
    "notes": notes,
}
with open(out_json, "w") as f:
    json.dump(doc, f, indent=2, ensure_ascii=False)
    f.write("\n")
print(f"\nresults written to {out_json}")
PY

# verify-proof on a synthetic log of one million segments (criterion).
if [[ "${BENCH_CRITERION:-1}" != 0 ]]; then
	log "criterion: verify_proof on a 1M-segment log"
	cargo bench --locked --bench proof 2>/dev/null | grep -E "^verify_proof|time:" || {
		echo "bench: the criterion benchmark failed" >&2
		exit 1
	}
fi

# Declare into a Ceph gateway next to file:// (FORMAT.md §11.1), unless
# BENCH_S3=0.
if [[ "${BENCH_S3:-1}" != 0 ]]; then
	log "s3:// (Ceph) next to file://"
	scripts/bench-s3.sh
fi

# Remote ingest (custody agent -> custody serve over loopback TLS) next to
# local declare, unless BENCH_SERVICE=0.
if [[ "${BENCH_SERVICE:-1}" != 0 ]]; then
	log "remote ingest through the service next to local declare"
	scripts/bench-service.sh
fi
