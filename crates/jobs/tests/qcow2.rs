//! qcow2 disks through the engine: a disk whose header says qcow2 is read through a `qemu-nbd`
//! the Snapshot starts for it (the guest's view, not the file's bytes), and its points restore
//! (asked for raw) to exactly what `qemu-img convert -O raw` makes of the image, full and incremental.
//! No `qemu-nbd` is left running after a backup.
//!
//! These tests need `qemu-nbd`, `qemu-img` and `qemu-io`; without them they fail, saying so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use blockvault_capture::testing::{LoopFs, LoopKind};
use blockvault_core::{BlockSize, Capture, RecoveryPoint, VmName};
use blockvault_jobs::{BackupOutcome, BackupSpec, CaptureMode, Engine, SubtaskKind, Tier};
use blockvault_qemu::testing::{as_raw, qemu_io, require, run};
use blockvault_vault::{NoProgress, PointSelector, RestoreRequest, TransferOptions, Vault};

/// The qemu-nbd processes serving an image under `root` (the disk, or its clone in the tier).
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

fn vm() -> VmName {
    VmName::new("vm1").expect("vm")
}

fn point(outcome: &BackupOutcome) -> RecoveryPoint {
    outcome
        .point
        .clone()
        .unwrap_or_else(|| panic!("no point: {outcome:?}"))
}

fn capture(outcome: &BackupOutcome) -> Capture {
    outcome
        .job
        .subtask(SubtaskKind::Snapshot)
        .and_then(|s| s.capture.clone())
        .unwrap_or_else(|| panic!("no capture recorded: {outcome:?}"))
        .capture
}

async fn restored(engine: &Engine, vault: &Vault, point: &RecoveryPoint, out: &Path) -> Vec<u8> {
    restored_from(engine, vault, point, out, Tier::Vault).await
}

async fn restored_from(
    engine: &Engine,
    vault: &Vault,
    point: &RecoveryPoint,
    out: &Path,
    tier: Tier,
) -> Vec<u8> {
    let request = RestoreRequest {
        vm: vm(),
        point: PointSelector::Id(point.id.to_string()),
        target: out.to_owned(),
        overwrite: false,
        in_place: false,
        known_content: Default::default(),
        options: TransferOptions::default(),
    };
    engine
        .restore_as(
            Some(vault),
            &request,
            Some(tier),
            Some(blockvault_core::DiskFormat::Raw),
            Arc::new(NoProgress),
        )
        .await
        .expect("restore");
    std::fs::read(out.join(point.disks[0].name.as_str())).expect("restored disk")
}

