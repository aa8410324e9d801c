//! Instant restore through the engine: a snapshot point with kept clones restores by cloning
//! them back (into new files, or in place: only the differing extents), on real XFS and btrfs
//! (loop-mounted, see `blockvault_capture::testing::LoopFs`), and falls back to the tier's
//! chunks where a clone cannot be used.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use blockvault_capture::testing::{LoopFs, LoopKind};
use blockvault_core::{BlockSize, Consistency, DiskName, RecoveryPoint, VmName};
use blockvault_jobs::{Engine, RestoreMethod, RestoreOutcome, Tier};
use blockvault_repo::{BackupRequest, NoProgress, TransferOptions};
use blockvault_vault::{PointSelector, RestoreRequest};

const MIB: u64 = 1 << 20;

/// Writes `len` bytes of a pattern seeded by `seed` at `offset` of `path`, synced.
fn write_at(path: &Path, offset: u64, len: u64, seed: u64) {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("open");
    let data: Vec<u8> = (0..len)
        .map(|i| ((i + offset).wrapping_mul(seed | 1) >> 3) as u8)
        .collect();
    file.write_all_at(&data, offset).expect("write");
    file.sync_all().expect("sync");
}

/// A 32 MiB image with data in most of it and a hole in the middle.
fn image(dir: &Path) -> PathBuf {
    let path = dir.join("disk.img");
    write_at(&path, 0, 12 * MIB, 1);
    write_at(&path, 20 * MIB, 12 * MIB - 1000, 3);
    path
}

/// The engine, its state and snapshot tier on `root`.
async fn engine(root: &Path) -> Engine {
    Engine::open(root.join("state"), Some(root.join("snapshots")))
        .await
        .expect("engine")
        .0
}

fn vm() -> VmName {
    VmName::new("vm1").expect("vm")
}

fn disk() -> DiskName {
    DiskName::new("disk.img").expect("disk")
}

