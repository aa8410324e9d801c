//! QEMU dirty bitmaps as changed-block tracking for qcow2 disks no QEMU has open: each backup
//! adds `blockvault-<point>`, the next reads only what the parent's bitmap marks, and the
//! parent's goes once the new point is committed.
//!
//! Under seeded random `qemu-io` writes, the blocks read are exactly the blocks that changed
//! (what a diff of `qemu-img convert` outputs finds, and what the periodic full scan checks),
//! and every point restores byte for byte as `qemu-img convert -O raw` made the image at its
//! time. A bitmap left inconsistent by a QEMU killed with SIGKILL, a missing or renamed bitmap
//! and a resized disk each get a full scan with the reason, and the right point. A failed
//! Snapshot removes its new bitmap, and the next backup still reads with the parent's. A
//! cloned qcow2 disk reads its clone's bitmap, beside a raw disk's file-system hints.
//!
//! These tests need `qemu-img`, `qemu-io` and `qemu-nbd`; without them they fail, saying so.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use blockvault_capture::testing::{LoopFs, LoopKind};
use blockvault_core::{BlockSize, Capture, RecoveryPoint, VmName};
use blockvault_jobs::{
    BackupOutcome, BackupSpec, CaptureMode, CaptureRecord, ChangesFrom, Engine, Hooks, SubtaskKind,
    Tier,
};
use blockvault_qemu::testing::{as_raw, qemu_io, require, run};
use blockvault_qemu::{ImageInfo, bitmap_name};
use blockvault_vault::{NoProgress, PointSelector, RestoreRequest, TransferOptions, Vault};

const K: u64 = 1 << 10;
const M: u64 = 1 << 20;
/// The block size of the points (and the bitmaps' granularity).
const BLOCK: u64 = 64 * K;

/// A `qemu-io` holding `image` open read-write after writing `write`; killed with SIGKILL
/// (and reaped) when dropped, as a crashed QEMU dies.
struct OpenByQemu(Child);

impl OpenByQemu {
    fn new(image: &Path, write: &str) -> OpenByQemu {
        // stdbuf: the report of the write must arrive through the pipe while qemu-io runs.
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "qemu-io",
                "-f",
                "qcow2",
                "-c",
                write,
                "-c",
                "sleep 60000",
            ])
            .arg(image)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start qemu-io");
        let stdout = child.stdout.take().expect("stdout");
        let guard = OpenByQemu(child);
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("qemu-io's report");
        assert!(line.starts_with("wrote"), "qemu-io said {line:?}");
        guard
    }
}

impl Drop for OpenByQemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// splitmix64: a seeded generator, so a failing round can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn vm() -> VmName {
    VmName::new("vm1").expect("vm")
}

struct World {
    /// The temporary directory or loop-mounted file system everything is in.
    _root: Box<dyn std::any::Any>,
    root: PathBuf,
    engine: Engine,
    vault: Vault,
    image: PathBuf,
    spec: BackupSpec,
}

/// An engine, a local vault and a qcow2 disk of `size` bytes with some data, backed up
/// with 64 KiB blocks, read (no clones) without hooks.
async fn world(size: u64) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_owned();
    world_in(Box::new(dir), root, size, CaptureMode::Read).await
}

/// [`world`] in `root` (kept alive by `guard`), captured as `mode` says.
async fn world_in(
    guard: Box<dyn std::any::Any>,
    root: PathBuf,
    size: u64,
    mode: CaptureMode,
) -> World {
    for tool in ["qemu-img", "qemu-io", "qemu-nbd", "stdbuf"] {
        require(tool);
    }
    let (engine, _) = Engine::open(root.join("state"), Some(root.join("snapshots")))
        .await
        .expect("engine");
    let vault = Vault::init_local(root.join("vault")).await.expect("vault");
    let image = root.join("disk.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&image)
        .arg(size.to_string()));
    qemu_io(
        &image,
        &[
            "write -P 0x01 0 2M".to_owned(),
            "write -P 0x02 9M 1M".to_owned(),
        ],
    );
    let mut spec = BackupSpec::new(vm(), vec![image.clone()]);
    spec.block_size = Some(BlockSize::new(BLOCK).expect("bs"));
    spec.capture.mode = mode;
    World {
        _root: guard,
        root,
        engine,
        vault,
        image,
        spec,
    }
}

