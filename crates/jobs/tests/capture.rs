//! The Snapshot's capture through the engine, on real file systems (loop-mounted XFS, btrfs
//! and ext4, see `blockvault_capture::testing::LoopFs`): reflink clones inside the freeze, one
//! instant for every disk, changed blocks from the file system, the fallback to a read under
//! the hook, and the warnings a user must see before a long freeze.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use blockvault_capture::testing::{LoopFs, LoopKind};
use blockvault_core::{BlockSize, Capture, RecoveryPoint, VmName};
use blockvault_jobs::{
    BackupOutcome, BackupSpec, CaptureMode, CaptureRecord, ChangesFrom, Engine, Hooks, SubtaskKind,
    Tier,
};
use blockvault_vault::{NoProgress, PointSelector, RestoreRequest, TransferOptions, Vault};

const MIB: u64 = 1 << 20;
const BS: u64 = 64 << 10;

struct World {
    fs: LoopFs,
    engine: Engine,
    vault: Vault,
}

async fn world(kind: LoopKind) -> World {
    let fs = LoopFs::new(kind, 512 * MIB);
    let (engine, _) = Engine::open(fs.path().join("state"), Some(fs.path().join("snapshots")))
        .await
        .expect("engine");
    let vault = Vault::init_local(fs.path().join("vault"))
        .await
        .expect("vault");
    World { fs, engine, vault }
}

fn vm() -> VmName {
    VmName::new("vm1").expect("vm")
}

fn write_at(path: &Path, offset: u64, data: &[u8]) {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("open");
    file.write_all_at(data, offset).expect("write");
    file.sync_all().expect("sync");
}

fn pattern(len: u64, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(seed | 1) >> 5) as u8 ^ seed as u8)
        .collect()
}

/// Hooks that quiesce nothing but count as a freeze (`true`), or the given commands.
fn hooks(pre: &str, post: &str) -> Hooks {
    Hooks {
        pre: Some(pre.to_owned()),
        post: Some(post.to_owned()),
        timeout: None,
    }
}

fn spec(disks: Vec<PathBuf>, hooks: Hooks) -> BackupSpec {
    let mut spec = BackupSpec::new(vm(), disks);
    spec.hooks = hooks;
    spec.block_size = Some(BlockSize::new(BS).expect("bs"));
    spec
}

async fn backup(w: &World, spec: &BackupSpec) -> BackupOutcome {
    w.engine
        .backup(Ok(&w.vault), spec, Arc::new(NoProgress))
        .await
        .expect("backup job")
}

fn capture(outcome: &BackupOutcome) -> CaptureRecord {
    outcome
        .job
        .subtask(SubtaskKind::Snapshot)
        .and_then(|s| s.capture.clone())
        .unwrap_or_else(|| panic!("no capture recorded: {outcome:?}"))
}

fn point(outcome: &BackupOutcome) -> RecoveryPoint {
    outcome
        .point
        .clone()
        .unwrap_or_else(|| panic!("no point: {outcome:?}"))
}

/// `point`'s disks as restored from `tier` into a new directory, in the point's order.
async fn restored(w: &World, point: &RecoveryPoint, tier: Tier) -> Vec<Vec<u8>> {
    let out = w.fs.path().join(format!("restored-{}-{tier:?}", point.id));
    let request = RestoreRequest {
        vm: vm(),
        point: PointSelector::Id(point.id.to_string()),
        target: out.clone(),
        overwrite: false,
        in_place: false,
        known_content: Default::default(),
        options: TransferOptions::default(),
    };
    w.engine
        .restore(Some(&w.vault), &request, Some(tier), Arc::new(NoProgress))
        .await
        .expect("restore");
    point
        .disks
        .iter()
        .map(|d| std::fs::read(out.join(d.name.as_str())).expect("restored disk"))
        .collect()
}

