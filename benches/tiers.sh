#!/usr/bin/env bash
# Usage: benches/tiers.sh [--runs N] [--data DIR] [-h|--help]
#
# Measures the two promises of the local snapshot tier on the benchmark images
# of benches/make-image.sh (8 GiB sparse ext4 disk with a Debian root; gen1 =
# gen0 + ~1% churn: 18 of 364 allocated 4 MiB blocks differ), each against its
# reference measured in the same run under the same cache state:
#
#   snapshot     the Snapshot subtask of an incremental backup job (its own
#                start and end, from the job record), the disk alternating
#                between gen0 and gen1 so every backup sees the same churn,
#                against its floor: a single reader reading the data extents
#                of the disk (bench_image.py warm: pread of 4 MiB, no hashing)
#                plus writing the changed blocks' bytes (dd of the same size
#                with conv=fsync), timed separately and added.
#   rollback     `restore --in-place` of one generation's point over the disk
#                holding the other (rewrites only the blocks that differ), in
#                two cases: the disk as blockvault left it (after its own
#                in-place restore: no scan, the diff of two block maps), and a
#                disk changed outside blockvault (a fresh copy of the other
#                image: every data block read and hashed to find the churn);
#                against a full `restore` of the same point into an empty
#                directory from the snapshot tier (the default) and from the
#                vault (`--from vault`). Every result is checked with cmp
#                (untimed).
#
# Before every timed step, untimed: sync, drop the page cache, then read back
# what the step reads (the disk's data extents, the snapshot tier and the
# vault), as benches/peer-compare.sh does, so no step pays for another's cache.
#
# Prints a markdown table of medians and ratios, the machine and the command;
# raw figures go to DATA_DIR/tiers-results.tsv (run, tool, op, wall_s) and the
# table to DATA_DIR/tiers-results.md.
#
# Options:
#   --runs N     repetitions (default 5)
#   --data DIR   where the images live and the work happens (default
#                <repo>/target/bench-data)

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=benches/lib.sh
source "$SCRIPT_DIR/lib.sh"

