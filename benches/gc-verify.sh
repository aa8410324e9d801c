#!/usr/bin/env bash
# Usage: benches/gc-verify.sh [--points N] [--runs R] [--data DIR] [--bin PATH] [--keep] [-h|--help]
#
# Garbage collection and verify of a directory vault holding N (default 100)
# recovery points of the realistic image of benches/make-image.sh, one point
# per day of churn:
#
#   day 0  gen0.img (8 GiB sparse ext4, Debian root, 1.46 GB allocated)
#   day 1  gen1.img (make-image.sh's churn: bench_image.py's Churn)
#   day d  the image of day d-1 plus benches/daily_churn.py --day d (the same
#          churn model as a steady state: logs appended and rotated, a new
#          download, project edits, the app's database rewritten, the binary
#          upgraded weekly; 7-24 MB written per day), applied with debugfs -w
#
# Each point is a whole backup job (snapshot tier, then transfer to the
# vault). Then, every timed step with /usr/bin/time -v (wall time, peak RSS),
# after sync, a page-cache drop and a read-back of the vault (as
# benches/tiers.sh does):
#
#   gc --dry-run --grace 0s   at N/4, N/2 and N points of the lineage: one
#                             cold run (this host's mark cache emptied: every
#                             map read), then R warm runs (cached chunk lists); also on a second vault whose disk is the
#                             same gen0 made 256 GiB (truncate: 32x the block
#                             map, the same chunks) backed up N times unchanged:
#                             more points x disk size, far fewer chunks;
#   verify --all              over the N points (R runs);
#   drop the oldest N/2 points (their records, then their maps, as a purge
#   does: no retention rule can expire minute-old points), then
#   gc --dry-run              (R runs: the same chunks, half the points),
#   gc --grace 0s             once (it deletes), then verify --all once to
#                             check that nothing live went;
#   gc --dry-run              again after the sweep, and after dropping all
#                             but 5 points (the same chunks, few points).
#
# Prints a markdown table of medians, the machine and the command; raw
# figures go to DATA_DIR/gc-verify-results.tsv and the table to
# DATA_DIR/gc-verify-results.md. The work directory (DATA_DIR/gc-verify:
# vaults, state, the churned disk; ~5 GB at 100 points) is removed at the end
# unless --keep; the images make-image.sh built are kept for the other
# scripts. Takes ~6 minutes at 100 points on 2 cores (every blockvault
# command is killed after 10 minutes).
#
# Options:
#   --points N   points in the lineage (default 100, at least 8)
#   --runs R     repetitions of each repeatable measurement (default 3)
#   --data DIR   where the images live and the work happens (default
#                <repo>/target/bench-data)
#   --bin PATH   the blockvault binary to measure (default: build the repo's
#                with cargo build --release and use target/release/blockvault)
#   --keep       keep the work directory

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=benches/lib.sh
source "$SCRIPT_DIR/lib.sh"

POINTS=100
RUNS=3
DATA_DIR=$REPO/target/bench-data
KEEP=0
BV=
while (($#)); do
  case $1 in
    --points) POINTS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --data) DATA_DIR=$2; shift 2 ;;
    --bin) BV=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $POINTS =~ ^[0-9]+$ && $POINTS -ge 8 ]] || { echo "--points must be a number >= 8" >&2; exit 2; }
[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 1 ]] || { echo "--runs must be a number >= 1" >&2; exit 2; }

