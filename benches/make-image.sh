#!/usr/bin/env bash
# Usage: benches/make-image.sh [-h|--help] [DATA_DIR]
#
# Builds the benchmark VM disk images used by benches/peer-compare.sh:
#
#   DATA_DIR/gen0.img  8 GiB sparse ext4 image holding a real Debian bookworm
#                      root filesystem (debootstrap + kernel, compilers,
#                      python3, perl, vim, git, ...), ~1.46 GB allocated.
#   DATA_DIR/gen1.img  gen0 plus one generation of churn: new files (~12 MB),
#                      appended logs, a rotated log, a purged package. That is
#                      ~0.9% of the allocated bytes, but ~5% of the allocated
#                      4 MiB blocks: every file operation also rewrites ext4
#                      metadata (superblock, bitmaps, inode tables, directory
#                      blocks) spread over other 4 MiB blocks, as on a real VM.
#
# DATA_DIR defaults to $BLOCKVAULT_BENCH_DATA, else <repo>/target/bench-data.
#
# Needs root (debootstrap chroots). No loop device or mount is needed: the
# image is built with `mkfs.ext4 -d` and modified in place with `debugfs -w`.
# Missing tools (debootstrap, e2fsprogs, python3) are installed with apt-get.
#
# Idempotent: the debootstrap tree (DATA_DIR/rootfs) and downloaded .debs
# (DATA_DIR/debs) are cached, and each image is rebuilt only when it is
# missing or its recipe (DATA_DIR/genN.img.recipe) changed. Delete DATA_DIR
# to start from scratch.
#
# Environment:
#   BLOCKVAULT_BENCH_DATA  default DATA_DIR
#   BENCH_MIRROR           Debian mirror (default http://deb.debian.org/debian)
#
# At the end it prints the apparent size, the allocated size and how many
# 4 MiB blocks differ between gen0 and gen1.

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=benches/lib.sh
source "$SCRIPT_DIR/lib.sh"
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  -*) usage >&2; exit 2 ;;
esac

