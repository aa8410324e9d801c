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

# Drops the page cache (needs root), so that no timed step pays for reclaiming the cache
# another step filled; warns once when it cannot.
DROP_WARNED=0
drop_caches() {
  if ! { echo 1 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
    ((DROP_WARNED)) || echo "WARNING: cannot drop the page cache; steps may see different memory pressure" >&2
    DROP_WARNED=1
  fi
}