log() { printf '[gc-verify %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

mkdir -p "$DATA_DIR"
DATA_DIR=$(cd "$DATA_DIR" && pwd)
WORK=$DATA_DIR/gc-verify
TSV=$DATA_DIR/gc-verify-results.tsv
OUT=$DATA_DIR/gc-verify-results.md
GEN0=$DATA_DIR/gen0.img
GEN1=$DATA_DIR/gen1.img
GEN1_TIME=$((1735689600 + 86400)) # make-image.sh's clock for gen1; day d is d-1 days later

[[ -f $GEN0 && -f $GEN1 && -d $DATA_DIR/rootfs ]] || "$SCRIPT_DIR/make-image.sh" "$DATA_DIR" >&2
[[ -x /usr/bin/time ]] || { log "installing GNU time"; apt_install time; }
command -v debugfs >/dev/null || apt_install e2fsprogs

if [[ -z $BV ]]; then
  log "building blockvault (release)"
  (cd "$REPO" && cargo build --release --locked -q -p blockvault-cli)
  BV=$REPO/target/release/blockvault
fi
[[ -x $BV ]] || die "no blockvault binary at $BV"
BV=$(cd "$(dirname "$BV")" && pwd)/$(basename "$BV")

cleanup() {
  if ((KEEP)); then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
rm -rf "$WORK"
mkdir -p "$WORK/vm" "$WORK/big"
export BLOCKVAULT_STATE_DIR=$WORK/state
VAULT=$WORK/vault
BIG_VAULT=$WORK/vault-big
DISK=$WORK/vm/disk.img
BIG_DISK=$WORK/big/disk.img
"$BV" -q vault init "$VAULT" >/dev/null
"$BV" -q vault init "$BIG_VAULT" >/dev/null

# bv ARGS...: blockvault, never for more than 10 minutes.
bv() { timeout 600 "$BV" "$@"; }

COLS='run\tcase\top\twall_s\trss_mib\tpoints\tmaps_read\tchunks\tmark_s\tsweep_s\tchunks_deleted\tbytes_freed\tbytes_read\tmaps_cached'
printf '%b\n' "$COLS" >"$TSV"

# measure RUN CASE OP CMD...: runs CMD (a blockvault --json command) under GNU time after
# sync, a cache drop and a read-back of the vault CMD names (its --vault); records wall time,
# peak RSS and the JSON's figures. Leaves the JSON in $WORK/last.json.
measure() {
  local run=$1 case=$2 op=$3 vault
  shift 3
  vault=$(awk '{ for (i = 1; i < NF; i++) if ($i == "--vault") print $(i + 1) }' <<<"$*")
  sync
  drop_caches
  python3 "$SCRIPT_DIR/bench_image.py" warm "$vault" "$WORK/state/catalog.sqlite" "$WORK/state/vaults" 2>/dev/null
  sync
  local t0=$EPOCHREALTIME status=0
  /usr/bin/time -v -o "$WORK/time.txt" timeout 600 "$BV" -q --json "$@" >"$WORK/last.json" || status=$?
  local wall
  wall=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
  ((status == 0)) || { cat "$WORK/last.json" >&2; die "$op exited $status"; }
  local rss
  rss=$(awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$WORK/time.txt")
  python3 - "$run" "$case" "$op" "$wall" "$rss" "$WORK/last.json" >>"$TSV" <<'EOF'
import json, sys
run, case, op, wall, rss, path = sys.argv[1:]
doc = json.load(open(path))
gc, rep = doc.get("gc"), doc.get("report")
if gc:
    row = [gc["points"], gc["maps_read"], gc["chunks"], "%.4f" % gc["mark_seconds"],
           "%.4f" % gc["sweep_seconds"], gc["chunks_deleted"], gc["bytes_freed"], "n/a",
           gc.get("maps_cached", 0)]
else:
    assert not rep["bad_chunks"] and not rep["bad_maps"], rep
    row = [rep["points"], "n/a", rep["chunks_checked"], "n/a", "n/a", "n/a", "n/a", rep["bytes_read"],
           "n/a"]
print("\t".join(str(x) for x in [run, case, op, wall, rss] + row))
EOF
}

# gc_dry CASE OP VAULT: one cold dry run (this host's mark cache emptied: every block map is
# read from the vault; op OP-cold), then RUNS timed dry runs with the cache as the cold run
# left it (maps read once per host, then their cached chunk lists; op OP).
gc_dry() {
  local run
  rm -rf "$WORK"/state/vaults/*/marks
  measure 1 "$1" "$2-cold" gc --vault "$3" --dry-run --grace 0s
  for run in $(seq 1 "$RUNS"); do
    measure "$run" "$1" "$2" gc --vault "$3" --dry-run --grace 0s
  done
}

# backup VAULT VM DISK LABEL CASE: one backup job (not in the table: the lineage's cost, new
# chunks and bytes stored per point go to the TSV).
backup() {
  local t0=$EPOCHREALTIME json
  json=$(bv -q --json backup --vault "$1" --vm "$2" --disk "$3")
  python3 -c '
import json, sys
d = json.loads(sys.argv[1]); p = d["point"]
assert d["job"]["status"] == "completed", d["job"]
print("\t".join(map(str, [sys.argv[2], sys.argv[3], "backup", sys.argv[4], "n/a", "n/a", "n/a",
      p["stats"]["chunks_stored"], "n/a", "n/a", "n/a", p["stats"]["bytes_stored"], p["stats"]["bytes_scanned"], "n/a"])))' \
    "$json" "$4" "$5" "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')" >>"$TSV"
}

checkpoints=("$((POINTS / 4))" "$((POINTS / 2))" "$POINTS")
is_checkpoint() { local c; for c in "${checkpoints[@]}"; do [[ $1 == "$c" ]] && return 0; done; return 1; }

# --- the lineage: one point per day of churn --------------------------------------------
T0=$SECONDS
for n in $(seq 1 "$POINTS"); do
  day=$((n - 1))
  case $day in
    0) cp --sparse=always "$GEN0" "$DISK" ;;
    1) cp --sparse=always "$GEN1" "$DISK" ;;
    *)
      python3 "$SCRIPT_DIR/daily_churn.py" --rootfs "$DATA_DIR/rootfs" --image "$DISK" \
        --out "$WORK/churn" --day "$day" >"$WORK/churn.log"
      # debugfs exits 0 even when a command fails: anything on stderr but its banner is an error.
      errs=$(E2FSPROGS_FAKE_TIME=$((GEN1_TIME + (day - 1) * 86400)) \
        debugfs -w -f "$WORK/churn/debugfs.cmds" "$DISK" 2>&1 >/dev/null | grep -v '^debugfs [0-9]' || true)
      [[ -z $errs ]] || die "debugfs reported errors on day $day:"$'\n'"$errs"
      ;;
  esac
  backup "$VAULT" vm "$DISK" "day$day" 8g
  ((n % 10)) || log "lineage: $n points ($((SECONDS - T0)) s; $(cat "$WORK/churn.log" 2>/dev/null || echo gen0/gen1))"
  if is_checkpoint "$n"; then
    log "gc --dry-run at $n points, $RUNS runs"
    gc_dry "8g-$n" gc-dry "$VAULT"
  fi
done
e2fsck -fn "$DISK" >/dev/null 2>&1 || die "the churned image fails e2fsck: the churn left it inconsistent"
rm -f "$DISK"
log "lineage of $POINTS points built in $((SECONDS - T0)) s"

# --- the same disk made 256 GiB, backed up unchanged -------------------------------------
T0=$SECONDS
cp --sparse=always "$GEN0" "$BIG_DISK"
truncate -s 256G "$BIG_DISK"
for n in $(seq 1 "$POINTS"); do
  backup "$BIG_VAULT" big "$BIG_DISK" "big$n" 256g
  if is_checkpoint "$n"; then
    log "256 GiB disk: gc --dry-run at $n points, $RUNS runs"
    gc_dry "256g-$n" gc-dry "$BIG_VAULT"
  fi
done
rm -f "$BIG_DISK"
log "256 GiB lineage built in $((SECONDS - T0)) s"

# --- verify --------------------------------------------------------------------------------
for run in $(seq 1 "$RUNS"); do
  log "verify --all, run $run"
  measure "$run" "8g-$POINTS" verify verify --vault "$VAULT" --all
done

# --- drop the oldest half, then collect ----------------------------------------------------
# drop_oldest K: removes the K oldest points of vm from the vault: records, then maps (the
# order a purge uses). The catalog still lists them; gc and verify --all read the vault only.
drop_oldest() {
  local id
  bv points --vault "$VAULT" --vm vm --json | python3 -c '
import json, sys
import os
points = sorted(json.load(sys.stdin)["points"], key=lambda p: (p["time"], p["id"]))
points = [p for p in points if os.path.exists(os.path.join(sys.argv[2], p["id"]))]
print("\n".join(p["id"] for p in points[:int(sys.argv[1])]))' "$1" "$VAULT/points/vm" >"$WORK/drop.txt"
  [[ $(wc -l <"$WORK/drop.txt") == "$1" ]] || die "cannot list the $1 oldest points"
  while read -r id; do rm -f "$VAULT/points/vm/$id"; done <"$WORK/drop.txt"
  while read -r id; do rm -rf "${VAULT:?}/maps/vm/$id"; done <"$WORK/drop.txt"
}
KEPT=$((POINTS - POINTS / 2))
drop_oldest $((POINTS / 2))
log "dropped the oldest $((POINTS / 2)) points; gc --dry-run, $RUNS runs"
gc_dry "8g-drop" gc-dry "$VAULT"
log "gc --grace 0s (deletes)"
measure 1 "8g-drop" gc gc --vault "$VAULT" --grace 0s --wait 60s
log "verify --all after the collection"
measure 1 "8g-$KEPT-after-gc" verify verify --vault "$VAULT" --all
gc_dry "8g-$KEPT-after-gc" gc-dry "$VAULT"
FEW=$((KEPT > 5 ? 5 : 1))
drop_oldest $((KEPT - FEW))
log "dropped all but $FEW points; gc --dry-run, $RUNS runs"
gc_dry "8g-few-same-chunks" gc-dry "$VAULT"

# --- the table -----------------------------------------------------------------------------
m() { median "$1" "$2" "$3"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }
ms() { awk -v s="$1" 'BEGIN { printf "%.0f", s * 1000 }'; }
row() { # CASE LABEL
  echo "| $2 | $(m "$1" gc-dry 6) | $(m "$1" gc-dry 8) | $(m "$1" gc-dry 11) | $(m "$1" gc-dry-cold 7) | $(ms "$(m "$1" gc-dry-cold 9)") | $(ms "$(m "$1" gc-dry-cold 4)") | $(m "$1" gc-dry-cold 5) | $(m "$1" gc-dry 14) | $(ms "$(m "$1" gc-dry 9)") | $(ms "$(m "$1" gc-dry 4)") | $(m "$1" gc-dry 5) |"
}
backups_8g=$(awk -F'\t' '$3 == "backup" && $2 == "8g"' "$TSV")
new_chunks=$(awk -F'\t' '$3 == "backup" && $2 == "8g" && $1 != "day0" { s += $8; n++ } END { printf "%.1f", s / n }' "$TSV")
stored_mb=$(awk -F'\t' '$3 == "backup" && $2 == "8g" && $1 != "day0" { s += $12; n++ } END { printf "%.1f", s / n / 1e6 }' "$TSV")
backup_s=$(awk -F'\t' '$3 == "backup" && $2 == "8g" && $1 != "day0" { print $4 }' "$TSV" | sort -g |
  awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
vbytes=$(m "8g-$POINTS" verify 13) vwall=$(m "8g-$POINTS" verify 4)
[[ -n $backups_8g ]] || die "no backups recorded"
{
  echo "Lineage: $POINTS points, one per day of churn; $new_chunks new chunks ($stored_mb MB stored) per daily point on average; median incremental backup job $backup_s s."
  echo
  echo "| gc --dry-run --grace 0s | points | chunks listed | unreferenced | cold: maps read | mark ms | wall ms | peak RSS MiB | warm: maps cached | mark ms | wall ms | peak RSS MiB |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for c in "${checkpoints[@]}"; do row "8g-$c" "8 GiB disk, lineage at $c points"; done
  row 8g-drop "8 GiB, oldest $((POINTS / 2)) dropped, before the sweep"
  row "8g-$KEPT-after-gc" "8 GiB, $KEPT points after the sweep"
  row 8g-few-same-chunks "8 GiB, all but $FEW dropped (same chunks)"
  for c in "${checkpoints[@]}"; do row "256g-$c" "256 GiB disk (same data, unchanged), $c points"; done
  echo
  echo "| operation | points | chunks | bytes | wall s | rate | peak RSS MiB |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  echo "| verify --all (median of $RUNS) | $(m "8g-$POINTS" verify 6) | $(m "8g-$POINTS" verify 8) | $(mib "$vbytes") MiB read | $vwall | $(awk -v b="$vbytes" -v s="$vwall" 'BEGIN { printf "%.0f MiB/s", b / 1048576 / s }') | $(m "8g-$POINTS" verify 5) |"
  echo "| gc --grace 0s after dropping $((POINTS / 2)) (once) | $(m 8g-drop gc 6) | $(m 8g-drop gc 8) listed, $(m 8g-drop gc 11) deleted | $(mib "$(m 8g-drop gc 12)") MiB freed | $(m 8g-drop gc 4) | mark $(ms "$(m 8g-drop gc 9)") ms, sweep $(ms "$(m 8g-drop gc 10)") ms | $(m 8g-drop gc 5) |"
  echo "| verify --all after it (once) | $(m "8g-$KEPT-after-gc" verify 6) | $(m "8g-$KEPT-after-gc" verify 8) | $(mib "$(m "8g-$KEPT-after-gc" verify 13)") MiB read | $(m "8g-$KEPT-after-gc" verify 4) | | $(m "8g-$KEPT-after-gc" verify 5) |"
  echo
  echo "$RUNS runs per median; $(nproc) cores, $(uname -sr), $(df -T "$DATA_DIR" | awk 'NR == 2 { print $2 }');"
  echo "command: benches/gc-verify.sh --points $POINTS --runs $RUNS"
} | tee "$OUT"
