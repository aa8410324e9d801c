//! qcow2 as users have it: compat 0.10 (no persistent bitmaps: a full scan at every backup,
//! the reason said once, no warning), compressed clusters, 4 KiB and 2 MiB clusters, extended
//! L2 entries, an external data file (restored as a standalone image), and an encrypted image
//! (refused: blockvault has no secret to read it; nothing written).

use std::path::{Path, PathBuf};
use std::process::Command;

use blockvault_core::DiskFormat;
use blockvault_jobs::{ChangesFrom, Tier};
use blockvault_qemu::{ImageInfo, Qcow2Header};

use super::support::{World, bitmaps, guest, qemu_img, same_disk, servers_under, write};

/// `vms/disk.qcow2` of 24 MiB made with qemu-img `create -o OPTIONS`, with some data.
fn created(root: &Path, options: &str) -> PathBuf {
    created_sized(root, options, "24M")
}

/// [`created`] of `size` (in qemu-img's words).
fn created_sized(root: &Path, options: &str, size: &str) -> PathBuf {
    let dir = root.join("vms");
    std::fs::create_dir_all(&dir).expect("vms");
    blockvault_qemu::testing::run(Command::new("qemu-img").current_dir(&dir).args([
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        options,
        "disk.qcow2",
        size,
    ]));
    let image = dir.join("disk.qcow2");
    write(
        &image,
        "qcow2",
        &[
            "write -P 0x61 0 1M",
            "write -P 0x62 7M 2M",
            "write -P 0x63 20M 4k",
        ],
    );
    image
}

/// Full and incremental backups of `image`, restored as qcow2 (standalone) and raw. `bitmaps`:
/// whether the incremental reads from the dirty bitmap; else `why` is the full scan's reason.
async fn round_trip(mut w: World, image: PathBuf, what: &str, why: Option<&str>) {
    w.spec.disks = vec![image.clone()];
    let (first, _, warnings) = w.point().await;
    assert!(warnings.is_empty(), "{what}: {warnings:?}");
    assert_eq!(first.disks[0].format, DiskFormat::Qcow2);
    let expected = guest(&image, "qcow2", &w.root.join("first.raw"));
    assert!(
        w.restored_raw(&first, "r1").await == expected,
        "{what}: full point differs"
    );

    write(
        &image,
        "qcow2",
        &[
            "write -P 0x64 1M 64k",
            "write -P 0x65 12M 256k",
            "write -P 0x66 23M 8k",
        ],
    );
    let (second, rec, warnings) = w.point().await;
    assert!(warnings.is_empty(), "{what}: {warnings:?}");
    match why {
        None => assert_eq!(
            rec.disks[0].changes,
            ChangesFrom::DirtyBitmap,
            "{what}: {rec:?}"
        ),
        Some(why) => {
            assert_eq!(
                rec.disks[0].changes,
                ChangesFrom::FullScan,
                "{what}: {rec:?}"
            );
            let reason = rec.disks[0].full_scan_reason.clone().unwrap_or_default();
            assert!(reason.contains(why), "{what}: {rec:?}");
            assert!(bitmaps(&image).is_empty(), "{what}: {:?}", bitmaps(&image));
        }
    }
    let expected2 = guest(&image, "qcow2", &w.root.join("second.raw"));
    assert_ne!(expected, expected2);
    assert!(
        w.restored_raw(&second, "r2").await == expected2,
        "{what}: incremental differs"
    );
    let out = w.root.join("r2q");
    w.restore(&second, &out, Tier::Vault, None)
        .await
        .expect("restore qcow2");
    let restored = out.join("disk.qcow2");
    let header = Qcow2Header::read(&restored).expect("read").expect("qcow2");
    assert!(header.self_contained(), "{what}: {header:?}");
    assert!(same_disk(&restored, "qcow2", &image, "qcow2"), "{what}");
    assert_eq!(servers_under(&w.root), 0, "qemu-nbd left running");
}

#[tokio::test]
async fn a_compat_0_10_qcow2_is_scanned_in_full_saying_why_without_warnings() {
    let w = World::temp().await;
    let image = created(&w.root, "compat=0.10");
    assert_eq!(
        Qcow2Header::read(&image)
            .expect("read")
            .expect("qcow2")
            .version,
        2
    );
    round_trip(w, image, "compat=0.10", Some("compat 0.10")).await;
}

#[tokio::test]
async fn a_compressed_qcow2_round_trips() {
    let w = World::temp().await;
    let seed = w.root.join("seed.qcow2");
    let s = |p: &Path| p.to_str().expect("utf-8").to_owned();
    qemu_img(&["create", "-q", "-f", "qcow2", &s(&seed), "24M"]);
    write(
        &seed,
        "qcow2",
        &["write -P 0x61 0 1M", "write -P 0x62 7M 2M"],
    );
    std::fs::create_dir_all(w.root.join("vms")).expect("vms");
    let image = w.root.join("vms/disk.qcow2");
    qemu_img(&[
        "convert",
        "-q",
        "-c",
        "-f",
        "qcow2",
        "-O",
        "qcow2",
        &s(&seed),
        &s(&image),
    ]);
    let check = Command::new("qemu-img")
        .args(["check", "--output=json"])
        .arg(&image)
        .output()
        .expect("qemu-img check");
    let check = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.contains("\"compressed-clusters\"") && !check.contains("\"compressed-clusters\": 0"),
        "not compressed: {check}"
    );
    round_trip(w, image, "compressed", None).await;
}