impl World {
    async fn backup(&self) -> BackupOutcome {
        self.engine
            .backup(Ok(&self.vault), &self.spec, Arc::new(NoProgress))
            .await
            .expect("backup job")
    }

    /// A backup that must make a point; the point and its capture record.
    async fn point(&self) -> (RecoveryPoint, CaptureRecord) {
        let outcome = self.backup().await;
        let point = outcome
            .point
            .clone()
            .unwrap_or_else(|| panic!("no point: {outcome:?}"));
        (point, record(&outcome))
    }

    /// `point` restored from the vault, as a raw image.
    async fn restored(&self, point: &RecoveryPoint, name: &str) -> Vec<u8> {
        let out = self.root.join(name);
        let request = RestoreRequest {
            vm: vm(),
            point: PointSelector::Id(point.id.to_string()),
            target: out.clone(),
            overwrite: false,
            in_place: false,
            known_content: Default::default(),
            options: TransferOptions::default(),
        };
        // Raw: the guest's disk, to compare with `qemu-img convert -O raw`.
        self.engine
            .restore_as(
                Some(&self.vault),
                &request,
                Some(Tier::Vault),
                Some(blockvault_core::DiskFormat::Raw),
                Arc::new(NoProgress),
            )
            .await
            .expect("restore");
        std::fs::read(out.join("disk.qcow2")).expect("restored disk")
    }

    fn raw(&self, name: &str) -> Vec<u8> {
        as_raw(&self.image, &self.root.join(name))
    }

    /// The names of the image's dirty bitmaps.
    fn bitmaps(&self) -> BTreeSet<String> {
        ImageInfo::read(&self.image)
            .expect("qemu-img info")
            .bitmaps
            .into_iter()
            .map(|b| b.name)
            .collect()
    }
}

fn record(outcome: &BackupOutcome) -> CaptureRecord {
    outcome
        .job
        .subtask(SubtaskKind::Snapshot)
        .and_then(|s| s.capture.clone())
        .unwrap_or_else(|| panic!("no capture recorded: {outcome:?}"))
}

/// The qemu-nbd processes serving an image under `root`.
fn servers_under(root: &Path) -> usize {
    let root = root.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .expect("list /proc")
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|cmdline| {
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"qemu-nbd"))
                && args.iter().any(|a| a.starts_with(root))
        })
        .count()
}

fn only(names: &[String]) -> BTreeSet<String> {
    names.iter().cloned().collect()
}

/// The 64 KiB blocks in which `a` and `b` differ.
fn changed_blocks(a: &[u8], b: &[u8]) -> BTreeSet<u64> {
    assert_eq!(a.len(), b.len());
    a.chunks(BLOCK as usize)
        .zip(b.chunks(BLOCK as usize))
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| i as u64)
        .collect()
}