/// Full and incremental backups of a qcow2 disk in `root`, captured as `mode` says (and
/// expected to be `expect`), each restored and compared with `qemu-img convert`.
async fn round_trip(root: &Path, mode: CaptureMode, expect: Capture) {
    for tool in ["qemu-img", "qemu-io", "qemu-nbd"] {
        require(tool);
    }
    let (engine, _) = Engine::open(root.join("state"), Some(root.join("snapshots")))
        .await
        .expect("engine");
    let vault = Vault::init_local(root.join("vault")).await.expect("vault");
    let image: PathBuf = root.join("disk.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&image)
        .arg("16M"));
    qemu_io(&image, &["write -P 0x55 0 1M", "write -P 0x33 5M 64k"]);
    let mut spec = BackupSpec::new(vm(), vec![image.clone()]);
    spec.block_size = Some(BlockSize::new(64 << 10).expect("bs"));
    spec.capture.mode = mode;

    let first = engine
        .backup(Ok(&vault), &spec, Arc::new(NoProgress))
        .await
        .expect("backup job");
    assert_eq!(capture(&first), expect, "{first:?}");
    let first_point = point(&first);
    assert_eq!(first_point.disks[0].name.as_str(), "disk.qcow2");
    assert_eq!(
        first_point.disks[0].size,
        16 << 20,
        "the guest's size, not the file's"
    );
    assert_eq!(
        servers_under(root),
        0,
        "qemu-nbd left running after the backup"
    );
    let expected = as_raw(&image, &root.join("first.raw"));
    assert!(
        restored(&engine, &vault, &first_point, &root.join("r1")).await == expected,
        "the full point differs from qemu-img convert"
    );

    qemu_io(
        &image,
        &[
            "write -P 0x77 512k 64k",
            "write -P 0x11 12M 128k",
            "write -z 5M 64k",
        ],
    );
    let second = engine
        .backup(Ok(&vault), &spec, Arc::new(NoProgress))
        .await
        .expect("incremental job");
    let second_point = point(&second);
    assert_eq!(second_point.parent.as_ref(), Some(&first_point.id));
    for p in [&first_point, &second_point] {
        assert_eq!(
            p.disks[0].format,
            blockvault_core::DiskFormat::Qcow2,
            "the point records the disk's format"
        );
    }
    assert_eq!(
        servers_under(root),
        0,
        "qemu-nbd left running after the backup"
    );
    // The changes since the first point come from its dirty bitmap (cloned or not: the
    // clone's changed file extents are not the guest's).
    let record = second
        .job
        .subtask(SubtaskKind::Snapshot)
        .and_then(|s| s.capture.clone())
        .expect("capture");
    assert_eq!(
        record.disks[0].changes,
        blockvault_jobs::ChangesFrom::DirtyBitmap,
        "{record:?}"
    );
    let expected2 = as_raw(&image, &root.join("second.raw"));
    assert_ne!(expected, expected2);
    assert!(
        restored(&engine, &vault, &second_point, &root.join("r2")).await == expected2,
        "the incremental point differs from qemu-img convert"
    );
    // The snapshot tier's copy restores raw as well (not the kept qcow2 clone's bytes).
    let from_tier = restored_from(
        &engine,
        &vault,
        &second_point,
        &root.join("r-tier"),
        Tier::Snapshot,
    )
    .await;
    assert!(from_tier == expected2, "the snapshot tier's point differs");
    // The first point still holds the first state.
    assert!(restored(&engine, &vault, &first_point, &root.join("r3")).await == expected);

    // Rolled back in place onto the qcow2 file, a point (the guest's disk) would destroy the
    // image: refused before anything is written.
    let before = std::fs::read(&image).expect("image");
    let request = RestoreRequest {
        vm: vm(),
        point: PointSelector::Id(first_point.id.to_string()),
        target: root.to_owned(),
        overwrite: false,
        in_place: true,
        known_content: Default::default(),
        options: TransferOptions::default(),
    };
    let refused = engine
        .restore(Some(&vault), &request, None, Arc::new(NoProgress))
        .await
        .expect_err("in place onto a qcow2 image");
    assert!(refused.to_string().contains("qcow2"), "{refused}");
    assert!(
        std::fs::read(&image).expect("image") == before,
        "the image was written"
    );
}

#[tokio::test]
async fn a_qcow2_disk_is_read_through_qemu_nbd_and_restores_as_qemu_img_converts_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    round_trip(dir.path(), CaptureMode::Read, Capture::ReadLive).await;
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
async fn a_cloned_qcow2_disk_is_read_through_qemu_nbd() {
    let fs = LoopFs::new(LoopKind::Xfs, 512 << 20);
    round_trip(fs.path(), CaptureMode::Reflink, Capture::Reflink).await;
}

#[tokio::test]
async fn a_corrupt_qcow2_disk_fails_the_job_clearly_and_leaves_no_qemu_nbd() {
    for tool in ["qemu-img", "qemu-nbd"] {
        require(tool);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let (engine, _) = Engine::open(root.join("state"), Some(root.join("snapshots")))
        .await
        .expect("engine");
    let vault = Vault::init_local(root.join("vault")).await.expect("vault");
    let image = root.join("disk.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&image)
        .arg("16M"));
    // The header cut short: still qcow2 by its magic, refused by qemu-nbd.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .expect("open")
        .set_len(32)
        .expect("truncate");
    let mut spec = BackupSpec::new(vm(), vec![image.clone()]);
    spec.capture.mode = CaptureMode::Read;
    let outcome = engine
        .backup(Ok(&vault), &spec, Arc::new(NoProgress))
        .await
        .expect("backup job");
    let failure = outcome
        .failure
        .as_ref()
        .map(|e| e.to_string())
        .unwrap_or_else(|| panic!("a corrupt qcow2 made a point: {outcome:?}"));
    assert!(
        failure.contains("qemu-nbd could not serve") && failure.contains("disk.qcow2"),
        "{failure}"
    );
    assert!(outcome.point.is_none());
    assert_eq!(servers_under(root), 0, "qemu-nbd left running");
    assert_eq!(std::fs::metadata(&image).expect("image").len(), 32);
}
