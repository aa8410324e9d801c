#!/usr/bin/env bash
# Usage: benches/s3-compare.sh [--runs N] [--data DIR] [--only TOOL]... [--no-floor]
#                              [--endpoint URL --bucket NAME] [-h|--help]
#
# Times blockvault against restic (Debian package) and rustic (crates.io),
# all three backing up to the same S3 server, on the benchmark images from
# benches/make-image.sh (8 GiB sparse ext4 VM disk with a Debian root, gen1 =
# gen0 + ~1% churn), in the same run and under the same conditions:
#
#   full         gen0.img copied to DATA_DIR/s3/vm/disk.img (untimed), backed
#                up into a fresh repository (its own prefix in the bucket).
#                (Not DATA_DIR/vm as benches/peer-compare.sh: the two scripts
#                must not overwrite or delete each other's disk.img. Running
#                both at once still spoils both measurements.)
#   incremental  gen1.img copied over the same disk path (untimed), backed up
#                again into the same repository, with the same local cache
#   restore      newest point (gen1) restored into an empty directory; the
#                result is checked byte for byte against gen1.img with cmp
#                (untimed; a mismatch aborts the script)
#   restore (durable)
#                the same restore, until the restored image is on disk:
#                blockvault's restore fsyncs the image before it exits,
#                restic and rustic do not, so their figure here is the restore
#                followed by `sync disk.img` (an fsync of that file), timed
#                together in one step. blockvault's figure is its one restore.
#
# The S3 server: by default the script starts its own single-node Garage on
# 127.0.0.1 (scripts/garage.sh, data under DATA_DIR/s3/garage), a fresh one
# for every run, and stops it at the end of the run and on exit. With
# --endpoint URL --bucket NAME it uses that server instead (MinIO, Ceph RGW,
# AWS, another Garage) and starts nothing: credentials and region come from
# AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN (optional) and
# AWS_REGION (else AWS_DEFAULT_REGION, else us-east-1); AWS_ALLOW_HTTP=true is
# set for an http:// endpoint. The bucket must exist. Every tool in every run
# writes under its own fresh prefix, bench/RUNID/rN/TOOL; on an external
# endpoint nothing is deleted afterwards (remove bench/RUNID/ yourself).
#
# Floors (issue 7): in the same runs, on the same images, against the same
# server and bucket, under the same page-cache discipline, a fourth
# participant, "floor", runs target/release/blockvault-floor
# (benches/src/bin/floor.rs, whose header defines each floor precisely; blockvault's
# default 1 MiB blocks, data extents only, rayon on all cores, the blake3 and zstd crates of
# the workspace, object_store built by blockvault's own Store::s3, 16 PUTs or
# 32 GETs in flight as blockvault):
#   full         floor backup-s3: read + zstd -1 of the allocated blocks of
#                gen0, overlapped with a PUT of each compressed block (one
#                object per block, 16 in flight). The floor of a full backup.
#   compress     floor compress: read + zstd -1 of the same, output dropped.
#   read         floor read: read the allocated blocks of gen1.
#   incremental  floor hash: read + BLAKE3 of the allocated blocks of gen1.
#                The floor of an incremental backup without changed-block
#                tracking.
#   upload       floor put: then (untimed) gen1's blocks are compressed into
#                local files, and this PUTs them (files in the page cache), 16
#                in flight: the raw upload alone.
#   download     floor get: GET those objects into memory, 32 in flight: the
#                raw download alone.
#   restore      floor restore-s3: GET them (32 in flight), zstd -d, write the
#                non-zero 4 KiB pages into a new sparse image, fdatasync
#                (writeback started every 128 MiB, written pages dropped). The floor of a restore; checked with cmp
#                against gen1.img.
# The report then gives each blockvault figure as a ratio to its floor and
# to the best of restic and rustic. --no-floor leaves the floors out.
#
# Each of the N runs (default 3) does every operation for every tool one
# after the other; the tool order rotates from one run to the next, so each
# tool goes first in turn and all see the same machine state.
#
# Page cache is warm for all tools alike: before every timed step, untimed,
# everything local the step reads is read into the page cache with
# `bench_image.py warm` (data extents only): the Garage server's data and
# metadata directories (when the script runs the server), the tool's local
# state (blockvault's --state-dir with its chunk index, restic's and rustic's
# cache directories) and, for a backup, disk.img last. For a backup disk.img
# is first read whole, holes included, with cat: restic and rustic read its
# ~6.6 GiB of holes as zeros, and the first read of a hole fills the page
# cache with zero pages, which on a VM can cost seconds of system time (up to
# ~19 s here, memory the host had not backed yet) that would otherwise fall
# on whichever of them reads first. blockvault skips holes. Then `sync` runs
# (untimed) so that no writeback of a previous step lands in the next
# measurement. GNU time's "File system inputs" of each step (MiB) goes to the
# TSV (fs_inputs_mib); the report prints the largest.
#
# Wall time is measured around the command; peak RSS is GNU time's "Maximum
# resident set size" of the tool (not of the S3 server, which runs in its own
# process on the same 2 cores). With the script's own Garage, the S3 requests
# of each step are counted from Garage's /metrics (api_s3_request_counter):
# "objects written" is PutObject + CompleteMultipartUpload, "requests" every
# S3 call. After the incremental, the objects and bytes under the tool's
# prefix are listed (ListObjectsV2, SigV4 in a few lines of python3 standard
# library), on any endpoint: "stored" is what the repository holds then.
#
# Prints a markdown table (medians, restic/blockvault and rustic/blockvault
# ratios, peak RSS), a second one of S3 figures (objects written per step,
# objects and bytes stored after the incremental), the machine and the exact
# command; raw per-run figures go to DATA_DIR/s3-results.tsv (columns run,
# tool, op, wall_s, max_rss_kib, fs_inputs_mib, s3_puts, s3_requests,
# objects_stored, bytes_stored, restored_alloc_bytes; the restore of restic
# and rustic gives two rows, restore and restore-durable) and the report to
# DATA_DIR/s3-results.md.
#
# Options:
#   --runs N         runs per tool (default 3)
#   --data DIR       data directory (default $BLOCKVAULT_BENCH_DATA, else
#                    <repo>/target/bench-data); passed to make-image.sh
#   --only TOOL      run only this tool (blockvault, restic or rustic);
#                    repeat to pick several
#   --no-floor       do not measure the floors
#   --split-cores    run the Garage started here on the machine's last core and
#                    every timed step on the others (taskset): a stand-in for
#                    an S3 server on other hardware, with a client one core
#                    smaller. Needs 2 cores or more; not with --endpoint.
#   --endpoint URL   use this S3 endpoint instead of starting Garage
#   --bucket NAME    the bucket on --endpoint (required with it)
#
# Environment:
#   BLOCKVAULT_BIN   use this blockvault binary instead of building
#                    `cargo build --release -p blockvault-cli`
#   BLOCKVAULT_FLOOR_BIN
#                    use this floor tool instead of building `cargo build
#                    --release -p blockvault-benches --bin blockvault-floor`
#   RESTIC_BACKUP_EXTRA, RUSTIC_BACKUP_EXTRA
#                    extra arguments for `restic backup` / `rustic backup`
#
# Missing tools are installed: restic with apt-get, rustic with
# `cargo install rustic-rs --locked` (several minutes, once), Garage 2.5.0
# with scripts/garage.sh.
#
# blockvault runs as: blockvault --state-dir STATE vault init s3://B/P;
# blockvault --state-dir STATE backup --vault s3://B/P --vm bench --disk
# DATA_DIR/s3/vm/disk.img --json; blockvault --state-dir STATE restore --vault
# s3://B/P --vm bench --from vault --to OUT --json (STATE fresh per run, kept
# from the full backup to the restore: its chunk index starts empty). The
# backup is a job: a Snapshot into the local snapshot tier under STATE, then a
# Transfer of the new chunks to S3. The restore reads S3 (--from vault), like
# the peers' restores; by default it would read the local snapshot tier.
# restic runs as (RESTIC_PASSWORD set, RESTIC_CACHE_DIR fresh per run,
# options -o s3.region=REGION -o s3.bucket-lookup=path): restic -r
# s3:ENDPOINT/B/P init; restic backup disk.img (from DATA_DIR/s3/vm; default
# --compression auto); restic restore latest --target OUT [--sparse when this
# restic has it] && sync disk.img (in OUT).
# rustic runs as (RUSTIC_PASSWORD set, --cache-dir fresh per run, repository
# opendal:s3 with root, bucket, endpoint, region and keys as repository
# options in a profile file rustic-s3.toml): rustic init; rustic backup
# disk.img (from DATA_DIR/s3/vm); rustic restore latest OUT && sync disk.img.
# restic and rustic always encrypt their repositories; blockvault does not
# encrypt (yet).

