//! `Fleecing` against a `qemu-storage-daemon` standing in for a running VM, the guest writing
//! through NBD: the export holds exactly the disks at the transaction while the guest keeps
//! writing, two disks are fixed at one instant, the dirty extents are the blocks written
//! since the parent, a crashed QEMU's bitmaps are not trusted, and a finished or dropped
//! fleecing leaves QEMU without blockvault's jobs, nodes and exports, its bitmaps true, and no
//! scratch files (a killed process: `leftovers.rs`).

use std::ops::Range;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use blockvault_core::PointId;
use blockvault_qemu::testing::{GuestNbd, TestVm};
use blockvault_qemu::{
    BitmapHome, BitmapState, DiskCheck, Distrust, FleeceDisk, Fleecing, FleecingOptions, Qmp,
    bitmap_name, block_nodes,
};
use blockvault_source::{BlockSource, NbdOptions, NbdSource};

pub(crate) const M: u64 = 1 << 20;
pub(crate) const K64: u64 = 64 << 10;

pub(crate) fn point(s: &str) -> PointId {
    s.parse().expect("point id")
}

pub(crate) fn p1() -> PointId {
    point("20261207-170000-0001")
}

pub(crate) fn p2() -> PointId {
    point("20261207-180000-0002")
}

pub(crate) fn options(vm: &TestVm, staging: &Path) -> FleecingOptions {
    FleecingOptions {
        nbd_server: Some(vm.guest_socket()),
        ..FleecingOptions::new(staging)
    }
}

pub(crate) fn disks(vm: &TestVm, parent_size: Option<u64>) -> Vec<FleeceDisk> {
    vm.disks()
        .iter()
        .map(|path| FleeceDisk {
            path: path.clone(),
            parent_size,
        })
        .collect()
}

pub(crate) fn read_all(source: &NbdSource) -> Vec<u8> {
    let mut out = vec![0u8; source.size() as usize];
    for (i, chunk) in out.chunks_mut(4 * M as usize).enumerate() {
        let n = source
            .read_at(i as u64 * 4 * M, chunk)
            .expect("read the export");
        assert_eq!(n, chunk.len());
    }
    out
}

