#!/usr/bin/env bash
# Usage: benches/scale.sh [--runs R] [--chunks N] [--vms N] [--only CASE] [--data DIR]
#                         [--images DIR] [--bin PATH] [--keep] [-h|--help]
#
# Issue 7's scale targets, each a whole blockvault command timed with
# /usr/bin/time -v (wall time, peak RSS) after sync and a page-cache drop,
# against a directory vault:
#
# sparse  A 1 TiB sparse disk holding ~3.6 GB of real data, against the SAME
#         data on a 16 GiB sparse disk. The data is the realistic image of
#         benches/make-image.sh, laid out three times (gen0, gen1, and gen0's
#         first 3 GiB), at offsets that keep it aligned the same way on both
#         disks (so both disks have exactly the same blocks; only the holes
#         differ):       16 GiB disk                 1 TiB disk
#            gen0        0                           0
#            gen1        6.25 GiB + 68 KiB           500 GiB + 68 KiB
#            gen0 <3G    12.75 GiB + 2 MiB + 8 KiB   1020 GiB + 2 MiB + 8 KiB
#         The 1 TiB disk is the 16 GiB one with holes inserted (fallocate
#         --insert-range; copied again where that is not supported).
#         Per disk and run: a full backup job (a fresh vault and state), an
#         unchanged incremental, a restore from the vault. Reported: medians,
#         the 1 TiB / 16 GiB ratio of each (1.0 = the run time follows the
#         data, not the disk size), peak RSS (target < 100 MB); the restored
#         images are compared byte for byte with the source (only the data
#         extents are read: outside them both files are holes) and their
#         allocated size (du) with the source's.
# vms     N (default 100) small VMs in one vault: each a 1 GiB sparse disk
#         with 8 MiB of data every VM shares (gen0's first data) and 8 MiB of
#         its own, backed up twice (1 MiB of its own data changed in between).
#         Then: points of all VMs, points of one VM, a restore of one VM, gc
#         --dry-run (cold: this host's mark cache emptied; then warm), verify
#         --all.
# chunks  A vault of N (default 1,000,000) chunks: one VM whose disk has N
#         64 KiB blocks, each holding 1 KiB of data unique to it (its number
#         repeated) and holes otherwise. So that a million small chunk files
#         fit in little space, this case runs on an ext4 with 1 KiB blocks and
#         inline data (a sparse file in the work directory, loop-mounted with
#         nobarrier; needs root): ~1 GB for the image, ~0.5 GB for each million
#         chunk files, ~4 GB for the restored image. nobarrier: blockvault still
#         fsyncs every chunk file, but the loop device does not flush the host's
#         disk for each (with flushes, 20k chunks took 100 s instead of 21 s).
#         About 1,000 chunks a second are written (fsync of file and directory,
#         in the snapshot tier and again in the vault): a million take ~35
#         minutes to back up on 2 busy cores; --chunks 250000 takes ~10. Measured: the full backup, an
#         unchanged incremental, points, a restore from the vault (compared
#         byte for byte), gc --dry-run cold and warm, then the point is
#         dropped (record, then maps, as a purge does) and gc --dry-run and a
#         real gc --grace 0s collect every chunk.
#
# Prints a markdown table per case, the machine, the load average at start and
# the command; raw figures go to DATA_DIR/scale-results.tsv and the tables to
# DATA_DIR/scale-results.md. The work directory (DATA_DIR/scale) is removed
# at the end unless --keep. Disk use peaks at ~8 GB (sparse case: 3.6 GB of
# disk, ~1.6 GB of vault and snapshot tier, 3.6 GB restored). Takes ~30
# minutes on 2 cores at the defaults (every command is killed after 30
# minutes).
#
# Options:
#   --runs R      repetitions of each repeatable measurement (default 3; the
#                 chunks case's backups, restore and real gc run once)
#   --chunks N    chunks in the chunks case (default 1000000)
#   --vms N       VMs in the vms case (default 100)
#   --only CASE   run one case: sparse, vms or chunks (default: all three)
#   --data DIR    where the work happens and results go (default
#                 <repo>/target/bench-data)
#   --images DIR  where gen0.img and gen1.img are (default: DATA_DIR; built
#                 with benches/make-image.sh when missing); only read
#   --bin PATH    the blockvault binary to measure (default: build the repo's
#                 with cargo build --release and use target/release/blockvault)
#   --keep        keep the work directory

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=benches/lib.sh
source "$SCRIPT_DIR/lib.sh"

