//! The other formats QEMU reads and writes: vmdk, vdi, vhdx, vpc, qed. Each is detected by
//! its header (a fixed VHD, whose footer is at its end, by `--disk-format vpc`), read through
//! qemu-nbd, scanned in full at every backup with the reason on the job (they cannot hold
//! dirty bitmaps; no warning), restored into its own format by default and into any other on
//! request, and refused in place.

use std::path::{Path, PathBuf};

use blockvault_core::DiskFormat;
use blockvault_jobs::{ChangesFrom, Tier};
use blockvault_qemu::ImageInfo;

use super::support::{World, guest, qemu_img, same_disk, servers_under, size, write};

/// A sparse 24 MiB guest disk with a few MiB of data, converted by qemu-img into `format`
/// (with `options`) at `vms/disk.FORMAT`.
fn make_image(root: &Path, format: DiskFormat, options: &[&str]) -> PathBuf {
    let seed = root.join("seed.raw");
    let s = |p: &Path| p.to_str().expect("utf-8").to_owned();
    qemu_img(&["create", "-q", "-f", "raw", &s(&seed), "24M"]);
    write(
        &seed,
        "raw",
        &[
            "write -P 0x51 0 1M",
            "write -P 0x52 5M 2M",
            "write -P 0x53 20M 64k",
        ],
    );
    std::fs::create_dir_all(root.join("vms")).expect("vms");
    let image = root.join("vms").join(format!("disk.{format}"));
    let mut args = vec!["convert", "-q", "-f", "raw", "-O", format.key()];
    for o in options {
        args.extend(["-o", o]);
    }
    let (seed, out) = (s(&seed), s(&image));
    args.extend([seed.as_str(), out.as_str()]);
    qemu_img(&args);
    image
}

/// Two backups of the disk `image` in `format` (said with `--disk-format` when `said`),
/// each a full scan saying why, then restores in its own format, as qcow2 and as raw.
async fn round_trip(mut w: World, image: PathBuf, format: DiskFormat, said: bool) {
    let key = format.key();
    w.spec.disks = vec![image.clone()];
    if said {
        w.spec.capture.disk_format = Some(format);
    }
    let why = format!("{key} images cannot hold dirty bitmaps");
    let (first, rec, warnings) = w.point().await;
    assert!(warnings.is_empty(), "{key}: {warnings:?}");
    assert_eq!(first.disks[0].format, format);
    // The guest's size as QEMU has it (a vpc made without force_size is rounded up to a
    // disk geometry), not the file's.
    assert_eq!(
        first.disks[0].size,
        size(&image, key),
        "{key}: the guest's size"
    );
    assert_eq!(rec.disks[0].changes, ChangesFrom::FullScan);
    let reason = rec.disks[0].full_scan_reason.clone().unwrap_or_default();
    assert!(reason.contains(&why), "{key}: {rec:?}");
    let expected = guest(&image, key, &w.root.join("first.raw"));
    assert!(
        w.restored_raw(&first, "r1").await == expected,
        "{key}: full point differs"
    );

    write(
        &image,
        key,
        &["write -P 0x54 1M 64k", "write -P 0x55 12M 1M"],
    );
    let (second, rec, warnings) = w.point().await;
    assert!(
        warnings.is_empty(),
        "{key}: no warning at every backup: {warnings:?}"
    );
    assert_eq!(rec.disks[0].changes, ChangesFrom::FullScan);
    let reason = rec.disks[0].full_scan_reason.clone().unwrap_or_default();
    assert!(reason.contains(&why), "{key}: {rec:?}");
    let expected2 = guest(&image, key, &w.root.join("second.raw"));
    assert_ne!(expected, expected2);
    assert!(
        w.restored_raw(&second, "r2").await == expected2,
        "{key}: incremental differs"
    );
    assert!(
        w.restored_raw(&first, "r3").await == expected,
        "{key}: first point changed"
    );

    // By default into its own format, from either tier; qcow2 (or any) on request.
    for (dir, tier, asked) in [
        ("own", Tier::Vault, None),
        ("own-tier", Tier::Snapshot, None),
        ("as-qcow2", Tier::Vault, Some(DiskFormat::Qcow2)),
        ("as-vdi", Tier::Vault, Some(DiskFormat::Vdi)),
    ] {
        let out = w.root.join(dir);
        let outcome = w
            .restore(&second, &out, tier, asked)
            .await
            .unwrap_or_else(|e| panic!("{key} restored {dir}: {e}"));
        let want = asked.unwrap_or(format);
        assert_eq!(outcome.restored_by[0].format, want, "{key} {dir}");
        let restored = out.join(format!("disk.{key}"));
        let info = ImageInfo::read(&restored).expect("info");
        assert_eq!(info.format, want.key(), "{key} {dir}");
        assert!(same_disk(&restored, want.key(), &image, key), "{key} {dir}");
        let hidden: Vec<_> = std::fs::read_dir(&out)
            .expect("out")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.file_name())
            .collect();
        assert!(hidden.is_empty(), "{key} {dir}: left {hidden:?}");
    }
    let refused = w.refused_in_place(&first, &w.root.join("vms")).await;
    assert!(refused.contains(key), "{key}: {refused}");
    assert_eq!(servers_under(&w.root), 0, "qemu-nbd left running");
}