/// The bitmaps of node `node`.
pub(crate) fn bitmaps(qmp: &mut Qmp, node: &str) -> Vec<BitmapState> {
    let nodes = block_nodes(qmp).expect("nodes");
    let mut found = nodes
        .into_iter()
        .find(|n| n.name == node)
        .expect("the disk's node")
        .bitmaps;
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// QEMU has no blockvault job, node or export left.
pub(crate) fn assert_clean(qmp: &mut Qmp) {
    let jobs = qmp.execute("query-block-jobs", None).expect("jobs");
    assert_eq!(jobs, serde_json::json!([]), "block jobs left");
    let exports = qmp.execute("query-block-exports", None).expect("exports");
    let ours: Vec<_> = exports
        .as_array()
        .expect("a list")
        .iter()
        .filter(|e| {
            e["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("blockvault-"))
        })
        .collect();
    assert!(ours.is_empty(), "exports left: {ours:?}");
    let nodes = block_nodes(qmp).expect("nodes");
    let ours: Vec<_> = nodes
        .iter()
        .filter(|n| n.name.starts_with("blockvault-") || n.driver == "copy-before-write")
        .map(|n| &n.name)
        .collect();
    assert!(ours.is_empty(), "nodes left: {ours:?}");
}

pub(crate) fn assert_empty_dir(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .expect("the staging dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left in the staging dir: {left:?}");
}

/// `ranges` rounded out to 64 KiB and merged.
pub(crate) fn blocks(ranges: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    let mut rounded: Vec<Range<u64>> = ranges
        .iter()
        .map(|r| r.start / K64 * K64..r.end.div_ceil(K64) * K64)
        .collect();
    rounded.sort_by_key(|r| r.start);
    for r in rounded {
        match out.last_mut() {
            Some(last) if last.end >= r.start => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

#[test]
fn the_export_holds_the_disk_at_the_transaction_while_the_guest_writes() {
    let vm = TestVm::start(&[16 * M], GuestNbd::Always);
    vm.guest_write(0, &["write -P 0x11 0 4M", "write -P 0x22 8M 1M"]);
    let at_fix = vm.guest_read(0);
    let staging = tempfile::tempdir().expect("staging");
    let mut fleecing = Fleecing::start(
        vm.qmp(),
        &disks(&vm, None),
        None,
        &p1(),
        &options(&vm, staging.path()),
    )
    .expect("start");
    assert_eq!(fleecing.disks()[0].check.node.name, "disk0");
    assert_eq!(fleecing.disks()[0].check.changes, None, "no parent");
    // QEMU 10.1 added on-cbw-error to the backup job: the fleecing asks the schema, and the
    // answer must agree with the version (this QEMU's transaction then takes it, or not).
    let version = vm
        .other_qmp()
        .execute("query-version", None)
        .expect("version");
    let (major, minor) = (&version["qemu"]["major"], &version["qemu"]["minor"]);
    let since_10_1 = (major.as_u64(), minor.as_u64()) >= (Some(10), Some(1));
    assert_eq!(fleecing.guest_writes_safe(), since_10_1, "{version}");
    fleecing.fix().expect("the transaction");
    vm.guest_write(
        0,
        &[
            "write -P 0x33 0 1M",
            "write -P 0x44 12M 2M",
            "write -z 8M 512k",
            // A trim and an unmapping zero write: the old clusters must still be read.
            "discard 2M 1M",
            "write -z -u 3M 512k",
        ],
    );
    let sources = fleecing.export(&NbdOptions::default()).expect("export");
    let read = read_all(&sources[0]);
    assert!(
        read == at_fix,
        "the export is not the disk at the transaction"
    );
    // The guest's writes after the transaction did land on its disk.
    let now = vm.guest_read(0);
    assert_eq!(now[0], 0x33);
    assert_eq!(now[(12 * M) as usize], 0x44);
    assert_eq!(now[(3 * M) as usize], 0, "the zero write landed");
    // The guest keeps writing while the export is read.
    vm.guest_write(0, &["write -P 0x55 2M 2M"]);
    assert!(read_all(&sources[0]) == at_fix, "a second read differs");

    drop(sources);
    assert!(fleecing.intact().expect("query the jobs"), "the job runs");
    fleecing.finish(true).expect("finish");
    let mut qmp = vm.qmp();
    assert_clean(&mut qmp);
    assert_empty_dir(staging.path());
    let kept = bitmaps(&mut qmp, "disk0");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].name, bitmap_name(&p1()));
    assert!(kept[0].recording && kept[0].persistent, "{kept:?}");
}

#[test]
fn two_disks_are_fixed_at_one_instant() {
    let vm = TestVm::start(&[4 * M, 4 * M], GuestNbd::Always);
    // The guest writes n to disk 0, then n to disk 1, n = 1, 2, ...: at any instant disk 0
    // holds n and disk 1 holds n or n - 1.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU32::new(0));
    let writer = {
        let (stop, written, socket) = (stop.clone(), written.clone(), vm.guest_socket());
        std::thread::spawn(move || {
            for n in 1u32..250 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                for disk in 0..2 {
                    let out = Command::new("qemu-io")
                        .args(["-f", "raw", "-c", &format!("write -P {n} 0 64k")])
                        .arg(format!(
                            "nbd+unix:///disk{disk}?socket={}",
                            socket.display()
                        ))
                        .output()
                        .expect("qemu-io");
                    assert!(out.status.success(), "{out:?}");
                }
                written.store(n, Ordering::SeqCst);
            }
        })
    };
    let started = Instant::now();
    while written.load(Ordering::SeqCst) < 3 && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let staging = tempfile::tempdir().expect("staging");
    let mut fleecing = Fleecing::start(
        vm.qmp(),
        &disks(&vm, None),
        None,
        &p1(),
        &options(&vm, staging.path()),
    )
    .expect("start");
    fleecing.fix().expect("the transaction");
    let at_fix = written.load(Ordering::SeqCst);
    while written.load(Ordering::SeqCst) < at_fix + 3 && started.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("the writer");
    let last = written.load(Ordering::SeqCst);
    assert!(
        last >= at_fix + 3,
        "the guest stopped writing after the fix"
    );

    let sources = fleecing.export(&NbdOptions::default()).expect("export");
    let first = |s: &NbdSource| {
        let mut b = [0u8; 1];
        s.read_at(0, &mut b).expect("read");
        u32::from(b[0])
    };
    let (d0, d1) = (first(&sources[0]), first(&sources[1]));
    assert!(
        d0 == d1 || d0 == d1 + 1,
        "disk 0 holds {d0}, disk 1 holds {d1}: not one instant"
    );
    assert!(d0 >= at_fix && d0 <= at_fix + 1, "{d0} vs {at_fix}");
    assert!(d0 < last, "the export moved on with the guest");
    drop(sources);
    fleecing.finish(true).expect("finish");
    assert_clean(&mut vm.qmp());
}

/// A VM whose disk 0 (32 MiB) has data and a bitmap blockvault-<p1> from a committed
/// fleecing, then the guest's writes `since`.
pub(crate) fn after_first_backup(vm: &TestVm, staging: &Path, since: &[&str]) {
    vm.guest_write(0, &["write -P 0x01 0 8M"]);
    let mut first = Fleecing::start(
        vm.qmp(),
        &disks(vm, None),
        None,
        &p1(),
        &options(vm, staging),
    )
    .expect("start");
    first.fix().expect("fix");
    first.finish(true).expect("finish");
    vm.guest_write(0, since);
}

pub(crate) const SINCE_P1: &[&str] = &[
    "write -P 0x02 1M 64k",
    "write -P 0x03 5M 100k",
    "write -P 0x04 20M 1",
    "write -z 30M 128k",
];

pub(crate) fn since_p1() -> Vec<Range<u64>> {
    blocks(&[
        M..M + K64,
        5 * M..5 * M + 100 * 1024,
        20 * M..20 * M + 1,
        30 * M..30 * M + 128 * 1024,
    ])
}

#[test]
fn the_dirty_extents_are_the_blocks_written_since_the_parent() {
    let vm = TestVm::start(&[32 * M], GuestNbd::Always);
    let staging = tempfile::tempdir().expect("staging");
    after_first_backup(&vm, staging.path(), SINCE_P1);

    let mut second = Fleecing::start(
        vm.qmp(),
        &disks(&vm, Some(32 * M)),
        Some(&p1()),
        &p2(),
        &options(&vm, staging.path()),
    )
    .expect("start");
    assert_eq!(
        second.disks()[0].check.changes,
        Some(Ok(bitmap_name(&p1()))),
        "the parent's bitmap is trusted"
    );
    second.fix().expect("fix");
    // After the instant: not in the parent's bitmap, nor in the export.
    vm.guest_write(0, &["write -P 0x05 10M 64k"]);
    let sources = second.export(&NbdOptions::default()).expect("export");
    assert_eq!(sources[0].dirty_extents().expect("dirty"), since_p1());
    let mut b = [0u8; 1];
    sources[0].read_at(10 * M, &mut b).expect("read");
    assert_eq!(b[0], 0, "a write after the instant is in the export");
    drop(sources);
    second.finish(true).expect("finish");

    let mut qmp = vm.qmp();
    assert_clean(&mut qmp);
    let kept = bitmaps(&mut qmp, "disk0");
    let names: Vec<&str> = kept.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(
        names,
        [bitmap_name(&p2())],
        "the parent's bitmap is removed"
    );
    assert!(kept[0].recording);
}

/// A raw disk, or a version 2 qcow2 (QEMU refuses to store a bitmap in one), cannot hold a
/// persistent bitmap: QEMU keeps it in memory, as true while it runs; a restart loses it, and
/// the next check says it is missing.
#[test]
fn a_raw_disks_bitmap_lives_in_qemus_memory_until_it_restarts() {
    bitmap_in_memory_until_a_restart("raw");
}

#[test]
fn a_version_2_qcow2s_bitmap_lives_in_qemus_memory_until_it_restarts() {
    bitmap_in_memory_until_a_restart("qcow2 compat=0.10");
}

/// Where a disk's bitmap lives: in a qcow2 v3 image; in memory for a raw file or a qcow2 v2;
/// nowhere for a device (others than this QEMU may write it: a shared LUN, an LVM merge).
#[test]
fn only_qcow2_stores_a_bitmap_and_only_a_regular_file_gets_one_in_memory() {
    let file = tempfile::NamedTempFile::new().expect("a file");
    let check = |driver: &str, compat: Option<&str>, path: &Path| DiskCheck {
        path: path.to_owned(),
        node: blockvault_qemu::BlockNode {
            name: "disk0".to_owned(),
            driver: driver.to_owned(),
            filename: path.to_owned(),
            size: M,
            bitmaps: Vec::new(),
            compat: compat.map(str::to_owned),
        },
        changes: None,
    };
    let (f, dev) = (file.path(), Path::new("/dev/null"));
    assert_eq!(
        check("qcow2", Some("1.1"), f).bitmap_home(),
        BitmapHome::Image
    );
    assert_eq!(
        check("qcow2", Some("0.10"), f).bitmap_home(),
        BitmapHome::Memory
    );
    assert_eq!(check("raw", None, f).bitmap_home(), BitmapHome::Memory);
    assert_eq!(check("raw", None, dev).bitmap_home(), BitmapHome::None);
    assert_eq!(
        check("host_device", None, dev).bitmap_home(),
        BitmapHome::None
    );
}

fn bitmap_in_memory_until_a_restart(format: &str) {
    let mut vm = TestVm::start_as(format, &[32 * M], GuestNbd::Always);
    let staging = tempfile::tempdir().expect("staging");
    after_first_backup(&vm, staging.path(), SINCE_P1);
    let kept = bitmaps(&mut vm.qmp(), "disk0");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].name, bitmap_name(&p1()));
    assert!(kept[0].recording && !kept[0].persistent, "{kept:?}");

    let mut second = Fleecing::start(
        vm.qmp(),
        &disks(&vm, Some(32 * M)),
        Some(&p1()),
        &p2(),
        &options(&vm, staging.path()),
    )
    .expect("start");
    assert_eq!(second.disks()[0].check.bitmap_home(), BitmapHome::Memory);
    assert_eq!(
        second.disks()[0].check.changes,
        Some(Ok(bitmap_name(&p1()))),
        "the in-memory bitmap is trusted while QEMU runs"
    );
    second.fix().expect("fix");
    vm.guest_write(0, &["write -P 0x05 10M 64k"]);
    let sources = second.export(&NbdOptions::default()).expect("export");
    assert_eq!(sources[0].dirty_extents().expect("dirty"), since_p1());
    drop(sources);
    second.finish(true).expect("finish");
    let names: Vec<String> = bitmaps(&mut vm.qmp(), "disk0")
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, [bitmap_name(&p2())]);

    vm.restart(false);
    let check = DiskCheck::of(&mut vm.qmp(), &vm.disks()[0], Some((&p2(), 32 * M))).expect("check");
    assert!(
        matches!(check.changes, Some(Err(Distrust::Missing { .. }))),
        "{check:?}"
    );
}