RUNS=3
CHUNKS=1000000
VMS=100
ONLY=
DATA_DIR=$REPO/target/bench-data
IMAGES=
KEEP=0
BV=
ARGS="$*"
while (($#)); do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --chunks) CHUNKS=$2; shift 2 ;;
    --vms) VMS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --data) DATA_DIR=$2; shift 2 ;;
    --images) IMAGES=$2; shift 2 ;;
    --bin) BV=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 1 ]] || { echo "--runs must be a number >= 1" >&2; exit 2; }
[[ $CHUNKS =~ ^[0-9]+$ && $CHUNKS -ge 1000 ]] || { echo "--chunks must be a number >= 1000" >&2; exit 2; }
[[ $VMS =~ ^[0-9]+$ && $VMS -ge 2 ]] || { echo "--vms must be a number >= 2" >&2; exit 2; }
[[ -z $ONLY || $ONLY == sparse || $ONLY == vms || $ONLY == chunks ]] ||
  { echo "--only takes sparse, vms or chunks" >&2; exit 2; }
want() { [[ -z $ONLY || $ONLY == "$1" ]]; }

log() { printf '[scale %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

mkdir -p "$DATA_DIR"
DATA_DIR=$(cd "$DATA_DIR" && pwd)
IMAGES=${IMAGES:-$DATA_DIR}
WORK=$DATA_DIR/scale
TSV=$DATA_DIR/scale-results.tsv
OUT=$DATA_DIR/scale-results.md
GEN0=$IMAGES/gen0.img
GEN1=$IMAGES/gen1.img
PY="python3 $SCRIPT_DIR/scale_data.py"
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

[[ -f $GEN0 && -f $GEN1 ]] || "$SCRIPT_DIR/make-image.sh" "$IMAGES" >&2
[[ -x /usr/bin/time ]] || { log "installing GNU time"; apt_install time; }

if [[ -z $BV ]]; then
  log "building blockvault (release)"
  (cd "$REPO" && cargo build --release --locked -q -p blockvault-cli)
  BV=$REPO/target/release/blockvault
fi
[[ -x $BV ]] || die "no blockvault binary at $BV"
BV=$(cd "$(dirname "$BV")" && pwd)/$(basename "$BV")

MNT=$WORK/mnt
cleanup() {
  mountpoint -q "$MNT" 2>/dev/null && umount "$MNT"
  if ((KEEP)); then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
rm -rf "$WORK"
mkdir -p "$WORK"

printf 'run\tcase\top\twall_s\trss_mib\n' >"$TSV"

# measure RUN CASE OP CMD...: runs blockvault CMD under GNU time after sync and a cache drop;
# records wall time and peak RSS. Its output goes to $WORK/last.out.
measure() {
  local run=$1 case=$2 op=$3 status=0
  shift 3
  sync
  drop_caches
  local t0=$EPOCHREALTIME
  /usr/bin/time -v -o "$WORK/time.txt" timeout 1800 "$BV" -q --json "$@" >"$WORK/last.out" || status=$?
  local wall
  wall=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
  ((status == 0)) || { cat "$WORK/last.out" >&2; die "$case $op exited $status"; }
  local rss
  rss=$(awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$WORK/time.txt")
  printf '%s\t%s\t%s\t%s\t%s\n' "$run" "$case" "$op" "$wall" "$rss" >>"$TSV"
}

# fresh: an empty vault and state directory for one measurement.
fresh() {
  rm -rf "$1/vault" "$1/state" "$1/restored"
  export BLOCKVAULT_STATE_DIR=$1/state
  "$BV" -q vault init "$1/vault" >/dev/null
}

m() { median "$1" "$2" "$3"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2fx", a / b }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1e6 }'; }
allocated() { du -B1 "$1" | cut -f1; }

# --- sparse: 1 TiB against 16 GiB, same data ---------------------------------------------
GIB=$((1 << 30))
B_SHIFT=$((68 << 10))
C_SHIFT=$(((2 << 20) + (8 << 10)))
sparse_run() { # LABEL DISK
  local label=$1 disk=$2 dir=$WORK/sparse run
  for run in $(seq 1 "$RUNS"); do
    log "sparse $label, run $run: full, incremental, restore"
    fresh "$dir"
    measure "$run" "$label" full backup --vault "$dir/vault" --vm big --disk "$disk"
    measure "$run" "$label" incremental backup --vault "$dir/vault" --vm big --disk "$disk"
    measure "$run" "$label" restore restore --vault "$dir/vault" --vm big --from vault --to "$dir/restored"
    [[ $run == "$RUNS" ]] || continue
    local out compared
    out=$dir/restored/$(basename "$disk")
    compared=$($PY sparse-cmp "$disk" "$out") || die "$label: the restored image differs from the source"
    echo -e "$label\tcompared_bytes\t$compared\tsource_du\t$(allocated "$disk")\trestored_du\t$(allocated "$out")\tvault_du\t$(du -sB1 "$dir/vault" | cut -f1)" >>"$WORK/sparse-checks.tsv"
  done
  rm -rf "$dir/vault" "$dir/state" "$dir/restored"
}

if want sparse; then
  mkdir -p "$WORK/sparse/disk"
  DISK=$WORK/sparse/disk/disk.img
  log "sparse: laying out the data on a 16 GiB disk"
  truncate -s 16G "$DISK"
  bytes=$($PY place "$GEN0" "$DISK" 0)
  bytes=$((bytes + $($PY place "$GEN1" "$DISK" $((25 * GIB / 4 + B_SHIFT)))))
  bytes=$((bytes + $($PY place "$GEN0" "$DISK" $((51 * GIB / 4 + C_SHIFT)) --below $((3 * GIB)))))
  [[ $(stat -c %s "$DISK") == $((16 * GIB)) ]] || die "the data overflowed the 16 GiB disk"
  echo -e "data_bytes\t$bytes" >"$WORK/sparse-checks.tsv"
  sparse_run 16g "$DISK"
  log "sparse: inserting holes: 1 TiB"
  if fallocate --insert-range -o $((25 * GIB / 4)) -l $((1975 * GIB / 4)) "$DISK" 2>/dev/null &&
    fallocate --insert-range -o $((2026 * GIB / 4)) -l $((2054 * GIB / 4)) "$DISK" 2>/dev/null; then
    truncate -s 1T "$DISK"
  else
    log "fallocate --insert-range not supported here: copying the data again"
    rm -f "$DISK"
    truncate -s 1T "$DISK"
    $PY place "$GEN0" "$DISK" 0 >/dev/null
    $PY place "$GEN1" "$DISK" $((500 * GIB + B_SHIFT)) >/dev/null
    $PY place "$GEN0" "$DISK" $((1020 * GIB + C_SHIFT)) --below $((3 * GIB)) >/dev/null
  fi
  [[ $(stat -c %s "$DISK") == $((1024 * GIB)) ]] || die "the 1 TiB disk is $(stat -c %s "$DISK") bytes"
  sparse_run 1t "$DISK"
  rm -rf "$WORK/sparse"
fi

# --- vms: many VMs in one vault -----------------------------------------------------------
if want vms; then
  dir=$WORK/vms
  mkdir -p "$dir/disks"
  fresh "$dir"
  T0=$SECONDS
  for round in 1 2; do
    for i in $(seq 1 "$VMS"); do
      vm=$(printf 'vm%03d' "$i")
      if ((round == 1)); then
        $PY vm-disk "$dir/disks/$vm.img" --size "$GIB" --shared "$GEN0" --shared-bytes $((8 << 20)) \
          --own-bytes $((8 << 20)) --seed "$i"
      else
        $PY vm-disk "$dir/disks/$vm.img" --size "$GIB" --seed "$i" --changed $((1 << 20))
      fi
      timeout 600 "$BV" -q --json backup --vault "$dir/vault" --vm "$vm" --disk "$dir/disks/$vm.img" >"$WORK/last.out" ||
        { cat "$WORK/last.out" >&2; die "backup of $vm exited $?"; }
    done
    log "vms: round $round of $VMS backups done ($((SECONDS - T0)) s)"
  done
  echo -e "vms\tbackups_s\t$((SECONDS - T0))\tvault_du\t$(du -sB1 "$dir/vault" | cut -f1)\tchunks\t$(find "$dir/vault/chunks" -type f | wc -l)" >"$WORK/vms-checks.tsv"
  one=$(printf 'vm%03d' $((VMS / 2)))
  for run in $(seq 1 "$RUNS"); do
    log "vms, run $run"
    measure "$run" vms points-all points --vault "$dir/vault"
    measure "$run" vms points-one points --vault "$dir/vault" --vm "$one"
    rm -rf "$dir/restored"
    measure "$run" vms restore restore --vault "$dir/vault" --vm "$one" --from vault --to "$dir/restored"
    cmp "$dir/disks/$one.img" "$dir/restored/$one.img" || die "vms: $one restored wrong"
    rm -rf "$BLOCKVAULT_STATE_DIR"/vaults/*/marks
    measure "$run" vms gc-dry-cold gc --vault "$dir/vault" --dry-run --grace 0s
    measure "$run" vms gc-dry gc --vault "$dir/vault" --dry-run --grace 0s
    measure "$run" vms verify verify --vault "$dir/vault" --all
  done
  rm -rf "$dir"
fi

# --- chunks: a million chunks ---------------------------------------------------------------
if want chunks; then
  dir=$MNT
  mkdir -p "$MNT"
  truncate -s 12G "$WORK/chunks-fs.img"
  mkfs.ext4 -q -F -b 1024 -I 256 -O inline_data -N $((CHUNKS * 3 + 100000)) "$WORK/chunks-fs.img" ||
    die "mkfs.ext4 failed"
  mount -o loop,nobarrier "$WORK/chunks-fs.img" "$MNT" || die "cannot loop-mount the chunk file system (root needed)"
  DISK=$MNT/disks/pages.img
  mkdir -p "$MNT/disks"
  log "chunks: writing a disk of $CHUNKS 64 KiB blocks"
  $PY pages "$DISK" --blocks "$CHUNKS" --block-size 65536 --page 1024
  fresh "$dir"
  log "chunks: full backup"
  measure 1 chunks full backup --vault "$dir/vault" --vm pages --disk "$DISK" --block-size 64KiB
  nchunks=$(find "$dir/vault/chunks" -type f | wc -l)
  log "chunks: $nchunks chunks in the vault; incremental"
  measure 1 chunks incremental backup --vault "$dir/vault" --vm pages --disk "$DISK"
  for run in $(seq 1 "$RUNS"); do
    measure "$run" chunks points points --vault "$dir/vault" --vm pages
  done
  log "chunks: restore"
  measure 1 chunks restore restore --vault "$dir/vault" --vm pages --from vault --to "$dir/restored"
  $PY sparse-cmp "$DISK" "$dir/restored/pages.img" >/dev/null || die "chunks: the restored image differs"
  echo -e "chunks\t$nchunks\tvault_du\t$(du -sB1 "$dir/vault" | cut -f1)\tfs_used\t$(df -B1 --output=used "$MNT" | tail -1)" >"$WORK/chunks-checks.tsv"
  rm -rf "$dir/restored"
  rm -rf "$BLOCKVAULT_STATE_DIR"/vaults/*/marks
  log "chunks: gc --dry-run"
  measure 1 chunks gc-dry-cold gc --vault "$dir/vault" --dry-run --grace 0s
  for run in $(seq 1 "$RUNS"); do
    measure "$run" chunks gc-dry gc --vault "$dir/vault" --dry-run --grace 0s
  done
  log "chunks: dropping both points, then gc"
  rm -rf "$dir/vault/points/pages" "$dir/vault/maps/pages"
  measure 1 chunks gc-dry-all-garbage gc --vault "$dir/vault" --dry-run --grace 0s
  measure 1 chunks gc gc --vault "$dir/vault" --grace 0s --wait 60s
  left=$(find "$dir/vault" -path "*/chunks/*" -type f | wc -l)
  echo -e "chunks_left_after_gc\t$left" >>"$WORK/chunks-checks.tsv"
  ((left == 0)) || die "gc left $left chunks"
  umount "$MNT"
  rm -f "$WORK/chunks-fs.img"
fi

# --- the tables -----------------------------------------------------------------------------
row() { # CASE OP LABEL
  echo "| $3 | $(m "$1" "$2" 4) | $(m "$1" "$2" 5) |"
}
{
  if want sparse; then
    data=$(awk -F'\t' '$1 == "data_bytes" { print $2 }' "$WORK/sparse-checks.tsv")
    echo "### 1 TiB sparse disk against 16 GiB, the same $(mb "$data") MB of data"
    echo
    echo "| operation | 16 GiB s | 1 TiB s | 1 TiB / 16 GiB | 16 GiB peak RSS MiB | 1 TiB peak RSS MiB |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    for op in full incremental restore; do
      echo "| $op | $(m 16g $op 4) | $(m 1t $op 4) | **$(ratio "$(m 1t $op 4)" "$(m 16g $op 4)")** | $(m 16g $op 5) | $(m 1t $op 5) |"
    done
    echo
    awk -F'\t' '$2 == "compared_bytes" { printf "%s: restored image equal to the source (%.0f MB of data extents compared), allocated %.0f MB (source %.0f MB); vault %.0f MB.\n", $1, $3 / 1e6, $7 / 1e6, $5 / 1e6, $9 / 1e6 }' "$WORK/sparse-checks.tsv"
    echo
  fi
  if want vms; then
    read -r _ _ bs _ vdu _ nch <"$WORK/vms-checks.tsv"
    echo "### $VMS VMs in one vault, two points each ($((2 * VMS)) backup jobs in $bs s; $nch chunks, $(mb "$vdu") MB)"
    echo
    echo "| operation | wall s | peak RSS MiB |"
    echo "| --- | ---: | ---: |"
    row vms points-all "points (all VMs)"
    row vms points-one "points --vm (one VM)"
    row vms restore "restore of one VM (--from vault)"
    row vms gc-dry-cold "gc --dry-run, cold (every map read)"
    row vms gc-dry "gc --dry-run, warm (mark cache)"
    row vms verify "verify --all"
    echo
  fi
  if want chunks; then
    read -r _ nch _ vdu _ used <"$WORK/chunks-checks.tsv"
    echo "### A vault of $nch chunks (one VM, 64 KiB blocks; vault $(mb "$vdu") MB, file system $(mb "$used") MB used with the snapshot tier and the image: a 1 KiB-block ext4 with inline data)"
    echo
    echo "| operation | wall s | peak RSS MiB |"
    echo "| --- | ---: | ---: |"
    row chunks full "full backup ($nch new chunks)"
    row chunks incremental "incremental, unchanged"
    row chunks points "points --vm"
    row chunks restore "restore (--from vault)"
    row chunks gc-dry-cold "gc --dry-run, cold"
    row chunks gc-dry "gc --dry-run, warm"
    row chunks gc-dry-all-garbage "gc --dry-run, point dropped (all garbage)"
    row chunks gc "gc --grace 0s, deletes every chunk (once)"
    echo
  fi
  echo "$RUNS runs per median (single runs where said); $(nproc) cores, $(uname -sr), load average at start $LOAD;"
  echo "command: benches/scale.sh $ARGS"
} | tee "$OUT"
