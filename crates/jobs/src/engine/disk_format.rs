//! How a Snapshot decides the format a disk is read in: as the user said (`--disk-format`), or
//! by the header of what is read (the disk, or its clone), checked against the format the
//! previous point recorded for the disk.
//!
//! ```text
//! said FORMAT       read as said (raw: the file's bytes, whatever its header says)
//! auto, no previous  the header: a QEMU format's magic (qcow2, vmdk, vdi, vhdx, vpc, qed)
//!                    -> through qemu-nbd, else raw
//! auto, previous     the header must say what the previous point recorded, else refused
//! either             an encrypted qcow2 is refused (blockvault has no secret to read it)
//! ```
//!
//! Why the check: a guest owns the bytes of a raw disk, and can write a qcow2 header into it,
//! with a backing file naming any host file. Read "by the header", the next backup would open
//! that host file through qemu-nbd and store it as the guest's disk. So a disk never changes
//! format silently: raw to qcow2 (or back) needs the user to say the format outright.

use std::path::{Path, PathBuf};

use blockvault_core::{DiskFormat, DiskName, RecoveryPoint};
use blockvault_source::detect_format;

use crate::{Error, Result};

/// What decides the format of one disk: what the user said, and what the previous point
/// recorded.
#[derive(Clone, Debug)]
pub(super) struct FormatCheck {
    /// `--disk-format FORMAT`; `None` for auto.
    pub(super) said: Option<DiskFormat>,
    /// The format the previous point of the VM recorded for this disk.
    pub(super) before: Option<DiskFormat>,
    /// The disk as the backup names it (for the error).
    pub(super) disk: PathBuf,
}

impl FormatCheck {
    /// The check for disk `disk`, named `name` in the points, of a backup that said `said`
    /// after `parent`.
    /// `remembered`: the format the disk was last read in, when its snapshots are gone (the
    /// tier's memo); the parent point's record wins when there is one.
    pub(super) fn new(
        said: Option<DiskFormat>,
        parent: Option<&RecoveryPoint>,
        remembered: Option<DiskFormat>,
        name: &DiskName,
        disk: &Path,
    ) -> FormatCheck {
        FormatCheck {
            said,
            before: parent
                .and_then(|p| p.disks.iter().find(|d| d.name == *name))
                .map(|d| d.format)
                .or(remembered),
            disk: disk.to_owned(),
        }
    }

    /// The format to read `image` (the disk, or its clone) in. A header that cannot be read
    /// counts as raw: the write session then says what is wrong with the file, as for any
    /// disk. Blocking (reads the header).
    ///
    /// Errors: [`Error::DiskFormatChanged`], and an encrypted qcow2 refused (before any bitmap
    /// is added to it or anything read).
    pub(super) fn decide(&self, image: &Path) -> Result<DiskFormat> {
        let format = self.by_header(image)?;
        blockvault_qemu::check_readable(image, format)?;
        Ok(format)
    }

    fn by_header(&self, image: &Path) -> Result<DiskFormat> {
        if let Some(said) = self.said {
            return Ok(said);
        }
        let header = detect_format(image).unwrap_or_default();
        match self.before {
            Some(before) if before != header => Err(Error::DiskFormatChanged {
                disk: self.disk.clone(),
                before,
                now: header,
            }),
            _ => Ok(header),
        }
    }
}

/// Why a reflink clone of `disk`'s file would not fix the instant of the guest's disk: its
/// data lives in other files, which the clone would not copy (they would be read live): a
/// qcow2 with an external data file (`data_file=`), a vmdk descriptor naming its extents.
/// `None` otherwise (a base image under an overlay is not cloned either, but bases are never
/// written while overlays use them). Blocking (reads the header).
pub(super) fn clone_obstacle(disk: &Path) -> Option<String> {
    let elsewhere = match blockvault_qemu::Qcow2Header::read(disk) {
        Ok(Some(header)) => header.external_data,
        _ => starts_with(disk, blockvault_source::VMDK_DESCRIPTOR),
    };
    elsewhere.then(|| {
        format!(
            "disk {} keeps its data in other files (an external data file, or a vmdk \
             descriptor's extents), which a clone of it would not fix",
            disk.display()
        )
    })
}

/// Whether the file at `path` starts with `magic` (unreadable: no).
fn starts_with(path: &Path, magic: &[u8]) -> bool {
    use std::io::Read;
    let mut head = vec![0u8; magic.len()];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| head == magic)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(said: Option<DiskFormat>, before: Option<DiskFormat>) -> FormatCheck {
        FormatCheck {
            said,
            before,
            disk: "/vms/disk.img".into(),
        }
    }

    #[test]
    fn the_header_decides_unless_said_and_may_not_change_silently() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = dir.path().join("raw");
        std::fs::write(&raw, [0u8; 512]).expect("write");
        let qcow = dir.path().join("qcow");
        let mut head = b"QFI\xfb".to_vec();
        head.resize(512, 0);
        std::fs::write(&qcow, head).expect("write");
        use DiskFormat::{Qcow2, Raw};
        // (said, before, image) -> format, or refused
        let cases = [
            (None, None, &raw, Some(Raw)),
            (None, None, &qcow, Some(Qcow2)),
            (None, Some(Raw), &raw, Some(Raw)),
            (None, Some(Qcow2), &qcow, Some(Qcow2)),
            (None, Some(Raw), &qcow, None),
            (None, Some(Qcow2), &raw, None),
            (Some(Raw), Some(Raw), &qcow, Some(Raw)),
            (Some(Qcow2), Some(Raw), &qcow, Some(Qcow2)),
            (Some(Raw), None, &qcow, Some(Raw)),
        ];
        for (said, before, image, expected) in cases {
            let got = check(said, before).decide(image);
            match expected {
                Some(format) => assert_eq!(got.ok(), Some(format), "{said:?} {before:?}"),
                None => {
                    let e = got.expect_err("refused");
                    assert!(matches!(e, Error::DiskFormatChanged { .. }), "{e}");
                    assert_eq!(e.kind(), blockvault_core::ErrorKind::Refused);
                    let text = e.to_string();
                    assert!(
                        text.contains("/vms/disk.img") && text.contains("--disk-format"),
                        "{text}"
                    );
                }
            }
        }
    }
}