#[test]
fn a_resized_disk_or_a_missing_bitmap_is_not_trusted() {
    let vm = TestVm::start(&[32 * M], GuestNbd::Always);
    let staging = tempfile::tempdir().expect("staging");
    after_first_backup(&vm, staging.path(), SINCE_P1);
    let resized = Fleecing::start(
        vm.qmp(),
        &disks(&vm, Some(16 * M)),
        Some(&p1()),
        &p2(),
        &options(&vm, staging.path()),
    )
    .expect("start");
    let why = resized.disks()[0].check.changes.clone();
    assert!(
        matches!(why, Some(Err(Distrust::Resized { .. }))),
        "{why:?}"
    );
    drop(resized);
    let other = point("20261207-160000-0003");
    let missing = Fleecing::start(
        vm.qmp(),
        &disks(&vm, Some(32 * M)),
        Some(&other),
        &p2(),
        &options(&vm, staging.path()),
    )
    .expect("start");
    let why = missing.disks()[0].check.changes.clone();
    assert!(
        matches!(why, Some(Err(Distrust::Missing { .. }))),
        "{why:?}"
    );
    drop(missing);
    // Neither touched the bitmaps (never fixed).
    let kept = bitmaps(&mut vm.qmp(), "disk0");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].name, bitmap_name(&p1()));
    assert_empty_dir(staging.path());
}

