#!/usr/bin/env bash
# Usage: benches/capture-compare.sh [--runs N] [--data DIR] [--images DIR] [--copies N]
#                                   [--no-large] [--report-only] [-h|--help]
#
# Instant snapshots (issue 23), measured side by side in one run: blockvault
# backing up with `--capture auto` (reflink clones, changes from the file
# system) against `--capture read` (today's read under the hook, full-scan
# incrementals), on the same images, on the same XFS, under the same cache
# discipline. Needs root: it makes its own file system.
#
# Setup (untimed): a sparse image file DATA_DIR/capture/xfs.img (48 GiB
# apparent) formatted with `mkfs.xfs -m reflink=1` and loop-mounted on
# DATA_DIR/capture/mnt. Everything blockvault touches lives in it: the disk
# images, the state dir, the snapshot tier (--snapshot-dir) and a directory
# vault. Two master images are made in it:
#   small  gen0.img (8 GiB sparse ext4 VM disk with a Debian root, ~1.46 GB
#          allocated, from benches/make-image.sh) copied with
#          `cp --sparse=always`.
#   large  64 GiB sparse, holding --copies (default 7, ~10.2 GB) copies of
#          gen0's data extents, copy i at byte i * (8 GiB + 64 KiB)
#          (capture_image.py spread): copy 0 is gen0 itself, and the 64 KiB
#          shift makes every other copy's 1 MiB blocks differ from copy 0's,
#          so nothing deduplicates: the same kind of content, 7x the data.
# The churn is gen1's: the 4 KiB pages of gen1.img that differ from gen0.img
# (~13 MB in 32 runs, spread over 18 of gen0's 4 MiB blocks), written in
# place as a guest would (capture_image.py patch / apply). On the large
# image it is written into copy 0, at the same offsets: the same churn, the
# same absolute amount of data, on 7x the allocated data.
#
# Each of the N runs (default 3) does, for each image, for each capture mode
# (the order of the two modes alternates from one run to the next):
#   1. untimed: a fresh directory with a fresh vault (`vault init`), state dir
#      and snapshot tier; the disk is a reflink copy of the master (so every
#      run starts from the same bytes and the same extent layout);
#   2. full         `blockvault backup --capture MODE --pre-hook true
#                   --post-hook true`: the first backup of the VM;
#   3. untimed: the churn written into the disk, fsynced;
#   4. incremental  the same backup again;
#   5. (large image, auto only) restore  `blockvault restore` of the newest
#                   point into a new directory on the same XFS: the point's
#                   kept clone cloned back from the snapshot tier (the JSON
#                   says `restored_by`); the restored image is checked byte
#                   for byte against the disk (cmp in run 1;
#                   capture_image.py same, which skips holes, in the others);
#                   a mismatch aborts the script;
#   6. untimed: the directory deleted, fstrim on the XFS.
# Before every timed step, untimed: sync, drop the page cache
# (echo 3 > /proc/sys/vm/drop_caches), read the blockvault binary back into
# it (so no step times loading the program), and record /proc/loadavg (the
# machine may be shared: the report gives the load of every step).
#
# From each backup's `--json` (the Snapshot subtask's `capture` record) the
# TSV keeps: the capture kind, freeze_us (the freeze window: end of the
# pre-hook to start of the post-hook, what a frozen guest waits), clone_us,
# the disk's extents when cloned, where its changes came from (file-system or
# full-scan), bytes_read and bytes_allocated. Wall time is taken around the
# command with bash's $EPOCHREALTIME.
#
# The report (medians over the runs, ratios of figures measured in the same
# run) answers the claims of issue 23's Performance section:
#   - freeze window with reflink <= 10 ms, independent of disk size, next to
#     the read-under-hook window (the whole read of the disks);
#   - the incremental with changes from the file system grows with the
#     churn, not the allocated data, and is >= 5x faster than the full-scan
#     incremental on the large image;
#   - instant restore (clone back) of the large image < 1 s.
# Results: DATA_DIR/capture-results.md (the table) and
# DATA_DIR/capture-results.tsv (per step: run, config (image/mode), op,
# wall_s, freeze_ms, clone_ms, changes, bytes_read, bytes_allocated, extents,
# load1, restored_by, snapshot_s: the Snapshot subtask's own time, from the
# job's timestamps); logs of each step in DATA_DIR/capture-logs.
# On exit (also on failure or Ctrl-C) the XFS is unmounted and its image
# file deleted.
#
# Options:
#   --runs N        runs per configuration (default 3)
#   --data DIR      data directory (default $BLOCKVAULT_BENCH_DATA, else
#                   <repo>/target/bench-data): holds the XFS image while it
#                   runs and the results after
#   --images DIR    take gen0.img and gen1.img from DIR as they are (default:
#                   build or reuse them in DATA_DIR with make-image.sh)
#   --copies N      copies of gen0's data in the large image (default 7;
#                   lowered, with a warning, when the free space of DATA_DIR
#                   does not hold them)
#   --no-large      the small image only
#   --report-only   print the report again from the TSV and the run's
#                   parameters (DATA_DIR/capture-meta.sh) of the last run
#
# Environment:
#   BLOCKVAULT_BIN  use this blockvault binary instead of building
#                   `cargo build --release -p blockvault-cli`

