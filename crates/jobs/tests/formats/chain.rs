//! qcow2 overlays on base images (the layout of VMs made from a template): read through the
//! chain, incrementals from the overlay's dirty bitmap (writes land in the overlay, the bases
//! never change), restored as standalone qcow2 files (no backing file) and as raw. A reflink
//! clone of an overlay keeps its relative backing name, which does not resolve in the
//! snapshot tier: it is read with the disk's own chain. A missing base fails the job, naming it.

use std::path::{Path, PathBuf};

use blockvault_capture::testing::{LoopFs, LoopKind};
use blockvault_core::{Capture, DiskFormat};
use blockvault_jobs::{CaptureMode, ChangesFrom, Tier};
use blockvault_qemu::ImageInfo;

use super::support::{BLOCK, World, bitmaps, guest, qemu_img, same_disk, servers_under, write};

#[derive(Clone, Copy, Debug)]
enum Layout {
    /// base.qcow2 <- disk.qcow2, named `base.qcow2` (relative, same directory).
    QcowBaseRelative,
    /// base.raw <- disk.qcow2, named by its absolute path.
    RawBaseAbsolute,
    /// base.raw <- mid.qcow2 <- disk.qcow2, each named relatively.
    TwoLevels,
}

/// The chain of `layout` in `dir`, with data in every level: the overlay and the bases.
fn make_chain(dir: &Path, layout: Layout) -> (PathBuf, Vec<PathBuf>) {
    std::fs::create_dir_all(dir).expect("vms dir");
    let p = |name: &str| dir.join(name);
    let s = |path: &Path| path.to_str().expect("utf-8").to_owned();
    let overlay = p("disk.qcow2");
    let bases = match layout {
        Layout::QcowBaseRelative => {
            qemu_img(&["create", "-q", "-f", "qcow2", &s(&p("base.qcow2")), "16M"]);
            write(
                &p("base.qcow2"),
                "qcow2",
                &["write -P 0x11 0 2M", "write -P 0x12 8M 1M"],
            );
            // Relative: qemu-img resolves it from the overlay's directory.
            let (b, o) = ("base.qcow2", s(&overlay));
            run_in(
                dir,
                &["create", "-q", "-f", "qcow2", "-b", b, "-F", "qcow2", &o],
            );
            vec![p("base.qcow2")]
        }
        Layout::RawBaseAbsolute => {
            qemu_img(&["create", "-q", "-f", "raw", &s(&p("base.raw")), "16M"]);
            write(
                &p("base.raw"),
                "raw",
                &["write -P 0x21 0 2M", "write -P 0x22 8M 1M"],
            );
            let b = s(&p("base.raw"));
            qemu_img(&[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-b",
                &b,
                "-F",
                "raw",
                &s(&overlay),
            ]);
            vec![p("base.raw")]
        }
        Layout::TwoLevels => {
            qemu_img(&["create", "-q", "-f", "raw", &s(&p("base.raw")), "16M"]);
            write(&p("base.raw"), "raw", &["write -P 0x31 0 4M"]);
            run_in(
                dir,
                &[
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-b",
                    "base.raw",
                    "-F",
                    "raw",
                    "mid.qcow2",
                ],
            );
            write(
                &p("mid.qcow2"),
                "qcow2",
                &["write -P 0x32 2M 1M", "write -P 0x33 12M 64k"],
            );
            run_in(
                dir,
                &[
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-b",
                    "mid.qcow2",
                    "-F",
                    "qcow2",
                    "disk.qcow2",
                ],
            );
            vec![p("base.raw"), p("mid.qcow2")]
        }
    };
    assert!(
        ImageInfo::read(&overlay)
            .expect("info")
            .backing_file
            .is_some(),
        "{layout:?}: not an overlay"
    );
    (overlay, bases)
}

/// `qemu-img ARGS` run in `dir` (so that relative names are relative to it).
fn run_in(dir: &Path, args: &[&str]) {
    blockvault_qemu::testing::run(
        std::process::Command::new("qemu-img")
            .current_dir(dir)
            .args(args),
    );
}