#[test]
fn a_fleecing_dropped_without_finish_keeps_every_write_since_the_parent() {
    let vm = TestVm::start(&[32 * M], GuestNbd::Always);
    let staging = tempfile::tempdir().expect("staging");
    after_first_backup(&vm, staging.path(), SINCE_P1);
    let mut failed = Fleecing::start(
        vm.qmp(),
        &disks(&vm, Some(32 * M)),
        Some(&p1()),
        &p2(),
        &options(&vm, staging.path()),
    )
    .expect("start");
    failed.fix().expect("fix");
    vm.guest_write(0, &["write -P 0x05 10M 64k"]);
    let sources = failed.export(&NbdOptions::default()).expect("export");
    // Dropped while its connection is still open.
    drop(failed);
    drop(sources);
    let mut qmp = vm.qmp();
    assert_clean(&mut qmp);
    assert_empty_dir(staging.path());
    let kept = bitmaps(&mut qmp, "disk0");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].name, bitmap_name(&p1()));
    assert!(kept[0].recording, "the parent's bitmap records again");
    // A monitor serves one client at a time.
    drop(qmp);

    // The next backup from p1 sees the writes before and after the failed one's instant.
    let mut next = Fleecing::start(
        vm.qmp(),
        &disks(&vm, Some(32 * M)),
        Some(&p1()),
        &p2(),
        &options(&vm, staging.path()),
    )
    .expect("start");
    next.fix().expect("fix");
    let sources = next.export(&NbdOptions::default()).expect("export");
    let mut expected = since_p1();
    expected.push(10 * M..10 * M + K64);
    assert_eq!(
        sources[0].dirty_extents().expect("dirty"),
        blocks(&expected)
    );
    drop(sources);
    next.finish(false).expect("finish");
}

