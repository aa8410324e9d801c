//! Kept clones in the snapshot tier: what they cost, what expiry and the sweep free, on real
//! XFS and btrfs (loop-mounted, see `blockvault_capture::testing::LoopFs`) and on the host's
//! file system.

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blockvault_capture::testing::{LoopFs, LoopKind};
use blockvault_core::{BlockSize, Consistency, DiskName, PointId, RecoveryPoint, VmName};
use blockvault_repo::{BackupRequest, NoProgress, Repository, TransferOptions};
use blockvault_snapshot::SnapshotTier;

const MIB: u64 = 1 << 20;

/// Writes `len` bytes of a pattern seeded by `seed` at `offset` of `path`, 1 MiB per write,
/// each synced: every MiB its own extent (btrfs frees an extent only when nothing holds any of
/// it, so a test that overwrites whole MiBs sees them freed).
fn write_at(path: &Path, offset: u64, len: u64, seed: u8) {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("open");
    for at in (offset..offset + len).step_by(MIB as usize) {
        let data: Vec<u8> = (0..MIB.min(offset + len - at))
            .map(|i| ((i + at) % 251) as u8 ^ seed)
            .collect();
        file.write_all_at(&data, at).expect("write");
        file.sync_all().expect("sync");
    }
}

/// A snapshot of `image` into the tier, with its clone kept: what the engine's Snapshot does
/// (stage, clone, read, commit, keep), the read done from the image (unchanged meanwhile).
async fn snapshot_with_clone(
    tier: &SnapshotTier,
    vault: &Repository,
    vm: &VmName,
    image: &Path,
) -> RecoveryPoint {
    let staging = tier.stage(vm).expect("stage");
    let disk = DiskName::new("disk.img").expect("disk");
    blockvault_capture::clone_file(image, &staging.path(&disk)).expect("clone");
    let request = BackupRequest {
        vm: vm.clone(),
        disks: vec![image.into()],
        block_size: Some(BlockSize::new(64 << 10).expect("bs")),
        consistency: Consistency::CrashConsistent,
        capture: None,
        options: TransferOptions::default(),
        time: None,
        retain_until: None,
        id: None,
        vault: None,
    };
    let point = vault
        .backup(&request, Arc::new(NoProgress))
        .await
        .expect("snapshot")
        .point;
    tier.keep(vm, staging, &point.id).expect("keep");
    point
}

/// Free bytes of the file system at `path`, its transaction committed first (btrfs counts
/// freed extents as free only then).
fn free_bytes(path: &Path) -> u64 {
    let root = std::fs::File::open(path).expect("open");
    rustix::fs::syncfs(&root).expect("syncfs");
    let stat = rustix::fs::statvfs(path).expect("statvfs");
    stat.f_bavail * stat.f_frsize
}

/// Waits (up to 10 s) for `done`: XFS releases an unlinked file's extents in the background.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