set -euo pipefail
export LC_ALL=C # EPOCHREALTIME and printf %f must use '.' as decimal point

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=benches/lib.sh
source "$SCRIPT_DIR/lib.sh"
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
COMMAND_LINE="benches/capture-compare.sh${*:+ $*}"
HELPER=$SCRIPT_DIR/capture_image.py

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
log() { printf '[capture-compare] %s\n' "$*" >&2; }
die() { printf '[capture-compare] ERROR: %s\n' "$*" >&2; exit 1; }

RUNS=3
DATA_DIR=${BLOCKVAULT_BENCH_DATA:-$REPO_ROOT/target/bench-data}
IMAGES_DIR=
COPIES=7
IMAGES=(small large)
REPORT_ONLY=0
CMP_DONE=
GiB=$((1024 * 1024 * 1024))
XFS_SIZE=$((48 * GiB))
LARGE_SIZE=$((64 * GiB))
SHIFT=$((64 * 1024))

parse_args() {
  while (($#)); do
    case "$1" in
      --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
      --data) DATA_DIR=${2:?--data needs a value}; shift 2 ;;
      --images) IMAGES_DIR=${2:?--images needs a value}; shift 2 ;;
      --copies) COPIES=${2:?--copies needs a value}; shift 2 ;;
      --no-large) IMAGES=(small); shift ;;
      --report-only) REPORT_ONLY=1; shift ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; exit 2 ;;
    esac
  done
  [[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
  [[ $COPIES =~ ^[1-9][0-9]*$ ]] || die "--copies must be a positive integer"
  ((COPIES * (8 * GiB + SHIFT) <= LARGE_SIZE + SHIFT)) || die "--copies: at most 7 fit in 64 GiB"
  ((EUID == 0 || REPORT_ONLY)) || die "needs root (mkfs.xfs, mount, drop_caches)"
}

has_image() { [[ " ${IMAGES[*]} " == *" $1 "* ]]; }

# --- setup ---------------------------------------------------------------------

ensure_tools() {
  local missing=()
  command -v mkfs.xfs >/dev/null || missing+=(xfsprogs)
  command -v jq >/dev/null || missing+=(jq)
  command -v cmp >/dev/null || missing+=(diffutils)
  command -v fstrim >/dev/null || missing+=(util-linux)
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
  fi
}

ensure_blockvault() {
  if [[ -n ${BLOCKVAULT_BIN:-} ]]; then
    BV=$BLOCKVAULT_BIN
  else
    log "cargo build --release -p blockvault-cli"
    (cd "$REPO_ROOT" && cargo build --release -p blockvault-cli) >&2
    BV=${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/blockvault
  fi
  [[ -x $BV ]] || die "blockvault binary not found or not executable: $BV"
  BV_REV="$("$BV" --version), tree at $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
}

cleanup() {
  local rc=$?
  cd /
  if [[ -n ${MNT:-} ]] && mountpoint -q "$MNT"; then
    umount "$MNT" || umount -l "$MNT" || log "WARNING: could not unmount $MNT"
  fi
  if [[ -n ${CAP_DIR:-} ]]; then rm -rf "$CAP_DIR"; fi
  exit "$rc"
}

# The XFS in a sparse image file, loop-mounted (mount -o loop detaches the loop device on
# umount). Refuses to start when DATA_DIR's file system cannot hold what the run writes.
make_fs() {
  local alloc need avail copies=$COPIES
  alloc=$(du -B1 "$GEN0" | cut -f1)
  avail=$(df -B1 --output=avail "$DATA_DIR" | tail -n 1)
  # What the XFS holds at its fullest (and so what its image file holds on the host, freed
  # space being trimmed): the masters, plus one configuration's snapshot tier and vault
  # (compressed ~3x, counted at 1/2 to be safe), plus 2 GB of slack.
  need_for() { echo $((alloc * (1 + $1) + alloc * $1 + 2 * GiB)); }
  if has_image large; then
    while ((copies > 1)) && (($(need_for "$copies") > avail - 4 * GiB)); do copies=$((copies - 1)); done
    if ((copies != COPIES)); then
      log "WARNING: $((avail / GiB)) GiB free in $DATA_DIR: the large image gets $copies copies of gen0, not $COPIES"
      COPIES=$copies
    fi
  fi
  need=$(need_for "$( has_image large && echo "$COPIES" || echo 0)")
  ((need < avail)) || die "$DATA_DIR has $((avail / GiB)) GiB free, the run needs ~$((need / GiB)) GiB"
  log "XFS in $CAP_DIR/xfs.img ($((XFS_SIZE / GiB)) GiB sparse; at most ~$((need / GiB)) GiB written)"
  mkdir -p "$MNT"
  truncate -s "$XFS_SIZE" "$CAP_DIR/xfs.img"
  mkfs.xfs -q -m reflink=1 "$CAP_DIR/xfs.img"
  mount -o loop "$CAP_DIR/xfs.img" "$MNT"
  XFS_INFO=$(xfs_info "$MNT" | tr -s ' ' | grep -o 'reflink=[01]\|bsize=[0-9]*' | sort -u | paste -sd ' ')
  [[ $XFS_INFO == *reflink=1* ]] || die "the XFS has no reflink: $XFS_INFO"
}

make_masters() {
  mkdir -p "$MNT/masters"
  log "master small: cp --sparse=always $GEN0"
  cp --sparse=always "$GEN0" "$MNT/masters/small.img"
  if has_image large; then
    log "master large: $COPIES copies of gen0's data in 64 GiB (capture_image.py spread)"
    python3 "$HELPER" spread "$GEN0" "$MNT/masters/large.img" --size "$LARGE_SIZE" \
      --copies "$COPIES" --stride $((8 * GiB)) --shift "$SHIFT"
  fi
  python3 "$HELPER" patch "$GEN0" "$GEN1" "$MNT/churn.patch" >"$LOGS/churn.json"
  sync
}

# --- measurement -----------------------------------------------------------------

# timed RUN CONFIG OP LOG -- CMD...: sync, drop the page cache, read the binary back, record
# the load, then run CMD (in the config's directory) and set LAST_WALL and LAST_LOAD.
timed() {
  local run=$1 config=$2 op=$3 logf=$4
  shift 5
  sync
  echo 3 >/proc/sys/vm/drop_caches
  cat "$BV" >/dev/null
  LAST_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
  local t0=$EPOCHREALTIME rc=0
  "$@" >"$logf" 2>"$logf.err" || rc=$?
  local t1=$EPOCHREALTIME
  if ((rc != 0)); then
    tail -n 20 "$logf.err" >&2
    die "$config $op (run $run) failed with exit code $rc: $* (log: $logf)"
  fi
  LAST_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
}

us_to_ms() { if [[ -z $1 ]]; then echo n/a; else awk -v u="$1" 'BEGIN { printf "%.3f", u / 1000 }'; fi; }

backup() { # RUN IMAGE MODE OP
  local run=$1 img=$2 mode=$3 op=$4 dir=$MNT/$2-$3 logf
  logf=$LOGS/run$run-$img-$mode-$op.json
  timed "$run" "$img/$mode" "$op" "$logf" -- \
    "$BV" --state-dir "$dir/state" --snapshot-dir "$dir/tier" backup --vault "$dir/vault" \
    --vm bench --disk "$dir/vm/disk.img" --capture "$mode" --pre-hook true --post-hook true --json
  local rec
  rec=$(jq -r '.job.subtasks[] | select(.kind == "snapshot") | .capture |
    [.capture, (.freeze_us // "" | tostring), (.clone_us // "" | tostring),
     .disks[0].changes, .disks[0].bytes_read, .disks[0].bytes_allocated,
     (.disks[0].extents // "" | tostring)] | map(tostring) | join("|")' "$logf") ||
    die "no capture record in $logf"
  local kind freeze_us clone_us changes read allocated extents
  IFS='|' read -r kind freeze_us clone_us changes read allocated extents <<<"$rec"
  [[ -n $freeze_us ]] || die "no freeze_us in $logf (hooks not run?)"
  if [[ $mode == auto && $kind != reflink ]]; then die "--capture auto did not clone ($kind): see $logf"; fi
  # The Snapshot subtask's own duration (the job's timestamps): the part of the backup that
  # depends on the disk, without the process start, the catalog and the Transfer.
  local snap_s
  snap_s=$(jq -r '.job.subtasks[] | select(.kind == "snapshot") | "\(.started) \(.ended)"' "$logf" |
    { read -r a b; echo "$(date -d "$a" +%s.%N) $(date -d "$b" +%s.%N)"; } |
    awk '{ printf "%.3f", $2 - $1 }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$img/$mode" "$op" "$LAST_WALL" \
    "$(us_to_ms "$freeze_us")" \
    "$(us_to_ms "$clone_us")" \
    "$changes" "$read" "$allocated" "${extents:-n/a}" "${LAST_LOAD%% *}" "" "$snap_s" >>"$TSV"
  log "run $run: $img $mode $op: ${LAST_WALL} s, $kind, frozen $(awk -v u="$freeze_us" 'BEGIN { printf "%.2f", u / 1000 }') ms, $changes, $read of $allocated bytes read (load $LAST_LOAD)"
}

restore() { # RUN IMAGE MODE
  local run=$1 img=$2 mode=$3 dir=$MNT/$2-$3 logf by
  logf=$LOGS/run$run-$img-$mode-restore.json
  timed "$run" "$img/$mode" restore "$logf" -- \
    "$BV" --state-dir "$dir/state" --snapshot-dir "$dir/tier" restore --vault "$dir/vault" \
    --vm bench --to "$dir/restored" --json
  by=$(jq -r '.disks[0].restored_by' "$logf")
  [[ -f $dir/restored/disk.img ]] || die "restore produced no $dir/restored/disk.img"
  if ((run == 1)); then
    log "run $run: cmp of the restored $img image against the disk"
    cmp -- "$dir/restored/disk.img" "$dir/vm/disk.img" ||
      die "RESTORE MISMATCH: $dir/restored/disk.img differs from $dir/vm/disk.img"
    CMP_DONE="cmp (run 1)"
  else
    python3 "$HELPER" same "$dir/restored/disk.img" "$dir/vm/disk.img" ||
      die "RESTORE MISMATCH: $dir/restored/disk.img differs from $dir/vm/disk.img"
  fi
  printf '%s\t%s\t%s\t%s\t\t\t\t\t\t\t%s\t%s\t\n' "$run" "$img/$mode" restore "$LAST_WALL" \
    "${LAST_LOAD%% *}" "$by" >>"$TSV"
  log "run $run: $img restore: ${LAST_WALL} s, restored_by $by, identical (load $LAST_LOAD)"
}

one_config() { # RUN IMAGE MODE
  local run=$1 img=$2 mode=$3 dir=$MNT/$2-$3
  rm -rf "$dir"
  mkdir -p "$dir/vm"
  cp --reflink=always "$MNT/masters/$img.img" "$dir/vm/disk.img"
  "$BV" vault init "$dir/vault" >"$LOGS/run$run-$img-$mode-init.log" 2>&1 ||
    die "vault init failed (log: $LOGS/run$run-$img-$mode-init.log)"
  backup "$run" "$img" "$mode" full
  python3 "$HELPER" apply "$MNT/churn.patch" "$dir/vm/disk.img" >/dev/null
  backup "$run" "$img" "$mode" incremental
  if [[ $img == large && $mode == auto ]]; then restore "$run" "$img" "$mode"; fi
  rm -rf "$dir"
  fstrim "$MNT" >/dev/null 2>&1 || true
}

one_run() { # RUN
  local run=$1 img modes=(auto read) mode
  ((run % 2)) || modes=(read auto)
  log "run $run of $RUNS (mode order: ${modes[*]})"
  for img in "${IMAGES[@]}"; do
    for mode in "${modes[@]}"; do one_config "$run" "$img" "$mode"; done
  done
}

# --- report ----------------------------------------------------------------------

med() { median "$1" "$2" "$3"; } # CONFIG OP COLUMN
# Formatting: "-" passes through.
fmt() { if [[ $1 == - || $1 == n/a ]]; then echo "$1"; else printf "%.${2:-2}f" "$1"; fi; }
ratio() {
  if [[ $1 == - || $2 == - || $1 == n/a || $2 == n/a ]]; then echo -
  else awk -v a="$1" -v b="$2" 'BEGIN { r = a / b; printf (r >= 100 ? "%.0fx" : "%.1fx"), r }'; fi
}
mb() { if [[ $1 == - ]]; then echo -; else awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; fi; }
range() { # CONFIG OP COLUMN: min-max over runs
  awk -F'\t' -v t="$1" -v o="$2" -v c="$3" 'NR > 1 && $2 == t && $3 == o {
      if (lo == "" || $c + 0 < lo) lo = $c + 0; if (hi == "" || $c + 0 > hi) hi = $c + 0 }
    END { if (lo == "") print "-"; else printf "%.2f-%.2f", lo, hi }' "$TSV"
}
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }
verdict() { # TEST A B: "met", "not met", or "not measured" when A or B is no number
  if [[ ! $2 =~ ^[0-9.]+$ || ! $3 =~ ^[0-9.]+$ ]]; then echo "not measured"
  elif "$@"; then echo "met"; else echo "not met"; fi
}

report() {
  local img cpu load_max load_med
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  read -r load_med load_max < <(awk -F'\t' 'NR > 1 { print $11 }' "$TSV" | sort -g |
    awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)], v[NR] }')
  local s_alloc l_alloc
  s_alloc=$(med small/auto full 9)
  l_alloc=$(med large/auto full 9)
  {
    echo "## Instant snapshots: freeze window, changes from the file system, clone restore (issue 23)"
    echo
    echo "blockvault \`backup --capture auto\` (reflink clones into the snapshot tier, changes from the file system) against \`--capture read\` (the disks read under the hook, full-scan incrementals), same binary, same images, same XFS (loop-mounted, \`mkfs.xfs -m reflink=1\`, $XFS_INFO), in one run, $RUNS run(s) per configuration, medians (range over runs in brackets where it matters). Hooks: \`--pre-hook true --post-hook true\`. The page cache is dropped before every timed step (then the binary is read back), so every backup reads its disk from the device."
    echo
    echo "Images: **small** = gen0.img (8 GiB sparse ext4, Debian root), $(mb "$s_alloc") allocated; **large** = 64 GiB sparse holding $COPIES shifted copies of gen0's data, $(mb "$l_alloc") allocated. Churn between the full and the incremental backup: gen1's changed 4 KiB pages written in place ($(jq -r '"\(.bytes / 1e6 | . * 10 | round / 10) MB in \(.runs) runs"' "$LOGS/churn.json")), the same bytes at the same offsets on both images."
    echo
    echo "### 1. Freeze window (pre-hook end to post-hook start, \`freeze_us\` of the capture record)"
    echo
    echo "| image | backup | reflink freeze ms | (clones ms) | extents | read-under-hook freeze s | read / reflink |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
    for img in "${IMAGES[@]}"; do
      for op in full incremental; do
        local fa fr
        fa=$(med "$img/auto" "$op" 5)
        fr=$(med "$img/read" "$op" 5)
        echo "| $img | $op | $(fmt "$fa" 2) [$(range "$img/auto" "$op" 5)] | $(fmt "$(med "$img/auto" "$op" 6)" 2) | $(med "$img/auto" "$op" 10) | $(awk -v m="$fr" 'BEGIN { printf "%.2f", m / 1000 }') | $(ratio "$fr" "$fa") |"
      done
    done
    echo
    local worst
    worst=$(awk -F'\t' 'NR > 1 && $2 ~ /\/auto$/ && $3 != "restore" && $5 + 0 > m { m = $5 + 0 } END { printf "%.2f", m }' "$TSV")
    echo "Claim: reflink freeze <= 10 ms: largest reflink freeze of any run, any image: $worst ms. **$(verdict le "$worst" 10)**."
    echo
    if has_image large; then
      # The clone time against the extent count: a straight line through the medians of the
      # four reflink rows (least squares), to tell what the freeze grows with.
      local fit
      fit=$(for img in small large; do for op in full incremental; do
          echo "$(med "$img/auto" "$op" 10) $(med "$img/auto" "$op" 6)"; done; done |
        awk '{ n++; sx += $1; sy += $2; sxx += $1 * $1; sxy += $1 * $2 }
          END { b = (n * sxy - sx * sy) / (n * sxx - sx * sx); a = (sy - b * sx) / n
                printf "%.2f ms + %.1f us per extent; 10 ms at ~%.0f extents", a, b * 1000, (10 - a) / b }')
      echo "Claim: independent of disk size: the freeze follows the disk's extent count, not its bytes. Large / small freeze (medians): full $(ratio "$(med large/auto full 5)" "$(med small/auto full 5)"), incremental $(ratio "$(med large/auto incremental 5)" "$(med small/auto incremental 5)"), for $(ratio "$l_alloc" "$s_alloc") the data and $(ratio "$(med large/auto full 10)" "$(med small/auto full 10)") the extents (the large image was written as $COPIES copies, so it has $COPIES times gen0's extents). Clone time fitted on the four rows: $fit (so a lightly fragmented image stays far under 10 ms). The read-under-hook freeze grows with the bytes: large / small full $(ratio "$(med large/read full 5)" "$(med small/read full 5)"), incremental $(ratio "$(med large/read incremental 5)" "$(med small/read incremental 5)"). **$(verdict le "$(awk -v a="$(med large/auto incremental 5)" -v b="$(med small/auto incremental 5)" -v c="$l_alloc" -v d="$s_alloc" 'BEGIN { print (a / b) / (c / d) }')" 0.5)** (criterion: the reflink freeze grows by at most half as much as the data, large / small; the bytes themselves cost nothing, the extents do)."
      echo
    fi
    echo "### 2. Incremental backup: changes from the file system vs full scan"
    echo
    echo "Wall time of the command (median [range]), and in brackets the job's Snapshot subtask alone (median; its own timestamps: without the process start, the catalog and the Transfer)."
    echo
    echo "| image | full backup s (auto / read) | incremental, changes from the file system s | read / allocated | incremental, full scan s | read / allocated | full scan / file system |"
    echo "| --- | --- | ---: | --- | ---: | --- | ---: |"
    for img in "${IMAGES[@]}"; do
      local ia ir
      ia=$(med "$img/auto" incremental 4)
      ir=$(med "$img/read" incremental 4)
      echo "| $img | $(fmt "$(med "$img/auto" full 4)") / $(fmt "$(med "$img/read" full 4)") | $(fmt "$ia") [$(range "$img/auto" incremental 4)] (Snapshot $(fmt "$(med "$img/auto" incremental 13)")) | $(mb "$(med "$img/auto" incremental 8)") / $(mb "$(med "$img/auto" incremental 9)") ($(awk -F'\t' -v t="$img/auto" 'NR > 1 && $2 == t && $3 == "incremental" { print $7 }' "$TSV" | sort -u | tr '\n' ' ' | sed 's/ $//')) | $(fmt "$ir") [$(range "$img/read" incremental 4)] (Snapshot $(fmt "$(med "$img/read" incremental 13)")) | $(mb "$(med "$img/read" incremental 8)") / $(mb "$(med "$img/read" incremental 9)") | **$(ratio "$ir" "$ia")** |"
    done
    echo
    if has_image large; then
      local la sa lr
      la=$(med large/auto incremental 4)
      sa=$(med small/auto incremental 4)
      lr=$(med large/read incremental 4)
      local ls ss lmin smin
      ls=$(med large/auto incremental 13)
      ss=$(med small/auto incremental 13)
      lmin=$(awk -F'\t' '$2 == "large/auto" && $3 == "incremental" { print $4 }' "$TSV" | sort -g | head -n 1)
      smin=$(awk -F'\t' '$2 == "small/auto" && $3 == "incremental" { print $4 }' "$TSV" | sort -g | head -n 1)
      echo "Claim: the file-system incremental grows with the churn, not the allocated data (criterion: large / small <= 2x while the data grows $(ratio "$l_alloc" "$s_alloc")): both read the same $(mb "$(med large/auto incremental 8)") (the churn at 1 MiB blocks). Large / small: wall time (medians) $(ratio "$la" "$sa"): **$(verdict le "$(awk -v a="$la" -v b="$sa" 'BEGIN { print a / b }')" 2)**; the Snapshot subtask alone (medians) $(ratio "$ls" "$ss"): **$(verdict le "$(awk -v a="$ls" -v b="$ss" 'BEGIN { print a / b }')" 2)**; fastest wall time of the runs $(ratio "$lmin" "$smin"). The full-scan incremental's large / small, same runs: $(ratio "$lr" "$(med small/read incremental 4)")."
      echo
      echo "Claim: >= 5x faster than the full-scan incremental on the large image: $(ratio "$lr" "$la"). **$(verdict ge "$(awk -v a="$lr" -v b="$la" 'BEGIN { print a / b }')" 5)**."
      echo
      echo "### 3. Instant restore of the large image (clone back from the snapshot tier)"
      echo
      local rs
      rs=$(med large/auto restore 4)
      echo "| image | restore s (median) | range s | restored_by | check |"
      echo "| --- | ---: | --- | --- | --- |"
      echo "| large (64 GiB, $(mb "$l_alloc") allocated) | $(fmt "$rs" 3) | $(range large/auto restore 4) | $(awk -F'\t' 'NR > 1 && $3 == "restore" { print $12 }' "$TSV" | sort -u | tr '\n' ' ' | sed 's/ $//') | identical: ${CMP_DONE:-capture_image.py same}, capture_image.py same in the other runs |"
      echo
      echo "Next to it, in the same runs: the large image's full backup (auto) $(fmt "$(med large/auto full 4)") s, i.e. $(ratio "$(med large/auto full 4)" "$rs") the restore. Claim: under 1 s. **$(verdict le "$rs" 1)**."
      echo
    fi
    echo "Load (\`/proc/loadavg\`, 1 min, before each timed step): median $load_med, max $load_max on $(nproc) cores$(awk -v m="$load_max" -v n="$(nproc)" 'BEGIN { if (m > n) printf " (the machine was shared: the lead and other helpers compiled meanwhile; wall times of long steps are inflated, the ms-scale freeze and clone figures much less)" }')."
    echo "Machine: nproc $(nproc), CPU $cpu, kernel $(uname -r), RAM $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); XFS in a sparse file on $(df --output=fstype "$DATA_DIR" | tail -n 1) via a loop device."
    echo "blockvault: $BV ($BV_REV)."
    echo "Command: \`$COMMAND_LINE\`"
    echo "Raw per-step figures: $TSV (columns run, config, op, wall_s, freeze_ms, clone_ms, changes, bytes_read, bytes_allocated, extents, load1, restored_by, snapshot_s); logs: $LOGS."
  } | tee "$DATA_DIR/capture-results.md"
}

main() {
  parse_args "$@"
  mkdir -p "$DATA_DIR"
  DATA_DIR=$(cd "$DATA_DIR" && pwd)
  TSV=$DATA_DIR/capture-results.tsv
  LOGS=$DATA_DIR/capture-logs
  if ((REPORT_ONLY)); then
    [[ -f $TSV && -f $DATA_DIR/capture-meta.sh ]] || die "no earlier run in $DATA_DIR"
    # shellcheck source=/dev/null
    source "$DATA_DIR/capture-meta.sh"
    report
    return
  fi
  if [[ -n $IMAGES_DIR ]]; then
    IMAGES_DIR=$(cd "$IMAGES_DIR" && pwd)
  else
    "$SCRIPT_DIR/make-image.sh" "$DATA_DIR" >&2
    IMAGES_DIR=$DATA_DIR
  fi
  GEN0=$IMAGES_DIR/gen0.img
  GEN1=$IMAGES_DIR/gen1.img
  [[ -f $GEN0 && -f $GEN1 ]] || die "no gen0.img / gen1.img in $IMAGES_DIR"
  ensure_tools
  ensure_blockvault

  CAP_DIR=$DATA_DIR/capture
  MNT=$CAP_DIR/mnt
  if mountpoint -q "$MNT" 2>/dev/null; then die "$MNT is mounted: another run?"; fi
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  rm -rf "$CAP_DIR" "$LOGS"
  mkdir -p "$CAP_DIR" "$LOGS"
  make_fs
  make_masters
  printf 'run\tconfig\top\twall_s\tfreeze_ms\tclone_ms\tchanges\tbytes_read\tbytes_allocated\textents\tload1\trestored_by\tsnapshot_s\n' >"$TSV"
  local run
  for ((run = 1; run <= RUNS; run++)); do one_run "$run"; done
  # What the report needs besides the TSV, for --report-only.
  declare -p RUNS COPIES IMAGES XFS_INFO BV BV_REV COMMAND_LINE CMP_DONE >"$DATA_DIR/capture-meta.sh"
  report
}

main "$@"
