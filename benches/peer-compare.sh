#!/usr/bin/env bash
# Usage: benches/peer-compare.sh [--runs N] [--data DIR] [--only blockvault|borg] [--no-floor]
#                                [-h|--help]
#
# Times blockvault against borg 1.2 (Debian package) on the benchmark images
# from benches/make-image.sh (8 GiB sparse ext4 VM disk with a Debian root,
# gen1 = gen0 + ~1% churn), in the same run and under the same conditions:
#
#   full         gen0.img copied to DATA_DIR/vm/disk.img (untimed), backed up
#                into a fresh repository
#   incremental  gen1.img copied over the same disk path (untimed), backed up
#                again into the same repository
#   restore      newest point (gen1) restored into an empty directory; the
#                result is checked byte for byte against gen1.img with cmp
#                (untimed; a mismatch aborts the script)
#   restore (durable)
#                the same restore, but until the restored image is on disk:
#                blockvault's restore fsyncs the image before it exits, borg
#                extract does not, so borg's figure here is `borg extract`
#                followed by `sync disk.img` (an fsync of that file), timed
#                together. blockvault's figure is its one restore figure.
#
# blockvault's backup is a job, as users run it: a Snapshot into its local
# snapshot tier (under --state-dir WORK/blockvault/state), then a Transfer of
# the new chunks from there to the repository; its restore reads the snapshot
# tier (instant restore), as it does by default. Both live in the tool's
# directory, which every step warms and fresh_repo sets aside.
#
# Nothing is deleted between timed steps: a repository no longer needed is
# moved into DATA_DIR/peer-trash and deleted after the last run (see
# `discard` in lib.sh: on ext4 without a journal, creating files right after
# thousands were deleted costs each tool by its file count).
#
# Floors (issue 7): in the same runs, on the same images, under the same
# page-cache discipline, a third participant, "floor", runs
# target/release/blockvault-floor (benches/src/bin/floor.rs, whose header
# defines each floor precisely; blockvault's default 1 MiB blocks, data extents
# only, rayon on all cores, the blake3 and zstd crates of the workspace):
#   full         floor backup-dir: read + zstd -1 of the allocated blocks of
#                gen0, overlapped with writing each compressed block to its
#                own file (8 writers, each file fsynced): one copy of the
#                data, compressed, durable. The floor of a full backup.
#   compress     floor compress: read + zstd -1 of the same, output dropped
#                (the CPU part of the full floor).
#   read         floor read: read the allocated blocks of gen1.
#   incremental  floor hash: read + BLAKE3 of the allocated blocks of gen1.
#                The floor of an incremental backup without changed-block
#                tracking.
#   restore      floor restore-dir: read gen1's compressed blocks (written by
#                an untimed backup-dir of gen1 after the incremental step),
#                zstd -d, write the non-zero 4 KiB pages into a new sparse
#                image, fdatasync (writeback started, written pages dropped, every 128 MiB). The
#                floor of a restore; checked with cmp against gen1.img.
# The report then gives each blockvault figure as a ratio to its floor and
# to borg. --no-floor leaves the floors out.
#
# Each of the N runs (default 3) does every operation for every participant
# one after the other (the order rotates from one run to the next: with two
# tools, the first alternates), so all see the same machine state.
#
# Same memory state for both tools: before every timed step, untimed, the
# page cache is dropped (so no step pays for reclaiming another's cache) and
# everything the step reads is read back into it with `bench_image.py
# warm` (which reads only the data extents of sparse files): for a backup the
# tool's directory (repository, and borg's cache and config under its
# BORG_BASE_DIR) and the data extents of disk.img; for a restore the tool's
# directory. (This matters: borg reads with posix_fadvise(DONTNEED), so after
# a borg step the image and its repository are no longer cached, and the next
# tool would otherwise read them from disk.) Then `sync` runs (untimed) so
# that no writeback from a previous step lands in the next measurement.
# GNU time's "File system inputs" of each step, in MiB, goes to the TSV
# (fs_inputs_mib) and the report prints the largest, so the condition can be
# checked: it should be ~0 for every step. (A full backup may still read a
# few MiB, 0.1-4 MiB from one repetition to the next and for either tool, even
# when everything was just read: ext4 reading its own allocation metadata
# while the tool writes a new repository. A cold image or repository would
# show hundreds of MiB; the script warns above 16 MiB.)
# Wall time is measured around the command; peak RSS is GNU time's "Maximum
# resident set size".
#
# borg extract and the sync after it run once per run, in one timed step
# (bash -c, timestamps taken with bash's builtin $EPOCHREALTIME, no fork):
# "restore" for borg is the time of `borg extract` alone, "restore (durable)"
# the time of `borg extract` plus `sync disk.img`. Both leave out the few ms
# of the wrapper's own startup (in borg's favour); GNU time's figures (RSS,
# inputs) are those of the whole step.
#
# Prints a markdown table (medians, borg/blockvault ratio, peak RSS), the
# repository sizes after the incremental (du -sb), the machine and the exact
# command; raw per-run figures go to DATA_DIR/peer-results.tsv (columns run,
# tool, op, wall_s, max_rss_kib, repo_bytes, restored_alloc_bytes,
# fs_inputs_mib; borg's restore step gives two rows, restore and
# restore-durable) and the table to DATA_DIR/peer-results.md.
#
# Options:
#   --runs N        runs per tool (default 3)
#   --data DIR      data directory (default $BLOCKVAULT_BENCH_DATA, else
#                   <repo>/target/bench-data); passed to make-image.sh
#   --only TOOL     run only blockvault or only borg (floors still run)
#   --no-floor      do not measure the floors
#
# Environment:
#   BLOCKVAULT_BIN     use this blockvault binary instead of building
#                      `cargo build --release -p blockvault-cli`
#   BLOCKVAULT_FLOOR_BIN
#                      use this floor tool instead of building `cargo build
#                      --release -p blockvault-benches --bin blockvault-floor`
#   BORG_CREATE_EXTRA  extra arguments for `borg create` (default none), e.g.
#                      "--sparse" to try borg's hole detection
#
# borg runs as: borg init --encryption=none; borg create --chunker-params
# fixed,4194304 --compression zstd,1 REPO::genN disk.img (from DATA_DIR/vm);
# borg extract --sparse REPO::gen1 && sync disk.img (in the output directory).
# blockvault runs as: blockvault vault init REPO; blockvault backup --vault
# REPO --vm bench --disk DATA_DIR/vm/disk.img --json; blockvault restore
# --vault REPO --vm bench --to OUT --json (file appears as OUT/disk.img).
# Only exit codes of blockvault are relied on; its JSON goes to the logs in
# DATA_DIR/peer/logs.

