#!/usr/bin/env bash
# Usage: benches/s3-block-size.sh [--runs R] [--sizes "1MiB 4MiB"] [--bin PATH] [-h|--help]
#
# What the block size costs on S3, side by side on one Garage (scripts/garage.sh, started on
# 127.0.0.1 and stopped at the end): the full backup job of gen0 (benches/make-image.sh) into a
# fresh S3 vault at each size, then restores of one such point per size from the vault. Every
# step runs R times per size (default 3), interleaved, the order of the sizes alternating from
# one run to the next; before every step, untimed: sync, page-cache drop, then the image's data
# (backups) and Garage's files read back. Each step is a whole blockvault process under
# /usr/bin/time: wall seconds and peak RSS, one line each, then the medians.
#
# Needs root (page-cache drop), the Garage of scripts/garage.sh (installed on first use) and
# target/bench-data/gen0.img. --bin: the blockvault binary (default target/release/blockvault,
# built with cargo build --release when missing).

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
RUNS=3
SIZES="1MiB 4MiB"
BV=""
while (($#)); do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    --bin) BV=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "--runs must be a positive number" >&2; exit 2; }
IMG=$REPO/target/bench-data/gen0.img
[[ -f $IMG ]] || { echo "no $IMG: run benches/make-image.sh first" >&2; exit 1; }
if [[ -z $BV ]]; then
  BV=$REPO/target/release/blockvault
  [[ -x $BV ]] || (cd "$REPO" && cargo build --release -q -p blockvault-cli --bin blockvault)
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/s3-block-size.XXXXXX")
GARAGE=$WORK/garage
cleanup() { bash "$REPO/scripts/garage.sh" stop "$GARAGE" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
bash "$REPO/scripts/garage.sh" start "$GARAGE" >/dev/null
# shellcheck disable=SC1091
source "$GARAGE/env"
mkdir -p "$WORK/disk"
ln -s "$IMG" "$WORK/disk/disk.img"
RESULTS=$WORK/results.tsv

settle() { # the same cache state before every step
  sync
  echo 3 >/proc/sys/vm/drop_caches
  if (($#)); then python3 "$SCRIPT_DIR/bench_image.py" warm "$@" >/dev/null 2>&1; fi
  find "$GARAGE" -type f -exec cat {} + >/dev/null 2>&1 || true
  sync
}

timed() { # STEP SIZE RUN -- CMD...
  local step=$1 size=$2 run=$3
  shift 4
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >"$WORK/step.log" 2>&1 ||
    { cat "$WORK/step.log" >&2; echo "$step at $size (run $run) failed" >&2; exit 1; }
  read -r secs kib <"$WORK/time"
  printf '%s\t%s\t%s\t%s\t%s\n' "$step" "$size" "$run" "$secs" "$((kib / 1024))" | tee -a "$RESULTS"
}

order() { # the sizes, reversed on even runs
  if (($1 % 2)); then echo "$SIZES"; else echo "$SIZES" | tr ' ' '\n' | tac | tr '\n' ' '; fi
}

vault() { echo "s3://$BLOCKVAULT_TEST_S3_BUCKET/$1"; }

for run in $(seq 1 "$RUNS"); do
  for size in $(order "$run"); do
    state=$WORK/state-full-$run-$size
    "$BV" -q --state-dir "$state" vault init "$(vault "full-$run-$size")" >/dev/null
    settle "$IMG"
    timed full "$size" "$run" -- "$BV" -q --state-dir "$state" backup \
      --vault "$(vault "full-$run-$size")" --vm v --disk "$WORK/disk/disk.img" --block-size "$size"
  done
done
for run in $(seq 1 "$RUNS"); do
  for size in $(order "$run"); do
    rm -rf "$WORK/out"
    settle
    # The point of run 1's full backup at this size, read from S3.
    timed restore "$size" "$run" -- "$BV" -q --state-dir "$WORK/state-full-1-$size" restore \
      --vault "$(vault "full-1-$size")" --vm v --from vault --to "$WORK/out"
  done
done

echo
echo "medians of $RUNS (step, block size, wall s, peak RSS MiB):"
for step in full restore; do
  for size in $SIZES; do
    awk -F'\t' -v s="$step" -v z="$size" '$1 == s && $2 == z { print $4, $5 }' "$RESULTS" |
      sort -n | awk -v s="$step" -v z="$size" '{ t[NR] = $1; m[NR] = $2 }
        END { printf "%s\t%s\t%s\t%s\n", s, z, t[int((NR + 1) / 2)], m[int((NR + 1) / 2)] }'
  done
done