#[tokio::test]
async fn bitmap_hints_read_exactly_the_changed_blocks_under_random_writes() {
    let size = 24 * M;
    let mut w = world(size).await;
    let mut rng = Rng(0x5eed_b17a_u64);

    let (first, rec) = w.point().await;
    assert_eq!(rec.disks[0].changes, ChangesFrom::FullScan, "{rec:?}");
    assert!(
        rec.disks[0]
            .full_scan_reason
            .as_deref()
            .is_some_and(|r| r.contains("no earlier snapshot")),
        "{rec:?}"
    );
    // A first backup adds its bitmap all the same.
    assert_eq!(w.bitmaps(), only(&[bitmap_name(&first.id)]));
    let mut points = vec![(first, w.raw("p0.raw"))];

    for round in 1..=5u64 {
        // Writes of unique patterns (never what the bytes were), unaligned, some overlapping.
        let mut touched = BTreeSet::new();
        let mut writes = Vec::new();
        for k in 0..(3 + rng.below(8)) {
            let len = 512 * (1 + rng.below(400));
            let offset = 512 * rng.below((size - len) / 512);
            let pattern = (round * 16 + k) % 0xff + 1;
            writes.push(format!("write -P {pattern} {offset} {len}"));
            touched.extend(offset / BLOCK..=(offset + len - 1) / BLOCK);
        }
        qemu_io(&w.image, &writes);
        let before = &points.last().expect("a point").1;
        let now = w.raw(&format!("p{round}.raw"));
        let changed = changed_blocks(before, &now);
        assert_eq!(changed, touched, "round {round}: {writes:?}");

        // The last round is due for the periodic check: a full scan that counts what the
        // bitmap missed.
        let check = round == 5;
        if check {
            w.spec.capture.check_changes_every = Duration::ZERO;
        }
        let (point, rec) = w.point().await;
        let disk = &rec.disks[0];
        let parent = &points.last().expect("a point").0;
        assert_eq!(point.parent.as_ref(), Some(&parent.id), "round {round}");
        if check {
            assert_eq!(disk.changes, ChangesFrom::FullScan, "{rec:?}");
            assert_eq!(
                disk.hint_missed,
                Some(0),
                "the bitmap missed writes: {rec:?}"
            );
        } else {
            assert_eq!(disk.changes, ChangesFrom::DirtyBitmap, "{rec:?}");
            assert!(disk.full_scan_reason.is_none(), "{rec:?}");
            assert_eq!(
                disk.bytes_read,
                changed.len() as u64 * BLOCK,
                "round {round}: read {} bytes for {} changed blocks ({writes:?})",
                disk.bytes_read,
                changed.len()
            );
            assert!(
                rec.summary().contains("changes from dirty bitmaps"),
                "{}",
                rec.summary()
            );
            assert!(
                disk.summary().contains("dirty-bitmap"),
                "{}",
                disk.summary()
            );
        }
        // Committed: the parent's bitmap is gone, the new one is there.
        assert_eq!(
            w.bitmaps(),
            only(&[bitmap_name(&point.id)]),
            "round {round}"
        );
        assert_eq!(servers_under(&w.root), 0, "qemu-nbd left running");
        points.push((point, now));
    }
    for (i, (point, expected)) in points.iter().enumerate() {
        let restored = w.restored(point, &format!("r{i}")).await;
        assert!(
            restored == *expected,
            "point {i} differs from qemu-img convert at its time"
        );
    }
}

/// A guest that trims and zeroes: the bitmap marks discarded and zero-written ranges dirty,
/// and those blocks then read as holes or zeros through the export. Each point must hold
/// exactly the disk of its time, block by block: a zeroed block that kept the parent's id
/// would restore the old data.
#[tokio::test]
async fn discards_and_zero_writes_under_the_bitmap_give_the_right_points() {
    let size = 16 * M;
    let w = world(size).await;
    qemu_io(&w.image, &[format!("write -P 7 0 {size}")]);
    let (first, _) = w.point().await;
    let mut points = vec![(first, w.raw("p0.raw"))];
    let rounds: [&[String]; 4] = [
        // A whole block discarded, another unaligned, one zeroed with unmap, one without.
        &[
            format!("discard {} {}", 2 * BLOCK, BLOCK),
            format!("discard {} {}", 5 * BLOCK + 4 * K, 3 * BLOCK),
            format!("write -z -u {} {}", 12 * BLOCK, 2 * BLOCK),
            format!("write -z {} {}", 20 * BLOCK + 512, 10 * K),
        ],
        // Data written back over what was trimmed, and half of a zeroed block.
        &[
            format!("write -P 9 {} {}", 2 * BLOCK, BLOCK / 2),
            format!("write -P 10 {} {}", 12 * BLOCK + 8 * K, 4 * K),
        ],
        // A large trim over many blocks, then one write in its middle.
        &[
            format!("discard {} {}", 64 * BLOCK, 64 * BLOCK),
            format!("write -P 11 {} {}", 100 * BLOCK + 512, 512),
        ],
        // Nothing: no dirty block, nothing read.
        &[],
    ];
    for (round, writes) in rounds.iter().enumerate() {
        if !writes.is_empty() {
            qemu_io(&w.image, writes);
        }
        let now = w.raw(&format!("p{}.raw", round + 1));
        let changed = changed_blocks(&points.last().expect("a point").1, &now);
        let (point, rec) = w.point().await;
        let disk = &rec.disks[0];
        assert_eq!(
            disk.changes,
            ChangesFrom::DirtyBitmap,
            "round {round}: {rec:?}"
        );
        // Every block touched here changes, and a trimmed block reads as a hole: at most the
        // changed blocks are read (the bitmap's granularity is the block size).
        assert!(
            disk.bytes_read <= changed.len() as u64 * BLOCK,
            "round {round}: read {} bytes for {} changed blocks",
            disk.bytes_read,
            changed.len()
        );
        if writes.is_empty() {
            assert_eq!(disk.bytes_read, 0, "no write, nothing to read: {rec:?}");
        }
        points.push((point, now));
    }
    for (i, (point, expected)) in points.iter().enumerate() {
        let restored = w.restored(point, &format!("r{i}")).await;
        assert!(
            restored == *expected,
            "point {i} differs from the disk at its time"
        );
    }
}

