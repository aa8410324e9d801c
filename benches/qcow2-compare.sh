#!/usr/bin/env bash
# Usage: benches/qcow2-compare.sh [--runs N] [--data DIR] [--image RAW]
#                                 [--report-only] [-h|--help]
#
# qcow2 disks (issue 24), measured side by side in one run: a full backup of
# the realistic image as a raw file against the same image converted to qcow2
# (read through the qemu-nbd blockvault starts for it), and the restore of
# each point: the raw point restored raw, the qcow2 point restored to qcow2
# (the default: raw restore + `qemu-img convert`) and to raw (--format raw).
#
# Setup (untimed): DATA_DIR/qcow2/disk.img = the image, copied with
# `cp --sparse=always`; DATA_DIR/qcow2/disk.qcow2 = `qemu-img convert -f raw
# -O qcow2` of it (sparse, as a VM's qcow2 disk would be). The image is
# gen0.img from benches/make-image.sh (8 GiB sparse ext4 with a Debian root,
# ~1.46 GB allocated), or --image RAW.
#
# Each of the N runs (default 3) does, for each format (raw, qcow2; the order
# alternates from one run to the next):
#   1. untimed: a fresh vault (`vault init`), state dir and snapshot tier;
#   2. full     `blockvault backup --capture read` of the disk (the same
#               capture for both: the comparison is the read path, the file
#               against qemu-nbd + the NBD client);
#   3. restore  `blockvault restore --from vault` into a new directory (raw:
#               the raw file; qcow2: a qcow2 file, then again `--format raw`
#               as restore-raw);
#   4. checks (untimed; a mismatch aborts the script): in run 1 the restored
#      raw files are compared with cmp to the image, the restored qcow2 with
#      `qemu-img compare` to the qcow2 disk; then the directory is deleted.
# Before every timed step, untimed: sync, drop the page cache, read the
# blockvault binary back, record /proc/loadavg.
#
# The report (medians over the runs, ratios of figures measured in the same
# run): full backup qcow2 / raw (issue 24: within 1.3x), restore to qcow2 /
# restore of the raw point, and restore of the qcow2 point to raw / restore of
# the raw point. Results: DATA_DIR/qcow2-results.md and
# DATA_DIR/qcow2-results.tsv (run, config, op, wall_s, load1,
# bytes_allocated_out: the restored file's allocated bytes); logs in
# DATA_DIR/qcow2-logs. The work directory DATA_DIR/qcow2 is deleted on exit.
#
# Options:
#   --runs N        runs (default 3)
#   --data DIR      data directory (default $BLOCKVAULT_BENCH_DATA, else
#                   <repo>/target/bench-data)
#   --image RAW     a raw disk image to use instead of gen0.img
#   --report-only   print the report again from the last run's TSV
#
# Environment:
#   BLOCKVAULT_BIN  use this blockvault binary instead of building
#                   `cargo build --release -p blockvault-cli`

set -euo pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=benches/lib.sh
source "$SCRIPT_DIR/lib.sh"
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
COMMAND_LINE="benches/qcow2-compare.sh${*:+ $*}"

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
log() { printf '[qcow2-compare] %s\n' "$*" >&2; }
die() { printf '[qcow2-compare] ERROR: %s\n' "$*" >&2; exit 1; }

RUNS=3
DATA_DIR=${BLOCKVAULT_BENCH_DATA:-$REPO_ROOT/target/bench-data}
IMAGE=
REPORT_ONLY=0