DATA_DIR=${1:-${BLOCKVAULT_BENCH_DATA:-$REPO_ROOT/target/bench-data}}
MIRROR=${BENCH_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
IMAGE_SIZE=8G

# Fixed identities and clock so that the same rootfs gives byte-identical
# images (mkfs/debugfs otherwise put random UUIDs, hash seeds and the current
# time into the superblock, directory hashes and new inodes).
FS_UUID=6b6c6f63-6b76-4175-8c74-62656e636830
HASH_SEED=6b6c6f63-6b76-4175-8c74-686173687365
GEN0_TIME=1735689600          # 2025-01-01 00:00:00 UTC
GEN1_TIME=$((GEN0_TIME + 86400))
CHURN_SEED=20250101

# Packages on top of debootstrap's default (required + important) set. Chosen
# to look like a developer/server VM and to land at ~1.46 GB allocated: the
# kernel (modules + initramfs) is ~0.5 GB, the toolchain and headers ~0.4 GB.
# (No gdb: debootstrap's resolver cannot satisfy its virtual boost-regex
# dependency.)
INCLUDE_PKGS=(
  linux-image-amd64 initramfs-tools systemd-sysv udev dbus
  openssh-server sudo curl wget ca-certificates gnupg rsync
  python3 python3-pip python3-venv perl vim git
  gcc g++ make build-essential python3-dev linux-headers-amd64 strace lsof file
  man-db manpages less bash-completion locales tzdata
  tmux htop zstd xz-utils bzip2 unzip
  iproute2 iputils-ping ifupdown isc-dhcp-client cron logrotate rsyslog
)

log() { printf '[make-image] %s\n' "$*" >&2; }
die() { printf '[make-image] ERROR: %s\n' "$*" >&2; exit 1; }

# --- tools -------------------------------------------------------------------


ensure_tools() {
  [[ $EUID == 0 ]] || die "must run as root (debootstrap needs chroot)"
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  { command -v mkfs.ext4 && command -v debugfs && command -v e2fsck; } >/dev/null || missing+=(e2fsprogs)
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null || missing+=(python3)
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
  fi
  # `mkfs.ext4 -d` (populate from a directory) needs e2fsprogs >= 1.43.
  # (Captured first: `grep -q` closing the pipe early would trip pipefail.)
  local version
  version=$(mkfs.ext4 -V 2>&1)
  [[ $version =~ mke2fs\ 1\.(4[3-9]|[5-9][0-9]) ]] || die "e2fsprogs too old for mkfs.ext4 -d: $version"
}

# --- stage 1: Debian root filesystem tree ------------------------------------

# Fails if anything is mounted under the rootfs (debootstrap mounts /proc and
# /sys in the target while it runs): mkfs -d would copy the mounted trees.
assert_nothing_mounted() {
  if awk -v p="$1/" 'index($2 "/", p) == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
    die "something is still mounted under $1"
  fi
}

build_rootfs() {
  local rootfs=$DATA_DIR/rootfs stamp=$DATA_DIR/rootfs.done
  local want
  want="$SUITE $MIRROR ${INCLUDE_PKGS[*]}"
  if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
    log "rootfs cached: $rootfs"
    return
  fi
  log "debootstrap $SUITE into $rootfs (several minutes; .debs cached in $DATA_DIR/debs)"
  rm -f "$stamp"
  # A previous run may have died inside debootstrap with /proc (or a bind
  # mount of the host's /dev) still mounted: never rm -rf through a mount.
  local m
  for m in proc sys dev/pts dev; do umount -l "$rootfs/$m" 2>/dev/null || true; done
  if [[ -d $rootfs ]]; then
    assert_nothing_mounted "$rootfs"
    rm -rf --one-file-system "$rootfs"
  fi
  mkdir -p "$DATA_DIR/debs"
  local t0=$SECONDS
  local pkgs
  pkgs=$(IFS=,; echo "${INCLUDE_PKGS[*]}")
  if ! debootstrap --include="$pkgs" --cache-dir="$DATA_DIR/debs" \
      "$SUITE" "$rootfs" "$MIRROR" >"$DATA_DIR/debootstrap.log" 2>&1; then
    tail -n 30 "$DATA_DIR/debootstrap.log" >&2
    die "debootstrap failed (full log: $DATA_DIR/debootstrap.log)"
  fi
  for m in proc sys dev/pts; do umount -l "$rootfs/$m" 2>/dev/null || true; done
  assert_nothing_mounted "$rootfs"

  # Make it look like an installed VM rather than a fresh chroot.
  echo vm-bench >"$rootfs/etc/hostname"
  printf 'UUID=%s / ext4 errors=remount-ro 0 1\n' "$FS_UUID" >"$rootfs/etc/fstab"
  # Downloaded .debs are cached outside; the chroot itself keeps none.
  rm -f "$rootfs"/var/cache/apt/archives/*.deb

  echo "$want" >"$stamp"
  log "rootfs built in $((SECONDS - t0)) s: $(du -sh "$rootfs" | cut -f1)"
}

# mkfs -d copies each file's atime into the image, and every read of the
# rootfs (mkfs itself, the churn script) may bump atimes (relatime), so two
# builds from the same tree would differ. Setting every atime once to a fixed
# time in the future stops that: relatime never updates an atime newer than
# ctime that is less than a day old. (It sets ctimes to now, once; they are
# copied too, and stay fixed afterwards.)
FUTURE_ATIME=4102444800 # 2100-01-01
freeze_atimes() {
  local stamp=$DATA_DIR/rootfs.atimes
  [[ -f $stamp && $stamp -nt $DATA_DIR/rootfs.done ]] && return
  log "freezing atimes in rootfs"
  find "$DATA_DIR/rootfs" -xdev -exec touch -h -a -d "@$FUTURE_ATIME" {} +
  echo "$FUTURE_ATIME" >"$stamp"
}

# --- stage 2: gen0.img --------------------------------------------------------

# Read-only full check; catches a churn script that leaves the fs inconsistent.
fsck_image() {
  local out
  out=$(e2fsck -fn "$1" 2>&1) || die "e2fsck found errors in $1:"$'\n'"$out"
}

# Each image has a stamp file holding the recipe it was built from (inputs
# and parameters); it is rebuilt only when the recipe changes. Stamps rather
# than mtimes, so that a fresh git checkout does not force a rebuild.
up_to_date() { # IMAGE RECIPE
  [[ -f $1 && -f $1.recipe && $(cat "$1.recipe") == "$2" ]]
}

build_gen0() {
  local img=$DATA_DIR/gen0.img
  GEN0_RECIPE="rootfs: $(cat "$DATA_DIR/rootfs.done") atimes $(stat -c %Y "$DATA_DIR/rootfs.atimes")
mkfs: $IMAGE_SIZE $FS_UUID $HASH_SEED $GEN0_TIME, sparse copy"
  if up_to_date "$img" "$GEN0_RECIPE"; then
    log "gen0.img up to date"
    return
  fi
  log "mkfs.ext4 -d rootfs -> gen0.img ($IMAGE_SIZE sparse)"
  rm -f "$img" "$img.recipe" "$img.tmp" "$img.sparse.tmp"
  truncate -s "$IMAGE_SIZE" "$img.tmp"
  # -E root_owner: the image root dir belongs to root like on a real system.
  E2FSPROGS_FAKE_TIME=$GEN0_TIME mkfs.ext4 -q -F -L vm-root -U "$FS_UUID" \
    -E "hash_seed=$HASH_SEED,root_owner=0:0" -d "$DATA_DIR/rootfs" "$img.tmp"
  fsck_image "$img.tmp"
  # mkfs preallocates the 64 MiB journal as unwritten (zero) extents: du
  # counts them, SEEK_DATA does not. A sparse copy turns them into holes, so
  # gen0 is exactly what peer-compare.sh's `cp --sparse=always` produces and
  # "allocated" means the same to du and to the backup tools.
  cp --sparse=always "$img.tmp" "$img.sparse.tmp"
  rm "$img.tmp"
  mv "$img.sparse.tmp" "$img"
  echo "$GEN0_RECIPE" >"$img.recipe"
}

# --- stage 3: gen1.img = gen0 + churn ------------------------------------------

build_gen1() {
  local img=$DATA_DIR/gen1.img churn=$DATA_DIR/churn
  local recipe
  recipe="$GEN0_RECIPE
churn: $CHURN_SEED $GEN1_TIME $(sha256sum <"$SCRIPT_DIR/bench_image.py" | cut -c1-16)"
  if up_to_date "$img" "$recipe"; then
    log "gen1.img up to date"
    return
  fi
  log "generating churn (seed $CHURN_SEED) and applying it with debugfs -> gen1.img"
  rm -f "$img" "$img.recipe" "$img.tmp"
  python3 "$SCRIPT_DIR/bench_image.py" churn --rootfs "$DATA_DIR/rootfs" --out "$churn" --seed "$CHURN_SEED" >&2
  cp --sparse=always "$DATA_DIR/gen0.img" "$img.tmp"
  # debugfs exits 0 even when a command fails, so its stderr is the only
  # signal: anything but the version banner is an error.
  local errs
  errs=$(E2FSPROGS_FAKE_TIME=$GEN1_TIME debugfs -w -f "$churn/debugfs.cmds" "$img.tmp" 2>&1 >/dev/null |
    grep -v '^debugfs [0-9]' || true)
  [[ -z $errs ]] || die "debugfs reported errors:"$'\n'"$errs"
  fsck_image "$img.tmp"
  mv "$img.tmp" "$img"
  echo "$recipe" >"$img.recipe"
}

# --- report ---------------------------------------------------------------------

report() {
  local f apparent alloc
  echo "== benchmark images in $DATA_DIR"
  for f in gen0 gen1; do
    apparent=$(stat -c %s "$DATA_DIR/$f.img")
    alloc=$(du -B1 "$DATA_DIR/$f.img" | cut -f1)
    printf '%s.img: apparent %d bytes (%.2f GiB), allocated %d bytes (%.2f GB)\n' \
      "$f" "$apparent" "$(bc_div "$apparent" 1073741824)" "$alloc" "$(bc_div "$alloc" 1000000000)"
  done
  # Raw key=value figures are kept in churn-stats.txt; the last line is prose.
  python3 "$SCRIPT_DIR/bench_image.py" blockdiff "$DATA_DIR/gen0.img" "$DATA_DIR/gen1.img" >"$DATA_DIR/churn-stats.txt"
  tail -n 1 "$DATA_DIR/churn-stats.txt"
}

bc_div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

main() {
  mkdir -p "$DATA_DIR"
  DATA_DIR=$(cd "$DATA_DIR" && pwd)
  ensure_tools
  local t0=$SECONDS
  build_rootfs
  freeze_atimes
  build_gen0
  build_gen1
  log "done in $((SECONDS - t0)) s"
  report
}

main
