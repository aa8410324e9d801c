//! What a protected VM's disks will get from its backups, said at `protect`: how each disk is
//! read and where its changes will come from. For disks a running QEMU has open (`--qmp`),
//! `fleece::check_disks` asks QEMU itself; this covers disks read as files.
//!
//! Nothing in [`describe`] fails a protection: a disk that cannot be examined is described as
//! such (the disks were checked to exist and be readable before). [`check_readable`] does:
//! a disk no backup could read (an encrypted qcow2, a missing base image) is refused at
//! `protect`, not at the first scheduled backup.

use std::path::PathBuf;

use blockvault_capture::FsKind;
use blockvault_core::{DiskFormat, VmName};
use blockvault_snapshot::SnapshotTier;
use blockvault_source::detect_format;

use super::capture::{CaptureMode, clone_obstacle};

/// Refuses disks no backup could read, as they will be read (`said`, else by the header): an
/// encrypted qcow2, an image whose backing chain misses a file. Blocking.
pub(super) fn check_readable(disks: &[PathBuf], said: Option<DiskFormat>) -> crate::Result<()> {
    for disk in disks {
        let format = said.unwrap_or_else(|| detect_format(disk).unwrap_or_default());
        if format.is_raw() {
            continue;
        }
        blockvault_qemu::check_readable(disk, format)?;
        if let Ok(Some((image, backing))) = blockvault_qemu::missing_backing(disk, disk, format) {
            return Err(blockvault_qemu::Error::BackingMissing { image, backing }.into());
        }
    }
    Ok(())
}

/// One line per disk of `disks` (of `vm`): its format, whether the Snapshot will clone it, and
/// what changed-block tracking its incrementals get. `said` is `--disk-format` (`None`: by the
/// header), `mode` the protected item's `--capture`.
pub(super) fn describe(
    tier: &SnapshotTier,
    vm: &VmName,
    disks: &[PathBuf],
    said: Option<DiskFormat>,
    mode: CaptureMode,
) -> Vec<String> {
    let clones = match mode {
        CaptureMode::Read => Err("--capture read".to_owned()),
        _ => match clone_obstacle(tier, vm, disks) {
            Ok(None) => Ok(FsKind::of(&tier.dir(vm))
                .map(|kind| kind.to_string())
                .unwrap_or_else(|_| "its file system".to_owned())),
            Ok(Some(why)) => Err(why),
            Err(e) => Err(e.to_string()),
        },
    };
    disks
        .iter()
        .map(|disk| {
            let format = said.unwrap_or_else(|| detect_format(disk).unwrap_or_default());
            let capture = match &clones {
                Ok(fs) => format!("cloned at each backup (reflink on {fs}: frozen for the clones)"),
                Err(why) => format!("read in place, not cloned ({why})"),
            };
            let changes = match (format, &clones) {
                (DiskFormat::Raw, Ok(_)) => "changes from the file system (the clones' \
                                             extents; the first backup reads every allocated \
                                             block)"
                    .to_owned(),
                (DiskFormat::Raw, Err(_)) => "no changed-block tracking: every backup reads \
                                              every allocated block (put the disk and the \
                                              snapshot tier on one XFS or btrfs, or use \
                                              qcow2)"
                    .to_owned(),
                (format, _) => match blockvault_qemu::no_bitmaps(disk, format) {
                    None => "changes from QEMU dirty bitmaps (blockvault-<point>; the first \
                             backup reads every allocated block)"
                        .to_owned(),
                    Some(why) => format!("no changed-block tracking: {why}"),
                },
            };
            format!("{}: {format}, {capture}; {changes}", disk.display())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the test machine's temp file system (ext4 or tmpfs: no reflinks), a raw disk gets
    /// no changed-block tracking and says how to get it; a qcow2 disk (by its header, or said)
    /// gets dirty bitmaps; `--capture read` says why nothing is cloned.
    #[test]
    fn each_disk_says_how_it_is_read_and_where_its_changes_come_from() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tier = SnapshotTier::new(dir.path().join("tier"));
        let vm: VmName = "web01".parse().expect("vm");
        let raw = dir.path().join("root.img");
        std::fs::write(&raw, vec![1u8; 4096]).expect("raw");
        let qcow2 = dir.path().join("data.qcow2");
        let mut header = blockvault_source::QCOW2_MAGIC.to_vec();
        header.extend(3u32.to_be_bytes());
        header.resize(4096, 0);
        std::fs::write(&qcow2, &header).expect("qcow2");
        let vmdk = dir.path().join("old.vmdk");
        let mut sparse = b"KDMV".to_vec();
        sparse.resize(4096, 0);
        std::fs::write(&vmdk, sparse).expect("vmdk");
        let v2 = dir.path().join("v2.qcow2");
        header[4..8].copy_from_slice(&2u32.to_be_bytes());
        std::fs::write(&v2, &header).expect("qcow2 v2");
        let disks = [raw.clone(), qcow2.clone(), vmdk.clone(), v2.clone()];

        let lines = describe(&tier, &vm, &disks, None, CaptureMode::Auto);
        assert_eq!(lines.len(), 4);
        assert!(
            lines[0].starts_with(&format!("{}: raw", raw.display())),
            "{lines:?}"
        );
        if FsKind::of(dir.path()).is_ok_and(|k| !k.may_reflink()) {
            assert!(lines[0].contains("no changed-block tracking"), "{lines:?}");
            assert!(lines[0].contains("not cloned"), "{lines:?}");
        }
        assert!(
            lines[1].starts_with(&format!("{}: qcow2", qcow2.display())),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("changes from QEMU dirty bitmaps"),
            "{lines:?}"
        );
        assert!(
            lines[2].starts_with(&format!("{}: vmdk", vmdk.display()))
                && lines[2].contains("no changed-block tracking: vmdk images cannot hold"),
            "{lines:?}"
        );
        assert!(lines[3].contains("compat 0.10"), "{lines:?}");

        let said = describe(&tier, &vm, &disks, Some(DiskFormat::Raw), CaptureMode::Read);
        assert!(said[1].contains(": raw, "), "{said:?}");
        assert!(said[1].contains("--capture read"), "{said:?}");
        assert!(!said[1].contains("dirty bitmaps"), "{said:?}");
    }

    #[test]
    fn an_encrypted_qcow2_is_refused_at_protect() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = dir.path().join("enc.qcow2");
        let mut header = blockvault_source::QCOW2_MAGIC.to_vec();
        header.extend(3u32.to_be_bytes());
        header.resize(4096, 0);
        header[32..36].copy_from_slice(&2u32.to_be_bytes());
        std::fs::write(&image, &header).expect("qcow2");
        let e = check_readable(std::slice::from_ref(&image), None).expect_err("encrypted");
        assert!(e.to_string().contains("encrypted"), "{e}");
        assert_eq!(e.kind(), blockvault_core::ErrorKind::Refused);
        // Said raw: the file's bytes, which need no secret.
        assert!(check_readable(&[image], Some(DiskFormat::Raw)).is_ok());
    }
}