set -euo pipefail
export LC_ALL=C # EPOCHREALTIME and printf %f must use '.' as decimal point

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=benches/lib.sh
source "$SCRIPT_DIR/lib.sh"
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
COMMAND_LINE="benches/peer-compare.sh${*:+ $*}"

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
log() { printf '[peer-compare] %s\n' "$*" >&2; }
die() { printf '[peer-compare] ERROR: %s\n' "$*" >&2; exit 1; }

RUNS=3
DATA_DIR=${BLOCKVAULT_BENCH_DATA:-$REPO_ROOT/target/bench-data}
TOOLS=(blockvault borg)
WITH_FLOOR=1

parse_args() {
  while (($#)); do
    case "$1" in
      --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
      --data) DATA_DIR=${2:?--data needs a value}; shift 2 ;;
      --only)
        case "${2:-}" in
          blockvault|borg) TOOLS=("$2") ;;
          *) die "--only takes blockvault or borg" ;;
        esac
        shift 2 ;;
      --no-floor) WITH_FLOOR=0; shift ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; exit 2 ;;
    esac
  done
  [[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
  if ((WITH_FLOOR)); then TOOLS+=(floor); fi
}

has_tool() { [[ " ${TOOLS[*]} " == *" $1 "* ]]; }

# --- setup ---------------------------------------------------------------------


ensure_tools() {
  local missing=()
  local v
  v=$(/usr/bin/time --version 2>&1 || true) # captured: grep -q on a pipe can trip pipefail
  [[ $v == *GNU* ]] || missing+=(time)
  command -v cmp >/dev/null || missing+=(diffutils)
  if has_tool borg && ! command -v borg >/dev/null; then missing+=(borgbackup); fi
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
  fi
  if has_tool borg; then
    BORG_VERSION=$(borg --version)
    [[ $BORG_VERSION == "borg 1.2."* ]] || die "expected borg 1.2.x, found: $BORG_VERSION"
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
  # Untimed: the binary in the page cache (borg's code is loaded by the
  # `borg --version` above), so no timed step loads a program from disk.
  python3 "$SCRIPT_DIR/bench_image.py" warm "$BV" 2>/dev/null || die "cannot read $BV"
}

# Never let borg prompt (CI runs with no stdin), and keep its cache/config
# under DATA_DIR so that every run starts like a first-time user and the
# host's ~/.cache stays clean.
borg_env() {
  export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
  export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
  export BORG_CHECK_I_KNOW_WHAT_I_AM_DOING=NO
  export BORG_DELETE_I_KNOW_WHAT_I_AM_DOING=NO
  export BORG_PASSPHRASE=''
  export BORG_DISPLAY_PASSPHRASE=no
  export BORG_BASE_DIR=$WORK/borg/base
}

# --- measurement -----------------------------------------------------------------

# timed RUN TOOL OP DIR READS... -- CMD...: warms READS (files or directories:
# everything CMD reads) into the page cache, syncs, then runs CMD in DIR under
# GNU time. Output of CMD goes to a per-step log. Fails loudly. Sets
# LAST_WALL, LAST_RSS_KIB and LAST_FS_IN_MIB for record().
timed() {
  local run=$1 tool=$2 op=$3 dir=$4
  shift 4
  local reads=()
  while (($#)) && [[ $1 != -- ]]; do reads+=("$1"); shift; done
  (($# >= 2 && ${#reads[@]})) || die "timed: usage: RUN TOOL OP DIR READS... -- CMD..."
  shift
  local logf=$WORK/logs/run$run-$tool-$op.log
  # Untimed: the same memory and cache state before every step of every tool.
  # Flush earlier writes, drop the page cache, then read back exactly what this
  # step reads. Without the drop, whichever tool wrote 1.5 GB first in a run
  # paid for reclaiming a full page cache and the second reused the pages freed
  # by deleting the first one's output: the first restore of every run was
  # 2-3x slower, whatever the tool (measured: blockvault 5.0-6.2 s first vs
  # 1.9 s second; borg 13.5-13.9 s first vs 9.3-11.8 s second).
  sync
  drop_caches
  python3 "$SCRIPT_DIR/bench_image.py" warm "${reads[@]}" 2>"$logf.warm" ||
    die "warming ${reads[*]} failed (log: $logf.warm)"
  sync
  local t0=$EPOCHREALTIME rc=0
  (cd "$dir" && exec /usr/bin/time -v -o "$logf.time" "$@") >"$logf" 2>&1 || rc=$?
  local t1=$EPOCHREALTIME
  if ((rc != 0)); then
    tail -n 20 "$logf" >&2
    die "$tool $op (run $run) failed with exit code $rc: $* (log: $logf)"
  fi
  LAST_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  LAST_RSS_KIB=$(awk -F': *' '/Maximum resident set size/ { print $2 }' "$logf.time")
  # "File system inputs" counts 512-byte blocks read from the block device.
  LAST_FS_IN_MIB=$(awk -F': *' '/File system inputs/ { printf "%.1f", $2 * 512 / 1048576 }' "$logf.time")
  [[ -n $LAST_RSS_KIB && -n $LAST_FS_IN_MIB ]] || die "unexpected GNU time output in $logf.time"
  log "run $run: $tool $op ${LAST_WALL} s, peak RSS $(awk -v k="$LAST_RSS_KIB" 'BEGIN { printf "%.0f", k / 1024 }') MiB, read from disk ${LAST_FS_IN_MIB} MiB"
  if awk -v m="$LAST_FS_IN_MIB" 'BEGIN { exit !(m > 16) }'; then
    log "WARNING: $tool $op (run $run) read $LAST_FS_IN_MIB MiB from disk: the page cache was not warm"
  fi
}

record() { # RUN TOOL OP REPO_BYTES RESTORED_ALLOC_BYTES
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$LAST_WALL" "$LAST_RSS_KIB" "$4" "$5" \
    "$LAST_FS_IN_MIB" >>"$TSV"
}


# untimed: make DATA_DIR/vm/disk.img a sparse copy of the given generation.
put_disk() {
  cp --sparse=always "$1" "$DISK"
  sync
}

repo_dir() { echo "$WORK/$1/repo"; }

fresh_repo() { # TOOL
  local repo
  repo=$(repo_dir "$1")
  discard "$repo" "$WORK/$1/base" "$WORK/$1/state"
  mkdir -p "$(dirname "$repo")"
  case $1 in
    blockvault) "$BV" vault init "$repo" >"$WORK/logs/$1-init.log" 2>&1 ||
                  die "blockvault vault init failed (log: $WORK/logs/$1-init.log)" ;;
    borg) borg init --encryption=none "$repo" >"$WORK/logs/$1-init.log" 2>&1 ||
            die "borg init failed (log: $WORK/logs/$1-init.log)" ;;
    floor) mkdir -p "$repo" ;;
  esac
}

backup() { # RUN TOOL OP(full|incremental) ARCHIVE_NAME
  local run=$1 tool=$2 op=$3 name=$4 repo
  repo=$(repo_dir "$tool")
  # Reads: the tool's directory (repository; borg's cache/config) and the
  # image, warmed last so that it is the most recently used.
  case $tool in
    blockvault)
      timed "$run" "$tool" "$op" "$VM_DIR" "$WORK/$tool" "$DISK" -- \
        "$BV" --state-dir "$WORK/$tool/state" backup --vault "$repo" --vm bench --disk "$DISK" --json ;;
    borg)
      # shellcheck disable=SC2086  # BORG_CREATE_EXTRA is a word list on purpose
      timed "$run" "$tool" "$op" "$VM_DIR" "$WORK/$tool" "$DISK" -- \
        borg create --chunker-params fixed,4194304 \
        --compression zstd,1 ${BORG_CREATE_EXTRA:-} "$repo::$name" disk.img ;;
    floor) floor_backup "$run" "$op"; return ;;
  esac
  record "$run" "$tool" "$op" "$(du -sb "$repo" | cut -f1)" ""
}