set -euo pipefail
export LC_ALL=C # EPOCHREALTIME and printf %f must use '.' as decimal point

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=benches/lib.sh
source "$SCRIPT_DIR/lib.sh"
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
COMMAND_LINE="benches/s3-compare.sh${*:+ $*}"
export PATH="$HOME/.cargo/bin:$PATH" # rustic and garage from cargo install

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
log() { printf '[s3-compare] %s\n' "$*" >&2; }
die() { printf '[s3-compare] ERROR: %s\n' "$*" >&2; exit 1; }

RUNS=3
DATA_DIR=${BLOCKVAULT_BENCH_DATA:-$REPO_ROOT/target/bench-data}
ALL_TOOLS=(blockvault restic rustic)
TOOLS=()
ENDPOINT=""
BUCKET=""
OWN_GARAGE=1
WITH_FLOOR=1
SPLIT_CORES=0
SERVER_PIN=() # taskset prefix of the Garage server (--split-cores)
CLIENT_PIN=() # taskset prefix of every timed step (--split-cores)
BENCH_PASSWORD=s3-compare-benchmark # restic's and rustic's repository password

parse_args() {
  while (($#)); do
    case "$1" in
      --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
      --data) DATA_DIR=${2:?--data needs a value}; shift 2 ;;
      --only)
        case "${2:-}" in
          blockvault|restic|rustic) [[ " ${TOOLS[*]} " == *" $2 "* ]] || TOOLS+=("$2") ;;
          *) die "--only takes blockvault, restic or rustic" ;;
        esac
        shift 2 ;;
      --endpoint) ENDPOINT=${2:?--endpoint needs a URL}; shift 2 ;;
      --bucket) BUCKET=${2:?--bucket needs a name}; shift 2 ;;
      --no-floor) WITH_FLOOR=0; shift ;;
      --split-cores) SPLIT_CORES=1; shift ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; exit 2 ;;
    esac
  done
  [[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
  ((${#TOOLS[@]})) || TOOLS=("${ALL_TOOLS[@]}")
  if ((WITH_FLOOR)); then TOOLS+=(floor); fi
  if [[ -n $ENDPOINT || -n $BUCKET ]]; then
    [[ -n $ENDPOINT && -n $BUCKET ]] || die "--endpoint and --bucket go together"
    [[ $ENDPOINT =~ ^https?://[^/]+/?$ ]] || die "--endpoint must be http(s)://HOST[:PORT], got: $ENDPOINT"
    ENDPOINT=${ENDPOINT%/}
    OWN_GARAGE=0
  fi
  if ((SPLIT_CORES)); then
    ((OWN_GARAGE)) || die "--split-cores pins the Garage this script starts: not with --endpoint"
    local cores
    cores=$(nproc)
    ((cores >= 2)) || die "--split-cores needs 2 cores or more, this machine has $cores"
    SERVER_PIN=(taskset -c "$((cores - 1))")
    CLIENT_PIN=(taskset -c "0-$((cores - 2))")
  fi
}

has_tool() { [[ " ${TOOLS[*]} " == *" $1 "* ]]; }

# --- setup ---------------------------------------------------------------------


ensure_tools() {
  local missing=() v
  v=$(/usr/bin/time --version 2>&1 || true) # captured: grep -q on a pipe can trip pipefail
  [[ $v == *GNU* ]] || missing+=(time)
  command -v cmp >/dev/null || missing+=(diffutils)
  command -v curl >/dev/null || missing+=(curl)
  if has_tool restic && ! command -v restic >/dev/null; then missing+=(restic); fi
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
  fi
  if has_tool restic; then
    RESTIC_VERSION=$(restic version | head -n 1)
    # restic >= 0.15 can restore sparse files; 0.14 (Debian 12) cannot.
    RESTIC_SPARSE=()
    v=$(restic restore --help 2>&1 || true)
    [[ $v == *--sparse* ]] && RESTIC_SPARSE=(--sparse)
  fi
  if has_tool rustic && ! command -v rustic >/dev/null; then
    log "installing rustic: cargo install rustic-rs --locked (several minutes, once)"
    cargo install rustic-rs --locked >&2 || die "cargo install rustic-rs --locked failed"
  fi
  if has_tool rustic; then RUSTIC_VERSION=$(rustic --version | head -n 1); fi
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
}

# Untimed: every tool's program in the page cache, so no timed step loads one
# from disk.
warm_programs() {
  local progs=() t
  if has_tool blockvault; then progs+=("$BV"); fi
  if has_tool floor; then progs+=("$FLOOR"); fi
  for t in restic rustic; do
    if has_tool "$t"; then progs+=("$(command -v "$t")"); fi
  done
  python3 "$SCRIPT_DIR/bench_image.py" warm "${progs[@]}" 2>/dev/null || die "cannot read ${progs[*]}"
  PROGRAMS=("${progs[@]}")
}

# --- the S3 server ---------------------------------------------------------------

GARAGE_DIR=""
start_garage() { # RUN: a fresh single-node Garage for this run
  GARAGE_DIR=$WORK/garage
  local logf=$WORK/logs/run$1-garage-start.log attempt
  # Up to 3 attempts: `garage.sh start` can lose a race on a busy machine (the
  # node answers `node id` before its RPC listener is up, and the layout
  # command that follows gets "connection refused"); it leaves its server
  # running then, so stop that one before trying again.
  for attempt in 1 2 3; do
    # The server inherits the pin (--split-cores).
    if "${SERVER_PIN[@]}" bash "$REPO_ROOT/scripts/garage.sh" start "$GARAGE_DIR" >"$logf" 2>&1; then break; fi
    bash "$REPO_ROOT/scripts/garage.sh" stop "$GARAGE_DIR" >/dev/null 2>&1 || true
    ((attempt < 3)) || die "scripts/garage.sh start failed 3 times (log: $logf)"
    log "scripts/garage.sh start failed (attempt $attempt): $(tail -n 1 "$logf"); retrying"
    sleep 1
  done
  # shellcheck disable=SC1091  # written by scripts/garage.sh
  source "$GARAGE_DIR/env"
  ENDPOINT=$AWS_ENDPOINT_URL
  BUCKET=$BLOCKVAULT_TEST_S3_BUCKET
  REGION=$AWS_REGION
  GARAGE_ADMIN=$(awk -F'"' '/^\[admin\]/ { a = 1 } a && /^api_bind_addr/ { print $2; exit }' "$GARAGE_CONFIG")
  [[ -n $GARAGE_ADMIN ]] || die "no admin address in $GARAGE_CONFIG"
  GARAGE_VERSION=$(garage --version 2>/dev/null | head -n 1)
}

stop_garage() {
  if [[ -n $GARAGE_DIR && -f $GARAGE_DIR/pid ]]; then
    bash "$REPO_ROOT/scripts/garage.sh" stop "$GARAGE_DIR" || true
    discard "$GARAGE_DIR"
  fi
}

use_external_endpoint() {
  [[ -n ${AWS_ACCESS_KEY_ID:-} && -n ${AWS_SECRET_ACCESS_KEY:-} ]] ||
    die "--endpoint needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment"
  REGION=${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}
  export AWS_ENDPOINT_URL=$ENDPOINT AWS_REGION=$REGION
  if [[ $ENDPOINT == http://* ]]; then export AWS_ALLOW_HTTP=${AWS_ALLOW_HTTP:-true}; fi
}

# S3 request counters of the script's own Garage: "PUTS REQUESTS" (objects
# written: PutObject + CompleteMultipartUpload; requests: all S3 calls), or
# "n/a n/a" on an external endpoint.
s3_counters() {
  if [[ $OWN_GARAGE == 0 ]]; then echo "n/a n/a"; return; fi
  curl -fsS "http://$GARAGE_ADMIN/metrics" | awk '
    /^api_s3_request_counter\{/ {
      r += $NF
      if ($0 ~ /api_endpoint="(PutObject|CompleteMultipartUpload)"/) p += $NF
    }
    END { printf "%d %d\n", p, r }'
}

# Objects and bytes under a prefix ("COUNT BYTES"): ListObjectsV2 with a
# SigV4 signature, python3 standard library only, path-style addressing.
# shellcheck disable=SC2016
S3_USAGE_PY='
import datetime, hashlib, hmac, os, sys, urllib.parse, urllib.request
import xml.etree.ElementTree as ET
endpoint, region, bucket, prefix = sys.argv[1:5]
ak, sk = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
tok = os.environ.get("AWS_SESSION_TOKEN")
u = urllib.parse.urlsplit(endpoint)
path = u.path.rstrip("/") + "/" + urllib.parse.quote(bucket, safe="")
enc = lambda s: urllib.parse.quote(s, safe="-_.~")
count = size = 0
token = None
while True:
    params = {"list-type": "2", "prefix": prefix}
    if token:
        params["continuation-token"] = token
    query = "&".join(enc(k) + "=" + enc(v) for k, v in sorted(params.items()))
    now = datetime.datetime.now(datetime.timezone.utc)
    amzdate, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    body_hash = hashlib.sha256(b"").hexdigest()
    hdrs = {"host": u.netloc, "x-amz-content-sha256": body_hash, "x-amz-date": amzdate}
    if tok:
        hdrs["x-amz-security-token"] = tok
    signed = ";".join(sorted(hdrs))
    canon = "\n".join(["GET", path, query, "".join(k + ":" + hdrs[k] + "\n" for k in sorted(hdrs)),
                       signed, body_hash])
    scope = day + "/" + region + "/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope, hashlib.sha256(canon.encode()).hexdigest()])
    key = ("AWS4" + sk).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    hdrs["authorization"] = ("AWS4-HMAC-SHA256 Credential=" + ak + "/" + scope +
                             ", SignedHeaders=" + signed + ", Signature=" + sig)
    del hdrs["host"]
    req = urllib.request.Request(u.scheme + "://" + u.netloc + path + "?" + query, headers=hdrs)
    with urllib.request.urlopen(req, timeout=120) as resp:
        root = ET.fromstring(resp.read())
    ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    for c in root.iter(ns + "Contents"):
        count += 1
        size += int(c.findtext(ns + "Size"))
    if (root.findtext(ns + "IsTruncated") or "false").lower() != "true":
        break
    token = root.findtext(ns + "NextContinuationToken")
print(count, size)
'
s3_usage() { # PREFIX
  python3 -c "$S3_USAGE_PY" "$ENDPOINT" "$REGION" "$BUCKET" "$1/" ||
    die "listing s3://$BUCKET/$1/ on $ENDPOINT failed"
}

# --- the tools -------------------------------------------------------------------

tool_dir() { echo "$WORK/$1"; }      # the tool's local state: index / cache, profile
prefix_of() { echo "bench/$RUN_ID/r$1/$2"; }

restic_repo() { echo "s3:$ENDPOINT/$BUCKET/$PREFIX"; }
RESTIC_OPTS=()
RUSTIC_OPTS=()
RESTIC_SPARSE=()

# Per-run setup: fresh local state and a fresh repository under a new prefix.
fresh_repo() { # RUN TOOL
  local run=$1 tool=$2 dir logf
  dir=$(tool_dir "$tool")
  logf=$WORK/logs/run$run-$tool-init.log
  discard "$dir"
  mkdir -p "$dir/state" "$dir/cache"
  PREFIX=$(prefix_of "$run" "$tool")
  case $tool in
    blockvault)
      "$BV" --state-dir "$dir/state" vault init "s3://$BUCKET/$PREFIX" >"$logf" 2>&1 ||
        die "blockvault vault init failed (log: $logf)" ;;
    restic)
      restic -r "$(restic_repo)" "${RESTIC_OPTS[@]}" init >"$logf" 2>&1 ||
        die "restic init failed (log: $logf)" ;;
    rustic)
      # The repository options of opendal's S3 service (path-style requests
      # by default); the profile file is passed with -P (its path without
      # .toml), so no profile of the host is read.
      cat >"$dir/rustic-s3.toml" <<TOML
[repository]
repository = "opendal:s3"

[repository.options]
root = "/$PREFIX"
bucket = "$BUCKET"
endpoint = "$ENDPOINT"
region = "$REGION"
access_key_id = "$AWS_ACCESS_KEY_ID"
secret_access_key = "$AWS_SECRET_ACCESS_KEY"
TOML
      if [[ -n ${AWS_SESSION_TOKEN:-} ]]; then
        printf 'session_token = "%s"\n' "$AWS_SESSION_TOKEN" >>"$dir/rustic-s3.toml"
      fi
      chmod 600 "$dir/rustic-s3.toml"
      rustic "${RUSTIC_OPTS[@]}" init >"$logf" 2>&1 || die "rustic init failed (log: $logf)" ;;
    floor) ;; # objects under PREFIX/full and PREFIX/gen1; local files under $dir/store
  esac
  eval "PREFIX_$tool=\$PREFIX"
}

set_tool_env() { # TOOL: PREFIX and the per-tool options for this run
  local dir
  dir=$(tool_dir "$1")
  eval "PREFIX=\${PREFIX_$1:-}"
  RESTIC_OPTS=(-o "s3.region=$REGION" -o s3.bucket-lookup=path)
  RUSTIC_OPTS=(-P "$dir/rustic-s3" --cache-dir "$dir/cache" --no-progress)
  export RESTIC_PASSWORD=$BENCH_PASSWORD RUSTIC_PASSWORD=$BENCH_PASSWORD
  export RESTIC_CACHE_DIR=$dir/cache AWS_DEFAULT_REGION=$REGION
}

# --- measurement -----------------------------------------------------------------

# timed RUN TOOL OP DIR READS... -- CMD...: warms READS (everything local CMD
# reads) into the page cache, syncs, then runs CMD in DIR under GNU time,
# counting the S3 requests around it. Output of CMD goes to a per-step log.
# Fails loudly. Sets LAST_WALL, LAST_RSS_KIB, LAST_FS_IN_MIB, LAST_PUTS and
# LAST_REQS for record().
timed() {
  local run=$1 tool=$2 op=$3 dir=$4
  shift 4
  local reads=()
  while (($#)) && [[ $1 != -- ]]; do reads+=("$1"); shift; done
  (($# >= 2 && ${#reads[@]})) || die "timed: usage: RUN TOOL OP DIR READS... -- CMD..."
  shift
  local logf=$WORK/logs/run$run-$tool-$op.log
  # Untimed: the server's files first, then the tool's, so the same cache state
  # for every tool (see the header); then flush earlier writes so they don't
  # land in this measurement.
  if [[ $OWN_GARAGE == 1 ]]; then reads=("$GARAGE_DIR/meta" "$GARAGE_DIR/data" "${reads[@]}"); fi
  # Flush and drop the page cache first (as peer-compare.sh does): otherwise whichever tool
  # writes 1.5 GB first in a run pays for reclaiming a full cache.
  sync
  drop_caches
  local r
  for r in "${reads[@]}"; do
    # disk.img whole, holes included: restic and rustic read the holes too,
    # and the first read of a hole allocates page cache for it (zero pages).
    # On this VM that first allocation can cost ~3 s of system time per GiB
    # (memory the host has not backed yet), which would fall on whichever
    # tool reads the holes first; cached, a hole costs a copy. blockvault
    # skips holes (SEEK_DATA), so this can only help the others.
    if [[ $r == "$DISK" ]]; then cat -- "$DISK" >/dev/null; fi
  done
  python3 "$SCRIPT_DIR/bench_image.py" warm "${reads[@]}" 2>"$logf.warm" ||
    die "warming ${reads[*]} failed (log: $logf.warm)"
  sync
  local c0 c1
  c0=$(s3_counters)
  local t0=$EPOCHREALTIME rc=0
  (cd "$dir" && exec "${CLIENT_PIN[@]}" /usr/bin/time -v -o "$logf.time" "$@") >"$logf" 2>&1 || rc=$?
  local t1=$EPOCHREALTIME
  c1=$(s3_counters)
  if ((rc != 0)); then
    tail -n 20 "$logf" >&2
    die "$tool $op (run $run) failed with exit code $rc: $* (log: $logf)"
  fi
  LAST_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  LAST_RSS_KIB=$(awk -F': *' '/Maximum resident set size/ { print $2 }' "$logf.time")
  # "File system inputs" counts 512-byte blocks read from the block device.
  LAST_FS_IN_MIB=$(awk -F': *' '/File system inputs/ { printf "%.1f", $2 * 512 / 1048576 }' "$logf.time")
  [[ -n $LAST_RSS_KIB && -n $LAST_FS_IN_MIB ]] || die "unexpected GNU time output in $logf.time"
  read -r LAST_PUTS LAST_REQS < <(awk -v a="$c0" -v b="$c1" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    if (x[1] == "n/a") print "n/a n/a"; else print y[1] - x[1], y[2] - x[2] }')
  log "run $run: $tool $op ${LAST_WALL} s, peak RSS $(awk -v k="$LAST_RSS_KIB" 'BEGIN { printf "%.0f", k / 1024 }') MiB, read from disk ${LAST_FS_IN_MIB} MiB, objects written $LAST_PUTS, S3 requests $LAST_REQS"
  if awk -v m="$LAST_FS_IN_MIB" 'BEGIN { exit !(m > 16) }'; then
    log "WARNING: $tool $op (run $run) read $LAST_FS_IN_MIB MiB from disk: the page cache was not warm"
  fi
}

record() { # RUN TOOL OP OBJECTS_STORED BYTES_STORED RESTORED_ALLOC_BYTES
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$LAST_WALL" "$LAST_RSS_KIB" \
    "$LAST_FS_IN_MIB" "$LAST_PUTS" "$LAST_REQS" "$4" "$5" "$6" >>"$TSV"
}

# untimed: make DATA_DIR/s3/vm/disk.img a sparse copy of the given generation.
put_disk() {
  cp --sparse=always "$1" "$DISK"
  sync
}

backup() { # RUN TOOL OP(full|incremental)
  local run=$1 tool=$2 op=$3 dir
  dir=$(tool_dir "$tool")
  set_tool_env "$tool"
  # Reads: the tool's local state and the image, warmed last so that it is
  # the most recently used.
  case $tool in
    blockvault)
      timed "$run" "$tool" "$op" "$VM_DIR" "$dir" "$DISK" -- \
        "$BV" --state-dir "$dir/state" backup --vault "s3://$BUCKET/$PREFIX" --vm bench \
        --disk "$DISK" --json ;;
    restic)
      # shellcheck disable=SC2086  # RESTIC_BACKUP_EXTRA is a word list on purpose
      timed "$run" "$tool" "$op" "$VM_DIR" "$dir" "$DISK" -- \
        restic -r "$(restic_repo)" "${RESTIC_OPTS[@]}" backup ${RESTIC_BACKUP_EXTRA:-} disk.img ;;
    rustic)
      # shellcheck disable=SC2086  # RUSTIC_BACKUP_EXTRA is a word list on purpose
      timed "$run" "$tool" "$op" "$VM_DIR" "$dir" "$DISK" -- \
        rustic "${RUSTIC_OPTS[@]}" backup ${RUSTIC_BACKUP_EXTRA:-} disk.img ;;
    floor) floor_backup "$run" "$op"; return ;;
  esac
  if [[ $op == incremental ]]; then
    local usage objects bytes
    usage=$(s3_usage "$PREFIX")
    read -r objects bytes <<<"$usage"
    log "run $run: $tool stores $objects objects, $bytes bytes under s3://$BUCKET/$PREFIX/"
    record "$run" "$tool" "$op" "$objects" "$bytes" ""
  else
    record "$run" "$tool" "$op" "" "" ""
  fi
}

# The floors of a backup step (see the header). Full: compress, then backup-s3 to PREFIX/full.
# Incremental: read, hash, then (untimed) gen1's compressed blocks into local files, and the
# timed PUT of those files to PREFIX/gen1 (the raw upload).
floor_backup() { # RUN OP
  local run=$1 op=$2 dir
  dir=$(tool_dir floor)
  if [[ $op == full ]]; then
    timed "$run" floor compress "$VM_DIR" "$DISK" -- "$FLOOR" compress "$DISK"
    LAST_BYTES=$(floor_field "$WORK/logs/run$run-floor-compress.log" bytes_out)
    record "$run" floor compress "" "$LAST_BYTES" ""
    timed "$run" floor full "$VM_DIR" "$DISK" -- "$FLOOR" backup-s3 "$DISK" "s3://$BUCKET/$PREFIX/full"
    record "$run" floor full "" "$(floor_field "$WORK/logs/run$run-floor-full.log" bytes_out)" ""
  else
    timed "$run" floor read "$VM_DIR" "$DISK" -- "$FLOOR" read "$DISK"
    record "$run" floor read "" "$(floor_field "$WORK/logs/run$run-floor-read.log" bytes_read)" ""
    timed "$run" floor incremental "$VM_DIR" "$DISK" -- "$FLOOR" hash "$DISK"
    record "$run" floor incremental "" "$(floor_field "$WORK/logs/run$run-floor-incremental.log" bytes_read)" ""
    discard "$dir/store"
    "$FLOOR" backup-dir "$DISK" "$dir/store" >"$WORK/logs/run$run-floor-store-gen1.log" 2>&1 ||
      die "floor backup-dir of gen1 failed (log: $WORK/logs/run$run-floor-store-gen1.log)"
    timed "$run" floor upload "$dir" "$dir/store" -- "$FLOOR" put "$dir/store" "s3://$BUCKET/$PREFIX/gen1"
    record "$run" floor upload "" "$(floor_field "$WORK/logs/run$run-floor-upload.log" bytes)" ""
  fi
}

# The restore step of restic and rustic: the restore, then `sync disk.img`
# (coreutils sync with a file argument fsyncs that file), with a timestamp
# before, between and after on one line of $1. One restore per run gives both
# figures: "restore" (what the tool does) and "restore-durable" (restore +
# fsync, what blockvault's restore does). Timestamps are bash's builtin
# $EPOCHREALTIME, so taking them forks nothing.
# shellcheck disable=SC2016  # expanded by the inner bash
RESTORE_SCRIPT='set -e
stamps=$1
shift
t0=$EPOCHREALTIME
"$@"
t1=$EPOCHREALTIME
sync disk.img
printf "%s %s %s\n" "$t0" "$t1" "$EPOCHREALTIME" >"$stamps"'

restore() { # RUN TOOL
  local run=$1 tool=$2 dir out stamps
  dir=$(tool_dir "$tool")
  out=$WORK/restore-$tool
  stamps=$WORK/logs/run$run-$tool-restore.stamps
  set_tool_env "$tool"
  rm -rf "$out"
  mkdir -p "$out"
  # Reads: the tool's local state (and the server's files, see timed).
  case $tool in
    blockvault)
      timed "$run" "$tool" restore "$out" "$dir" -- \
        "$BV" --state-dir "$dir/state" restore --vault "s3://$BUCKET/$PREFIX" --vm bench \
        --from vault --to "$out" --json ;;
    restic)
      timed "$run" "$tool" restore "$out" "$dir" -- \
        bash -c "$RESTORE_SCRIPT" restic-restore "$stamps" \
        restic -r "$(restic_repo)" "${RESTIC_OPTS[@]}" restore latest --target "$out" "${RESTIC_SPARSE[@]}" ;;
    rustic)
      timed "$run" "$tool" restore "$out" "$dir" -- \
        bash -c "$RESTORE_SCRIPT" rustic-restore "$stamps" \
        rustic "${RUSTIC_OPTS[@]}" restore latest "$out" ;;
    floor)
      # The raw download first (the block list comes from the local file names), then the
      # restore floor.
      timed "$run" "$tool" download "$out" "$dir/store" -- \
        "$FLOOR" get "$dir/store" "s3://$BUCKET/$PREFIX/gen1"
      record "$run" floor download "" "$(floor_field "$WORK/logs/run$run-floor-download.log" bytes)" ""
      timed "$run" "$tool" restore "$out" "$dir/store" -- \
        "$FLOOR" restore-s3 "$dir/store" "s3://$BUCKET/$PREFIX/gen1" "$out/disk.img" \
        --size "$(stat -c %s "$GEN1")" ;;
  esac
  [[ -f $out/disk.img ]] || die "$tool restore produced no $out/disk.img"
  if ! cmp -- "$out/disk.img" "$GEN1"; then
    die "RESTORE MISMATCH: $tool run $run: $out/disk.img differs from $GEN1 (kept for inspection)"
  fi
  local alloc_bytes
  alloc_bytes=$(du -B1 "$out/disk.img" | cut -f1)
  if [[ $tool != blockvault && $tool != floor ]]; then
    local plain_s durable_s
    read -r plain_s durable_s < <(awk 'NF == 3 { printf "%.3f %.3f\n", $2 - $1, $3 - $1 }' "$stamps")
    [[ -n ${durable_s:-} ]] || die "$tool restore: no timestamps in $stamps"
    log "run $run: $tool restore: restore ${plain_s} s, restore + sync ${durable_s} s"
    LAST_WALL=$plain_s
    record "$run" "$tool" restore "" "" "$alloc_bytes"
    LAST_WALL=$durable_s
    record "$run" "$tool" restore-durable "" "" "$alloc_bytes"
  else
    record "$run" "$tool" restore "" "" "$alloc_bytes"
  fi
  rm -rf "$out"
}

one_run() { # RUN
  local run=$1 order=() tool i n=${#TOOLS[@]}
  # Rotate the order, so each tool goes first in turn.
  for ((i = 0; i < n; i++)); do order+=("${TOOLS[(i + run - 1) % n]}"); done
  log "run $run of $RUNS (order: ${order[*]})"
  if [[ $OWN_GARAGE == 1 ]]; then start_garage "$run"; fi
  for tool in "${order[@]}"; do set_tool_env "$tool"; fresh_repo "$run" "$tool"; done

  put_disk "$GEN0"
  for tool in "${order[@]}"; do backup "$run" "$tool" full; done

  put_disk "$GEN1"
  for tool in "${order[@]}"; do backup "$run" "$tool" incremental; done
  if has_tool blockvault; then
    # Sanity check (untimed): the vault lists its points; only the exit code counts.
    set_tool_env blockvault
    "$BV" --state-dir "$(tool_dir blockvault)/state" points --vault "s3://$BUCKET/$PREFIX" --vm bench \
      --json >"$WORK/logs/run$run-blockvault-points.log" 2>&1 ||
      die "blockvault points failed (log: $WORK/logs/run$run-blockvault-points.log)"
  fi

  for tool in "${order[@]}"; do restore "$run" "$tool"; done
  if [[ $OWN_GARAGE == 1 ]]; then stop_garage; fi
}

# --- report ----------------------------------------------------------------------

# median (benches/lib.sh) reads these TSV columns: 4=wall_s 5=rss_kib 7=puts 8=requests
# 9=objects 10=bytes.

peak() { # TOOL OP -> max RSS over runs, in MiB
  awk -F'\t' -v t="$1" -v o="$2" 'NR > 1 && $2 == t && $3 == o && $5 > m { m = $5 }
    END { if (m == "") print "-"; else printf "%.0f", m / 1024 }' "$TSV"
}

# Formatting helpers; "-" (no data, e.g. with --only) and "n/a" pass through.
na() { [[ $1 == - || $1 == n/a ]]; }
fmt_s() { if na "$1"; then echo "$1"; else printf '%.2f' "$1"; fi; }
fmt_n() { if na "$1"; then echo "$1"; else printf '%.0f' "$1"; fi; }
fmt_mb() { if na "$1"; then echo "$1"; else awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; fi; }
ratio() {
  if na "$1" || na "$2"; then echo -; else awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; fi
}
target() { # OP MIN_RATIO
  local bv re r
  bv=$(median blockvault "$1" 4)
  re=$(median restic "$1" 4)
  if na "$bv" || na "$re"; then echo "$1 >= $2x: not measured"; return; fi
  r=$(ratio "$re" "$bv")
  if awk -v a="$re" -v b="$bv" -v m="$2" 'BEGIN { exit !(a / b >= m) }'; then
    echo "$1 >= $2x: met ($r)"
  else
    echo "$1 >= $2x: NOT met ($r)"
  fi
}

report() {
  local op bv_op bv re ru cpu max_in server
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  max_in=$(awk -F'\t' 'NR > 1 && (m == "" || $6 > m + 0) { m = $6; w = $2 " " $3 " run " $1 }
    END { if (m == "") print "-"; else print m " MiB (" w ")" }' "$TSV")
  if [[ $OWN_GARAGE == 1 ]]; then
    server="${GARAGE_VERSION:-garage} single node on 127.0.0.1 (scripts/garage.sh; a fresh server per run; default settings: zstd level 1 on its data blocks, no fsync of data), on the same machine"
    if ((SPLIT_CORES)); then server="$server; --split-cores: Garage on CPU ${SERVER_PIN[2]}, every timed step on CPUs ${CLIENT_PIN[2]}"; fi
  else
    server="$ENDPOINT, bucket $BUCKET, region $REGION"
  fi
  {
    echo "### blockvault vs restic vs rustic on S3: 8 GiB sparse ext4 Debian root image, ~1% churn ($RUNS run(s), medians)"
    echo
    echo "| operation | blockvault s | restic s | rustic s | restic/blockvault | rustic/blockvault | peak RSS MiB blockvault / restic / rustic |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    for op in full incremental restore restore-durable; do
      # blockvault's restore is always durable: one figure for both rows.
      bv_op=${op%-durable}
      bv=$(median blockvault "$bv_op" 4)
      re=$(median restic "$op" 4)
      ru=$(median rustic "$op" 4)
      echo "| ${op/-durable/ (durable)} | $(fmt_s "$bv") | $(fmt_s "$re") | $(fmt_s "$ru") | $(ratio "$re" "$bv") | $(ratio "$ru" "$bv") | $(peak blockvault "$bv_op") / $(peak restic "$op") / $(peak rustic "$op") |"
    done
    echo
    echo "| S3 (medians) | blockvault | restic | rustic |"
    echo "| --- | ---: | ---: | ---: |"
    local t row
    for row in "objects written, full:full:7:n" "objects written, incremental:incremental:7:n" \
      "S3 requests, full:full:8:n" "S3 requests, incremental:incremental:8:n" \
      "S3 requests, restore:restore:8:n" \
      "objects stored after the incremental:incremental:9:n" \
      "bytes stored after the incremental:incremental:10:mb"; do
      IFS=: read -r label op col kind <<<"$row"
      printf '| %s |' "$label"
      for t in "${ALL_TOOLS[@]}"; do
        if [[ $kind == mb ]]; then printf ' %s |' "$(fmt_mb "$(median "$t" "$op" "$col")")"
        else printf ' %s |' "$(fmt_n "$(median "$t" "$op" "$col")")"; fi
      done
      echo
    done
    echo
    if has_tool floor; then
      echo "Floors (issue 7; benches/src/bin/floor.rs, same images, same runs, same server; wall time of the floor tool's process):"
      echo
      echo "| floor | median s | range s | what |"
      echo "| --- | ---: | ---: | --- |"
      floor_row "read (gen1)" read "read the allocated blocks (1 MiB, the default; data extents only), rayon on $(nproc) cores; $(fmt_mb "$(median floor read 10)") read"
      floor_row "incremental: read + BLAKE3 (gen1)" incremental "BLAKE3 of each allocated block"
      floor_row "compress: read + zstd -1 (gen0)" compress "output dropped; $(fmt_mb "$(median floor compress 10)") compressed"
      floor_row "full: read + zstd -1 + PUT (gen0)" full "overlapped, one object per block, 16 in flight; $(fmt_n "$(median floor full 7)") objects, $(fmt_n "$(median floor full 8)") requests"
      floor_row "upload: PUT of the compressed blocks (gen1)" upload "from local files in the page cache, 16 in flight; $(fmt_mb "$(median floor upload 10)")"
      floor_row "download: GET of the same" download "into memory, 32 in flight"
      floor_row "restore: GET + zstd -d + sparse write (gen1)" restore "32 GETs in flight, non-zero 4 KiB pages written, fdatasync (writeback every 128 MiB, written pages dropped)"
      echo
      echo "| operation | blockvault s | floor s | blockvault / floor | target (issue 7) | best peer s | best peer / blockvault |"
      echo "| --- | ---: | ---: | ---: | --- | ---: | ---: |"
      vs_floor_row "full backup (job) vs read + zstd -1 + PUT" full full 1.2 full restic rustic
      vs_floor_row "full backup (job) vs read + zstd -1 alone" full compress "" full restic rustic
      vs_floor_row "full backup (job) vs PUT alone" full upload "" full restic rustic
      vs_floor_row "incremental backup (job) vs read + BLAKE3" incremental incremental 1.5 incremental restic rustic
      vs_floor_row "restore vs GET + zstd -d + sparse write" restore restore 1.5 restore-durable restic rustic
      vs_floor_row "restore vs GET alone" restore download "" restore-durable restic rustic
      echo
      echo "Best peer: the faster of restic and rustic; for the restore rows their durable restore (+ fsync), as blockvault's restore is durable."
      echo
    fi
    echo "Targets (issue; restic/blockvault): $(target full 3); $(target incremental 4); $(target restore 3)."
    echo "Image: gen0 allocated $(du -B1 "$GEN0" | cut -f1) bytes of $(stat -c %s "$GEN0") apparent; churn: $(tail -n 1 "$DATA_DIR/churn-stats.txt" 2>/dev/null || echo n/a)."
    echo "S3 server: $server. Each tool and run in its own prefix bench/$RUN_ID/rN/TOOL of one bucket."
    echo "restore: the tool's restore alone; restic and rustic do not fsync what they restore, so the image may still be only in the page cache when they exit. restore (durable): their restore followed by \`sync disk.img\` (fsync), timed together in the same step (one restore per run). blockvault's restore fsyncs the image before it exits, so its figure is the same in both rows.${RESTIC_VERSION:+ restic ${RESTIC_SPARSE[*]:+restores sparse files (--sparse).}${RESTIC_SPARSE[*]:-has no --sparse on this version: it writes the whole 8 GiB image, zeros included.}}"
    echo "Encryption: restic and rustic always encrypt (AES-256 + Poly1305) and compress (zstd, restic --compression auto, rustic default); blockvault compresses (zstd) and does not encrypt."
    echo "Page cache warm for all tools alike: before every timed step, untimed, the S3 server's data and metadata (own Garage only), the tool's local state (blockvault's chunk index, restic's and rustic's caches: fresh per run, so empty before the full backup) and for a backup all of disk.img, holes included (restic and rustic read the holes as zeros; cached, the first of them to read does not pay for filling the page cache with zero pages), are read into the page cache, then sync. Largest disk read in a timed step (GNU time \"File system inputs\"): $max_in; per step in column fs_inputs_mib of the TSV."
    echo "Objects written and S3 requests: counted by the Garage server around each step (PutObject + CompleteMultipartUpload; all S3 calls); lock files that restic and rustic write and delete count as written. Objects and bytes stored: ListObjectsV2 of the tool's prefix after the incremental."
    echo "Runs interleaved, tool order rotating per run."
    echo "Tools: blockvault ${BV:-not run}; ${RESTIC_VERSION:-restic not run} (-o s3.bucket-lookup=path, defaults otherwise); ${RUSTIC_VERSION:-rustic not run} (opendal:s3, defaults otherwise)."
    echo "Machine: nproc $(nproc), CPU $cpu, kernel $(uname -r), RAM $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)."
    echo "Command: $COMMAND_LINE"
    echo "Raw per-run figures: $TSV"
  } | tee "$DATA_DIR/s3-results.md"
}

cleanup() {
  stop_garage
  rm -f "${DISK:-/nonexistent}"
  if [[ -n ${TRASH:-} ]]; then
    # The last run's local state too, so that the next invocation's start deletes only logs.
    local tool
    for tool in "${TOOLS[@]}"; do discard "$(tool_dir "$tool")"; done
    empty_trash
  fi
}

main() {
  parse_args "$@"
  mkdir -p "$DATA_DIR"
  DATA_DIR=$(cd "$DATA_DIR" && pwd)
  WORK=$DATA_DIR/s3
  VM_DIR=$WORK/vm
  DISK=$VM_DIR/disk.img
  GEN0=$DATA_DIR/gen0.img
  GEN1=$DATA_DIR/gen1.img
  TSV=$DATA_DIR/s3-results.tsv
  RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)-$$

  ensure_tools
  if has_tool blockvault; then ensure_blockvault; fi
  if has_tool floor; then ensure_floor; fi
  if [[ $OWN_GARAGE == 1 ]]; then
    bash "$REPO_ROOT/scripts/garage.sh" install
  else
    use_external_endpoint
  fi
  "$SCRIPT_DIR/make-image.sh" "$DATA_DIR" >&2

  TRASH=$DATA_DIR/s3-trash
  empty_trash
  rm -rf "$WORK"
  mkdir -p "$WORK/logs" "$VM_DIR"
  trap cleanup EXIT
  warm_programs
  local load
  load=$(cut -d' ' -f1 /proc/loadavg)
  if awk -v l="$load" -v n="$(nproc)" 'BEGIN { exit !(l > n / 4) }'; then
    log "WARNING: load average $load before the first run: something else is running, the figures will be noisy"
  fi
  printf 'run\ttool\top\twall_s\tmax_rss_kib\tfs_inputs_mib\ts3_puts\ts3_requests\tobjects_stored\tbytes_stored\trestored_alloc_bytes\n' >"$TSV"
  local run
  for ((run = 1; run <= RUNS; run++)); do one_run "$run"; done
  report
}

main "$@"