#[test]
fn a_job_cancelled_by_another_client_is_not_intact() {
    let vm = TestVm::start(&[8 * M], GuestNbd::Always);
    let staging = tempfile::tempdir().expect("staging");
    let mut fleecing = Fleecing::start(
        vm.qmp(),
        &disks(&vm, None),
        None,
        &p1(),
        &options(&vm, staging.path()),
    )
    .expect("start");
    fleecing.fix().expect("fix");
    assert!(fleecing.intact().expect("jobs"), "just fixed");
    // Another client, on the VM's other monitor (libvirt's, say).
    vm.other_qmp()
        .execute(
            "block-job-cancel",
            Some(serde_json::json!({"device": "blockvault-fleece-0", "force": true})),
        )
        .expect("cancel");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !fleecing.intact().expect("jobs"),
        "a cancelled job is not intact"
    );
    fleecing.finish(false).expect("finish");
    assert_clean(&mut vm.qmp());
    assert_empty_dir(staging.path());
}

#[test]
fn after_a_qemu_crash_the_bitmap_is_not_trusted_and_the_next_commit_removes_it() {
    let mut vm = TestVm::start(&[32 * M], GuestNbd::Always);
    let staging = tempfile::tempdir().expect("staging");
    after_first_backup(&vm, staging.path(), SINCE_P1);
    // A bitmap added since QEMU started is stored in the image only when QEMU closes it: a
    // crash loses it.
    vm.restart(true);
    let lost = DiskCheck::of(&mut vm.qmp(), vm.disk(0), Some((&p1(), 32 * M))).expect("check");
    assert!(
        matches!(lost.changes, Some(Err(Distrust::Missing { .. }))),
        "{lost:?}"
    );
    // One stored by a clean stop comes back inconsistent after a crash.
    after_first_backup(&vm, staging.path(), SINCE_P1);
    vm.restart(false);
    vm.guest_write(0, &["write -P 0x07 3M 64k"]);
    vm.restart(true);
    let mut next = Fleecing::start(
        vm.qmp(),
        &disks(&vm, Some(32 * M)),
        Some(&p1()),
        &p2(),
        &options(&vm, staging.path()),
    )
    .expect("start");
    let why = next.disks()[0].check.changes.clone();
    assert!(
        matches!(why, Some(Err(Distrust::Inconsistent { .. }))),
        "{why:?}"
    );
    next.fix().expect("fix");
    let sources = next.export(&NbdOptions::default()).expect("export");
    // No bitmap is negotiated: the disk is read in full.
    assert!(sources[0].dirty_extents().is_err());
    drop(sources);
    next.finish(true).expect("finish");
    let mut qmp = vm.qmp();
    assert_clean(&mut qmp);
    let kept = bitmaps(&mut qmp, "disk0");
    let names: Vec<&str> = kept.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, [bitmap_name(&p2())], "{kept:?}");
    assert!(kept[0].recording && !kept[0].inconsistent);
}