# The floors of a backup step (see the header). Full: compress, then backup-dir into a fresh
# store (repo_bytes = the compressed bytes). Incremental: read, hash, then (untimed) gen1's
# compressed blocks for the restore floor.
floor_backup() { # RUN OP
  local run=$1 op=$2 repo
  repo=$(repo_dir floor)
  if [[ $op == full ]]; then
    timed "$run" floor compress "$VM_DIR" "$DISK" -- "$FLOOR" compress "$DISK"
    record "$run" floor compress "$(floor_field "$WORK/logs/run$run-floor-compress.log" bytes_out)" ""
    discard "$repo/store"
    timed "$run" floor full "$VM_DIR" "$DISK" -- "$FLOOR" backup-dir "$DISK" "$repo/store"
    record "$run" floor full "$(du -sb "$repo/store" | cut -f1)" ""
  else
    timed "$run" floor read "$VM_DIR" "$DISK" -- "$FLOOR" read "$DISK"
    record "$run" floor read "$(floor_field "$WORK/logs/run$run-floor-read.log" bytes_read)" ""
    timed "$run" floor incremental "$VM_DIR" "$DISK" -- "$FLOOR" hash "$DISK"
    record "$run" floor incremental "$(floor_field "$WORK/logs/run$run-floor-incremental.log" bytes_read)" ""
    discard "$repo/store"
    "$FLOOR" backup-dir "$DISK" "$repo/store" >"$WORK/logs/run$run-floor-store-gen1.log" 2>&1 ||
      die "floor backup-dir of gen1 failed (log: $WORK/logs/run$run-floor-store-gen1.log)"
  fi
}