#[tokio::test]
async fn an_inconsistent_bitmap_is_a_full_scan_and_the_point_is_right() {
    let w = world(16 * M).await;
    let (first, _) = w.point().await;
    // A QEMU dies with the image open after a write: its bitmaps stay `in-use`.
    drop(OpenByQemu::new(&w.image, "write -P 0x7e 3M 192k"));
    let expected = w.raw("second.raw");
    let info = ImageInfo::read(&w.image).expect("info");
    let parent_bitmap = bitmap_name(&first.id);
    assert!(
        info.bitmap(&parent_bitmap).expect("bitmap").inconsistent,
        "{info:?}"
    );

    let (second, rec) = w.point().await;
    let disk = &rec.disks[0];
    assert_eq!(disk.changes, ChangesFrom::FullScan, "{rec:?}");
    let reason = disk.full_scan_reason.clone().unwrap_or_default();
    assert!(
        reason.contains("inconsistent") && reason.contains(&parent_bitmap),
        "{reason}"
    );
    assert_eq!(disk.bytes_read, disk.bytes_allocated, "{rec:?}");
    assert!(w.restored(&second, "r2").await == expected);
    // The inconsistent bitmap went with the commit; the new one is sound.
    assert_eq!(w.bitmaps(), only(&[bitmap_name(&second.id)]));
    let info = ImageInfo::read(&w.image).expect("info");
    assert!(!info.bitmaps[0].inconsistent);

    // And the next backup reads with it again.
    qemu_io(&w.image, &["write -P 0x3c 7M 64k".to_owned()]);
    let (third, rec) = w.point().await;
    assert_eq!(rec.disks[0].changes, ChangesFrom::DirtyBitmap, "{rec:?}");
    assert_eq!(rec.disks[0].bytes_read, BLOCK);
    assert!(w.restored(&third, "r3").await == w.raw("third.raw"));
}

#[tokio::test]
async fn a_missing_or_renamed_bitmap_is_a_full_scan() {
    let w = world(16 * M).await;
    let (first, _) = w.point().await;
    // Removed behind blockvault's back.
    run(Command::new("qemu-img")
        .args(["bitmap", "--remove"])
        .arg(&w.image)
        .arg(bitmap_name(&first.id)));
    qemu_io(&w.image, &["write -P 0x44 1M 64k".to_owned()]);
    let (second, rec) = w.point().await;
    let disk = &rec.disks[0];
    assert_eq!(disk.changes, ChangesFrom::FullScan, "{rec:?}");
    let reason = disk.full_scan_reason.clone().unwrap_or_default();
    assert!(reason.contains("has no dirty bitmap"), "{reason}");
    assert_eq!(disk.bytes_read, disk.bytes_allocated, "{rec:?}");
    assert!(w.restored(&second, "r2").await == w.raw("second.raw"));

    // Renamed: copied into a bitmap of another name, the original removed.
    let name = bitmap_name(&second.id);
    run(Command::new("qemu-img")
        .args(["bitmap", "--add", "-g", "65536"])
        .arg(&w.image)
        .arg("renamed"));
    run(Command::new("qemu-img")
        .args(["bitmap", "--merge"])
        .arg(&name)
        .arg(&w.image)
        .arg("renamed"));
    run(Command::new("qemu-img")
        .args(["bitmap", "--remove"])
        .arg(&w.image)
        .arg(&name));
    // And one a killed backup left behind: a blockvault bitmap of no point.
    let stale = "blockvault-20200101-000000-0001";
    run(Command::new("qemu-img")
        .args(["bitmap", "--add", "-g", "65536"])
        .arg(&w.image)
        .arg(stale));
    qemu_io(&w.image, &["write -P 0x55 5M 64k".to_owned()]);
    let (third, rec) = w.point().await;
    assert_eq!(rec.disks[0].changes, ChangesFrom::FullScan, "{rec:?}");
    let reason = rec.disks[0].full_scan_reason.clone().unwrap_or_default();
    assert!(reason.contains(&name), "{reason}");
    assert!(w.restored(&third, "r3").await == w.raw("third.raw"));
    // The stale bitmap went with the commit; one that is not blockvault's is never touched.
    assert_eq!(
        w.bitmaps(),
        only(&["renamed".to_owned(), bitmap_name(&third.id)])
    );
}

