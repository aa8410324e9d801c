# Helpers shared by the benchmark scripts (sourced, not run).
# shellcheck shell=bash

# Installs Debian packages quietly; `apt-get update` once per script run.
APT_UPDATED=0
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [[ $APT_UPDATED == 0 ]]; then
    apt-get update -q >/dev/null
    APT_UPDATED=1
  fi
  apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

# median TOOL OP COLUMN: the median of that column of $TSV over the rows of TOOL and OP
# (columns as each script's TSV header says); "-" without data, "n/a" when not measured.
median() {
  awk -F'\t' -v t="$1" -v o="$2" -v c="$3" 'NR > 1 && $2 == t && $3 == o { print $c }' "$TSV" |
    sort -g | awk '{ v[NR] = $1 } END {
      if (NR == 0) { print "-"; exit }
      if (v[1] == "n/a") { print "n/a"; exit }
      if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Deleting without disturbing the timed steps. On ext4 without a journal (this project's
# benchmark machine), for minutes after many files are deleted, creating files walks past the
# freed inodes (`recently_deleted` in the kernel's inode allocator): right after a previous
# run's repositories were deleted it took 9% of a full backup's CPU, against 0.6% five
# minutes later, and it weighs on each tool by the number of files it creates, not by what it
# does. So the scripts move what they no longer need into $TRASH (a rename, nothing freed) and
# delete it after their last timed step. Needs TRASH set.
DISCARDED=0
discard() { # PATH...
  local path
  mkdir -p "$TRASH"
  for path in "$@"; do
    if [[ -e $path ]]; then
      DISCARDED=$((DISCARDED + 1))
      mv "$path" "$TRASH/$DISCARDED"
    fi
  done
}

empty_trash() { rm -rf "$TRASH"; }

# Drops the page cache (needs root), so that no timed step pays for reclaiming the cache
# another step filled; warns once when it cannot. Then reads the programs in PROGRAMS (set by
# the script: the tools it times) back into the cache: a timed step must not load its
# program from disk (the blockvault binary alone is 22-26 MiB, read in every step until this
# was added, issue 22).
DROP_WARNED=0
PROGRAMS=()
drop_caches() {
  if ! { echo 1 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
    ((DROP_WARNED)) || echo "WARNING: cannot drop the page cache; steps may see different memory pressure" >&2
    DROP_WARNED=1
  fi
  local p
  for p in "${PROGRAMS[@]}"; do
    cat -- "$p" >/dev/null 2>&1 || true
  done
}

# The blockvault binary the scripts time: BV is BLOCKVAULT_BIN, else a release build of the
# tree; BV_REV says which. Needs REPO_ROOT, and the script's `log` and `die`.
ensure_blockvault_bin() {
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

# --- floors (issue 7) ----------------------------------------------------------------
# The floor tool, benches/src/bin/floor.rs (its header defines every floor): FLOOR is set to
# BLOCKVAULT_FLOOR_BIN, else to a release build of it. Needs REPO_ROOT.
ensure_floor() {
  if [[ -n ${BLOCKVAULT_FLOOR_BIN:-} ]]; then
    FLOOR=$BLOCKVAULT_FLOOR_BIN
  else
    (cd "$REPO_ROOT" && cargo build --release -p blockvault-benches --bin blockvault-floor) >&2
    FLOOR=${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/blockvault-floor
  fi
  [[ -x $FLOOR ]] || { echo "floor tool not found or not executable: $FLOOR" >&2; exit 1; }
}

# floor_field LOG KEY: a number from the JSON line the floor tool printed into LOG.
floor_field() {
  grep -o "\"$2\":[0-9.]*" "$1" | tail -n 1 | cut -d: -f2
}

# floor_row LABEL FLOOR_OP WHAT: one row of the floor table (median of the floor's wall time,
# TSV column 4, and the spread over runs).
floor_row() {
  local m lo hi
  m=$(median floor "$2" 4)
  read -r lo hi < <(awk -F'\t' -v o="$2" 'NR > 1 && $2 == "floor" && $3 == o {
      if (lo == "" || $4 < lo) lo = $4; if (hi == "" || $4 > hi) hi = $4 }
    END { if (lo == "") print "- -"; else print lo, hi }' "$TSV")
  if [[ $m == - ]]; then echo "| $1 | - | - | $3 |"; return; fi
  printf '| %s | %.2f | %.2f-%.2f | %s |\n' "$1" "$m" "$lo" "$hi" "$3"
}

# vs_floor_row LABEL BV_OP FLOOR_OP TARGET PEER_OP PEER...: one row of the table "blockvault
# against its floor and the best peer": blockvault's median, the floor's, their ratio, the
# target (blockvault / floor at most TARGET, "" for none), the fastest peer on PEER_OP and
# how many times blockvault is faster than it.
vs_floor_row() {
  local label=$1 bv_op=$2 fl_op=$3 tmax=$4 peer_op=$5 bv fl best=- who=- p v r verdict
  shift 5
  bv=$(median blockvault "$bv_op" 4)
  fl=$(median floor "$fl_op" 4)
  for p in "$@"; do
    v=$(median "$p" "$peer_op" 4)
    [[ $v == - || $v == n/a ]] && continue
    if [[ $best == - ]] || awk -v a="$v" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$v; who=$p; fi
  done
  r=-
  verdict=""
  if [[ $bv != - && $fl != - ]]; then
    r=$(awk -v a="$bv" -v b="$fl" 'BEGIN { printf "%.2fx", a / b }')
    if [[ -n $tmax ]]; then
      if awk -v a="$bv" -v b="$fl" -v m="$tmax" 'BEGIN { exit !(a / b <= m) }'; then verdict="<= ${tmax}x: met"
      else verdict="<= ${tmax}x: **not met**"; fi
    fi
  fi
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$label" \
    "$([[ $bv == - ]] && echo - || printf '%.2f' "$bv")" \
    "$([[ $fl == - ]] && echo - || printf '%.2f' "$fl")" "**$r**" "${verdict:-}" \
    "$([[ $best == - ]] && echo - || printf '%s %.2f' "$who" "$best")" \
    "$([[ $best == - || $bv == - ]] && echo - || awk -v a="$best" -v b="$bv" 'BEGIN { printf "%.2fx", a / b }')"
}