# borg's restore step: borg extract, then `sync disk.img` (coreutils sync with
# a file argument fsyncs that file), with a timestamp before, between and
# after on one line of $2. One extract per run gives both borg figures:
# "restore" (extract alone, what borg does) and "restore-durable" (extract +
# fsync, what blockvault's restore does). Timestamps are bash's builtin
# $EPOCHREALTIME, so taking them forks nothing.
# shellcheck disable=SC2016  # expanded by the inner bash
BORG_RESTORE_SCRIPT='set -e
t0=$EPOCHREALTIME
borg extract --sparse "$1"
t1=$EPOCHREALTIME
sync disk.img
printf "%s %s %s\n" "$t0" "$t1" "$EPOCHREALTIME" >"$2"'

restore() { # RUN TOOL
  local run=$1 tool=$2 repo out stamps
  repo=$(repo_dir "$tool")
  out=$WORK/$tool/restore
  stamps=$WORK/logs/run$run-$tool-restore.stamps
  rm -rf "$out"
  mkdir -p "$out"
  # Reads: the tool's directory (repository; borg's cache/config).
  case $tool in
    blockvault)
      timed "$run" "$tool" restore "$out" "$WORK/$tool" -- \
        "$BV" --state-dir "$WORK/$tool/state" restore --vault "$repo" --vm bench --to "$out" --json ;;
    borg)
      timed "$run" "$tool" restore "$out" "$WORK/$tool" -- \
        bash -c "$BORG_RESTORE_SCRIPT" borg-restore "$repo::gen1" "$stamps" ;;
    floor)
      timed "$run" "$tool" restore "$out" "$repo/store" -- \
        "$FLOOR" restore-dir "$repo/store" "$out/disk.img" --size "$(stat -c %s "$GEN1")" ;;
  esac
  [[ -f $out/disk.img ]] || die "$tool restore produced no $out/disk.img"
  if ! cmp -- "$out/disk.img" "$GEN1"; then
    die "RESTORE MISMATCH: $tool run $run: $out/disk.img differs from $GEN1 (kept for inspection)"
  fi
  local repo_bytes alloc_bytes
  repo_bytes=$(du -sb "$repo" | cut -f1)
  alloc_bytes=$(du -B1 "$out/disk.img" | cut -f1)
  if [[ $tool == borg ]]; then
    local extract_s durable_s
    read -r extract_s durable_s < <(awk 'NF == 3 { printf "%.3f %.3f\n", $2 - $1, $3 - $1 }' "$stamps")
    [[ -n ${durable_s:-} ]] || die "borg restore: no timestamps in $stamps"
    log "run $run: borg restore: extract ${extract_s} s, extract + sync ${durable_s} s"
    LAST_WALL=$extract_s
    record "$run" "$tool" restore "$repo_bytes" "$alloc_bytes"
    LAST_WALL=$durable_s
    record "$run" "$tool" restore-durable "$repo_bytes" "$alloc_bytes"
  else
    record "$run" "$tool" restore "$repo_bytes" "$alloc_bytes"
  fi
  rm -rf "$out"
}

