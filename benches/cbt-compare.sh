#!/usr/bin/env bash
# Usage: benches/cbt-compare.sh [--runs N] [--data DIR] [--images DIR]
#                               [--churn-mb MB] [--report-only] [-h|--help]
#
# QEMU dirty bitmaps as changed-block tracking (issue 24), measured side by
# side in one run, on the realistic image converted to qcow2:
#
#   bitmap    the incremental of a qcow2 disk no QEMU has open: the full
#             backup added the bitmap blockvault-<point>; the incremental
#             reads only the blocks it marks (qemu-nbd -B);
#   fullscan  the same incremental with that bitmap removed first
#             (`qemu-img bitmap --remove`): the Distrust is "missing", so
#             every allocated block is read and hashed (what an incremental
#             cost before bitmaps);
#   floor     `blockvault-floor hash` of a file holding as many bytes as the
#             bitmap incremental read (random data, page cache dropped): the
#             least work of reading and hashing only the dirty bytes;
#   big       the bitmap incremental again after a larger churn (--churn-mb,
#             default 256: whole 1 MiB blocks of new data, half random, half
#             zeros, at random places; capture_image.py synth), and its floor
#             (bigfloor): where the fixed costs no longer hide the per-byte
#             cost;
#   vm        a running "VM": qemu-storage-daemon serving a copy of the qcow2
#             with a QMP monitor (no KVM needed: no guest, only its disk);
#             `backup --qmp` full, then the churn written by the "guest"
#             through a FUSE export of the disk's node, then the incremental:
#             the freeze window (pre-hook end to post-hook start: one QMP
#             transaction) of both, and the bytes the incremental read.
#
# The churn is gen1's: the 4 KiB pages of gen1.img that differ from gen0.img
# (capture_image.py patch), written as a guest would: through qemu-io
# (capture_image.py apply-qemu) for the offline image, through the FUSE export
# for the running one, so QEMU's bitmaps see every write.
#
# Each of the N runs (default 3): bitmap and fullscan (order alternating),
# each on a fresh copy of the qcow2 and a fresh vault, state dir and snapshot
# tier: full backup (timed, not compared), churn (untimed), incremental
# (timed); then the floor; then vm. Every backup is `blockvault backup
# --capture read --pre-hook true --post-hook true --json`. Before every timed
# step, untimed: sync, drop the page cache, read the programs back into it,
# record /proc/loadavg. In run 1 the bitmap incremental's point is restored
# (`--format raw`) and compared byte for byte with `qemu-img convert` of the
# disk; a mismatch aborts the script.
#
# The report (medians over the runs) answers issue 24's claims: the bitmap
# incremental at most 2x the floor of reading and hashing the dirty bytes (the
# whole backup, the Snapshot, and the Snapshot's read alone: `read_us`, the
# time its scan spent reading, hashing and compressing, without the fixed
# costs of starting QEMU's tools, the hooks and the catalog), and
# at least 5x faster than the full-scan incremental; the running VM's freeze
# window under 50 ms. Results: DATA_DIR/cbt-results.md and
# DATA_DIR/cbt-results.tsv (run, config, op, wall_s, snapshot_s, freeze_ms,
# changes, bytes_read, bytes_allocated, load1, read_s); logs in
# DATA_DIR/cbt-logs.
# The work directory DATA_DIR/cbt is deleted on exit (the daemon stopped, the
# FUSE export unmounted).
#
# Options:
#   --runs N        runs (default 3)
#   --data DIR      data directory (default $BLOCKVAULT_BENCH_DATA, else
#                   <repo>/target/bench-data)
#   --images DIR    take gen0.img and gen1.img from DIR (default: build or
#                   reuse them in DATA_DIR with make-image.sh)
#   --churn-mb MB   the big churn, in MiB (default 256; 0 leaves it out)
#   --report-only   print the report again from the last run's TSV
#
# Environment:
#   BLOCKVAULT_BIN        this blockvault binary instead of building one
#   BLOCKVAULT_FLOOR_BIN  this blockvault-floor binary instead of building one

