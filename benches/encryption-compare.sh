#!/usr/bin/env bash
# Usage: benches/encryption-compare.sh [--runs N] [--data DIR] [-h|--help]
#
# What client-side encryption costs (issue 26): the same jobs on the benchmark
# images of benches/make-image.sh (8 GiB sparse ext4 disk with a Debian root;
# gen1 = gen0 + ~1% churn) to a plain directory vault and to an encrypted one
# (`vault init --encryption`, the default argon2id: 64 MiB, 3 passes), side by
# side in each run, the order alternating per run:
#
#   full         backup of gen0 into a new vault (a new state directory)
#   incremental  backup of gen1 after it
#   (each also as its job alone, from the job's start to its end in --json:
#   what a daemon's scheduled backup costs, the key unlocked once already)
#   restore-vault    restore of the gen1 point from the vault (--from vault)
#   restore-tier     restore of the same point from the snapshot tier
#   open         `points --vault` (what every command pays to open the vault:
#                for an encrypted one, one argon2id stretch of the passphrase)
#
# Each process unlocks the key once (the daemon once for its lifetime), so the
# open cost is in every timed command above. Before every timed step, untimed:
# sync, drop the page cache, read back what the step reads. Every restore is
# checked with cmp (untimed).
#
# Prints a markdown table of medians and ratios (encrypted / plain); raw
# figures go to DATA_DIR/encryption-results.tsv (run, tool, op, wall_s), the
# table to DATA_DIR/encryption-results.md.
#
# Options:
#   --runs N     repetitions (default 3)
#   --data DIR   where the images live and the work happens (default
#                <repo>/target/bench-data)

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=benches/lib.sh
source "$SCRIPT_DIR/lib.sh"

