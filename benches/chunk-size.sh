#!/usr/bin/env bash
# Usage: benches/chunk-size.sh [--sizes "256KiB 1MiB 4MiB"] [--days N] [--runs R] [--data DIR]
#                              [--work DIR] [--bin PATH] [--no-tib] [--no-s3] [--keep] [-h|--help]
#
# Which block size should be the default (issue 7)? One block is one chunk is
# one object in the vault, so the block size trades three things against each
# other, and this script measures all three on the realistic image of
# benches/make-image.sh and a week of its churn:
#
#   - write amplification: an incremental resends every block that holds one
#     changed 4 KiB page; small blocks resend less;
#   - object counts: small blocks make more objects (per TiB of data, per
#     backup, per restore), more files or S3 requests, and a bigger block map
#     (32 bytes a block of the disk, holes included, written with every point);
#   - throughput: full backup, incremental and restore, per-object costs
#     (fsync of each chunk file, one request per chunk on S3) against the
#     per-byte ones (zstd, BLAKE3, I/O).
#
# The lineage (one disk, every block size backed up from the same images):
#
#   day 0  gen0.img (8 GiB sparse ext4, Debian root, 1.46 GB allocated)
#   day 1  gen1.img (make-image.sh's churn)
#   day d  the image of day d-1 plus benches/daily_churn.py --day d (the
#          steady-state churn benches/gc-verify.sh uses: logs appended and
#          rotated, a 3 MiB download, project edits, a database rewritten, the
#          binary upgraded weekly), applied with debugfs -w
#
# For each day, `bench_image.py pagediff` counts the 4 KiB pages that differ
# from the day before (the bytes really changed) and the blocks of each size
# they touch; then every block size backs the day up into its own directory
# vault with its own state directory (a fresh vault and catalog per size):
# the full backup of day 0 is `backup --block-size SIZE`, each later day an
# incremental backup job (snapshot tier, then transfer to the vault). Per
# backup: the chunks and bytes the point stored (new chunks, compressed), the
# vault's growth (chunks + block map + point record), its objects, wall time
# and peak RSS. The full backup is repeated R-1 more times into scratch
# vaults (median of R); the incrementals are one per day (median over the
# days). After the last day: `restore --from vault` of the newest point, R
# times per size (the first restore is checked page by page against the day's
# image).
#
# A 1 TiB disk (unless --no-tib): gen1's data on a disk truncated to 1 TiB
# (sparse), per block size a full backup into a fresh vault and an unchanged
# incremental: the block map is 32 bytes a block of the whole disk, held in
# memory and written with every point, so small blocks cost memory and a map
# upload per point that grow with the disk size, not the data.
#
# S3 (unless --no-s3): a fresh single-node Garage per run (scripts/garage.sh,
# on the same cores), and per block size a fresh prefix and state directory:
# full backup of gen0, the incremental of gen1, restore --from vault of gen1's
# point; R runs. S3 requests per step are counted from Garage's /metrics
# (api_s3_request_counter): "PUTs" are PutObject + CompleteMultipartUpload,
# "requests" every S3 call.
#
# Every timed step runs under /usr/bin/time -v (wall time, peak RSS) after
# sync, a page-cache drop, and a read-back of the step's inputs (the disk
# image and the state directory's catalog and index for a backup; the vault,
# or Garage's data, for a restore), as the other scripts do. The sizes run in
# a rotating order per run.
#
# Prints markdown tables (medians, ratios to 4 MiB where there is one), the
# machine, its load average at the start and the command; raw figures go to
# RESULTS/chunk-size-results.tsv and the tables to RESULTS/chunk-size-results.md,
# where RESULTS is the parent of the work directory (DATA_DIR by default). The
# work directory is removed at the end unless --keep. Peak disk use: ~2 GB per
# block size (vault + snapshot tier) plus two copies of the disk (~3 GB) plus,
# on S3, one run's Garage data (~1.5 GB). Takes ~15 minutes with the defaults on
# 2 cores (every blockvault command is killed after 10 minutes).
#
# Options:
#   --sizes "S..." block sizes to compare (default "256KiB 1MiB 4MiB"; KiB or MiB)
#   --days N       churn days after the full backup (default 8: gen1 and 7 more)
#   --runs R       repetitions of the full backups and restores (default 3)
#   --data DIR     where gen0.img, gen1.img and rootfs/ are (default
#                  <repo>/target/bench-data; only read, built by make-image.sh
#                  when missing)
#   --work DIR     the work directory (default DATA_DIR/chunk-size)
#   --bin PATH     the blockvault binary to measure (default: build the repo's
#                  with cargo build --release and use target/release/blockvault)
#   --no-tib       skip the 1 TiB disk
#   --no-s3        skip the S3 part (needs garage: scripts/garage.sh install)
#   --keep         keep the work directory

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
REPO_ROOT=$REPO
# shellcheck source=benches/lib.sh
source "$SCRIPT_DIR/lib.sh"