set -euo pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=benches/lib.sh
source "$SCRIPT_DIR/lib.sh"
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
COMMAND_LINE="benches/cbt-compare.sh${*:+ $*}"
HELPER=$SCRIPT_DIR/capture_image.py

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
log() { printf '[cbt-compare] %s\n' "$*" >&2; }
die() { printf '[cbt-compare] ERROR: %s\n' "$*" >&2; exit 1; }

RUNS=3
DATA_DIR=${BLOCKVAULT_BENCH_DATA:-$REPO_ROOT/target/bench-data}
IMAGES_DIR=
REPORT_ONLY=0
CHURN_MB=256

parse_args() {
  while (($#)); do
    case "$1" in
      --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
      --data) DATA_DIR=${2:?--data needs a value}; shift 2 ;;
      --images) IMAGES_DIR=${2:?--images needs a value}; shift 2 ;;
      --churn-mb) CHURN_MB=${2:?--churn-mb needs a value}; shift 2 ;;
      --report-only) REPORT_ONLY=1; shift ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; exit 2 ;;
    esac
  done
  [[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
  [[ $CHURN_MB =~ ^[0-9]+$ ]] || die "--churn-mb must be a whole number of MiB"
  ((EUID == 0 || REPORT_ONLY)) || die "needs root (drop_caches, the FUSE export)"
}

ensure_tools() {
  local missing=()
  command -v qemu-storage-daemon >/dev/null && command -v qemu-io >/dev/null || missing+=(qemu-utils)
  command -v jq >/dev/null || missing+=(jq)
  command -v cmp >/dev/null || missing+=(diffutils)
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
  fi
  [[ -e /dev/fuse ]] || die "the running-VM step needs /dev/fuse"
}

ensure_blockvault() {
  ensure_blockvault_bin
  ensure_floor
  PROGRAMS=("$BV" "$FLOOR" "$(command -v qemu-nbd)" "$(command -v qemu-img)")
}

QSD_PID=
FUSE_FILE=
stop_vm() {
  if [[ -n $QSD_PID ]]; then
    kill "$QSD_PID" 2>/dev/null || true
    wait "$QSD_PID" 2>/dev/null || true
    QSD_PID=
  fi
  if [[ -n $FUSE_FILE ]] && mountpoint -q "$FUSE_FILE" 2>/dev/null; then umount "$FUSE_FILE" || true; fi
  FUSE_FILE=
}

cleanup() {
  local rc=$?
  cd /
  stop_vm
  if [[ -n ${WORK:-} ]]; then rm -rf "$WORK"; fi
  exit "$rc"
}

# timed RUN CONFIG OP LOG -- CMD...: sync, drop the page cache, read the programs back, record
# the load, run CMD (its stdout into LOG), and append a TSV row with what the backup's JSON
# says of its capture (or - for a command that is not a backup).
timed() {
  local run=$1 config=$2 op=$3 logf=$4
  shift 5
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
  local wall snap=- freeze=- changes=- read=- alloc=- read_s=-
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  if jq -e '.job.subtasks' "$logf" >/dev/null 2>&1; then
    read -r freeze changes read alloc < <(jq -r '.job.subtasks[] | select(.kind == "snapshot")
      | .capture | "\(if .freeze_us == null then "-" else .freeze_us / 1000 end)
        \([.disks[].changes] | unique | join("+")) \([.disks[].bytes_read] | add)
        \([.disks[].bytes_allocated] | add)"' "$logf" | tr '\n' ' '; echo)
    read_s=$(jq -r '.job.subtasks[] | select(.kind == "snapshot") | .capture.disks
      | if any(.read_us == null) then "-" else ([.[].read_us] | add / 1e6) end' "$logf")
    snap=$(jq -r '.job.subtasks[] | select(.kind == "snapshot") | "\(.started) \(.ended)"' "$logf" |
      { read -r a b; echo "$(($(date -d "$b" +%s%N) - $(date -d "$a" +%s%N)))"; } |
      awk '{ printf "%.3f", $1 / 1e9 }')
  elif [[ $config == floor || $config == bigfloor ]]; then
    read=$(floor_field "$logf" bytes_read)
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$config" "$op" "$wall" \
    "$snap" "$freeze" "$changes" "$read" "$alloc" "$load" "$read_s" >>"$TSV"
  log "run $run: $config $op: $wall s (load $load; changes $changes, read $read)"
}

backup() { # DIR DISK [ARGS...]: the backup command line of one configuration
  local dir=$1 disk=$2
  shift 2
  echo "$BV" --state-dir "$dir/state" --snapshot-dir "$dir/tier" backup --vault "$dir/vault" \
    --vm bench --disk "$disk" --capture read --pre-hook true --post-hook true --json "$@"
}

one_offline() { # RUN CONFIG (bitmap | fullscan | big)
  local run=$1 config=$2 dir=$WORK/$2 patch=$WORK/churn.patch
  [[ $config == big ]] && patch=$WORK/big.patch
  rm -rf "$dir"
  mkdir -p "$dir"
  cp --sparse=always "$WORK/master.qcow2" "$dir/disk.qcow2"
  "$BV" vault init "$dir/vault" >"$LOGS/run$run-$config-init.log" 2>&1 ||
    die "vault init failed (log: $LOGS/run$run-$config-init.log)"
  # shellcheck disable=SC2046
  timed "$run" "$config" full "$LOGS/run$run-$config-full.json" -- $(backup "$dir" "$dir/disk.qcow2")
  local point
  point=$(jq -r '.point.id' "$LOGS/run$run-$config-full.json")
  qemu-img info --output=json "$dir/disk.qcow2" | jq -e --arg n "blockvault-$point" \
    '."format-specific".data.bitmaps | any(.name == $n)' >/dev/null ||
    die "the full backup left no bitmap blockvault-$point on the disk"
  python3 "$HELPER" apply-qemu "$patch" "$dir/disk.qcow2" >/dev/null
  if [[ $config == fullscan ]]; then
    qemu-img bitmap --remove "$dir/disk.qcow2" "blockvault-$point"
  fi
  # shellcheck disable=SC2046
  timed "$run" "$config" incremental "$LOGS/run$run-$config-incr.json" -- \
    $(backup "$dir" "$dir/disk.qcow2")
  local want=dirty-bitmap
  [[ $config == fullscan ]] && want=full-scan
  local got
  got=$(awk -F'\t' -v r="$run" -v c="$config" '$1 == r && $2 == c && $3 == "incremental" { print $7 }' "$TSV")
  [[ $got == "$want" ]] || die "the $config incremental's changes came from $got, not $want"
  if ((run == 1)) && [[ $config == bitmap ]]; then
    log "run $run: checking the bitmap incremental's point byte for byte"
    "$BV" --state-dir "$dir/state" --snapshot-dir "$dir/tier" restore --vault "$dir/vault" \
      --vm bench --from vault --to "$dir/out" --format raw >/dev/null
    qemu-img convert -f qcow2 -O raw "$dir/disk.qcow2" "$dir/expected.raw"
    cmp -- "$dir/out/disk.qcow2" "$dir/expected.raw" ||
      die "RESTORE MISMATCH: the bitmap incremental's point differs from the disk"
  fi
  rm -rf "$dir"
}

one_floor() { # RUN [big]: read + hash as many random bytes as that bitmap incremental read
  local run=$1 of=bitmap as=floor bytes
  [[ ${2:-} == big ]] && of=big as=bigfloor
  bytes=$(awk -F'\t' -v r="$run" -v c="$of" '$1 == r && $2 == c && $3 == "incremental" { print $8 }' "$TSV")
  [[ $bytes =~ ^[0-9]+$ ]] || die "no $of incremental in run $run"
  if [[ $of == big ]]; then
    # The big churn's blocks are whole: the floor reads exactly the bytes the incremental read,
    # so it can also do the Snapshot's whole work on them (backup-dir: read, hash, compress,
    # write each block to its own file and fsync it).
    python3 "$HELPER" data "$WORK/big.patch" "$WORK/dirty.bin"
    (($(stat -c %s "$WORK/dirty.bin") == bytes)) || die "the big churn's data is not the $bytes bytes read"
  else
    head -c "$bytes" /dev/urandom >"$WORK/dirty.bin"
  fi
  timed "$run" "$as" hash "$LOGS/run$run-$as.json" -- "$FLOOR" hash "$WORK/dirty.bin"
  if [[ $of == big ]]; then
    rm -rf "$WORK/floor-dir"
    timed "$run" "$as" backup-dir "$LOGS/run$run-$as-dir.json" -- \
      "$FLOOR" backup-dir "$WORK/dirty.bin" "$WORK/floor-dir"
    rm -rf "$WORK/floor-dir"
  fi
  rm -f "$WORK/dirty.bin"
}

one_vm() { # RUN: a running VM (qemu-storage-daemon) backed up through its monitor
  local run=$1 dir=$WORK/vm
  rm -rf "$dir"
  mkdir -p "$dir"
  cp --sparse=always "$WORK/master.qcow2" "$dir/disk.qcow2"
  "$BV" vault init "$dir/vault" >"$LOGS/run$run-vm-init.log" 2>&1 || die "vault init failed"
  FUSE_FILE=$dir/guest.raw
  : >"$FUSE_FILE"
  qemu-storage-daemon \
    --chardev "socket,id=qmp,path=$dir/qmp.sock,server=on,wait=off" --monitor chardev=qmp \
    --blockdev "driver=file,node-name=disk-file,filename=$dir/disk.qcow2" \
    --blockdev "driver=qcow2,node-name=disk,file=disk-file" \
    --export "type=fuse,id=guest,node-name=disk,mountpoint=$FUSE_FILE,writable=on" \
    >"$LOGS/run$run-qsd.log" 2>&1 &
  QSD_PID=$!
  local i
  for ((i = 0; i < 200; i++)); do [[ -S $dir/qmp.sock ]] && mountpoint -q "$FUSE_FILE" && break; sleep 0.05; done
  [[ -S $dir/qmp.sock ]] || die "qemu-storage-daemon did not start (log: $LOGS/run$run-qsd.log)"
  # shellcheck disable=SC2046
  timed "$run" vm full "$LOGS/run$run-vm-full.json" -- \
    $(backup "$dir" "$dir/disk.qcow2" --qmp "$dir/qmp.sock")
  python3 "$HELPER" apply "$WORK/churn.patch" "$FUSE_FILE" >/dev/null
  # shellcheck disable=SC2046
  timed "$run" vm incremental "$LOGS/run$run-vm-incr.json" -- \
    $(backup "$dir" "$dir/disk.qcow2" --qmp "$dir/qmp.sock")
  stop_vm
  rm -rf "$dir"
}

# --- report ----------------------------------------------------------------------

med() { median "$1" "$2" "$3"; }
num() { if [[ $1 == - ]]; then echo -; else printf "%.${2:-2}f" "$1"; fi; }
ratio() {
  if [[ $1 == - || $2 == - ]]; then echo -
  else awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; fi
}
mb() { if [[ $1 == - ]]; then echo -; else awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; fi; }
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { ok = (op == "<=") ? v <= t : v >= t; print ok ? "met" : "**not met**" }'; }

report() {
  local bi fi fl bs fs vf vi vfz viz vr
  bi=$(med bitmap incremental 4)
  fi=$(med fullscan incremental 4)
  bs=$(med bitmap incremental 5)
  fs=$(med fullscan incremental 5)
  fl=$(med floor hash 4)
  vf=$(med vm full 6)
  viz=$(med vm incremental 6)
  vi=$(med vm incremental 4)
  vr=$(med vm incremental 8)
  local over_floor faster over_floor_snap faster_snap
  over_floor=$(awk -v a="$bi" -v b="$fl" 'BEGIN { printf "%.2f", a / b }')
  faster=$(awk -v a="$fi" -v b="$bi" 'BEGIN { printf "%.2f", a / b }')
  over_floor_snap=$(awk -v a="$bs" -v b="$fl" 'BEGIN { printf "%.2f", a / b }')
  faster_snap=$(awk -v a="$fs" -v b="$bs" 'BEGIN { printf "%.2f", a / b }')
  local worst_freeze
  worst_freeze=$(awk -F'\t' 'NR > 1 && $2 == "vm" && $6 != "-" { if ($6 > m) m = $6 } END { print m + 0 }' "$TSV")
  {
    echo "## QEMU dirty bitmaps as changed-block tracking; a running VM's freeze (issue 24)"
    echo
    echo "$IMAGE_DESC. Churn between the full and the incremental backup: $CHURN_DESC, written through QEMU. $RUNS run(s); medians; page cache dropped before every timed step. \`backup\` is the whole job (Snapshot + Transfer to a directory vault); *snapshot* is the Snapshot subtask alone (the capture and the read), from the job's timestamps."
    echo
    echo "| incremental of the qcow2 | backup s | snapshot s | read | changes |"
    echo "| --- | ---: | ---: | ---: | --- |"
    echo "| dirty bitmap | $(num "$bi") | $(num "$bs") | $(mb "$(med bitmap incremental 8)") | dirty-bitmap |"
    echo "| full scan (bitmap removed) | $(num "$fi") | $(num "$fs") | $(mb "$(med fullscan incremental 8)") | full-scan |"
    echo "| floor: read + hash the bitmap's bytes | $(num "$fl") | | $(mb "$(med floor hash 8)") | |"
    echo
    echo "The Snapshot's read alone (\`read_us\` of its capture record: reading, hashing and compressing the blocks, without the fixed costs of QEMU's tools, the hooks and the catalog), against the floor of the same bytes:"
    echo
    echo "| churn | read | backup s | snapshot s | read s | floor s | backup / floor | read / floor |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    echo "| $CHURN_DESC | $(mb "$(med bitmap incremental 8)") | $(num "$bi") | $(num "$bs") | $(num "$(med bitmap incremental 11)" 3) | $(num "$fl" 3) | $(ratio "$bi" "$fl") | $(ratio "$(med bitmap incremental 11)" "$fl") |"
    if [[ -n $BIG_DESC ]]; then
      local gi gs gr gf
      gi=$(med big incremental 4); gs=$(med big incremental 5); gr=$(med big incremental 11); gf=$(med bigfloor hash 4)
      echo "| $BIG_DESC | $(mb "$(med big incremental 8)") | $(num "$gi") | $(num "$gs") | $(num "$gr" 3) | $(num "$gf" 3) | $(ratio "$gi" "$gf") | $(ratio "$gr" "$gf") |"
      local gd
      gd=$(med bigfloor backup-dir 4)
      echo
      echo "The big churn's Snapshot against the floor of its whole work (\`blockvault-floor backup-dir\` of the same bytes: read, hash, zstd -1, each block written to its own file and fsynced): snapshot $(num "$gs") s, read $(num "$gr" 3) s, floor $(num "$gd" 3) s: **$(ratio "$gs" "$gd")** the Snapshot, $(ratio "$gr" "$gd") its read."
    fi
    echo
    echo "- Bitmap incremental / floor: **${over_floor}x** the whole backup, ${over_floor_snap}x the Snapshot (issue: at most 2x): $(verdict "$over_floor" "<=" 2) for the backup, $(verdict "$over_floor_snap" "<=" 2) for the Snapshot."
    echo "- Full-scan incremental / bitmap incremental: **${faster}x** the whole backup, ${faster_snap}x the Snapshot (issue: at least 5x): $(verdict "$faster" ">=" 5) for the backup, $(verdict "$faster_snap" ">=" 5) for the Snapshot."
    echo "- Running VM (qemu-storage-daemon, \`backup --qmp\`): freeze window median $(num "$vf") ms (full), $(num "$viz") ms (incremental), worst $(num "$worst_freeze") ms (issue: under 50 ms): $(verdict "$worst_freeze" "<=" 50). Its incremental read $(mb "$vr") in $(num "$vi") s."
    echo
    echo "Load (1 min) before the steps: $(awk -F'\t' 'NR > 1 { print $10 }' "$TSV" | sort -g | paste -sd ' ') on $(nproc) cores."
    echo "blockvault: $BV ($BV_REV)."
    echo "Command: \`$COMMAND_LINE\`"
    echo "Raw per-step figures: $TSV; logs: $LOGS."
  } | tee "$DATA_DIR/cbt-results.md"
}

main() {
  parse_args "$@"
  mkdir -p "$DATA_DIR"
  DATA_DIR=$(cd "$DATA_DIR" && pwd)
  TSV=$DATA_DIR/cbt-results.tsv
  LOGS=$DATA_DIR/cbt-logs
  if ((REPORT_ONLY)); then
    [[ -f $TSV && -f $DATA_DIR/cbt-meta.sh ]] || die "no earlier run in $DATA_DIR"
    # shellcheck source=/dev/null
    source "$DATA_DIR/cbt-meta.sh"
    report
    return
  fi
  local images=$IMAGES_DIR
  if [[ -z $images ]]; then
    "$SCRIPT_DIR/make-image.sh" "$DATA_DIR" >&2
    images=$DATA_DIR
  fi
  [[ -f $images/gen0.img && -f $images/gen1.img ]] || die "no gen0.img and gen1.img in $images"
  ensure_tools
  ensure_blockvault

  WORK=$DATA_DIR/cbt
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  rm -rf "$WORK" "$LOGS"
  mkdir -p "$WORK" "$LOGS"
  log "the qcow2 master (qemu-img convert of gen0.img) and the churn (gen1's changed pages)"
  qemu-img convert -f raw -O qcow2 "$images/gen0.img" "$WORK/master.qcow2"
  python3 "$HELPER" patch "$images/gen0.img" "$images/gen1.img" "$WORK/churn.patch" >"$LOGS/churn.json"
  IMAGE_DESC="gen0.img converted to qcow2: $(awk -v b="$(stat -c %s "$images/gen0.img")" 'BEGIN { printf "%.1f GiB", b / 2^30 }') virtual, $(mb "$(($(stat -c %b "$WORK/master.qcow2") * 512))") allocated"
  CHURN_DESC=$(jq -r '"\(.bytes / 1e6 | . * 10 | round / 10) MB in \(.runs) runs of 4 KiB pages"' "$LOGS/churn.json")
  BIG_DESC=
  if ((CHURN_MB)); then
    python3 "$HELPER" synth "$(stat -c %s "$images/gen0.img")" "$WORK/big.patch" \
      --bytes $((CHURN_MB << 20)) --run $((1 << 20)) >"$LOGS/big.json"
    BIG_DESC=$(jq -r '"\(.bytes / 1e6 | round) MB in \(.runs) runs of 1 MiB, half random, half zeros"' "$LOGS/big.json")
  fi
  printf 'run\tconfig\top\twall_s\tsnapshot_s\tfreeze_ms\tchanges\tbytes_read\tbytes_allocated\tload1\tread_s\n' >"$TSV"
  local run configs
  for ((run = 1; run <= RUNS; run++)); do
    configs=(bitmap fullscan)
    ((run % 2)) || configs=(fullscan bitmap)
    ((CHURN_MB)) && configs+=(big)
    log "run $run of $RUNS (order: ${configs[*]}, floors, vm)"
    for c in "${configs[@]}"; do one_offline "$run" "$c"; done
    one_floor "$run"
    ((CHURN_MB)) && one_floor "$run" big
    one_vm "$run"
  done
  declare -p RUNS IMAGE_DESC CHURN_DESC BIG_DESC BV BV_REV COMMAND_LINE >"$DATA_DIR/cbt-meta.sh"
  report
}

main "$@"