#[tokio::test]
async fn a_resized_disk_is_a_full_scan() {
    let w = world(16 * M).await;
    let (first, _) = w.point().await;
    run(Command::new("qemu-img")
        .args(["resize", "-q", "-f", "qcow2"])
        .arg(&w.image)
        .arg("20M"));
    qemu_io(&w.image, &["write -P 0x66 18M 64k".to_owned()]);
    let (second, rec) = w.point().await;
    assert_eq!(second.parent.as_ref(), Some(&first.id));
    let disk = &rec.disks[0];
    assert_eq!(disk.changes, ChangesFrom::FullScan, "{rec:?}");
    let reason = disk.full_scan_reason.clone().unwrap_or_default();
    assert!(
        reason.contains(&(16 * M).to_string()) && reason.contains(&(20 * M).to_string()),
        "{reason}"
    );
    assert_eq!(second.disks[0].size, 20 * M);
    assert!(w.restored(&second, "r2").await == w.raw("second.raw"));
    assert_eq!(w.bitmaps(), only(&[bitmap_name(&second.id)]));
}

#[tokio::test]
async fn a_failed_snapshot_removes_its_bitmap_and_the_next_backup_uses_the_parents() {
    let mut w = world(16 * M).await;
    // A second disk, raw, that the pre-hook takes away: the Snapshot fails after the capture
    // (the qcow2 disk has its new bitmap by then), and the post-hook puts it back.
    let raw = w.root.join("data.raw");
    std::fs::write(&raw, vec![0x5au8; 256 * K as usize]).expect("raw disk");
    w.spec.disks.push(raw.clone());
    let (first, _) = w.point().await;
    assert_eq!(w.bitmaps(), only(&[bitmap_name(&first.id)]));

    qemu_io(&w.image, &["write -P 0x21 2M 64k".to_owned()]);
    let away = w.root.join("data.away");
    let mut failing = w.spec.clone();
    failing.hooks = Hooks {
        pre: Some(format!("mv {} {}", raw.display(), away.display())),
        post: Some(format!("mv {} {}", away.display(), raw.display())),
        timeout: None,
    };
    let failed = w
        .engine
        .backup(Ok(&w.vault), &failing, Arc::new(NoProgress))
        .await
        .expect("backup job");
    assert!(failed.failure.is_some(), "{failed:?}");
    assert!(failed.point.is_none());
    assert!(raw.exists(), "the post-hook put the disk back");
    // Only the parent's bitmap is left: the failed Snapshot's went.
    assert_eq!(w.bitmaps(), only(&[bitmap_name(&first.id)]));

    qemu_io(&w.image, &["write -P 0x22 11M 128k".to_owned()]);
    let (second, rec) = w.point().await;
    assert_eq!(second.parent.as_ref(), Some(&first.id));
    let disk = &rec.disks[0];
    assert_eq!(disk.changes, ChangesFrom::DirtyBitmap, "{rec:?}");
    // The writes before the failed job and after it: the parent's bitmap holds both.
    assert_eq!(disk.bytes_read, 3 * BLOCK, "{rec:?}");
    assert!(w.restored(&second, "r2").await == w.raw("second.raw"));
    assert_eq!(w.bitmaps(), only(&[bitmap_name(&second.id)]));
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs: scripts/test.sh runs it"]
async fn a_cloned_qcow2_disk_reads_its_clones_bitmap_beside_a_raw_disks_file_system_hints() {
    let fs = LoopFs::new(LoopKind::Xfs, 512 << 20);
    let root = fs.path().to_owned();
    let mut w = world_in(Box::new(fs), root, 16 * M, CaptureMode::Reflink).await;
    let raw = w.root.join("data.raw");
    std::fs::write(&raw, vec![0x5au8; 4 * M as usize]).expect("raw disk");
    w.spec.disks.push(raw.clone());
    let (first, rec) = w.point().await;
    assert_eq!(rec.capture, Capture::Reflink, "{rec:?}");
    assert_eq!(w.bitmaps(), only(&[bitmap_name(&first.id)]));

    let before = w.raw("p0.raw");
    qemu_io(
        &w.image,
        &[
            "write -P 0x31 1M 100k".to_owned(),
            "write -P 0x32 13M 4k".to_owned(),
        ],
    );
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&raw)
            .expect("raw");
        file.write_all_at(&[0xa5; 4096], M).expect("write raw");
    }
    let now = w.raw("p1.raw");
    let changed = changed_blocks(&before, &now);
    let (second, rec) = w.point().await;
    assert_eq!(rec.capture, Capture::Reflink, "{rec:?}");
    let (qcow2, data) = (&rec.disks[0], &rec.disks[1]);
    assert_eq!(qcow2.changes, ChangesFrom::DirtyBitmap, "{rec:?}");
    assert_eq!(qcow2.bytes_read, changed.len() as u64 * BLOCK, "{rec:?}");
    assert_eq!(data.changes, ChangesFrom::FileSystem, "{rec:?}");
    assert!(
        rec.summary()
            .contains("changes from the file system and dirty bitmaps"),
        "{}",
        rec.summary()
    );
    assert_eq!(w.bitmaps(), only(&[bitmap_name(&second.id)]));
    assert!(w.restored(&second, "r2").await == now);
    assert!(w.restored(&first, "r1").await == before);
}

