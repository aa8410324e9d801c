#!/usr/bin/env bash
# Runs everything CI runs, from a fresh clone: formatting, lints, and the whole test suite
# (unit, property, end-to-end through the library and through the blockvault binary, and the
# S3 tests against a real Garage server that this script installs and starts on 127.0.0.1).
#
# Usage: scripts/test.sh
#
# Needs the Rust toolchain, python3 and root (the capture tests loop-mount XFS and btrfs
# images). The first run installs garage 2.5.0 with cargo (several minutes), and xfsprogs,
# btrfs-progs, qemu-utils, nbdkit, groff-base, man-db and systemd with apt-get when missing;
# later runs reuse them. Tests work in temp directories; the Garage server and its data are
# removed at the end, whatever happens. Last, the systemd unit is checked with
# systemd-analyze verify.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "fuzz targets compile (cargo check on stable, without libFuzzer; fuzz/run.sh runs them)"
# In the workspace's target dir, to reuse what clippy just checked: about 30 s of CPU. Not
# --locked: fuzz/Cargo.lock takes in a dependency added to blockvault-core by itself.
cargo check --manifest-path fuzz/Cargo.toml --no-default-features --bins --target-dir target

step "file systems with reflinks for the capture tests (xfsprogs, btrfs-progs)"
# The capture tests make XFS and btrfs file systems in loop-mounted image files (as root).
# They are #[ignore]d for a plain `cargo test`; here they run, and fail if anything is missing.
missing=()
command -v mkfs.xfs >/dev/null || missing+=(xfsprogs)
command -v mkfs.btrfs >/dev/null || missing+=(btrfs-progs)
command -v chattr >/dev/null || missing+=(e2fsprogs)
if ((${#missing[@]})); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[[ $(id -u) == 0 ]] || { echo "the capture tests loop-mount file systems and need root" >&2; exit 1; }

step "QEMU tools for the NBD, qcow2 and running-VM tests (qemu-utils: qemu-nbd, qemu-img, qemu-io, qemu-storage-daemon)"
# On Debian bookworm from bookworm-backports (QEMU 10): installing qemu-system-x86 from plain
# bookworm later would remove it, so both always come from the same suite.
if ! { command -v qemu-nbd && command -v qemu-img && command -v qemu-io && command -v qemu-storage-daemon; } >/dev/null; then
    suite=()
    if grep -qs '^VERSION_CODENAME=bookworm' /etc/os-release; then
        grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/ ||
            echo "deb http://deb.debian.org/debian bookworm-backports main" \
                >/etc/apt/sources.list.d/bookworm-backports.list
        suite=(-t bookworm-backports)
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${suite[@]}" qemu-utils >/dev/null
fi
qemu-nbd --version | head -n 1

step "nbdkit, the second NBD server the client is tested against"
# Plain bookworm's nbdkit (1.32) has every plugin and filter the tests use (pattern, data,
# sparse-random, null; error, delay, blocksize, blocksize-policy, exportname, limit,
# multi-conn, log); it depends on no QEMU package, so the suite does not matter here.
if ! command -v nbdkit >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nbdkit >/dev/null
fi
nbdkit --version

step "groff, man-db and systemd-analyze (the man pages and the systemd unit)"
# The CLI tests render the generated man pages with groff and man -l; the systemd unit is
# checked with systemd-analyze after the tests (below).
missing=()
command -v groff >/dev/null || missing+=(groff-base)
command -v man >/dev/null || missing+=(man-db)
command -v systemd-analyze >/dev/null || missing+=(systemd)
if ((${#missing[@]})); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step "S3 server for the tests (Garage on 127.0.0.1)"
garage_dir=$(mktemp -d "${TMPDIR:-/tmp}/blockvault-garage.XXXXXX")
trap 'bash scripts/garage.sh stop "$garage_dir"; rm -rf "$garage_dir"' EXIT
if ! bash scripts/garage.sh start "$garage_dir" >/dev/null; then
    echo "the S3 tests need a Garage server and it did not start (see above); failing" >&2
    exit 1
fi
# shellcheck disable=SC1091
source "$garage_dir/env"
echo "garage at $AWS_ENDPOINT_URL, bucket $BLOCKVAULT_TEST_S3_BUCKET"

# Tests that need this server are #[ignore]d (a plain `cargo test` lists them as ignored
# rather than passing them unrun); `--include-ignored` runs them here with all the others, each
# test once. Without the server they fail, saying so.
step "cargo test (workspace, with the S3 tests)"
cargo test --workspace --locked -- --include-ignored

step "systemd-analyze verify packaging/systemd/blockvault.service"
# Offline: no systemd needs to run (it is not PID 1 in CI containers). verify checks that
# ExecStart's program exists and that the man pages in Documentation= open, so a copy of the
# unit points at the binary the tests just used and MANPATH at the pages it generates. Any
# warning fails.
bin=$PWD/target/debug/blockvault
[[ -x $bin ]] || { echo "$bin is missing: cargo test builds it" >&2; exit 1; }
unit_dir=$(mktemp -d "${TMPDIR:-/tmp}/blockvault-unit.XXXXXX")
trap 'bash scripts/garage.sh stop "$garage_dir"; rm -rf "$garage_dir" "$unit_dir"' EXIT
"$bin" man --out-dir "$unit_dir/man/man1" >/dev/null
sed "s#^ExecStart=/usr/local/bin/blockvault #ExecStart=$bin #" \
    packaging/systemd/blockvault.service >"$unit_dir/blockvault.service"
grep -q "^ExecStart=$bin " "$unit_dir/blockvault.service" ||
    { echo "packaging/systemd/blockvault.service: ExecStart is not /usr/local/bin/blockvault ..." >&2; exit 1; }
if ! verify=$(MANPATH="$unit_dir/man" systemd-analyze verify "$unit_dir/blockvault.service" 2>&1) ||
    [[ -n $verify ]]; then
    printf '%s\n' "$verify" >&2
    echo "systemd-analyze verify failed or warned on packaging/systemd/blockvault.service" >&2
    exit 1
fi
echo "blockvault.service: verified, no warnings"