RUNS=5
DATA_DIR=$REPO/target/bench-data
while (($#)); do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --data) DATA_DIR=$2; shift 2 ;;
    -h | --help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[tiers %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }


WORK=$DATA_DIR/tiers
TSV=$DATA_DIR/tiers-results.tsv
OUT=$DATA_DIR/tiers-results.md
GEN0=$DATA_DIR/gen0.img
GEN1=$DATA_DIR/gen1.img
[[ -f $GEN0 && -f $GEN1 ]] || "$SCRIPT_DIR/make-image.sh" "$DATA_DIR"

log "building blockvault (release)"
(cd "$REPO" && cargo build --release --locked -q -p blockvault-cli)
BV=$REPO/target/release/blockvault

rm -rf "$WORK"
mkdir -p "$WORK/vm"
DISK=$WORK/vm/disk.img
export BLOCKVAULT_STATE_DIR=$WORK/state BLOCKVAULT_VAULT=$WORK/vault
"$BV" -q vault init "$WORK/vault" >/dev/null

# The bytes of the blocks that differ between gen0 and gen1 (the floor's write).
[[ -s $DATA_DIR/churn-stats.txt ]] ||
  python3 "$SCRIPT_DIR/bench_image.py" blockdiff "$GEN0" "$GEN1" >"$DATA_DIR/churn-stats.txt"
CHANGED_BYTES=$(awk -F= '/^changed_bytes_at_block_granularity=/ { print $2 }' "$DATA_DIR/churn-stats.txt")
[[ -n $CHANGED_BYTES ]] || die "cannot compute the changed bytes of gen0 -> gen1"
log "churn: $((CHANGED_BYTES >> 20)) MiB of changed 4 MiB blocks"

printf 'run\ttool\top\twall_s\n' >"$TSV"
record() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$TSV"; }

# prepare READS...: the same cache state before every timed step.
prepare() {
  sync
  drop_caches
  python3 "$SCRIPT_DIR/bench_image.py" warm "$@" 2>/dev/null
  sync
}

# wall CMD...: runs CMD, sets WALL (seconds).
wall() {
  local t0=$EPOCHREALTIME
  "$@"
  WALL=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
}

# snapshot_seconds JSON: the Snapshot subtask's duration from a backup's --json.
snapshot_seconds() {
  python3 -c '
import json, sys
from datetime import datetime
job = json.load(sys.stdin)["job"]
assert job["status"] == "completed", job
s = next(t for t in job["subtasks"] if t["kind"] == "snapshot")
parse = lambda t: datetime.fromisoformat(t.replace("Z", "+00:00"))
print("%.3f" % (parse(s["ended"]) - parse(s["started"])).total_seconds())'
}

log "first backup of gen0 (untimed)"
cp --sparse=always "$GEN0" "$DISK"
"$BV" -q backup --vm vm --disk "$DISK" >/dev/null
point_of() { "$BV" points --vm vm --json | python3 -c "
import json, sys
print(json.load(sys.stdin)['points'][$1]['id'])"; }

gen=gen0
for run in $(seq 1 "$RUNS"); do
  for _ in 1 2; do
    if [[ $gen == gen0 ]]; then gen=gen1; image=$GEN1; else gen=gen0; image=$GEN0; fi
    cp --sparse=always "$image" "$DISK"
    log "run $run: incremental backup of $gen"
    prepare "$DISK" "$WORK/state"
    json=$("$BV" -q --json backup --vm vm --disk "$DISK")
    record "$run" blockvault snapshot "$(snapshot_seconds <<<"$json")"

    prepare "$DISK"
    wall python3 "$SCRIPT_DIR/bench_image.py" warm "$DISK" 2>/dev/null
    read_s=$WALL
    wall dd if="$DISK" of="$WORK/floor-write" bs=4M count=$((CHANGED_BYTES >> 22)) \
      conv=fsync status=none
    rm -f "$WORK/floor-write"
    record "$run" floor snapshot-read "$read_s"
    record "$run" floor snapshot-write "$WALL"
    record "$run" floor snapshot "$(awk -v a="$read_s" -v b="$WALL" 'BEGIN { printf "%.3f", a + b }')"
  done
done

# Points, oldest first: 0 = gen0, then gen1, gen0, ... ; the last two are one of each.
last_gen=$gen
p_last=$(point_of -1)
p_prev=$(point_of -2)
if [[ $last_gen == gen0 ]]; then P0=$p_last P1=$p_prev; else P0=$p_prev P1=$p_last; fi

# Roll back to the generation the disk does not hold first, so no sample is a no-op.
if [[ $last_gen == gen0 ]]; then targets=(gen1 gen0); else targets=(gen0 gen1); fi
for run in $(seq 1 "$RUNS"); do
  for target in "${targets[@]}"; do
    if [[ $target == gen0 ]]; then
      point=$P0 image=$GEN0 other=$P1 other_image=$GEN1
    else
      point=$P1 image=$GEN1 other=$P0 other_image=$GEN0
    fi
    log "run $run: roll back to $target in place (scan, then as recorded), then restore it in full"
    # A disk changed outside blockvault (a fresh copy): the rollback scans it.
    cp --sparse=always "$other_image" "$DISK"
    prepare "$DISK" "$WORK/state"
    wall "$BV" -q restore --vm vm --point "$point" --in-place --to "$WORK/vm" >/dev/null
    record "$run" blockvault rollback-scan "$WALL"
    cmp "$DISK" "$image" || die "in-place restore of $target differs from $image"
    # The disk as blockvault left it: forth and back between the points without a scan.
    for step in "$other:$other_image" "$point:$image"; do
      prepare "$DISK" "$WORK/state"
      wall "$BV" -q restore --vm vm --point "${step%%:*}" --in-place --to "$WORK/vm" >/dev/null
      record "$run" blockvault rollback-recorded "$WALL"
      cmp "$DISK" "${step#*:}" || die "in-place restore differs from ${step#*:}"
    done

    rm -rf "$WORK/out"
    prepare "$WORK/state"
    wall "$BV" -q restore --vm vm --point "$point" --to "$WORK/out" >/dev/null
    record "$run" blockvault restore-full-snapshot "$WALL"
    cmp "$WORK/out/disk.img" "$image" || die "restore of $target differs from $image"

    rm -rf "$WORK/out"
    prepare "$WORK/vault"
    wall "$BV" -q restore --vm vm --point "$point" --from vault --to "$WORK/out" >/dev/null
    record "$run" blockvault restore-full-vault "$WALL"
    cmp "$WORK/out/disk.img" "$image" || die "vault restore of $target differs from $image"
    rm -rf "$WORK/out"
  done
done

m() { median "$1" "$2" 4; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
snap=$(m blockvault snapshot) floor=$(m floor snapshot)
scan=$(m blockvault rollback-scan) recorded=$(m blockvault rollback-recorded)
full_snap=$(m blockvault restore-full-snapshot) full_vault=$(m blockvault restore-full-vault)
{
  echo "| step | median (s) | reference | median (s) | ratio |"
  echo "| --- | ---: | --- | ---: | ---: |"
  echo "| Snapshot subtask, incremental (~1% churn) | $snap | read of the allocated data ($(m floor snapshot-read) s) + write of the changed blocks ($(m floor snapshot-write) s) | $floor | $(ratio "$snap" "$floor") of the floor |"
  echo "| in-place rollback, disk as blockvault left it (no scan) | $recorded | full restore from the snapshot tier | $full_snap | $(ratio "$full_snap" "$recorded")x faster |"
  echo "| in-place rollback, disk as blockvault left it (no scan) | $recorded | full restore from the vault | $full_vault | $(ratio "$full_vault" "$recorded")x faster |"
  echo "| in-place rollback, disk changed outside blockvault (scan) | $scan | full restore from the snapshot tier | $full_snap | $(ratio "$full_snap" "$scan")x faster |"
  echo
  echo "$RUNS runs, $((2 * RUNS)) samples per line ($((4 * RUNS)) for the rollback without a scan); $(nproc) cores, $(uname -sr), $(df -T "$WORK" | awk 'NR == 2 { print $2 }');"
  echo "command: benches/tiers.sh --runs $RUNS"
} | tee "$OUT"