#[tokio::test]
async fn a_disk_a_qemu_has_open_fails_the_job_saying_to_use_qmp() {
    let w = world(16 * M).await;
    let (first, _) = w.point().await;
    let open = OpenByQemu::new(&w.image, "write -P 0x19 4M 64k");
    let outcome = w.backup().await;
    let failure = outcome
        .failure
        .as_ref()
        .map(|e| e.to_string())
        .unwrap_or_else(|| panic!("a disk a QEMU has open made a point: {outcome:?}"));
    assert!(
        failure.contains("a QEMU has disk image") && failure.contains("QMP"),
        "{failure}"
    );
    assert!(outcome.point.is_none());
    assert_eq!(servers_under(&w.root), 0, "qemu-nbd left running");
    // Nothing was added: only the first point's bitmap (in use by that QEMU) is there.
    assert_eq!(w.bitmaps(), only(&[bitmap_name(&first.id)]));
    drop(open);
}

#[tokio::test]
async fn a_failed_transfer_keeps_the_snapshot_point_and_its_bitmap() {
    let w = world(16 * M).await;
    let (first, _) = w.point().await;
    qemu_io(&w.image, &["write -P 0x29 6M 64k".to_owned()]);
    // The vault is down: the Snapshot completes (the point is in the snapshot tier), the
    // Transfer fails, and the point's bitmap is the one the next backup reads with.
    let unavailable = blockvault_jobs::VaultUnavailable {
        location: w.root.join("vault").display().to_string(),
        reason: "the vault is down for this test".to_owned(),
    };
    let outcome = w
        .engine
        .backup(Err(&unavailable), &w.spec, Arc::new(NoProgress))
        .await
        .expect("backup job");
    let kept = outcome
        .point
        .clone()
        .unwrap_or_else(|| panic!("the Snapshot made no point: {outcome:?}"));
    let transfer = outcome
        .job
        .subtask(SubtaskKind::Transfer)
        .expect("transfer subtask");
    assert_eq!(
        transfer.status,
        blockvault_jobs::SubtaskStatus::Failed,
        "{outcome:?}"
    );
    assert_eq!(kept.parent.as_ref(), Some(&first.id));
    assert_eq!(w.bitmaps(), only(&[bitmap_name(&kept.id)]));

    qemu_io(&w.image, &["write -P 0x2a 8M 64k".to_owned()]);
    let (third, rec) = w.point().await;
    assert_eq!(third.parent.as_ref(), Some(&kept.id));
    assert_eq!(rec.disks[0].changes, ChangesFrom::DirtyBitmap, "{rec:?}");
    // Only the write since the kept point: the one before it is that point's.
    assert_eq!(rec.disks[0].bytes_read, BLOCK, "{rec:?}");
    assert!(w.restored(&third, "r3").await == w.raw("third.raw"));
}

