//! Clones and extent maps on real file systems, loop-mounted (see `testing::LoopFs`).

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use blockvault_capture::testing::{LoopFs, LoopKind};
use blockvault_capture::{ExtentFlags, FsKind, clone_file, clone_range, extent_count, extents};

#[path = "capture/changes.rs"]
mod changes;

const MIB: u64 = 1 << 20;

fn write_at(path: &Path, offset: u64, data: &[u8]) {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("open");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    f.write_all(data).expect("write");
    f.sync_all().expect("sync");
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// Where byte `offset` of a file lies on the device, by its extents.
fn physical_at(extents: &[blockvault_capture::Extent], offset: u64) -> Option<u64> {
    extents
        .iter()
        .find(|e| e.range().contains(&offset))
        .map(|e| e.physical + (offset - e.logical))
}

fn clone_keeps_the_instant(kind: LoopKind, expect: FsKind) {
    let fs = LoopFs::new(kind, 512 * MIB);
    assert_eq!(FsKind::of(fs.path()).expect("fs kind"), expect);
    let image = fs.path().join("disk.img");
    let before = pattern(8 * MIB as usize, 1);
    write_at(&image, 0, &before);
    let clone = fs.path().join("disk.clone");
    clone_file(&image, &clone).expect("clone");
    write_at(&image, 3 * MIB, &pattern(MIB as usize, 9));
    assert_eq!(std::fs::read(&clone).expect("read clone"), before);

    // The clone and the image share the place of every range but the one just written.
    let (ours, theirs) = (
        extents(&clone).expect("extents"),
        extents(&image).expect("extents"),
    );
    for offset in (0..8 * MIB).step_by(MIB as usize) {
        let same = physical_at(&ours, offset) == physical_at(&theirs, offset);
        assert_eq!(same, offset != 3 * MIB, "at {offset}: {ours:?} {theirs:?}");
    }
    assert!(ours.iter().any(|e| e.flags.contains(ExtentFlags::SHARED)));
    assert!(extent_count(&image).expect("count") >= 1);

    // A range cloned back makes the image the clone again there.
    clone_range(&clone, &image, 3 * MIB, MIB).expect("clone range");
    assert_eq!(std::fs::read(&image).expect("read image"), before);
}

#[test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
fn a_clone_on_xfs_holds_the_image_as_it_was() {
    clone_keeps_the_instant(LoopKind::Xfs, FsKind::Xfs);
}

#[test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
fn a_clone_on_btrfs_holds_the_image_as_it_was() {
    clone_keeps_the_instant(LoopKind::Btrfs, FsKind::Btrfs);
}

#[test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
fn a_nodatacow_image_on_btrfs_clones_into_a_nodatacow_file() {
    let fs = LoopFs::new(LoopKind::Btrfs, 512 * MIB);
    let image = fs.path().join("nocow.img");
    std::fs::File::create(&image).expect("create");
    // +C only takes on an empty file.
    let status = Command::new("chattr")
        .arg("+C")
        .arg(&image)
        .status()
        .expect("chattr");
    assert!(status.success());
    let data = pattern(2 * MIB as usize, 3);
    write_at(&image, 0, &data);
    let clone = fs.path().join("nocow.clone");
    clone_file(&image, &clone).expect("clone of a +C file");
    assert_eq!(std::fs::read(&clone).expect("read"), data);
}

#[test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
fn ext4_cannot_clone_and_says_so_leaving_nothing_behind() {
    let fs = LoopFs::new(LoopKind::Ext4, 256 * MIB);
    let image = fs.path().join("disk.img");
    write_at(&image, 0, &pattern(MIB as usize, 5));
    let clone = fs.path().join("disk.clone");
    let err = clone_file(&image, &clone).expect_err("ext4 has no reflinks");
    assert!(err.is_unsupported(), "{err}");
    assert!(!clone.exists(), "the failed clone's file is removed");
    assert!(!FsKind::of(fs.path()).expect("kind").may_reflink());
}

#[test]
fn a_missing_image_is_not_found() {
    let dir = tempfile::tempdir().expect("tmp");
    let err = clone_file(&dir.path().join("nope"), &dir.path().join("c")).expect_err("missing");
    assert_eq!(err.kind(), blockvault_core::ErrorKind::NotFound);
    assert!(err.to_string().contains("nope"), "{err}");
}