one_run() { # RUN
  local run=$1 order=() tool i n=${#TOOLS[@]}
  # Rotate the order (with two tools: alternate which goes first), so none always gets the
  # fresher state.
  for ((i = 0; i < n; i++)); do order+=("${TOOLS[(i + run - 1) % n]}"); done
  log "run $run of $RUNS (order: ${order[*]})"
  for tool in "${order[@]}"; do fresh_repo "$tool"; done

  put_disk "$GEN0"
  for tool in "${order[@]}"; do backup "$run" "$tool" full gen0; done

  put_disk "$GEN1"
  for tool in "${order[@]}"; do backup "$run" "$tool" incremental gen1; done
  if has_tool blockvault; then
    # Sanity check (untimed): the vault lists its points; only the exit code counts.
    "$BV" --state-dir "$WORK/blockvault/state" points --vault "$(repo_dir blockvault)" --vm bench --json >"$WORK/logs/run$run-blockvault-points.log" 2>&1 ||
      die "blockvault points failed (log: $WORK/logs/run$run-blockvault-points.log)"
  fi

  for tool in "${order[@]}"; do restore "$run" "$tool"; done
}

# --- report ----------------------------------------------------------------------

peak() { # TOOL OP -> max RSS over runs, in MiB
  awk -F'\t' -v t="$1" -v o="$2" 'NR > 1 && $2 == t && $3 == o && $5 > m { m = $5 }
    END { if (m == "") print "-"; else printf "%.0f", m / 1024 }' "$TSV"
}

# Formatting helpers; "-" (no data, e.g. with --only) passes through.
fmt_s() { if [[ $1 == - ]]; then echo -; else printf '%.2f' "$1"; fi; }
fmt_mb() { if [[ $1 == - ]]; then echo -; else awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; fi; }
ratio() {
  if [[ $1 == - || $2 == - ]]; then echo -; else awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; fi
}

report() {
  local op bv_op bv bo cpu max_in
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  max_in=$(awk -F'\t' 'NR > 1 && (m == "" || $8 > m + 0) { m = $8; w = $2 " " $3 " run " $1 }
    END { if (m == "") print "-"; else print m " MiB (" w ")" }' "$TSV")
  {
    echo "### blockvault vs borg: 8 GiB sparse ext4 Debian root image, ~1% churn ($RUNS run(s), medians)"
    echo
    echo "| operation | blockvault median s | borg median s | ratio borg/blockvault | blockvault peak RSS MiB | borg peak RSS MiB |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    for op in full incremental restore restore-durable; do
      # blockvault's restore is always durable: one figure for both rows.
      bv_op=${op%-durable}
      bv=$(median blockvault "$bv_op" 4)
      bo=$(median borg "$op" 4)
      echo "| ${op/-durable/ (durable)} | $(fmt_s "$bv") | $(fmt_s "$bo") | $(ratio "$bo" "$bv") | $(peak blockvault "$bv_op") | $(peak borg "$op") |"
    done
    echo
    if has_tool floor; then
      echo "Floors (issue 7; benches/src/bin/floor.rs, same images, same runs; wall time of the floor tool's process):"
      echo
      echo "| floor | median s | range s | what |"
      echo "| --- | ---: | ---: | --- |"
      floor_row "read (gen1)" read "read the allocated blocks (1 MiB, the default; data extents only), rayon on $(nproc) cores; $(fmt_mb "$(median floor read 6)") read"
      floor_row "incremental: read + BLAKE3 (gen1)" incremental "BLAKE3 of each allocated block"
      floor_row "compress: read + zstd -1 (gen0)" compress "output dropped; $(fmt_mb "$(median floor compress 6)") compressed"
      floor_row "full: read + zstd -1 + write (gen0)" full "overlapped with 8 writers, one file per block, each fsynced; $(fmt_mb "$(median floor full 6)") written"
      floor_row "restore: read + zstd -d + sparse write (gen1)" restore "non-zero 4 KiB pages written, fdatasync (writeback every 128 MiB, written pages dropped)"
      echo
      echo "| operation | blockvault s | floor s | blockvault / floor | target (issue 7) | best peer s | best peer / blockvault |"
      echo "| --- | ---: | ---: | ---: | --- | ---: | ---: |"
      vs_floor_row "full backup (job) vs read + zstd -1 + write" full full 1.2 full borg
      vs_floor_row "full backup (job) vs read + zstd -1 alone" full compress "" full borg
      vs_floor_row "incremental backup (job) vs read + BLAKE3" incremental incremental 1.5 incremental borg
      vs_floor_row "restore vs read + zstd -d + sparse write" restore restore 1.5 restore-durable borg
      echo
      echo "Best peer: borg's durable restore (extract + fsync) for the restore row, as blockvault's restore is durable."
      echo
    fi
    echo "Repository size after the incremental (du -sb, median): blockvault $(fmt_mb "$(median blockvault incremental 6)"), borg $(fmt_mb "$(median borg incremental 6)")."
    echo "Image: gen0 allocated $(du -B1 "$GEN0" | cut -f1) bytes of $(stat -c %s "$GEN0") apparent; churn: $(tail -n 1 "$DATA_DIR/churn-stats.txt" 2>/dev/null || echo n/a)."
    echo "restore: borg extract alone; borg does not fsync what it extracts, so the image may still be only in the page cache when it exits. restore (durable): borg extract followed by \`sync disk.img\` (fsync), timed together in the same step (one extract per run). blockvault's restore fsyncs the image before it exits, so its figure is the same in both rows."
    echo "Same memory state for both tools: before every timed step, untimed: sync, drop the page cache, then read everything the step reads back into it (backup: the tool's repository and cache, then the data extents of disk.img; restore: every file of the tool's repository and cache), then sync. Needed because borg drops what it reads from the cache (posix_fadvise DONTNEED). Largest disk read in a timed step (GNU time \"File system inputs\"): $max_in (a few MiB in a full backup are ext4 allocation metadata for the new repository); per step in column fs_inputs_mib of the TSV."
    echo "Runs interleaved, first tool alternating."
    echo "Tools: ${BORG_VERSION:-borg not run}; borg create --chunker-params fixed,4194304 --compression zstd,1${BORG_CREATE_EXTRA:+ $BORG_CREATE_EXTRA}, no encryption, local repo; blockvault: ${BV:-not run}."
    echo "Machine: nproc $(nproc), CPU $cpu, kernel $(uname -r), RAM $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)."
    echo "Command: $COMMAND_LINE"
    echo "Raw per-run figures: $TSV"
  } | tee "$DATA_DIR/peer-results.md"
}

main() {
  parse_args "$@"
  mkdir -p "$DATA_DIR"
  DATA_DIR=$(cd "$DATA_DIR" && pwd)
  WORK=$DATA_DIR/peer
  VM_DIR=$DATA_DIR/vm
  DISK=$VM_DIR/disk.img
  GEN0=$DATA_DIR/gen0.img
  GEN1=$DATA_DIR/gen1.img
  TSV=$DATA_DIR/peer-results.tsv

  ensure_tools
  if has_tool blockvault; then ensure_blockvault && PROGRAMS+=("$BV"); fi
  if has_tool borg; then borg_env; fi
  if has_tool floor; then
    ensure_floor
    python3 "$SCRIPT_DIR/bench_image.py" warm "$FLOOR" 2>/dev/null || die "cannot read $FLOOR"
    PROGRAMS+=("$FLOOR")
  fi
  local t
  for t in borg restic rustic; do
    if has_tool "$t" && command -v "$t" >/dev/null; then PROGRAMS+=("$(command -v "$t")"); fi
  done
  "$SCRIPT_DIR/make-image.sh" "$DATA_DIR" >&2

  TRASH=$DATA_DIR/peer-trash
  empty_trash
  rm -rf "$WORK"
  mkdir -p "$WORK/logs" "$VM_DIR"
  printf 'run\ttool\top\twall_s\tmax_rss_kib\trepo_bytes\trestored_alloc_bytes\tfs_inputs_mib\n' >"$TSV"
  local run
  for ((run = 1; run <= RUNS; run++)); do one_run "$run"; done
  rm -f "$DISK"
  # The last run's repositories too, so that the next invocation's start deletes only logs.
  local tool
  for tool in "${TOOLS[@]}"; do discard "$WORK/$tool"; done
  empty_trash
  report
}

main "$@"
