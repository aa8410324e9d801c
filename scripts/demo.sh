#!/usr/bin/env bash
# The five-minute tour, end to end: builds blockvault, makes a sample VM disk (a 4 GiB sparse
# ext4 image holding real files from this machine), backs it up into a local vault, changes
# it, backs it up again (incremental), lists the points, restores both points, and checks
# each restored image byte for byte, then protects the VM with an Enhanced policy and takes an
# on-demand backup.
#
# Usage: scripts/demo.sh [WORK_DIR]      (default: target/demo; removed and recreated)
#
# Needs: the Rust toolchain and e2fsprogs (mkfs.ext4, debugfs), installed with apt-get when
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-target/demo}

need() {
    command -v "$1" >/dev/null 2>&1 && return
    echo "installing $2 (for $1)"
    apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
}
need mkfs.ext4 e2fsprogs
need debugfs e2fsprogs
export PATH="/sbin:/usr/sbin:$PATH"

echo "== building blockvault (release)"
cargo build --release --locked -p blockvault-cli
bv=$PWD/target/release/blockvault

rm -rf "$work"
mkdir -p "$work"
# The demo's own catalog and snapshot tier, not the user's.
export BLOCKVAULT_STATE_DIR=$work/state
disk=$work/vm/web01.img
mkdir -p "$work/vm"

echo "== making a sample VM disk: 4 GiB sparse ext4 with /usr/share and /usr/lib/python3* in it"
staging=$work/rootfs
mkdir -p "$staging/usr"
cp -a /usr/share "$staging/usr/" 2>/dev/null || true
for d in /usr/lib/python3*; do
    if [ -d "$d" ]; then cp -a "$d" "$staging/usr/" 2>/dev/null || true; fi
done
mkfs.ext4 -q -F -d "$staging" "$disk" 4G
rm -rf "$staging"
cp --sparse=always "$disk" "$work/gen0.img"
printf '   apparent %s, allocated %s\n' "$(du -h --apparent-size "$disk" | cut -f1)" "$(du -h "$disk" | cut -f1)"

echo "== vault init"
"$bv" vault init "$work/vault"

echo "== first backup (full): a job with a Snapshot and a Transfer subtask"
"$bv" backup --vault "$work/vault" --vm web01 --disk "$disk"

echo "== the VM writes: a new 20 MiB file and a log"
head -c 20M /dev/urandom > "$work/new.bin"
seq 1 200000 > "$work/app.log"
debugfs -w -R "write $work/new.bin /new.bin" "$disk" >/dev/null
debugfs -w -R "write $work/app.log /app.log" "$disk" >/dev/null
cp --sparse=always "$disk" "$work/gen1.img"

echo "== second backup (incremental: only changed blocks are stored)"
"$bv" backup --vault "$work/vault" --vm web01 --disk "$disk"

echo "== points"
"$bv" points --vault "$work/vault" --vm web01
first=$("$bv" points --vault "$work/vault" --vm web01 --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["points"][0]["id"])')

echo "== jobs"
"$bv" jobs

echo "== restore the newest point (instant: from the snapshot tier), and the first one by id from the vault"
"$bv" restore --vault "$work/vault" --vm web01 --to "$work/restore-latest"
"$bv" restore --vault "$work/vault" --vm web01 --point "$first" --from vault --to "$work/restore-first"

cmp "$work/restore-latest/web01.img" "$work/gen1.img"
cmp "$work/restore-first/web01.img" "$work/gen0.img"
echo "== both restored images are byte-identical to the disk at their point"

echo "== roll the live disk back to the first point in place (only the changed blocks are written)"
"$bv" restore --vault "$work/vault" --vm web01 --point "$first" --in-place --to "$work/vm"
cmp "$disk" "$work/gen0.img"
echo "== the disk is byte-identical to the first point again"
printf '   restored image allocates %s of %s\n' \
    "$(du -h "$work/restore-latest/web01.img" | cut -f1)" \
    "$(du -h --apparent-size "$work/restore-latest/web01.img" | cut -f1)"

echo "== protect the VM with an Enhanced policy (every 4 h from 08:00), see it, back it up on demand"
"$bv" policy create every-4h --type enhanced --hourly 4 --start 08:00 --timezone UTC
"$bv" protect --vault "$work/vault" --vm web01 --disk "$disk" --policy every-4h
"$bv" backup-now --vm web01 --retain-until "$(date -u -d '+90 days' +%Y-%m-%d)"
"$bv" items
echo "   ('blockvault daemon' runs the schedule; 'blockvault policy --help' explains policies)"

echo "== retention keeps the day's last point (and the on-demand one until its date); gc frees the rest"
"$bv" verify --vault "$work/vault" --vm web01
"$bv" prune --vault "$work/vault" --dry-run
"$bv" prune --vault "$work/vault"
"$bv" gc --vault "$work/vault" --grace 0s
"$bv" restore --vault "$work/vault" --vm web01 --from vault --to "$work/restore-after-gc"
cmp "$work/restore-after-gc/web01.img" "$disk"
echo "== after pruning and garbage collection the newest point still restores byte for byte"