#[tokio::test]
async fn a_zstd_compressed_qcow2_round_trips() {
    let w = World::temp().await;
    let seed = w.root.join("seed.raw");
    let s = |p: &Path| p.to_str().expect("utf-8").to_owned();
    qemu_img(&["create", "-q", "-f", "raw", &s(&seed), "24M"]);
    write(&seed, "raw", &["write -P 0x61 0 1M", "write -P 0x62 7M 2M"]);
    std::fs::create_dir_all(w.root.join("vms")).expect("vms");
    let image = w.root.join("vms/disk.qcow2");
    qemu_img(&[
        "convert",
        "-q",
        "-c",
        "-f",
        "raw",
        "-O",
        "qcow2",
        "-o",
        "compression_type=zstd",
        &s(&seed),
        &s(&image),
    ]);
    round_trip(w, image, "zstd", None).await;
}

#[tokio::test]
async fn a_qcow2_whose_size_is_not_a_whole_number_of_blocks_round_trips() {
    let w = World::temp().await;
    // 24 MiB and three sectors: the last block is short.
    let image = created_sized(&w.root, "cluster_size=64k", "25167360");
    write(&image, "qcow2", &["write -P 0x67 25166336 1024"]);
    let size = ImageInfo::read(&image).expect("info").virtual_size;
    assert_eq!(size, 25167360);
    round_trip(w, image, "odd size", None).await;
}

#[tokio::test]
async fn a_fully_preallocated_qcow2_round_trips() {
    let w = World::temp().await;
    let image = created(&w.root, "preallocation=full");
    round_trip(w, image, "preallocation=full", None).await;
}

#[tokio::test]
async fn a_qcow2_with_4k_clusters_round_trips() {
    let w = World::temp().await;
    let image = created(&w.root, "cluster_size=4k");
    assert_eq!(
        ImageInfo::read(&image).expect("info").cluster_size,
        Some(4096)
    );
    round_trip(w, image, "4k clusters", None).await;
}

#[tokio::test]
async fn a_qcow2_with_2m_clusters_round_trips() {
    let w = World::temp().await;
    let image = created(&w.root, "cluster_size=2M");
    assert_eq!(
        ImageInfo::read(&image).expect("info").cluster_size,
        Some(2 << 20)
    );
    round_trip(w, image, "2M clusters", None).await;
}

#[tokio::test]
async fn a_qcow2_with_extended_l2_entries_round_trips() {
    let w = World::temp().await;
    let image = created(&w.root, "extended_l2=on");
    round_trip(w, image, "extended_l2", None).await;
}

#[tokio::test]
async fn a_qcow2_with_an_external_data_file_restores_standalone() {
    let w = World::temp().await;
    // Absolute: QEMU opens a relative data file name from its working directory, not the
    // image's.
    let data = w.root.join("vms/disk.data");
    let image = created(&w.root, &format!("data_file={}", data.display()));
    assert!(
        Qcow2Header::read(&image)
            .expect("read")
            .expect("qcow2")
            .external_data
    );
    assert!(w.root.join("vms/disk.data").exists());
    round_trip(w, image, "data_file", None).await;
}

#[tokio::test]
async fn an_encrypted_qcow2_is_refused_and_nothing_is_written() {
    let mut w = World::temp().await;
    std::fs::create_dir_all(w.root.join("vms")).expect("vms");
    let image = w.root.join("vms/disk.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "--object",
        "secret,id=sec0,data=hunter2",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=sec0",
        image.to_str().expect("utf-8"),
        "16M",
    ]);
    let before = std::fs::read(&image).expect("image");
    w.spec.disks = vec![image.clone()];
    for said in [None, Some(DiskFormat::Qcow2)] {
        w.spec.capture.disk_format = said;
        let outcome = w.backup().await;
        let failure = outcome
            .failure
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_else(|| panic!("an encrypted qcow2 made a point: {outcome:?}"));
        assert!(
            failure.contains("encrypted") && failure.contains("not supported"),
            "{failure}"
        );
        assert!(failure.contains("disk.qcow2"), "{failure}");
        assert!(outcome.point.is_none());
        assert!(
            std::fs::read(&image).expect("image") == before,
            "the image was written"
        );
        assert_eq!(servers_under(&w.root), 0, "qemu-nbd left running");
    }
    // The vault never heard of the VM: nothing was written to it.
    match w.vault.points(&super::support::vm()).await {
        Ok(listing) => assert!(listing.points.is_empty(), "{:?}", listing.points),
        Err(e) => assert!(e.to_string().contains("vm1"), "{e}"),
    }
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs: scripts/test.sh runs it"]
async fn a_qcow2_with_an_external_data_file_is_read_not_cloned() {
    use blockvault_capture::testing::{LoopFs, LoopKind};
    use blockvault_core::Capture;
    use blockvault_jobs::CaptureMode;
    let fs = LoopFs::new(LoopKind::Xfs, 512 << 20);
    let root = fs.path().to_owned();
    let mut w = World::in_root(Box::new(fs), root, CaptureMode::Auto).await;
    let data = w.root.join("vms/disk.data");
    let image = created(&w.root, &format!("data_file={}", data.display()));
    w.spec.disks = vec![image.clone()];
    // A clone would copy the metadata only, the data would be read live: read instead.
    let (point, rec, _) = w.point().await;
    // On XFS, with reflinks: read all the same.
    assert_eq!(rec.capture, Capture::ReadLive, "{rec:?}");
    let expected = guest(&image, "qcow2", &w.root.join("p.raw"));
    assert!(w.restored_raw(&point, "r").await == expected);
    // Clones demanded: refused before anything is read.
    w.spec.capture.mode = CaptureMode::Reflink;
    let outcome = w.backup().await;
    let failure = outcome.failure.map(|e| e.to_string()).unwrap_or_default();
    assert!(failure.contains("external data file"), "{failure}");
    assert!(outcome.point.is_none());
}