/// A stand-in for a VM whose QEMU has its disk open: `qemu-io` reading commands from a FIFO
/// that a `tail -f` of a command file feeds. `vm.sh stop` ends the feed (qemu-io closes the
/// image cleanly at EOF) and waits for the image's lock to go; `vm.sh start` starts both again
/// and waits for the lock. The hooks of the backups call it, as a pre-hook that stops a VM
/// and a post-hook that starts it would.
struct HookedVm {
    dir: PathBuf,
    image: PathBuf,
    /// Guest writes sent so far, and the disk as they leave it.
    sent: usize,
    model: Vec<u8>,
}

const VM_SH: &str = r#"#!/bin/sh
# vm.sh start|stop DIR IMAGE
set -e
d=$2
locked() { ! qemu-img info "$1" >/dev/null 2>&1; }
case $1 in
start)
  # The first command (`length`) says the image is open: polling the lock instead could
  # take a read lock just as qemu-io asks for the write lock, and make it fail.
  rm -f "$d/fifo"; mkfifo "$d/fifo"; echo length > "$d/cmds"; : > "$d/log"
  tail -n +1 -f "$d/cmds" > "$d/fifo" 2>/dev/null </dev/null & echo $! > "$d/tail.pid"
  stdbuf -oL qemu-io -f qcow2 "$3" < "$d/fifo" > "$d/log" 2>&1 & echo $! > "$d/qio.pid"
  i=0; until grep -q MiB "$d/log"; do sleep 0.01; i=$((i+1)); [ $i -lt 1000 ]; done
  ;;
stop)
  kill "$(cat "$d/tail.pid")" 2>/dev/null || true
  i=0; while locked "$3"; do sleep 0.01; i=$((i+1)); [ $i -lt 1000 ]; done
  ;;
esac
"#;

impl HookedVm {
    fn new(root: &Path, image: &Path, model: Vec<u8>) -> HookedVm {
        let dir = root.join("vm");
        std::fs::create_dir_all(&dir).expect("vm dir");
        std::fs::write(dir.join("vm.sh"), VM_SH).expect("vm.sh");
        let vm = HookedVm {
            dir,
            image: image.to_owned(),
            sent: 0,
            model,
        };
        run(Command::new("sh").args(vm.args("start")));
        vm
    }

    fn args(&self, what: &str) -> Vec<String> {
        vec![
            self.dir.join("vm.sh").display().to_string(),
            what.to_owned(),
            self.dir.display().to_string(),
            self.image.display().to_string(),
        ]
    }

    fn hooks(&self) -> Hooks {
        Hooks {
            pre: Some(format!("sh {}", self.args("stop").join(" "))),
            post: Some(format!("sh {}", self.args("start").join(" "))),
            timeout: Some(Duration::from_secs(30)),
        }
    }

    /// The guest writes `len` bytes of `pattern` at `offset`, and the write is done.
    fn write(&mut self, pattern: u8, offset: u64, len: u64) {
        use std::io::Write;
        let mut cmds = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("cmds"))
            .expect("cmds");
        writeln!(cmds, "write -P {pattern} {offset} {len}").expect("send");
        self.sent += 1;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            if log.matches("wrote ").count() >= self.sent {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the VM did not write: {log}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.model[offset as usize..(offset + len) as usize].fill(pattern);
    }