async fn expiry_frees_what_the_clones_hold(kind: LoopKind) {
    let fs = LoopFs::new(kind, 512 * MIB);
    let tier = SnapshotTier::new(fs.path().join("snapshots"));
    let vm = VmName::new("vm1").expect("vm");
    let vault = tier.open_or_init(&vm).await.expect("init");
    let image = fs.path().join("disk.img");
    write_at(&image, 0, 16 * MIB, 1);
    let first = snapshot_with_clone(&tier, &vault, &vm, &image).await;
    // The image diverges: 4 whole MiB (their old content is now the first clone's alone).
    write_at(&image, 4 * MIB, 4 * MIB, 2);
    let second = snapshot_with_clone(&tier, &vault, &vm, &image).await;

    assert_eq!(
        tier.clone_bytes(&vm, &first.id).expect("first"),
        Some(4 * MIB)
    );
    assert_eq!(tier.clone_bytes(&vm, &second.id).expect("second"), Some(0));
    let space = tier.space(&vm).expect("space");
    assert_eq!(space.clones, 4 * MIB, "{space:?}");
    assert_eq!(space.clones_apparent, 32 * MIB, "{space:?}");
    assert!(space.stored > 0, "{space:?}");
    assert_eq!(tier.usage(&vm).expect("usage"), space.stored + 4 * MIB);

    let before = free_bytes(fs.path());
    let report = tier
        .expire(&vm, std::slice::from_ref(&first.id))
        .await
        .expect("expire");
    assert_eq!(report.clone_dirs_removed, 1, "{report:?}");
    assert_eq!(report.clone_bytes_freed, 4 * MIB, "{report:?}");
    // And the chunks only the first point named.
    assert!(report.bytes_freed > 4 * MIB, "{report:?}");
    assert!(
        eventually(|| free_bytes(fs.path()) >= before + report.bytes_freed - MIB),
        "free space grew by {} of {} freed",
        free_bytes(fs.path()).saturating_sub(before),
        report.bytes_freed
    );
    let disk = DiskName::new("disk.img").expect("disk");
    assert_eq!(tier.clone_of(&vm, &first.id, &disk), None);
    let kept = tier.clone_of(&vm, &second.id, &disk).expect("second clone");
    assert_eq!(
        std::fs::read(kept).expect("clone"),
        std::fs::read(&image).expect("image")
    );
    assert_eq!(tier.space(&vm).expect("space").clones, 0);

    // The image gone, the second clone holds its 16 MiB alone, and its expiry frees them.
    std::fs::remove_file(&image).expect("rm");
    assert!(eventually(
        || tier.space(&vm).expect("space").clones == 16 * MIB
    ));
    let report = tier
        .expire(&vm, std::slice::from_ref(&second.id))
        .await
        .expect("expire");
    assert_eq!(report.clone_bytes_freed, 16 * MIB, "{report:?}");
    assert!(tier.points(&vm).await.expect("points").is_empty());
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
async fn expiry_frees_what_the_clones_hold_on_xfs() {
    expiry_frees_what_the_clones_hold(LoopKind::Xfs).await;
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
async fn expiry_frees_what_the_clones_hold_on_btrfs() {
    expiry_frees_what_the_clones_hold(LoopKind::Btrfs).await;
}

/// A file of `len` bytes at `path` (its directory made); its allocated bytes.
fn file(path: &Path, len: usize) -> u64 {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    std::fs::write(path, vec![7u8; len]).expect("write");
    std::fs::metadata(path).expect("meta").blocks() * 512
}

/// A process id that no process has: a child's, once it was waited for.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let pid = child.id();
    child.wait().expect("wait");
    pid
}

#[tokio::test]
async fn the_sweep_removes_stray_clones_and_dead_staging_and_keeps_live_staging() {
    let tmp = tempfile::tempdir().expect("tmp");
    let tier = SnapshotTier::new(tmp.path().join("snapshots"));
    let vm = VmName::new("vm1").expect("vm");
    let vault = tier.open_or_init(&vm).await.expect("init");
    let image = tmp.path().join("disk.img");
    write_at(&image, 0, MIB, 1);
    let backup = |vault: Repository| {
        let vm = vm.clone();
        let image = image.clone();
        async move {
            let request = BackupRequest {
                vm,
                disks: vec![image.into()],
                block_size: Some(BlockSize::new(64 << 10).expect("bs")),
                consistency: Consistency::CrashConsistent,
                capture: None,
                options: TransferOptions::default(),
                time: None,
                retain_until: None,
                id: None,
                vault: None,
            };
            vault
                .backup(&request, Arc::new(NoProgress))
                .await
                .expect("backup")
                .point
        }
    };
    let kept = backup(vault.clone()).await;
    write_at(&image, 0, MIB, 2);
    let damaged = backup(vault.clone()).await;
    let clones = tier.clones_dir(&vm);
    // Plain copies stand in for clones here: the host's file system may have no reflinks.
    file(&clones.join(kept.id.as_str()).join("disk.img"), 8192);
    let set_aside = file(&clones.join(damaged.id.as_str()).join("disk.img"), 8192);
    // The point of a clone dir whose record heal sets aside (a damaged record).
    let record = tier.dir(&vm).join("points/vm1").join(damaged.id.as_str());
    let mut bytes = std::fs::read(&record).expect("record");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&record, bytes).expect("flip");
    let stray_id = PointId::generate(jiff::Timestamp::now(), b"expired");
    let stray = file(&clones.join(stray_id.as_str()).join("disk.img"), 4096);
    let dead = file(
        &clones
            .join(format!(".staging-{}-0", dead_pid()))
            .join("disk.img"),
        12288,
    );
    let garbled = file(&clones.join(".staging-garbled").join("disk.img"), 4096);
    let mut sleeper = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn");
    let live_dir = clones.join(format!(".staging-{}-7", sleeper.id()));
    file(&live_dir.join("disk.img"), 4096);
    // This process's own capture in progress (the sweep runs under the lock it holds).
    let ours = tier.stage(&vm).expect("stage");
    file(&ours.path(&DiskName::new("disk.img").expect("disk")), 4096);

    let report = tier.sweep(&vm).await;
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let report = report.expect("sweep");
    assert_eq!(report.clone_dirs_removed, 2, "{report:?}");
    assert_eq!(report.staging_dirs_removed, 2, "{report:?}");
    assert_eq!(
        report.clone_bytes_freed,
        set_aside + stray + dead + garbled,
        "{report:?}"
    );
    assert!(report.bytes_freed >= report.clone_bytes_freed, "{report:?}");
    let left: Vec<PathBuf> = {
        let mut left: Vec<PathBuf> = std::fs::read_dir(&clones)
            .expect("clones")
            .map(|e| e.expect("entry").path())
            .collect();
        left.sort();
        left
    };
    let mut expected = vec![
        clones.join(kept.id.as_str()),
        live_dir.clone(),
        ours.dir().to_owned(),
    ];
    expected.sort();
    assert_eq!(left, expected);
    assert!(
        tier.clone_of(&vm, &kept.id, &DiskName::new("disk.img").expect("disk"))
            .is_some()
    );

    // Dropped without being kept, a staging directory removes itself.
    let ours_dir = ours.dir().to_owned();
    drop(ours);
    assert!(!ours_dir.exists());
    // Its process gone, the sleeper's staging directory goes with the next sweep.
    let report = tier.sweep(&vm).await.expect("sweep");
    assert_eq!(report.staging_dirs_removed, 1, "{report:?}");
    assert!(!live_dir.exists());
    assert!(clones.join(kept.id.as_str()).exists());
}