async fn clones_inside_the_freeze_and_changes_from_the_file_system(kind: LoopKind) {
    let w = world(kind).await;
    let image = w.fs.path().join("disk.img");
    write_at(&image, 0, &pattern(24 * MIB, 1));
    write_at(&image, 28 * MIB, &pattern(4 * MIB, 2));
    let spec = spec(vec![image.clone()], hooks("true", "true"));

    let first = backup(&w, &spec).await;
    let record = capture(&first);
    assert_eq!(record.capture, Capture::Reflink, "{record:?}");
    assert!(record.freeze_us.is_some() && record.clone_us.is_some());
    assert_eq!(record.disks[0].changes, ChangesFrom::FullScan);
    assert!(
        record.disks[0]
            .full_scan_reason
            .as_deref()
            .is_some_and(|r| r.contains("no earlier snapshot")),
        "{record:?}"
    );
    let first_point = point(&first);
    assert_eq!(first_point.stats.capture, Some(Capture::Reflink));
    let disk = &first_point.disks[0].name;
    assert!(
        w.engine
            .snapshots()
            .clone_of(&vm(), &first_point.id, disk)
            .is_some()
    );

    // 3 small writes: 3 blocks (and a neighbour where a write straddles two) to read again.
    write_at(&image, 5 * MIB + 100, &pattern(1000, 7));
    write_at(&image, 17 * MIB - 10, &pattern(20, 8));
    write_at(&image, 29 * MIB, &pattern(BS, 9));
    let second = backup(&w, &spec).await;
    let record = capture(&second);
    assert_eq!(record.capture, Capture::Reflink);
    let d = &record.disks[0];
    assert_eq!(d.changes, ChangesFrom::FileSystem, "{record:?}");
    assert!(
        d.bytes_read <= 8 * BS,
        "read {} bytes for 4 changed blocks",
        d.bytes_read
    );
    assert!(d.bytes_read >= 4 * BS, "{d:?}");
    assert_eq!(d.bytes_allocated, 28 * MIB);
    let now = std::fs::read(&image).expect("image");
    let second_point = point(&second);
    assert_eq!(
        restored(&w, &second_point, Tier::Snapshot).await,
        vec![now.clone()]
    );
    assert_eq!(restored(&w, &second_point, Tier::Vault).await, vec![now]);
    // The first point's clone still holds the first instant.
    let first_clone = w
        .engine
        .snapshots()
        .clone_of(&vm(), &first_point.id, disk)
        .expect("first clone");
    assert_eq!(
        std::fs::read(first_clone).expect("clone"),
        restored(&w, &first_point, Tier::Vault).await[0]
    );
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
async fn xfs_clones_inside_the_freeze_and_finds_changes_from_the_file_system() {
    clones_inside_the_freeze_and_changes_from_the_file_system(LoopKind::Xfs).await;
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
async fn btrfs_clones_inside_the_freeze_and_finds_changes_from_the_file_system() {
    clones_inside_the_freeze_and_changes_from_the_file_system(LoopKind::Btrfs).await;
}

/// Generation numbers (the first byte of each 64 KiB block) of a disk.
fn generations(disk: &[u8]) -> Vec<u8> {
    disk.chunks(BS as usize).map(|b| b[0]).collect()
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
async fn a_point_holds_the_clone_instant_while_a_writer_hammers_the_image() {
    let w = world(LoopKind::Xfs).await;
    let image = w.fs.path().join("disk.img");
    let blocks = 256u64; // 16 MiB
    write_at(&image, 0, &vec![0u8; (blocks * BS) as usize]);
    // The writer sweeps the disk again and again, each sweep writing its generation into
    // every block in order: at any instant the disk reads g+1 up to some block and g after.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (image, stop) = (image.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let file = OpenOptions::new().write(true).open(&image).expect("open");
            let mut generation = 0u8;
            while !stop.load(Ordering::Relaxed) {
                generation = generation.wrapping_add(1).max(1);
                let block = vec![generation; BS as usize];
                for i in 0..blocks {
                    file.write_all_at(&block, i * BS).expect("write");
                }
            }
        })
    };
    // No hooks: nothing freezes the writer; only the clone fixes the instant.
    let spec = spec(vec![image.clone()], Hooks::default());
    let mut points = Vec::new();
    for _ in 0..3 {
        let outcome = backup(&w, &spec).await;
        assert_eq!(capture(&outcome).capture, Capture::Reflink);
        points.push(point(&outcome));
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let mut written = false;
    for p in &points {
        let disk = &restored(&w, p, Tier::Vault).await[0];
        let g = generations(disk);
        written |= g.iter().any(|&x| x != 0);
        let boundary = g.iter().position(|&x| x != g[0]).unwrap_or(g.len());
        assert!(
            g[boundary..].iter().all(|&x| x == g[boundary]),
            "point {} is not one instant of the writer: {g:?}",
            p.id
        );
        let clone = w
            .engine
            .snapshots()
            .clone_of(&vm(), &p.id, &p.disks[0].name)
            .expect("clone");
        assert_eq!(
            &std::fs::read(clone).expect("clone"),
            disk,
            "the point is its clone"
        );
    }
    assert!(written, "the writer wrote while the points were taken");
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
async fn two_disks_frozen_by_the_hooks_are_captured_at_one_instant() {
    let w = world(LoopKind::Btrfs).await;
    let (a, b) = (w.fs.path().join("a.img"), w.fs.path().join("b.img"));
    for disk in [&a, &b] {
        write_at(disk, 0, &pattern(4 * MIB, 3));
    }
    // The writer writes a sequence number to disk a, then b; it honours a freeze the way a
    // guest agent's fsfreeze does: between two writes, until thawed.
    let flags = w.fs.path().join("flags");
    std::fs::create_dir(&flags).expect("flags");
    let (freeze, frozen) = (flags.join("freeze"), flags.join("frozen"));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (a, b, stop) = (a.clone(), b.clone(), Arc::clone(&stop));
        let (freeze, frozen) = (freeze.clone(), frozen.clone());
        std::thread::spawn(move || {
            let open = |p: &Path| OpenOptions::new().write(true).open(p).expect("open");
            let (fa, fb) = (open(&a), open(&b));
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if freeze.exists() {
                    std::fs::write(&frozen, b"").expect("ack");
                    while freeze.exists() && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    let _ = std::fs::remove_file(&frozen);
                }
                n += 1;
                fa.write_all_at(&n.to_le_bytes(), 0).expect("a");
                fb.write_all_at(&n.to_le_bytes(), 0).expect("b");
            }
        })
    };
    let pre = format!(
        "touch {f}; while [ ! -e {d} ]; do sleep 0.001; done",
        f = freeze.display(),
        d = frozen.display()
    );
    let post = format!("rm -f {}", freeze.display());
    let spec = spec(vec![a.clone(), b.clone()], hooks(&pre, &post));
    let mut seen = Vec::new();
    for _ in 0..3 {
        let outcome = backup(&w, &spec).await;
        let record = capture(&outcome);
        assert_eq!(record.capture, Capture::Reflink);
        assert!(record.freeze().is_some_and(|f| f < Duration::from_secs(5)));
        let disks = restored(&w, &point(&outcome), Tier::Snapshot).await;
        let number = |d: &Vec<u8>| u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
        assert_eq!(
            number(&disks[0]),
            number(&disks[1]),
            "one instant for both disks"
        );
        seen.push(number(&disks[0]));
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "time moves on: {seen:?}"
    );
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
async fn ext4_reads_under_the_hook_says_why_and_warns_of_a_long_freeze() {
    let w = world(LoopKind::Ext4).await;
    let image = w.fs.path().join("disk.img");
    write_at(&image, 0, &pattern(8 * MIB, 4));
    let mut spec = spec(vec![image.clone()], hooks("true", "true"));
    spec.capture.long_freeze = Duration::ZERO;
    let outcome = backup(&w, &spec).await;
    let record = capture(&outcome);
    assert_eq!(record.capture, Capture::ReadUnderHook);
    assert!(record.freeze_us.is_some() && record.clone_us.is_none());
    let reason = record.disks[0].full_scan_reason.clone().unwrap_or_default();
    assert!(reason.contains("no reflinks"), "{reason}");
    assert!(
        outcome
            .warnings
            .iter()
            .any(|w| w.contains("frozen for") && w.contains("XFS")),
        "{:?}",
        outcome.warnings
    );
    assert_eq!(point(&outcome).stats.capture, Some(Capture::ReadUnderHook));

    // Without hooks the read is live, and says so.
    let live = backup(&w, &self::spec(vec![image.clone()], Hooks::default())).await;
    assert_eq!(capture(&live).capture, Capture::ReadLive);
    assert_eq!(capture(&live).freeze_us, None);

    // `--capture reflink` fails before any hook runs.
    let marker = w.fs.path().join("pre-ran");
    let mut strict = self::spec(
        vec![image],
        hooks(&format!("touch {}", marker.display()), "true"),
    );
    strict.capture.mode = CaptureMode::Reflink;
    let outcome = backup(&w, &strict).await;
    let failure = outcome.failure.expect("refused");
    assert!(failure.to_string().contains("reflink"), "{failure}");
    assert!(!marker.exists(), "no hook ran");
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
async fn a_fragmented_image_is_warned_of_before_any_hook_runs() {
    let w = world(LoopKind::Xfs).await;
    let image = w.fs.path().join("frag.img");
    // Every other 4 KiB block, each written and synced alone: one extent each.
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&image)
        .expect("open");
    for i in 0..512u64 {
        file.write_all_at(&[1u8; 4096], i * 8192).expect("write");
        file.sync_data().expect("sync");
    }
    drop(file);
    let mut spec = spec(vec![image], hooks("exit 1", "true"));
    spec.capture.extent_warning = 100;
    let outcome = backup(&w, &spec).await;
    // The pre-hook failed the job: the warning was given before it ran.
    assert!(outcome.failure.is_some());
    assert!(
        outcome
            .warnings
            .iter()
            .any(|w| w.contains("extents") && w.contains("stall")),
        "{:?}",
        outcome.warnings
    );
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
async fn the_periodic_check_scans_in_full_and_finds_the_changed_extents_sound() {
    let w = world(LoopKind::Xfs).await;
    let image = w.fs.path().join("disk.img");
    write_at(&image, 0, &pattern(8 * MIB, 5));
    let mut spec = spec(vec![image.clone()], Hooks::default());
    backup(&w, &spec).await;
    write_at(&image, MIB, &pattern(3000, 6));
    // A week since the last full read is now.
    spec.capture.check_changes_every = Duration::ZERO;
    let checked = backup(&w, &spec).await;
    let d = &capture(&checked).disks[0];
    assert_eq!(d.hint_missed, Some(0), "{d:?}");
    assert_eq!(d.bytes_read, d.bytes_allocated, "scanned in full");
    // The check counts as a full read: with the default week, the next one is hinted.
    spec.capture.check_changes_every = Duration::from_secs(3600);
    write_at(&image, 2 * MIB, &pattern(3000, 7));
    let hinted = backup(&w, &spec).await;
    let d = &capture(&hinted).disks[0];
    assert_eq!(d.changes, ChangesFrom::FileSystem, "{d:?}");
    assert_eq!(d.hint_missed, None);
}