parse_args() {
  while (($#)); do
    case "$1" in
      --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
      --data) DATA_DIR=${2:?--data needs a value}; shift 2 ;;
      --image) IMAGE=${2:?--image needs a value}; shift 2 ;;
      --report-only) REPORT_ONLY=1; shift ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; exit 2 ;;
    esac
  done
  [[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
}

ensure_tools() {
  local missing=()
  command -v qemu-img >/dev/null && command -v qemu-nbd >/dev/null || missing+=(qemu-utils)
  command -v jq >/dev/null || missing+=(jq)
  command -v cmp >/dev/null || missing+=(diffutils)
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
  fi
}

ensure_blockvault() {
  ensure_blockvault_bin
  PROGRAMS=("$BV" "$(command -v qemu-nbd)" "$(command -v qemu-img)")
}

cleanup() {
  local rc=$?
  cd /
  if [[ -n ${WORK:-} ]]; then rm -rf "$WORK"; fi
  exit "$rc"
}

allocated() { echo $(($(stat -c %b "$1") * $(stat -c %B "$1"))); }

# timed RUN CONFIG OP LOG OUT -- CMD...: sync, drop the page cache, read the programs back,
# record the load, run CMD, and append a TSV row (OUT: the file whose allocated bytes to
# record, or -).
timed() {
  local run=$1 config=$2 op=$3 logf=$4 out=$5
  shift 6
  sync
  drop_caches
  local load t0 t1 rc=0
  load=$(cut -d' ' -f1 /proc/loadavg)
  t0=$EPOCHREALTIME
  "$@" >"$logf" 2>"$logf.err" || rc=$?
  t1=$EPOCHREALTIME
  if ((rc != 0)); then
    tail -n 20 "$logf.err" >&2
    die "$config $op (run $run) failed with exit code $rc: $* (log: $logf)"
  fi
  local wall alloc=-
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  if [[ $out != - ]]; then alloc=$(allocated "$out"); fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$config" "$op" "$wall" "$load" "$alloc" >>"$TSV"
  log "run $run: $config $op: $wall s (load $load)"
}

one_config() { # RUN FORMAT
  local run=$1 fmt=$2 dir=$WORK/$2 disk
  disk=$WORK/disk.img
  [[ $fmt == qcow2 ]] && disk=$WORK/disk.qcow2
  rm -rf "$dir"
  mkdir -p "$dir"
  "$BV" vault init "$dir/vault" >"$LOGS/run$run-$fmt-init.log" 2>&1 ||
    die "vault init failed (log: $LOGS/run$run-$fmt-init.log)"
  local bv=("$BV" --state-dir "$dir/state" --snapshot-dir "$dir/tier")
  timed "$run" "$fmt" full "$LOGS/run$run-$fmt-full.json" - -- \
    "${bv[@]}" backup --vault "$dir/vault" --vm bench --disk "$disk" --capture read --json
  local name
  name=$(basename "$disk")
  timed "$run" "$fmt" restore "$LOGS/run$run-$fmt-restore.json" "$dir/out/$name" -- \
    "${bv[@]}" restore --vault "$dir/vault" --vm bench --from vault --to "$dir/out" --json
  local written
  written=$(jq -r '.disks[0].format' "$LOGS/run$run-$fmt-restore.json")
  [[ $written == "$fmt" ]] || die "the $fmt point restored as $written"
  if [[ $fmt == qcow2 ]]; then
    timed "$run" "$fmt" restore-raw "$LOGS/run$run-$fmt-restore-raw.json" "$dir/raw/$name" -- \
      "${bv[@]}" restore --vault "$dir/vault" --vm bench --from vault --to "$dir/raw" \
      --format raw --json
  fi
  if ((run == 1)); then
    log "run $run: checking the restored $fmt images"
    if [[ $fmt == qcow2 ]]; then
      qemu-img compare -q -f qcow2 -F qcow2 "$dir/out/$name" "$disk" ||
        die "RESTORE MISMATCH: $dir/out/$name differs from $disk (qemu-img compare)"
      cmp -- "$dir/raw/$name" "$WORK/disk.img" ||
        die "RESTORE MISMATCH: $dir/raw/$name differs from the raw image"
    else
      cmp -- "$dir/out/$name" "$disk" || die "RESTORE MISMATCH: $dir/out/$name differs from $disk"
    fi
  fi
  rm -rf "$dir"
}

# --- report ----------------------------------------------------------------------

med() { median "$1" "$2" "$3"; }
fmt() { if [[ $1 == - ]]; then echo -; else printf "%.${2:-2}f" "$1"; fi; }
ratio() {
  if [[ $1 == - || $2 == - ]]; then echo -
  else awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; fi
}
mb() { if [[ $1 == - ]]; then echo -; else awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; fi; }

report() {
  local fr fq rr rq rqr verdict
  fr=$(med raw full 4)
  fq=$(med qcow2 full 4)
  rr=$(med raw restore 4)
  rq=$(med qcow2 restore 4)
  rqr=$(med qcow2 restore-raw 4)
  verdict=$(awk -v a="$fq" -v b="$fr" 'BEGIN { print (a / b <= 1.3) ? "met" : "not met" }')
  {
    echo "## qcow2 disks: full backup through qemu-nbd vs the raw file, restore to qcow2 (issue 24)"
    echo
    echo "The same image as a raw file and converted to qcow2 (\`qemu-img convert -O qcow2\`): $IMAGE_DESC. blockvault \`backup --capture read\` (full, fresh vault), then \`restore --from vault\`; $RUNS run(s), formats alternating, page cache dropped before every timed step; medians of wall time."
    echo
    echo "| step | raw s | qcow2 s | qcow2 / raw |"
    echo "| --- | ---: | ---: | ---: |"
    echo "| full backup | $(fmt "$fr") | $(fmt "$fq") | **$(ratio "$fq" "$fr")** |"
    echo "| restore (as backed up: raw file / qcow2 file) | $(fmt "$rr") | $(fmt "$rq") | $(ratio "$rq" "$rr") |"
    echo "| restore of the qcow2 point with --format raw | | $(fmt "$rqr") | $(ratio "$rqr" "$rr") |"
    echo
    echo "Restored files, allocated: raw $(mb "$(med raw restore 6)"), qcow2 $(mb "$(med qcow2 restore 6)"), qcow2 point as raw $(mb "$(med qcow2 restore-raw 6)")."
    echo
    echo "Claim: full backup of the qcow2 through NBD within 1.3x of the raw-file backup: $(ratio "$fq" "$fr"). **$verdict**."
    echo
    echo "Load (1 min) before the steps: $(awk -F'\t' 'NR > 1 { print $5 }' "$TSV" | sort -g | paste -sd ' ') on $(nproc) cores."
    echo "blockvault: $BV ($BV_REV)."
    echo "Command: \`$COMMAND_LINE\`"
    echo "Raw per-step figures: $TSV (columns run, config, op, wall_s, load1, bytes_allocated_out); logs: $LOGS."
  } | tee "$DATA_DIR/qcow2-results.md"
}

main() {
  parse_args "$@"
  mkdir -p "$DATA_DIR"
  DATA_DIR=$(cd "$DATA_DIR" && pwd)
  TSV=$DATA_DIR/qcow2-results.tsv
  LOGS=$DATA_DIR/qcow2-logs
  if ((REPORT_ONLY)); then
    [[ -f $TSV && -f $DATA_DIR/qcow2-meta.sh ]] || die "no earlier run in $DATA_DIR"
    # shellcheck source=/dev/null
    source "$DATA_DIR/qcow2-meta.sh"
    report
    return
  fi
  if [[ -z $IMAGE ]]; then
    "$SCRIPT_DIR/make-image.sh" "$DATA_DIR" >&2
    IMAGE=$DATA_DIR/gen0.img
  fi
  [[ -f $IMAGE ]] || die "no image $IMAGE"
  ensure_tools
  ensure_blockvault

  WORK=$DATA_DIR/qcow2
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  rm -rf "$WORK" "$LOGS"
  mkdir -p "$WORK" "$LOGS"
  log "the image, raw (cp --sparse=always) and qcow2 (qemu-img convert)"
  cp --sparse=always "$IMAGE" "$WORK/disk.img"
  qemu-img convert -f raw -O qcow2 "$WORK/disk.img" "$WORK/disk.qcow2"
  IMAGE_DESC="$(basename "$IMAGE"), $(awk -v b="$(stat -c %s "$IMAGE")" 'BEGIN { printf "%.1f GiB", b / 2^30 }') virtual, $(mb "$(allocated "$WORK/disk.img")") allocated (raw), $(mb "$(allocated "$WORK/disk.qcow2")") (qcow2)"
  printf 'run\tconfig\top\twall_s\tload1\tbytes_allocated_out\n' >"$TSV"
  local run fmts
  for ((run = 1; run <= RUNS; run++)); do
    fmts=(raw qcow2)
    ((run % 2)) || fmts=(qcow2 raw)
    log "run $run of $RUNS (order: ${fmts[*]})"
    for f in "${fmts[@]}"; do one_config "$run" "$f"; done
  done
  declare -p RUNS IMAGE IMAGE_DESC BV BV_REV COMMAND_LINE >"$DATA_DIR/qcow2-meta.sh"
  report
}

main "$@"
