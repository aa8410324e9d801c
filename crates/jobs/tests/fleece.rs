//! A running VM through its QEMU monitor (`BackupSpec::qmp`), with a `qemu-storage-daemon`
//! standing in for it: the point holds exactly the disk at the transaction though the guest
//! writes right after it (in the post-hook, through a FUSE export of the disk's node), the
//! incremental reads only the blocks the parent's dirty bitmap marks, and each point restores
//! to the guest's disk at its instant. QEMU is left with no blockvault job, node or export.
//!
//! These tests need qemu-utils (qemu-img, qemu-io, qemu-storage-daemon) and /dev/fuse.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use blockvault_core::{BlockSize, Capture, RecoveryPoint, VmName};
use blockvault_jobs::{
    BackupOutcome, BackupSpec, ChangesFrom, Engine, Hooks, JobStatus, ProtectRequest, SubtaskKind,
    Tier,
};
use blockvault_qemu::testing::{GuestNbd, TestVm, run};
use blockvault_qemu::{bitmap_name, block_nodes};
use blockvault_vault::{NoProgress, PointSelector, RestoreRequest, TransferOptions, Vault};

const M: u64 = 1 << 20;
const K64: u64 = 64 << 10;

fn vm() -> VmName {
    VmName::new("vm1").expect("vm")
}

fn point(outcome: &BackupOutcome) -> RecoveryPoint {
    outcome
        .point
        .clone()
        .unwrap_or_else(|| panic!("no point: {outcome:?}"))
}

fn record(outcome: &BackupOutcome) -> blockvault_jobs::CaptureRecord {
    outcome
        .job
        .subtask(SubtaskKind::Snapshot)
        .and_then(|s| s.capture.clone())
        .unwrap_or_else(|| panic!("no capture recorded: {outcome:?}"))
}

/// `point` restored from the vault, as raw bytes (whatever format the restore wrote).
async fn restored(engine: &Engine, vault: &Vault, point: &RecoveryPoint, out: &Path) -> Vec<u8> {
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
        .restore(
            Some(vault),
            &request,
            Some(Tier::Vault),
            Arc::new(NoProgress),
        )
        .await
        .expect("restore");
    let file = out.join(point.disks[0].name.as_str());
    let raw = out.join("as-raw");
    run(Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(&file)
        .arg(&raw));
    std::fs::read(&raw).expect("the restored disk")
}

/// Writes as the guest (the disk's node exported over FUSE): `qemu-io` commands.
fn guest_write(fuse: &Path, commands: &[&str]) {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw"]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    run(cmd.arg(fuse));
}

/// The disk as the guest sees it now.
fn guest_read(fuse: &Path) -> Vec<u8> {
    std::fs::read(fuse).expect("read the guest's disk")
}