async fn by_header(format: DiskFormat) {
    let w = World::temp().await;
    let image = make_image(&w.root, format, &[]);
    round_trip(w, image, format, false).await;
}

#[tokio::test]
async fn a_vmdk_disk_round_trips() {
    by_header(DiskFormat::Vmdk).await;
}

#[tokio::test]
async fn a_vdi_disk_round_trips() {
    by_header(DiskFormat::Vdi).await;
}

#[tokio::test]
async fn a_vhdx_disk_round_trips() {
    by_header(DiskFormat::Vhdx).await;
}

#[tokio::test]
async fn a_dynamic_vpc_disk_round_trips() {
    by_header(DiskFormat::Vpc).await;
}

#[tokio::test]
async fn a_qed_disk_round_trips() {
    by_header(DiskFormat::Qed).await;
}

#[tokio::test]
async fn a_fixed_vpc_disk_said_with_disk_format_round_trips() {
    let w = World::temp().await;
    let image = make_image(&w.root, DiskFormat::Vpc, &["subformat=fixed,force_size=on"]);
    round_trip(w, image, DiskFormat::Vpc, true).await;
}

#[tokio::test]
async fn a_vmdk_descriptor_with_a_flat_extent_round_trips() {
    let w = World::temp().await;
    let image = make_image(&w.root, DiskFormat::Vmdk, &["subformat=monolithicFlat"]);
    assert!(w.root.join("vms/disk-flat.vmdk").exists(), "no flat extent");
    round_trip(w, image, DiskFormat::Vmdk, false).await;
}

#[tokio::test]
async fn a_vmdk_split_into_sparse_extents_round_trips() {
    let w = World::temp().await;
    let image = make_image(
        &w.root,
        DiskFormat::Vmdk,
        &["subformat=twoGbMaxExtentSparse"],
    );
    assert!(
        w.root.join("vms/disk-s001.vmdk").exists(),
        "no sparse extent"
    );
    round_trip(w, image, DiskFormat::Vmdk, false).await;
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs: scripts/test.sh runs it"]
async fn a_vmdk_descriptor_is_read_not_cloned_and_a_sparse_vmdk_is_cloned() {
    use blockvault_capture::testing::{LoopFs, LoopKind};
    use blockvault_core::Capture;
    use blockvault_jobs::CaptureMode;
    for (subformat, expect) in [
        ("monolithicFlat", Capture::ReadLive),
        ("monolithicSparse", Capture::Reflink),
    ] {
        let fs = LoopFs::new(LoopKind::Xfs, 512 << 20);
        let root = fs.path().to_owned();
        let mut w = World::in_root(Box::new(fs), root, CaptureMode::Auto).await;
        let image = make_image(
            &w.root,
            DiskFormat::Vmdk,
            &[&format!("subformat={subformat}")],
        );
        w.spec.disks = vec![image.clone()];
        let (point, rec, _) = w.point().await;
        assert_eq!(rec.capture, expect, "{subformat}: {rec:?}");
        let expected = guest(&image, "vmdk", &w.root.join("p.raw"));
        assert!(w.restored_raw(&point, "r").await == expected, "{subformat}");
        assert_eq!(servers_under(&w.root), 0, "qemu-nbd left running");
    }
}