SIZES=(256KiB 1MiB 4MiB)
DAYS=8
RUNS=3
DATA_DIR=$REPO/target/bench-data
WORK=
BV=
S3=1
TIB=1
KEEP=0
ARGS="$*"
while (($#)); do
  case $1 in
    --sizes) read -r -a SIZES <<<"$2"; shift 2 ;;
    --days) DAYS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --data) DATA_DIR=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --bin) BV=$2; shift 2 ;;
    --no-s3) S3=0; shift ;;
    --no-tib) TIB=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $DAYS =~ ^[0-9]+$ && $DAYS -ge 1 ]] || { echo "--days must be a number >= 1" >&2; exit 2; }
[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 1 ]] || { echo "--runs must be a number >= 1" >&2; exit 2; }
((${#SIZES[@]})) || { echo "--sizes is empty" >&2; exit 2; }

log() { printf '[chunk-size %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# bytes SIZE: 256KiB -> 262144.
bytes() {
  case $1 in
    *KiB) echo $((${1%KiB} * 1024)) ;;
    *MiB) echo $((${1%MiB} * 1048576)) ;;
    *) die "block size $1: give it in KiB or MiB (256KiB, 4MiB)" ;;
  esac
}
SIZE_CSV=
for s in "${SIZES[@]}"; do SIZE_CSV+=${SIZE_CSV:+,}$(bytes "$s"); done

mkdir -p "$DATA_DIR"
DATA_DIR=$(cd "$DATA_DIR" && pwd)
WORK=${WORK:-$DATA_DIR/chunk-size}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
RESULTS=$(dirname "$WORK")
TSV=$RESULTS/chunk-size-results.tsv
OUT=$RESULTS/chunk-size-results.md
GEN0=$DATA_DIR/gen0.img
GEN1=$DATA_DIR/gen1.img
GEN1_TIME=$((1735689600 + 86400)) # make-image.sh's clock for gen1; day d is d-1 days later
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

[[ -f $GEN0 && -f $GEN1 && -d $DATA_DIR/rootfs ]] || "$SCRIPT_DIR/make-image.sh" "$DATA_DIR" >&2
[[ -x /usr/bin/time ]] || { log "installing GNU time"; apt_install time; }
command -v debugfs >/dev/null || apt_install e2fsprogs
if ((S3)); then
  export PATH="$HOME/.cargo/bin:$PATH"
  command -v garage >/dev/null || die "no garage for the S3 part: scripts/garage.sh install, or --no-s3"
  command -v curl >/dev/null || apt_install curl
fi

if [[ -z $BV ]]; then
  log "building blockvault (release)"
  (cd "$REPO" && cargo build --release --locked -q -p blockvault-cli)
  BV=$REPO/target/release/blockvault
fi
[[ -x $BV ]] || die "no blockvault binary at $BV"
BV=$(cd "$(dirname "$BV")" && pwd)/$(basename "$BV")

GARAGE_DIR=
stop_garage() {
  if [[ -n $GARAGE_DIR && -f $GARAGE_DIR/pid ]]; then
    bash "$REPO/scripts/garage.sh" stop "$GARAGE_DIR" >/dev/null 2>&1 || true
    rm -rf "$GARAGE_DIR"
  fi
  GARAGE_DIR=
}
cleanup() {
  stop_garage
  if ((KEEP)); then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
rm -rf "${WORK:?}"/*
mkdir -p "$WORK/logs"
DISK=$WORK/vm/disk.img # the VM's disk, day by day
PREV=$WORK/prev.img    # the day before, for pagediff
mkdir -p "$WORK/vm"

COLS='run\tsize\top\tday\twall_s\trss_mib\tchunks_stored\tbytes_stored\tvault_objects\tvault_bytes\tmap_bytes\ts3_puts\ts3_requests\tpages_changed\tblocks_touched\tblocks_changed'
printf '%b\n' "$COLS" >"$TSV"

# s3_counters: "PUTS REQUESTS" so far from the running Garage's /metrics, or "n/a n/a".
s3_counters() {
  if [[ -z $GARAGE_DIR ]]; then echo "n/a n/a"; return; fi
  curl -fsS "http://$GARAGE_ADMIN/metrics" | awk '
    /^api_s3_request_counter\{/ {
      r += $NF
      if ($0 ~ /api_endpoint="(PutObject|CompleteMultipartUpload)"/) p += $NF
    }
    END { printf "%d %d\n", p, r }'
}

# vault_usage DIR: "OBJECTS BYTES MAP_BYTES" of a directory vault (every file; the newest map).
vault_usage() {
  local objs bytes map
  read -r objs bytes < <(find "$1" -type f -printf '%s\n' | awk '{ n++; s += $1 } END { print n + 0, s + 0 }')
  map=$(find "$1/maps" -type f -name '*.map' -printf '%T@ %s\n' | sort -g | tail -n 1 | cut -d' ' -f2)
  echo "$objs $bytes ${map:-0}"
}

# timed LOGNAME WARM... -- CMD...: blockvault CMD (with -q --json) under GNU time after sync, a
# cache drop and a read-back of WARM (the files and directories of it that exist); the JSON goes
# to $WORK/last.json.
# Sets LAST_WALL, LAST_RSS (MiB), LAST_PUTS, LAST_REQS.
timed() {
  local name=$1 warm=()
  shift
  while (($#)) && [[ $1 != -- ]]; do [[ -e $1 ]] && warm+=("$1"); shift; done
  shift
  if [[ -n $GARAGE_DIR ]]; then warm=("$GARAGE_DIR/meta" "$GARAGE_DIR/data" "${warm[@]}"); fi
  sync
  drop_caches
  ((${#warm[@]} == 0)) || python3 "$SCRIPT_DIR/bench_image.py" warm "${warm[@]}" 2>/dev/null
  sync
  local c0 c1 t0=$EPOCHREALTIME rc=0
  c0=$(s3_counters)
  /usr/bin/time -v -o "$WORK/logs/$name.time" timeout 600 "$BV" -q --json "$@" >"$WORK/last.json" \
    2>"$WORK/logs/$name.err" || rc=$?
  local t1=$EPOCHREALTIME
  c1=$(s3_counters)
  cp "$WORK/last.json" "$WORK/logs/$name.json"
  ((rc == 0)) || { cat "$WORK/logs/$name.err" "$WORK/last.json" >&2; die "$name: blockvault $* exited $rc"; }
  LAST_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  LAST_RSS=$(awk -F': *' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$WORK/logs/$name.time")
  read -r LAST_PUTS LAST_REQS < <(awk -v a="$c0" -v b="$c1" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    if (x[1] == "n/a") print "n/a n/a"; else print y[1] - x[1], y[2] - x[2] }')
}

# json_stats: "CHUNKS BYTES CHANGED_BLOCKS" of the backup in $WORK/last.json (completed, else dies).
json_stats() {
  python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["job"]["status"] == "completed", d["job"]
s, disk = d["point"]["stats"], d["point"]["disks"][0]
print(s["chunks_stored"], s["bytes_stored"], s["bytes_changed"] // disk["block_size"])' "$WORK/last.json"
}

# record RUN SIZE OP DAY CHUNKS BYTES VOBJ VBYTES MAP PAGES TOUCHED CHANGED: one TSV row of the
# last timed step.
record() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" \
    "$LAST_WALL" "$LAST_RSS" "$5" "$6" "$7" "$8" "$9" "$LAST_PUTS" "$LAST_REQS" "${10}" "${11}" "${12}" >>"$TSV"
}

# order RUN: the sizes rotated by RUN-1, so no size always runs first.
order() {
  local n=${#SIZES[@]} i
  for ((i = 0; i < n; i++)); do echo "${SIZES[$(((i + $1 - 1) % n))]}"; done
}

# backup_step RUN SIZE OP DAY VAULT STATE DISK PAGES TOUCHED: one timed backup job and its row
# (SIZE may carry a prefix, "s3-" or "tib-": the label of those rows).
backup_step() {
  local run=$1 size=$2 op=$3 day=$4 vault=$5 state=$6 disk=$7 chunks bytes changed vobj=n/a vbytes=n/a map=n/a
  timed "run$run-$size-$op-day$day" "$disk" "$state/catalog.sqlite" "$state/vaults" -- \
    backup --vault "$vault" --vm vm --disk "$disk" --state-dir "$state" --block-size "${size#*-}"
  read -r chunks bytes changed < <(json_stats)
  if [[ $vault != s3://* ]]; then read -r vobj vbytes map < <(vault_usage "$vault"); fi
  record "$run" "$size" "$op" "$day" "$chunks" "$bytes" "$vobj" "$vbytes" "$map" "$8" "$9" "$changed"
  log "run $run $size $op day $day: ${LAST_WALL} s, ${LAST_RSS} MiB, $chunks chunks ($bytes B) stored, $changed blocks changed, PUTs $LAST_PUTS, requests $LAST_REQS"
}

# restore_step RUN SIZE OP VAULT STATE CHECK_AGAINST: a timed restore --from vault of the
# newest point (checked page by page against CHECK_AGAINST unless it is "-").
restore_step() {
  local run=$1 size=$2 op=$3 vault=$4 state=$5 ref=$6 warm=("$5/catalog.sqlite" "$5/vaults") diff
  [[ $vault == s3://* ]] || warm+=("$vault")
  rm -rf "$WORK/restore"
  timed "run$run-$size-$op" "${warm[@]}" -- restore --vault "$vault" --vm vm --from vault \
    --state-dir "$state" --to "$WORK/restore"
  record "$run" "$size" "$op" - n/a n/a n/a n/a n/a n/a n/a n/a
  log "run $run $size $op: ${LAST_WALL} s, ${LAST_RSS} MiB, PUTs $LAST_PUTS, requests $LAST_REQS"
  if [[ $ref != - ]]; then
    diff=$(python3 "$SCRIPT_DIR/bench_image.py" pagediff "$ref" "$WORK/restore/$(basename "$ref")")
    [[ $diff == *'"pages_changed": 0,'* ]] || die "the $size restore differs from $ref: $diff"
  fi
  rm -rf "$WORK/restore"
}

# --- the lineage: a full backup, then one incremental per day of churn ----------------------
T0=$SECONDS
for s in "${SIZES[@]}"; do
  "$BV" -q vault init "$WORK/vault-$s" >/dev/null
done
cp --sparse=always "$GEN0" "$DISK"
for s in "${SIZES[@]}"; do
  backup_step 1 "$s" full 0 "$WORK/vault-$s" "$WORK/state-$s" "$DISK" n/a n/a
done
for run in $(seq 2 "$RUNS"); do
  for s in $(order "$run"); do
    rm -rf "$WORK/scratch"
    "$BV" -q vault init "$WORK/scratch/vault" >/dev/null
    backup_step "$run" "$s" full 0 "$WORK/scratch/vault" "$WORK/scratch/state" "$DISK" n/a n/a
  done
done
rm -rf "$WORK/scratch"

for day in $(seq 1 "$DAYS"); do
  cp --sparse=always "$DISK" "$PREV"
  if ((day == 1)); then
    cp --sparse=always "$GEN1" "$DISK"
  else
    python3 "$SCRIPT_DIR/daily_churn.py" --rootfs "$DATA_DIR/rootfs" --image "$DISK" \
      --out "$WORK/churn" --day "$day" >"$WORK/logs/churn-day$day.log"
    # debugfs exits 0 even when a command fails: anything on stderr but its banner is an error.
    errs=$(E2FSPROGS_FAKE_TIME=$((GEN1_TIME + (day - 1) * 86400)) \
      debugfs -w -f "$WORK/churn/debugfs.cmds" "$DISK" 2>&1 >/dev/null | grep -v '^debugfs [0-9]' || true)
    [[ -z $errs ]] || die "debugfs reported errors on day $day:"$'\n'"$errs"
  fi
  diff=$(python3 "$SCRIPT_DIR/bench_image.py" pagediff "$PREV" "$DISK" --block-sizes "$SIZE_CSV")
  echo "$diff" >"$WORK/logs/pagediff-day$day.json"
  pages=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["pages_changed"])' "$diff")
  log "day $day: $pages pages changed ($(cat "$WORK/logs/churn-day$day.log" 2>/dev/null || echo gen1))"
  for s in $(order "$day"); do
    touched=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["blocks_touched"][sys.argv[2]])' "$diff" "$(bytes "$s")")
    backup_step 1 "$s" incr "$day" "$WORK/vault-$s" "$WORK/state-$s" "$DISK" "$pages" "$touched"
  done
done
rm -f "$PREV"
e2fsck -fn "$DISK" >/dev/null 2>&1 || die "the churned image fails e2fsck: the churn left it inconsistent"
log "lineage of $DAYS days built and backed up in $((SECONDS - T0)) s"

for run in $(seq 1 "$RUNS"); do
  for s in $(order "$run"); do
    ref=-
    ((run == 1)) && ref=$DISK
    restore_step "$run" "$s" restore "$WORK/vault-$s" "$WORK/state-$s" "$ref"
  done
done
for s in "${SIZES[@]}"; do rm -rf "${WORK:?}/state-$s/snapshots"; done

# --- a 1 TiB sparse disk: what the block map costs ------------------------------------------
if ((TIB)); then
  BIG=$WORK/big/disk.img
  mkdir -p "$WORK/big"
  cp --sparse=always "$GEN1" "$BIG"
  truncate -s 1T "$BIG"
  for s in "${SIZES[@]}"; do
    rm -rf "$WORK/vault-tib" "$WORK/state-tib"
    "$BV" -q vault init "$WORK/vault-tib" >/dev/null
    backup_step 1 "tib-$s" full 0 "$WORK/vault-tib" "$WORK/state-tib" "$BIG" n/a n/a
    backup_step 1 "tib-$s" incr 1 "$WORK/vault-tib" "$WORK/state-tib" "$BIG" 0 0
  done
  rm -rf "$WORK/vault-tib" "$WORK/state-tib" "$WORK/big"
fi

# --- S3 on Garage: full backup, incremental, restore ----------------------------------------
if ((S3)); then
  rm -f "$DISK"
  for run in $(seq 1 "$RUNS"); do
    GARAGE_DIR=$WORK/garage
    for attempt in 1 2 3; do # garage.sh start can lose a race on a busy machine (see s3-compare.sh)
      if bash "$REPO/scripts/garage.sh" start "$GARAGE_DIR" >"$WORK/logs/garage-$run.log" 2>&1; then break; fi
      bash "$REPO/scripts/garage.sh" stop "$GARAGE_DIR" >/dev/null 2>&1 || true
      ((attempt < 3)) || die "scripts/garage.sh start failed 3 times (log: $WORK/logs/garage-$run.log)"
      sleep 1
    done
    # shellcheck disable=SC1091 # written by scripts/garage.sh
    source "$GARAGE_DIR/env"
    GARAGE_ADMIN=$(awk -F'"' '/^\[admin\]/ { a = 1 } a && /^api_bind_addr/ { print $2; exit }' "$GARAGE_CONFIG")
    GARAGE_VERSION=$(garage --version 2>/dev/null | head -n 1)
    for s in $(order "$run"); do
      vault=s3://$BLOCKVAULT_TEST_S3_BUCKET/cs-$s
      state=$WORK/s3state-$s
      rm -rf "$state"
      "$BV" -q --state-dir "$state" vault init "$vault" >/dev/null
      cp --sparse=always "$GEN0" "$DISK"
      backup_step "$run" "s3-$s" full 0 "$vault" "$state" "$DISK" n/a n/a
      cp --sparse=always "$GEN1" "$DISK"
      backup_step "$run" "s3-$s" incr 1 "$vault" "$state" "$DISK" n/a n/a
      ref=-
      ((run == 1)) && ref=$DISK
      restore_step "$run" "s3-$s" restore "$vault" "$state" "$ref"
      rm -rf "$state"
    done
    stop_garage
  done
fi

# --- the tables -------------------------------------------------------------------------------
m() { median "$@"; }
# agg SIZE OP COL sum|med: the sum or the median of a column over the rows of SIZE and OP.
agg() {
  awk -F'\t' -v t="$1" -v o="$2" -v c="$3" 'NR > 1 && $2 == t && $3 == o { print $c }' "$TSV" | sort -g |
    awk -v a="$4" '{ v[NR] = $1; s += $1 } END { if (!NR) { print "-"; exit }
      if (a == "sum") { print s; exit }
      print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
f() { awk -v x="$1" -v d="$2" 'BEGIN { if (x == "-" || x == "n/a") print x; else printf "%." d "f", x }'; }
div() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (b == 0 || a == "-" || b == "-") print "-"; else printf "%." d "f", a / b }'; }
MB=1000000
REF=4MiB
changed_sum=$(awk -F'\t' -v t="${SIZES[0]}" 'NR > 1 && $2 == t && $3 == "incr" { s += $14 * 4096 } END { print s + 0 }' "$TSV")
alloc=$(stat -c %b "$GEN0")
alloc=$((alloc * 512))
{
  echo "Lineage: gen0 (full backup), then $DAYS days of churn (day 1 = gen1, days 2-$DAYS = daily_churn.py); $(div "$changed_sum" $MB 1) MB changed in all, counted in 4 KiB pages; one directory vault per block size."
  echo
  echo "| block size | full: chunks | full: MB stored | objects per TiB of allocated data | map per point, 8 GiB disk | map per point, 1 TiB disk | full s | full RSS MiB | incremental s | incremental RSS MiB | restore s | restore RSS MiB |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for s in "${SIZES[@]}"; do
    b=$(bytes "$s")
    fc=$(awk -F'\t' -v t="$s" 'NR > 1 && $1 == 1 && $2 == t && $3 == "full" { print $7 }' "$TSV")
    fb=$(awk -F'\t' -v t="$s" 'NR > 1 && $1 == 1 && $2 == t && $3 == "full" { print $8 }' "$TSV")
    mp=$(awk -F'\t' -v t="$s" 'NR > 1 && $1 == 1 && $2 == t && $3 == "full" { print $11 }' "$TSV")
    echo "| $s | $fc | $(div "$fb" $MB 1) | $(awk -v c="$fc" -v a="$alloc" 'BEGIN { printf "%.0f", c * 2^40 / a }') | $(div "$mp" 1048576 2) MiB | $(awk -v b="$b" 'BEGIN { printf "%.0f", 2^40 / b * 32 / 1048576 }') MiB | $(f "$(m "$s" full 5)" 2) | $(f "$(m "$s" full 6)" 0) | $(f "$(agg "$s" incr 5 med)" 2) | $(f "$(agg "$s" incr 6 med)" 0) | $(f "$(m "$s" restore 5)" 2) | $(f "$(m "$s" restore 6)" 0) |"
  done
  echo
  echo "Incrementals, summed over the $DAYS days (changed: $(div "$changed_sum" $MB 1) MB in 4 KiB pages). Resent: the blocks holding a changed page x block size (raw). Uploaded: the compressed chunks the points stored. Vault growth: chunks + block maps + point records."
  echo
  echo "| block size | blocks touched | resent raw MB | raw / changed | new chunks | uploaded MB | uploaded / changed | vault growth MB | growth / changed | blocks changed (blockvault) | deduplicated | vault after all days: objects | MB |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for s in "${SIZES[@]}"; do
    b=$(bytes "$s")
    touched=$(agg "$s" incr 15 sum) chunks=$(agg "$s" incr 7 sum) up=$(agg "$s" incr 8 sum) bchanged=$(agg "$s" incr 16 sum)
    vb0=$(awk -F'\t' -v t="$s" 'NR > 1 && $1 == 1 && $2 == t && $3 == "full" { print $10 }' "$TSV")
    read -r vo1 vb1 < <(awk -F'\t' -v t="$s" -v d="$DAYS" 'NR > 1 && $2 == t && $3 == "incr" && $4 == d { print $9, $10 }' "$TSV")
    grow=$((vb1 - vb0))
    echo "| $s | $touched | $(div $((touched * b)) $MB 1) | $(div $((touched * b)) "$changed_sum") | $chunks | $(div "$up" $MB 1) | **$(div "$up" "$changed_sum")** | $(div "$grow" $MB 1) | $(div "$grow" "$changed_sum") | $bchanged | $((bchanged - chunks)) | $vo1 | $(div "$vb1" $MB 1) |"
  done
  echo
  echo "Per day: MB changed (4 KiB pages), then per block size the MB uploaded (compressed chunks) and uploaded / changed."
  echo
  hdr="| day | changed MB |" sep="| ---: | ---: |"
  for s in "${SIZES[@]}"; do hdr+=" $s MB | $s x |"; sep+=" ---: | ---: |"; done
  echo "$hdr"
  echo "$sep"
  for day in $(seq 1 "$DAYS"); do
    p=$(awk -F'\t' -v t="${SIZES[0]}" -v d="$day" 'NR > 1 && $2 == t && $3 == "incr" && $4 == d { print $14 }' "$TSV")
    line="| $day | $(div $((p * 4096)) $MB 1) |"
    for s in "${SIZES[@]}"; do
      up=$(awk -F'\t' -v t="$s" -v d="$day" 'NR > 1 && $2 == t && $3 == "incr" && $4 == d { print $8 }' "$TSV")
      line+=" $(div "$up" $MB 1) | $(div "$up" $((p * 4096)) 1) |"
    done
    echo "$line"
  done
  if ((TIB)); then
    echo
    echo "1 TiB sparse disk holding gen1's data (truncate), once per size: full backup into a fresh vault, then an incremental with nothing changed (its vault growth is the block map and the point record)."
    echo
    echo "| block size | map per point MiB | full s | full RSS MiB | unchanged incremental s | its RSS MiB | its vault growth MB |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    for s in "${SIZES[@]}"; do
      t="tib-$s"
      read -r fw fr mp vb0 < <(awk -F'\t' -v t="$t" 'NR > 1 && $2 == t && $3 == "full" { print $5, $6, $11, $10 }' "$TSV")
      read -r iw ir vb1 < <(awk -F'\t' -v t="$t" 'NR > 1 && $2 == t && $3 == "incr" { print $5, $6, $10 }' "$TSV")
      echo "| $s | $(div "$mp" 1048576 1) | $(f "$fw" 2) | $(f "$fr" 0) | $(f "$iw" 2) | $(f "$ir" 0) | $(div $((vb1 - vb0)) $MB 1) |"
    done
  fi
  if ((S3)); then
    echo
    echo "S3 (${GARAGE_VERSION:-garage}, one node on the same 2 cores, a fresh server per run): full backup of gen0, incremental of gen1, restore --from vault of gen1's point; medians of $RUNS runs. PUTs: PutObject + CompleteMultipartUpload; requests: every S3 call, counted by Garage."
    echo
    echo "| block size | full s | full PUTs | full requests | full MiB/s | incremental s | incr. PUTs | incr. requests | restore s | restore requests | restore MiB/s | full / restore RSS MiB |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for s in "${SIZES[@]}"; do
      t="s3-$s"
      echo "| $s | $(f "$(m "$t" full 5)" 2) | $(m "$t" full 12) | $(m "$t" full 13) | $(div "$alloc" "$(awk -v x="$(m "$t" full 5)" 'BEGIN { print x * 1048576 }')" 0) | $(f "$(m "$t" incr 5)" 2) | $(m "$t" incr 12) | $(m "$t" incr 13) | $(f "$(m "$t" restore 5)" 2) | $(m "$t" restore 13) | $(div "$alloc" "$(awk -v x="$(m "$t" restore 5)" 'BEGIN { print x * 1048576 }')" 0) | $(f "$(m "$t" full 6)" 0) / $(f "$(m "$t" restore 6)" 0) |"
    done
  fi
  if [[ " ${SIZES[*]} " == *" $REF "* ]]; then
    echo
    echo "Against $REF (time ratio: > 1 is slower than $REF):"
    echo
    echo "| block size | full | incremental | restore | uploaded per incremental |$( ((S3)) && echo " S3 full | S3 restore | S3 requests, full |")"
    echo "| --- | ---: | ---: | ---: | ---: |$( ((S3)) && echo " ---: | ---: | ---: |")"
    for s in "${SIZES[@]}"; do
      line="| $s | $(div "$(m "$s" full 5)" "$(m $REF full 5)")x | $(div "$(agg "$s" incr 5 med)" "$(agg $REF incr 5 med)")x | $(div "$(m "$s" restore 5)" "$(m $REF restore 5)")x | $(div "$(agg "$s" incr 8 sum)" "$(agg $REF incr 8 sum)")x |"
      ((S3)) && line+=" $(div "$(m "s3-$s" full 5)" "$(m "s3-$REF" full 5)")x | $(div "$(m "s3-$s" restore 5)" "$(m "s3-$REF" restore 5)")x | $(div "$(m "s3-$s" full 13)" "$(m "s3-$REF" full 13)" 1)x |"
      echo "$line"
    done
  fi
  echo
  echo "Full backups and restores: medians of $RUNS runs; incrementals: median over the $DAYS days. $(nproc) cores, $(uname -sr), $(df -T "$WORK" | awk 'NR == 2 { print $2 }'); load average at the start $LOAD_START."
  echo "command: benches/chunk-size.sh ${ARGS:-}"
} | tee "$OUT"