/// A snapshot point of `image` in the engine's tier, with its clone kept (`clone`) or not:
/// what the engine's Snapshot does (stage, clone, read, commit, keep).
async fn snapshot(engine: &Engine, image: &Path, clone: bool) -> RecoveryPoint {
    let tier = engine.snapshots();
    let repo = tier.open_or_init(&vm()).await.expect("tier");
    let staging = tier.stage(&vm()).expect("stage");
    if clone {
        blockvault_capture::clone_file(image, &staging.path(&disk())).expect("clone");
    }
    let request = BackupRequest {
        vm: vm(),
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
    let point = repo
        .backup(&request, Arc::new(NoProgress))
        .await
        .expect("snapshot")
        .point;
    if clone {
        tier.keep(&vm(), staging, &point.id).expect("keep");
    }
    point
}

async fn restore(
    engine: &Engine,
    point: &RecoveryPoint,
    target: &Path,
    in_place: bool,
) -> blockvault_jobs::Result<RestoreOutcome> {
    let request = RestoreRequest {
        vm: vm(),
        point: PointSelector::Id(point.id.to_string()),
        target: target.to_owned(),
        overwrite: false,
        in_place,
        known_content: Default::default(),
        options: TransferOptions::default(),
    };
    engine
        .restore(None, &request, None, Arc::new(NoProgress))
        .await
}

/// Deletes the tier's chunks: a restore by clone reads none.
fn delete_chunks(engine: &Engine) {
    let chunks = engine.snapshots().dir(&vm()).join("chunks");
    std::fs::remove_dir_all(&chunks).expect("delete the chunks");
}

fn methods(outcome: &RestoreOutcome) -> Vec<RestoreMethod> {
    outcome.restored_by.iter().map(|d| d.method).collect()
}

async fn restores_by_clone_into_a_new_file(kind: LoopKind) {
    let fs = LoopFs::new(kind, 512 * MIB);
    let engine = engine(fs.path()).await;
    let image = image(fs.path());
    let point = snapshot(&engine, &image, true).await;
    let then = std::fs::read(&image).expect("image");
    write_at(&image, 0, 4 * MIB, 9);
    delete_chunks(&engine);

    let out = fs.path().join("out");
    let outcome = restore(&engine, &point, &out, false)
        .await
        .expect("restore");
    assert_eq!(outcome.tier, Tier::Snapshot);
    assert_eq!(methods(&outcome), vec![RestoreMethod::Clone], "{outcome:?}");
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    assert_eq!(std::fs::read(out.join("disk.img")).expect("restored"), then);
    assert!(
        outcome.report.elapsed < Duration::from_millis(500),
        "{:?}",
        outcome.report.elapsed
    );
    let restored = &outcome.report.disks[0];
    assert_eq!(
        (restored.size, restored.bytes_written),
        (then.len() as u64, 0)
    );
    // It shares every extent: it costs nothing.
    assert_eq!(
        blockvault_capture::exclusive_bytes(&out.join("disk.img")).expect("exclusive"),
        0
    );
    assert_eq!(outcome.job.status, blockvault_jobs::JobStatus::Completed);

    // A target that exists is refused as before, and left as it was.
    let err = restore(&engine, &point, &out, false)
        .await
        .expect_err("exists");
    assert!(err.to_string().contains("exists"), "{err}");
    assert_eq!(std::fs::read(out.join("disk.img")).expect("restored"), then);
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
async fn restores_by_clone_into_a_new_file_on_xfs() {
    restores_by_clone_into_a_new_file(LoopKind::Xfs).await;
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
async fn restores_by_clone_into_a_new_file_on_btrfs() {
    restores_by_clone_into_a_new_file(LoopKind::Btrfs).await;
}

/// A small deterministic random generator (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

async fn rolls_back_in_place_only_what_differs(kind: LoopKind) {
    let fs = LoopFs::new(kind, 512 * MIB);
    let engine = engine(fs.path()).await;
    let image = image(fs.path());
    let point = snapshot(&engine, &image, true).await;
    let then = std::fs::read(&image).expect("image");
    // Random writes, some into the hole, then the disk grown.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let writes = 24;
    let mut written = 0;
    for n in 0..writes {
        let len = 1 + rng.below(64 << 10);
        let offset = rng.below(then.len() as u64 - len);
        write_at(&image, offset, len, 100 + n);
        written += len;
    }
    write_at(&image, then.len() as u64 + MIB, MIB, 7);
    assert_ne!(std::fs::read(&image).expect("image"), then);
    delete_chunks(&engine);

    let outcome = restore(&engine, &point, fs.path(), true)
        .await
        .expect("roll back");
    assert_eq!(std::fs::read(&image).expect("image"), then);
    assert_eq!(methods(&outcome), vec![RestoreMethod::Clone], "{outcome:?}");
    let how = &outcome.restored_by[0];
    // Only what the writes touched, aligned out to the file system's 4 KiB blocks: one range
    // per write at most (fewer where they meet), none for the part cut off.
    assert!(
        (1..=writes).contains(&how.ranges_cloned),
        "{how:?} for {writes} writes"
    );
    assert!(
        how.bytes_cloned <= written + writes * 2 * 4096,
        "{how:?} for {written} bytes written"
    );
    assert!(
        outcome.report.elapsed < Duration::from_millis(500),
        "{:?}",
        outcome.report.elapsed
    );
    assert!(outcome.report.disks[0].blocks_changed > 0);

    // Rolled back, it shares every extent with the clone: a second rollback clones nothing.
    let again = restore(&engine, &point, fs.path(), true)
        .await
        .expect("again");
    assert_eq!(
        (
            again.restored_by[0].ranges_cloned,
            again.restored_by[0].bytes_cloned
        ),
        (0, 0)
    );
    assert_eq!(std::fs::read(&image).expect("image"), then);

    // Cut short, it is grown back (the tail cloned back to the end of the file).
    OpenOptions::new()
        .write(true)
        .open(&image)
        .expect("open")
        .set_len(5 * MIB + 123)
        .expect("cut");
    let grown = restore(&engine, &point, fs.path(), true)
        .await
        .expect("grow");
    assert_eq!(std::fs::read(&image).expect("image"), then);
    assert!(grown.restored_by[0].bytes_cloned > 0);
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
async fn rolls_back_in_place_only_what_differs_on_xfs() {
    rolls_back_in_place_only_what_differs(LoopKind::Xfs).await;
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
async fn rolls_back_in_place_only_what_differs_on_btrfs() {
    rolls_back_in_place_only_what_differs(LoopKind::Btrfs).await;
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
async fn a_target_on_another_file_system_is_restored_from_the_chunks() {
    let fs = LoopFs::new(LoopKind::Xfs, 512 * MIB);
    let other = LoopFs::new(LoopKind::Btrfs, 512 * MIB);
    let engine = engine(fs.path()).await;
    let image = image(fs.path());
    let point = snapshot(&engine, &image, true).await;
    let then = std::fs::read(&image).expect("image");

    // Into a new file.
    let out = other.path().join("out");
    let outcome = restore(&engine, &point, &out, false)
        .await
        .expect("restore");
    assert_eq!(methods(&outcome), vec![RestoreMethod::Chunks]);
    assert_eq!(outcome.tier, Tier::Snapshot);
    assert!(
        outcome
            .warnings
            .iter()
            .any(|w| w.contains("another file system")),
        "{:?}",
        outcome.warnings
    );
    assert_eq!(std::fs::read(out.join("disk.img")).expect("restored"), then);
    assert!(
        std::fs::read_dir(&out).expect("out").all(|e| !e
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .ends_with("partial")),
        "no partial file left"
    );

    // In place.
    write_at(&out.join("disk.img"), 3 * MIB, MIB, 5);
    let outcome = restore(&engine, &point, &out, true)
        .await
        .expect("in place");
    assert_eq!(methods(&outcome), vec![RestoreMethod::Chunks]);
    assert!(
        outcome
            .warnings
            .iter()
            .any(|w| w.contains("another file system")),
        "{:?}",
        outcome.warnings
    );
    assert_eq!(std::fs::read(out.join("disk.img")).expect("restored"), then);
    assert_eq!(outcome.report.disks[0].blocks_changed, 16);
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
async fn a_point_without_its_clone_on_a_tier_that_keeps_them_is_restored_from_the_chunks() {
    let fs = LoopFs::new(LoopKind::Btrfs, 512 * MIB);
    let engine = engine(fs.path()).await;
    let image = image(fs.path());
    snapshot(&engine, &image, true).await;
    write_at(&image, 0, MIB, 11);
    let second = snapshot(&engine, &image, false).await;
    let then = std::fs::read(&image).expect("image");

    let out = fs.path().join("out");
    let outcome = restore(&engine, &second, &out, false)
        .await
        .expect("restore");
    assert_eq!(methods(&outcome), vec![RestoreMethod::Chunks]);
    assert!(
        outcome.warnings.iter().any(|w| w.contains("no kept clone")),
        "{:?}",
        outcome.warnings
    );
    assert_eq!(std::fs::read(out.join("disk.img")).expect("restored"), then);
}

#[tokio::test]
async fn without_clones_a_restore_is_from_the_chunks_and_says_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let engine = engine(tmp.path()).await;
    let image = tmp.path().join("disk.img");
    write_at(&image, 0, 2 * MIB, 1);
    let point = snapshot(&engine, &image, false).await;
    let out = tmp.path().join("out");
    let outcome = restore(&engine, &point, &out, false)
        .await
        .expect("restore");
    assert_eq!(methods(&outcome), vec![RestoreMethod::Chunks]);
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    assert_eq!(
        std::fs::read(out.join("disk.img")).expect("restored"),
        std::fs::read(&image).expect("image")
    );
}

async fn points_show_what_the_kept_clones_hold(kind: LoopKind) {
    let fs = LoopFs::new(kind, 512 * MIB);
    let engine = engine(fs.path()).await;
    let image = image(fs.path());
    let size = std::fs::metadata(&image).expect("image").len();
    let point = snapshot(&engine, &image, true).await;
    let clone_bytes = |list: &blockvault_jobs::PointList| {
        list.points
            .iter()
            .find(|p| p.point.id == point.id)
            .and_then(|p| p.snapshot_clone_bytes)
    };
    let listed = engine.list_points(None, &vm()).await.expect("points");
    assert_eq!(clone_bytes(&listed), Some(0), "it shares everything");
    // The image's first 12 MiB rewritten whole: the old ones are the clone's alone.
    write_at(&image, 0, 12 * MIB, 77);
    let listed = engine.list_points(None, &vm()).await.expect("points");
    assert_eq!(clone_bytes(&listed), Some(12 * MIB));
    let space = listed.snapshot_space.expect("space");
    assert_eq!(
        (space.clones, space.clones_apparent),
        (12 * MIB, size),
        "{space:?}"
    );
    assert_eq!(space.bytes(), space.stored + 12 * MIB);
    assert_eq!(engine.snapshot_space(&vm()).await.expect("space"), space);
    // A point without a kept clone says so.
    let plain = snapshot(&engine, &image, false).await;
    let listed = engine.list_points(None, &vm()).await.expect("points");
    let entry = listed
        .points
        .iter()
        .find(|p| p.point.id == plain.id)
        .expect("listed");
    assert_eq!(entry.snapshot_clone_bytes, None);
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
async fn points_show_what_the_kept_clones_hold_on_xfs() {
    points_show_what_the_kept_clones_hold(LoopKind::Xfs).await;
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
async fn points_show_what_the_kept_clones_hold_on_btrfs() {
    points_show_what_the_kept_clones_hold(LoopKind::Btrfs).await;
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
async fn a_clone_of_the_wrong_size_or_a_missing_target_is_no_wrong_restore() {
    let fs = LoopFs::new(LoopKind::Xfs, 512 * MIB);
    let engine = engine(fs.path()).await;
    let image = image(fs.path());
    let point = snapshot(&engine, &image, true).await;
    let then = std::fs::read(&image).expect("image");

    // In place with a disk missing from the target: refused as before, nothing touched.
    let empty = fs.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let err = restore(&engine, &point, &empty, true)
        .await
        .expect_err("missing");
    assert!(err.to_string().contains("disk.img"), "{err}");
    assert_eq!(std::fs::read_dir(&empty).expect("empty").count(), 0);

    // A kept clone that is not the point's size is not used: the chunks are.
    let clone = engine
        .snapshots()
        .clone_of(&vm(), &point.id, &disk())
        .expect("clone");
    OpenOptions::new()
        .write(true)
        .open(&clone)
        .expect("open")
        .set_len(MIB)
        .expect("cut");
    let out = fs.path().join("out");
    let outcome = restore(&engine, &point, &out, false)
        .await
        .expect("restore");
    assert_eq!(methods(&outcome), vec![RestoreMethod::Chunks]);
    assert!(
        outcome
            .warnings
            .iter()
            .any(|w| w.contains("not the point's")),
        "{:?}",
        outcome.warnings
    );
    assert_eq!(std::fs::read(out.join("disk.img")).expect("restored"), then);
    write_at(&image, 0, MIB, 3);
    let outcome = restore(&engine, &point, fs.path(), true)
        .await
        .expect("in place");
    assert_eq!(methods(&outcome), vec![RestoreMethod::Chunks]);
    assert_eq!(std::fs::read(&image).expect("image"), then);
}