/// Full and incremental backups of the overlay of `layout` in `w`, each point restored (raw,
/// and as a standalone qcow2) and compared with what QEMU makes of the chain.
async fn round_trip(mut w: World, layout: Layout, expect: Capture) {
    let (overlay, bases) = make_chain(&w.root.join("vms"), layout);
    write(&overlay, "qcow2", &["write -P 0x41 3M 64k"]);
    w.spec.disks = vec![overlay.clone()];
    let base_bytes: Vec<Vec<u8>> = bases
        .iter()
        .map(|b| std::fs::read(b).expect("base"))
        .collect();

    let (first, rec, warnings) = w.point().await;
    assert_eq!(rec.capture, expect, "{layout:?}: {rec:?}");
    assert!(warnings.is_empty(), "{layout:?}: {warnings:?}");
    assert_eq!(first.disks[0].format, DiskFormat::Qcow2);
    assert_eq!(first.disks[0].size, 16 << 20);
    assert_eq!(servers_under(&w.root), 0, "qemu-nbd left running");
    let expected = guest(&overlay, "qcow2", &w.root.join("first.raw"));
    assert!(
        w.restored_raw(&first, "r1").await == expected,
        "{layout:?}: the full point differs from the chain as QEMU reads it"
    );

    // By default a standalone qcow2: the whole disk, no backing file.
    let out = w.root.join("r1q");
    w.restore(&first, &out, Tier::Vault, None)
        .await
        .expect("restore as qcow2");
    let restored = out.join("disk.qcow2");
    let info = ImageInfo::read(&restored).expect("info");
    assert_eq!(info.format, "qcow2");
    assert_eq!(
        info.backing_file, None,
        "{layout:?}: the restore has a backing file"
    );
    assert!(
        same_disk(&restored, "qcow2", &overlay, "qcow2"),
        "{layout:?}"
    );

    // The guest writes: into the overlay, never into a base.
    write(
        &overlay,
        "qcow2",
        &[
            "write -P 0x44 1M 64k",
            "write -P 0x45 9M 128k",
            "write -z 0 64k",
        ],
    );
    let (second, rec, warnings) = w.point().await;
    assert!(warnings.is_empty(), "{layout:?}: {warnings:?}");
    assert_eq!(
        rec.disks[0].changes,
        ChangesFrom::DirtyBitmap,
        "{layout:?}: {rec:?}"
    );
    // Four blocks marked; the zeroed one may be known zero from the block status, unread.
    let read = rec.disks[0].bytes_read;
    assert!(
        (3 * BLOCK..=4 * BLOCK).contains(&read),
        "{layout:?}: {rec:?}"
    );
    let expected2 = guest(&overlay, "qcow2", &w.root.join("second.raw"));
    assert_ne!(expected, expected2);
    assert!(
        w.restored_raw(&second, "r2").await == expected2,
        "{layout:?}: the incremental point differs"
    );
    // From the snapshot tier too (a kept clone of an overlay is not the whole disk: the
    // tier's chunks), as a standalone qcow2.
    let out = w.root.join("r2q");
    w.restore(&second, &out, Tier::Snapshot, None)
        .await
        .expect("restore from the tier");
    let restored = out.join("disk.qcow2");
    assert_eq!(ImageInfo::read(&restored).expect("info").backing_file, None);
    assert!(
        same_disk(&restored, "qcow2", &overlay, "qcow2"),
        "{layout:?}"
    );
    assert!(w.restored_raw(&first, "r3").await == expected, "{layout:?}");

    for (base, before) in bases.iter().zip(&base_bytes) {
        assert!(
            std::fs::read(base).expect("base") == *before,
            "{layout:?}: base {} changed",
            base.display()
        );
    }
    // Rolled back in place, the point (the guest's disk) would destroy the overlay.
    let refused = w.refused_in_place(&first, &w.root.join("vms")).await;
    assert!(refused.contains("qcow2"), "{refused}");
    assert_eq!(servers_under(&w.root), 0, "qemu-nbd left running");
}

#[tokio::test]
async fn an_overlay_on_a_qcow2_base_named_relatively_round_trips() {
    round_trip(
        World::temp().await,
        Layout::QcowBaseRelative,
        Capture::ReadLive,
    )
    .await;
}

#[tokio::test]
async fn an_overlay_on_a_raw_base_named_absolutely_round_trips() {
    round_trip(
        World::temp().await,
        Layout::RawBaseAbsolute,
        Capture::ReadLive,
    )
    .await;
}

#[tokio::test]
async fn a_two_level_chain_round_trips() {
    round_trip(World::temp().await, Layout::TwoLevels, Capture::ReadLive).await;
}

async fn on_xfs(layout: Layout) {
    let fs = LoopFs::new(LoopKind::Xfs, 512 << 20);
    let root = fs.path().to_owned();
    let w = World::in_root(Box::new(fs), root, CaptureMode::Reflink).await;
    round_trip(w, layout, Capture::Reflink).await;
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs: scripts/test.sh runs it"]
async fn a_cloned_overlay_named_relatively_is_read_with_the_disks_chain() {
    on_xfs(Layout::QcowBaseRelative).await;
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs: scripts/test.sh runs it"]
async fn a_cloned_two_level_chain_is_read_with_the_disks_chain() {
    on_xfs(Layout::TwoLevels).await;
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs: scripts/test.sh runs it"]
async fn a_cloned_overlay_on_an_absolute_raw_base_round_trips() {
    on_xfs(Layout::RawBaseAbsolute).await;
}

/// The overlay of `layout` with its base `gone` (an index into the bases) removed: the job
/// fails naming the missing file, makes no point, leaves no qemu-nbd and no bitmap.
async fn missing(w: World, layout: Layout, gone: usize) {
    let mut w = w;
    let (overlay, bases) = make_chain(&w.root.join("vms"), layout);
    w.spec.disks = vec![overlay.clone()];
    std::fs::remove_file(&bases[gone]).expect("remove the base");
    let outcome = w.backup().await;
    let failure = outcome
        .failure
        .as_ref()
        .map(|e| e.to_string())
        .unwrap_or_else(|| panic!("a disk without its base made a point: {outcome:?}"));
    let name = bases[gone].to_str().expect("utf-8");
    assert!(
        failure.contains("backing file") && failure.contains(name),
        "{layout:?}: {failure}"
    );
    assert!(outcome.point.is_none());
    assert_eq!(servers_under(&w.root), 0, "qemu-nbd left running");
    assert!(bitmaps(&overlay).is_empty(), "{:?}", bitmaps(&overlay));
}

#[tokio::test]
async fn a_missing_backing_file_fails_the_job_naming_it() {
    missing(World::temp().await, Layout::QcowBaseRelative, 0).await;
    missing(World::temp().await, Layout::RawBaseAbsolute, 0).await;
    // The base of the middle level: named as the middle level names it.
    missing(World::temp().await, Layout::TwoLevels, 0).await;
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs: scripts/test.sh runs it"]
async fn a_cloned_overlay_whose_base_is_missing_fails_the_job_naming_it() {
    for (layout, gone) in [(Layout::QcowBaseRelative, 0), (Layout::TwoLevels, 1)] {
        let fs = LoopFs::new(LoopKind::Xfs, 512 << 20);
        let root = fs.path().to_owned();
        let w = World::in_root(Box::new(fs), root, CaptureMode::Reflink).await;
        missing(w, layout, gone).await;
    }
}