    /// The log counts from 0 again after each start (the hooks restart the VM).
    fn restarted(&mut self) {
        self.sent = 0;
    }
}

impl Drop for HookedVm {
    fn drop(&mut self) {
        for pid in ["tail.pid", "qio.pid"] {
            if let Ok(pid) = std::fs::read_to_string(self.dir.join(pid)) {
                let _ = Command::new("kill")
                    .arg("-9")
                    .arg(pid.trim())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// Backups of a VM whose pre-hook stops it and whose post-hook starts it again, the guest
/// writing between them: every point is the disk at its stop, the changes come from the
/// bitmaps, and the bitmaps do not pile up. Read under the hook, the parent's bitmap goes
/// before the post-hook; after clones, the VM holds its disk again when the point is
/// committed, so the parent's stays until the next capture removes it.
async fn stopped_by_its_hooks(w: World, mode: CaptureMode) {
    let mut w = w;
    let mut model = vec![0u8; 16 * M as usize];
    model[..2 * M as usize].fill(0x01);
    model[9 * M as usize..10 * M as usize].fill(0x02);
    let mut vm = HookedVm::new(&w.root, &w.image, model);
    w.spec.hooks = vm.hooks();
    w.spec.capture.mode = mode;
    vm.write(0x40, 3 * M, 64 * K);
    let mut points = Vec::new();
    let mut last_bitmap_read = None;
    for round in 0..4u64 {
        let outcome = w.backup().await;
        vm.restarted();
        let point = outcome
            .point
            .clone()
            .unwrap_or_else(|| panic!("no point: {outcome:?}"));
        let rec = record(&outcome);
        let disk = &rec.disks[0];
        if round == 0 {
            assert_eq!(disk.changes, ChangesFrom::FullScan, "{rec:?}");
        } else {
            assert_eq!(
                disk.changes,
                ChangesFrom::DirtyBitmap,
                "round {round}: {rec:?}"
            );
            last_bitmap_read = Some(disk.bytes_read);
        }
        let bitmaps = ImageInfo::read(&w.image).expect("info").bitmaps;
        let names: BTreeSet<String> = bitmaps.iter().map(|b| b.name.clone()).collect();
        match (mode, points.last()) {
            (CaptureMode::Reflink, Some((parent, _))) => {
                let parent: &RecoveryPoint = parent;
                assert_eq!(
                    names,
                    only(&[bitmap_name(&parent.id), bitmap_name(&point.id)]),
                    "round {round}"
                );
                assert!(
                    outcome
                        .warnings
                        .iter()
                        .any(|w| w.contains("the next backup removes it")),
                    "{:?}",
                    outcome.warnings
                );
            }
            _ => assert_eq!(names, only(&[bitmap_name(&point.id)]), "round {round}"),
        }
        points.push((point, vm.model.clone()));
        // The guest writes while it runs again.
        vm.write(0x41 + round as u8, (4 + round) * M + 512, 100 * K);
    }
    // Each round wrote 100 KiB from 512 bytes into a MiB: two 64 KiB blocks.
    assert_eq!(last_bitmap_read, Some(2 * BLOCK));
    drop(vm);
    for (i, (point, expected)) in points.iter().enumerate() {
        let restored = w.restored(point, &format!("r{i}")).await;
        assert!(
            restored == *expected,
            "point {i} is not the disk at its stop"
        );
    }
}

#[tokio::test]
async fn a_vm_its_hooks_stop_and_start_is_read_with_bitmaps_under_the_hook() {
    stopped_by_its_hooks(world(16 * M).await, CaptureMode::Read).await;
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs: scripts/test.sh runs it"]
async fn a_vm_its_hooks_stop_and_start_is_read_from_clones_with_bitmaps() {
    let fs = LoopFs::new(LoopKind::Xfs, 512 << 20);
    let root = fs.path().to_owned();
    let w = world_in(Box::new(fs), root, 16 * M, CaptureMode::Reflink).await;
    stopped_by_its_hooks(w, CaptureMode::Reflink).await;
}