/// A post-hook that writes as the guest, right after the transaction: 64 KiB of `byte` at
/// `offset` through the FUSE export.
fn guest_writes_after_the_transaction(fuse: &Path, byte: u8, offset: u64) -> Hooks {
    Hooks {
        pre: Some("true".to_owned()),
        post: Some(format!(
            "qemu-io -f raw -c 'write -P {byte} {offset} 64k' '{}' >/dev/null",
            fuse.display()
        )),
        timeout: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_vm_is_backed_up_at_the_transaction_then_from_its_dirty_bitmap() {
    backed_up_at_the_transaction_then_from_its_dirty_bitmap("qcow2").await;
}

/// A raw disk's bitmap lives in QEMU's memory: the same incremental while QEMU runs, and one
/// full scan, saying why, after it restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_vms_raw_disk_is_backed_up_from_a_bitmap_in_qemus_memory() {
    backed_up_at_the_transaction_then_from_its_dirty_bitmap("raw").await;
}

async fn backed_up_at_the_transaction_then_from_its_dirty_bitmap(format: &str) {
    let mut qemu = TestVm::start_as(format, &[32 * M], GuestNbd::OnWrite);
    let fuse = qemu.fuse_file(0);
    guest_write(&fuse, &["write -P 0x11 0 8M", "write -P 0x22 20M 1M"]);
    let at_first = guest_read(&fuse);

    let root = tempfile::tempdir().expect("tempdir");
    let (engine, _) = Engine::open(
        root.path().join("state"),
        Some(root.path().join("snapshots")),
    )
    .await
    .expect("engine");
    let vault = Vault::init_local(root.path().join("vault"))
        .await
        .expect("vault");
    let mut spec = BackupSpec::new(vm(), vec![qemu.disk(0).to_owned()]);
    spec.block_size = Some(BlockSize::new(K64).expect("block size"));
    spec.qmp = Some(qemu.qmp_socket());
    spec.hooks = guest_writes_after_the_transaction(&fuse, 0x33, 4 * M);

    let first = engine
        .backup(Ok(&vault), &spec, Arc::new(NoProgress))
        .await
        .expect("backup");
    let p1 = point(&first);
    let rec = record(&first);
    assert_eq!(rec.capture, Capture::QemuFleecing, "{rec:?}");
    assert!(rec.freeze_us.is_some(), "the freeze window is recorded");
    assert!(
        !first
            .warnings
            .iter()
            .any(|w| w.contains("fleecing's copies")),
        "a tier with room gives no space warning: {:?}",
        first.warnings
    );
    assert_eq!(rec.disks[0].changes, ChangesFrom::FullScan);
    // The post-hook's write landed on the guest's disk, after the instant.
    assert_eq!(guest_read(&fuse)[(4 * M) as usize], 0x33);
    let out = root.path().join("restore1");
    assert!(
        restored(&engine, &vault, &p1, &out).await == at_first,
        "the first point is not the disk at the transaction"
    );
    let nodes = block_nodes(&mut qemu.qmp()).expect("nodes");
    let disk = nodes.iter().find(|n| n.name == "disk0").expect("disk0");
    let names: Vec<&str> = disk.bitmaps.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, [bitmap_name(&p1.id)], "the bitmap follows the point");

    // The guest writes 3 blocks; the post-hook's block was written after p1's instant too.
    guest_write(&fuse, &["write -P 0x44 10M 64k", "write -P 0x55 30M 128k"]);
    let at_second = guest_read(&fuse);
    spec.hooks = guest_writes_after_the_transaction(&fuse, 0x66, 12 * M);
    let second = engine
        .backup(Ok(&vault), &spec, Arc::new(NoProgress))
        .await
        .expect("backup");
    let p2 = point(&second);
    assert!(second.warnings.is_empty(), "{:?}", second.warnings);
    assert_eq!(p2.parent.as_ref(), Some(&p1.id), "{p2:?}");
    let rec = record(&second);
    assert_eq!(rec.capture, Capture::QemuFleecing);
    assert_eq!(rec.disks[0].changes, ChangesFrom::DirtyBitmap, "{rec:?}");
    assert!(
        rec.summary().starts_with("qemu-fleecing, frozen")
            && rec
                .summary()
                .contains("changes from dirty bitmaps: 256 KiB read"),
        "{}",
        rec.summary()
    );
    // 64 KiB at 4M (the first post-hook), 64 KiB at 10M, 128 KiB at 30M.
    assert_eq!(rec.disks[0].bytes_read, 4 * K64, "{rec:?}");
    let out = root.path().join("restore2");
    assert!(
        restored(&engine, &vault, &p2, &out).await == at_second,
        "the incremental point is not the disk at its transaction"
    );

    let mut qmp = qemu.qmp();
    let jobs = qmp.execute("query-block-jobs", None).expect("jobs");
    assert_eq!(jobs, serde_json::json!([]), "a fleecing job is left");
    let nodes = block_nodes(&mut qmp).expect("nodes");
    assert!(
        nodes.iter().all(|n| !n.name.starts_with("blockvault-")),
        "{nodes:?}"
    );
    let disk = nodes.iter().find(|n| n.name == "disk0").expect("disk0");
    let names: Vec<&str> = disk.bitmaps.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(
        names,
        [bitmap_name(&p2.id)],
        "the parent's bitmap is removed"
    );
    assert_eq!(disk.bitmaps[0].persistent, format == "qcow2", "{disk:?}");
    drop(qmp);

    // QEMU restarts (cleanly): a qcow2 disk keeps its bitmap, a raw one loses it.
    let now = guest_read(&fuse);
    assert_eq!(
        now[(12 * M) as usize],
        0x66,
        "the second post-hook's write landed"
    );
    qemu.restart(false);
    spec.hooks = Default::default();
    let third = engine
        .backup(Ok(&vault), &spec, Arc::new(NoProgress))
        .await
        .expect("backup");
    let rec = record(&third);
    if format == "qcow2" {
        assert_eq!(rec.disks[0].changes, ChangesFrom::DirtyBitmap, "{rec:?}");
    } else {
        assert_eq!(rec.disks[0].changes, ChangesFrom::FullScan, "{rec:?}");
        let why = rec.disks[0].full_scan_reason.as_deref().unwrap_or_default();
        assert!(why.contains("QEMU's memory"), "{why}");
    }
    let p3 = point(&third);
    let out = root.path().join("restore3");
    assert!(
        restored(&engine, &vault, &p3, &out).await == now,
        "the point after the restart is not the disk"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protect_checks_each_disk_through_the_monitor_and_its_backups_fleece() {
    let qemu = TestVm::start(&[8 * M], GuestNbd::OnWrite);
    qemu.guest_write(0, &["write -P 0x11 0 1M"]);
    let root = tempfile::tempdir().expect("tempdir");
    let (engine, _) = Engine::open(
        root.path().join("state"),
        Some(root.path().join("snapshots")),
    )
    .await
    .expect("engine");
    let vault = Vault::init_local(root.path().join("vault"))
        .await
        .expect("vault");
    let request = |disks: Vec<std::path::PathBuf>| ProtectRequest {
        vm: vm(),
        vault: root.path().join("vault").display().to_string(),
        disks,
        policy: blockvault_jobs::DEFAULT_POLICY.parse().expect("policy"),
        hooks: Hooks::default(),
        capture: Default::default(),
        disk_format: None,
        qmp: Some(qemu.qmp_socket()),
        take_over: false,
    };

    // A disk the VM does not have open: the job fails saying so, nothing is protected.
    let stray = root.path().join("stray.raw");
    std::fs::write(&stray, vec![0u8; 65536]).expect("stray disk");
    let refused = engine
        .protect(
            Ok(&vault),
            &request(vec![stray.clone()]),
            TransferOptions::default(),
            Arc::new(NoProgress),
        )
        .await
        .expect("protect");
    assert_eq!(refused.job.status, JobStatus::Failed);
    let error = refused.job.error.clone().unwrap_or_default();
    assert!(
        error.contains("no block node of this VM reads this image") && error.contains("stray"),
        "{error}"
    );
    assert!(refused.item.is_none());

    let protected = engine
        .protect(
            Ok(&vault),
            &request(vec![qemu.disk(0).to_owned()]),
            TransferOptions::default(),
            Arc::new(NoProgress),
        )
        .await
        .expect("protect");
    assert_eq!(protected.job.status, JobStatus::Completed, "{protected:?}");
    assert_eq!(protected.checks.len(), 1, "{:?}", protected.checks);
    let check = &protected.checks[0];
    assert!(
        check.contains("node disk0 (qcow2") && check.contains("dirty bitmaps"),
        "{check}"
    );
    let item = protected.item.expect("the item");
    assert_eq!(item.qmp.as_deref(), Some(qemu.qmp_socket().as_path()));

    // Its on-demand backup fleeces the running VM.
    let outcome = engine
        .backup_now(
            Ok(&vault),
            &vm(),
            engine.now() + jiff::SignedDuration::from_hours(24 * 30),
            TransferOptions::default(),
            Arc::new(NoProgress),
        )
        .await
        .expect("backup now");
    assert_eq!(record(&outcome).capture, Capture::QemuFleecing);
    let p = point(&outcome);
    let nodes = block_nodes(&mut qemu.qmp()).expect("nodes");
    let disk = nodes.iter().find(|n| n.name == "disk0").expect("disk0");
    assert_eq!(disk.bitmaps.len(), 1);
    assert_eq!(disk.bitmaps[0].name, bitmap_name(&p.id));

    // Protected again: the check now trusts the bitmap the next backup follows.
    let again = engine
        .protect(
            Ok(&vault),
            &request(vec![qemu.disk(0).to_owned()]),
            TransferOptions::default(),
            Arc::new(NoProgress),
        )
        .await
        .expect("protect");
    let check = &again.checks[0];
    assert!(
        check.contains(&format!("from its dirty bitmap {}", bitmap_name(&p.id))),
        "{check}"
    );
}

/// The fleecing's copy-before-write copies go to the snapshot tier: a tier whose file system
/// has less room than the disks is a job warning that says what a guest would meet (its
/// writes fail once the copies fill it), and the backup itself still completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
async fn a_tier_smaller_than_the_disks_is_a_warning() {
    use blockvault_capture::testing::{LoopFs, LoopKind};
    let qemu = TestVm::start(&[512 * M], GuestNbd::OnWrite);
    let tier = LoopFs::new(LoopKind::Ext4, 256 * M);
    let root = tempfile::tempdir().expect("tempdir");
    let (engine, _) = Engine::open(root.path().join("state"), Some(tier.path().join("tier")))
        .await
        .expect("engine");
    let vault = Vault::init_local(root.path().join("vault"))
        .await
        .expect("vault");
    let mut spec = BackupSpec::new(vm(), vec![qemu.disk(0).to_owned()]);
    spec.qmp = Some(qemu.qmp_socket());
    let outcome = engine
        .backup(Ok(&vault), &spec, Arc::new(NoProgress))
        .await
        .expect("backup");
    assert_eq!(outcome.job.status, JobStatus::Completed, "{outcome:?}");
    let warning = outcome
        .warnings
        .iter()
        .find(|w| w.contains("fleecing's copies"))
        .unwrap_or_else(|| panic!("no space warning: {:?}", outcome.warnings));
    assert!(warning.contains("512 MiB"), "{warning}");
    assert!(outcome.point.is_some(), "the backup completes");
}