RUNS=3
DATA_DIR=$REPO_ROOT/target/bench-data
while (($#)); do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --data) DATA_DIR=$2; shift 2 ;;
    -h | --help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[encryption %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

WORK=$DATA_DIR/encryption
TSV=$DATA_DIR/encryption-results.tsv
OUT=$DATA_DIR/encryption-results.md
TRASH=$DATA_DIR/encryption-trash
GEN0=$DATA_DIR/gen0.img
GEN1=$DATA_DIR/gen1.img
[[ -f $GEN0 && -f $GEN1 ]] || "$SCRIPT_DIR/make-image.sh" "$DATA_DIR"

ensure_blockvault_bin
PROGRAMS=("$BV")
empty_trash
rm -rf "$WORK"
mkdir -p "$WORK"
printf 'bench passphrase %s\n' "$RANDOM$RANDOM" >"$WORK/pass"
chmod 600 "$WORK/pass"
export BLOCKVAULT_PASSWORD_FILE=$WORK/pass
printf 'run\ttool\top\twall_s\n' >"$TSV"

record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$TSV"; }
wall() {
  local t0=$EPOCHREALTIME
  "$@"
  WALL=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
}
# prepare PATH...: sync, drop the page cache, read PATHs back (what the next step reads).
prepare() {
  sync
  drop_caches
  local p
  for p in "$@"; do
    if [[ -d $p ]]; then find "$p" -type f -exec cat {} + >/dev/null 2>&1 || true
    elif [[ -f $p ]]; then python3 "$SCRIPT_DIR/bench_image.py" warm "$p" 2>/dev/null || cat "$p" >/dev/null; fi
  done
}

# job_seconds < JSON: a backup's job, start to end, from its --json (checked: completed).
job_seconds() {
  python3 -c '
import json, sys
from datetime import datetime
job = json.load(sys.stdin)["job"]
assert job["status"] == "completed", job
parse = lambda t: datetime.fromisoformat(t.replace("Z", "+00:00"))
print("%.3f" % (parse(job["ended"]) - parse(job["started"])).total_seconds())'
}

one_run() { # RUN TOOL
  local run=$1 tool=$2 dir=$WORK/$2 init=()
  discard "$dir"
  mkdir -p "$dir/vm"
  [[ $tool == encrypted ]] && init=(--encryption)
  local bv=("$BV" -q --state-dir "$dir/state")
  "${bv[@]}" vault init --vault "$dir/vault" "${init[@]}" >/dev/null ||
    die "$tool: vault init failed"
  cp --sparse=always "$GEN0" "$dir/vm/disk.img"

  log "run $run: $tool full backup"
  prepare "$dir/vm/disk.img"
  wall "${bv[@]}" --json backup --vault "$dir/vault" --vm bench --disk "$dir/vm/disk.img" \
    >"$dir/full.json"
  record "$run" "$tool" full "$WALL"
  record "$run" "$tool" full-job "$(job_seconds <"$dir/full.json")"

  cp --sparse=always "$GEN1" "$dir/vm/disk.img"
  log "run $run: $tool incremental backup"
  prepare "$dir/vm/disk.img" "$dir/state"
  wall "${bv[@]}" --json backup --vault "$dir/vault" --vm bench --disk "$dir/vm/disk.img" \
    >"$dir/incremental.json"
  record "$run" "$tool" incremental "$WALL"
  record "$run" "$tool" incremental-job "$(job_seconds <"$dir/incremental.json")"

  log "run $run: $tool restores"
  prepare "$dir/vault" "$dir/state"
  wall "${bv[@]}" restore --vault "$dir/vault" --vm bench --from vault --to "$dir/out" >/dev/null
  record "$run" "$tool" restore-vault "$WALL"
  cmp "$dir/out/disk.img" "$GEN1" || die "$tool: restore from the vault differs from gen1"
  discard "$dir/out"

  prepare "$dir/state"
  wall "${bv[@]}" restore --vault "$dir/vault" --vm bench --to "$dir/out" >/dev/null
  record "$run" "$tool" restore-tier "$WALL"
  cmp "$dir/out/disk.img" "$GEN1" || die "$tool: restore from the tier differs from gen1"
  discard "$dir/out"

  prepare "$dir/vault" "$dir/state"
  wall "${bv[@]}" points --vault "$dir/vault" --vm bench >/dev/null
  record "$run" "$tool" open "$WALL"
  discard "$dir"
}

for run in $(seq 1 "$RUNS"); do
  if ((run % 2)); then order=(plain encrypted); else order=(encrypted plain); fi
  for tool in "${order[@]}"; do one_run "$run" "$tool"; done
  # A run leaves about 8 GB in the trash; five runs' worth filled the benchmark disk. Emptied
  # between runs (each run's first tool alternates, so neither always follows the deletion).
  empty_trash
done

m() { median "$1" "$2" 4; }
row() { # LABEL OP TARGET
  local p e
  p=$(m plain "$2") e=$(m encrypted "$2")
  awk -v l="$1" -v p="$p" -v e="$e" -v t="$3" 'BEGIN {
    r = e / p; v = (t == "") ? "" : ((r <= t) ? "<= " t "x: met" : "<= " t "x: **not met**")
    printf "| %s | %.2f | %.2f | %.3fx | %s |\n", l, p, e, r, v }'
}
{
  echo "| step | plain (s) | encrypted (s) | encrypted / plain | target |"
  echo "| --- | ---: | ---: | ---: | --- |"
  row "full backup, the whole command" full 1.15
  row "full backup, the job alone" full-job 1.15
  row "incremental backup (~1% churn), the whole command" incremental 1.1
  row "incremental backup, the job alone (a daemon's, key unlocked)" incremental-job 1.1
  row "restore from the vault" restore-vault 1.15
  row "restore from the snapshot tier" restore-tier 1.15
  row "open the vault (\`points --vault\`)" open ""
  echo
  echo "Medians of $RUNS runs, the order alternating per run. $BV_REV."
  echo "Command: \`benches/encryption-compare.sh --runs $RUNS\`."
} | tee "$OUT"
