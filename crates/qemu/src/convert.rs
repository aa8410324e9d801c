//! A restored disk written in a QEMU format: `qemu-img convert` of the sparse raw file a
//! restore writes, and what a kept qcow2 clone must be to stand for a point's disk as it is.
//!
//! ```text
//! convert_to(raw, out, fmt)   qemu-img convert -q -f raw -O FMT RAW OUT: holes stay
//!                             unallocated and zero clusters are not written (qemu-img's
//!                             default -S 4k); vpc with force_size=on (else qemu-img rounds
//!                             the size to a CHS geometry); OUT is removed again on failure
//! Qcow2Header::read(path)     the header's version, virtual size, backing file, external
//!                             data file and encryption: a clone is the guest's whole disk
//!                             only without backing file and external data file
//! ```
//!
//! The caller chooses the names: a restore converts into a temporary name and renames it into
//! place, so nothing half-written ever has the final name.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use blockvault_core::DiskFormat;

use crate::{Error, Result};

/// The qcow2 magic, `QFI\xfb`.
const MAGIC: [u8; 4] = *b"QFI\xfb";

/// The incompatible-feature bit of a qcow2 v3 image whose data lives in another file.
const EXTERNAL_DATA_FILE: u64 = 1 << 2;

/// The qcow2 header's `crypt_method`: 0 none, 1 the old AES, 2 LUKS.
const NOT_ENCRYPTED: u32 = 0;

/// Converts the raw image `raw` into a new qcow2 image `out` (see [`convert_to`]).
pub fn convert_to_qcow2(raw: &Path, out: &Path) -> Result<()> {
    convert_to(raw, out, DiskFormat::Qcow2)
}

/// Converts the raw image `raw` into a new standalone image `out` in `format`, sparse: holes
/// in `raw` stay unallocated and zero clusters are not written, and the guest's size is kept
/// exactly. `out` is synced before this returns. (`format` raw copies the file, sparse.)
///
/// Errors: [`Error::Missing`] when `qemu-img` is not installed, [`Error::QemuImg`] with
/// qemu-img's own words when it fails (then `out` is removed: nothing half-written is left).
pub fn convert_to(raw: &Path, out: &Path, format: DiskFormat) -> Result<()> {
    if !raw.exists() {
        return Err(Error::NotFound {
            path: raw.to_owned(),
        });
    }
    let mut command = Command::new("qemu-img");
    command.args(["convert", "-q", "-f", "raw", "-O", format.key()]);
    if format == DiskFormat::Vpc {
        // The size as it is, not rounded up to a cylinder/head/sector geometry.
        command.args(["-o", "force_size=on"]);
    }
    let output = command
        .arg(raw)
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Missing { tool: "qemu-img" },
            _ => Error::QemuImg {
                what: format!("convert {} to {format}", raw.display()),
                reason: format!("cannot start qemu-img: {e}"),
            },
        })?;
    if !output.status.success() {
        let _ = std::fs::remove_file(out);
        let said = String::from_utf8_lossy(&output.stderr);
        let said = said.trim();
        return Err(Error::QemuImg {
            what: format!("convert {} to {format} {}", raw.display(), out.display()),
            reason: if said.is_empty() {
                format!("qemu-img exited ({})", output.status)
            } else {
                said.to_owned()
            },
        });
    }
    let synced = std::fs::File::open(out).and_then(|f| f.sync_all());
    if let Err(e) = synced {
        let _ = std::fs::remove_file(out);
        return Err(Error::io(out, e));
    }
    Ok(())
}

/// What a qcow2 image's header says of where the guest's disk lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Qcow2Header {
    /// 2 (compat 0.10: no dirty bitmaps, no external data file) or 3 (compat 1.1).
    pub version: u32,
    /// The guest's disk size.
    pub virtual_size: u64,
    /// The image names a backing file: part of the guest's disk is in another file.
    pub has_backing_file: bool,
    /// The image keeps its data in an external data file.
    pub external_data: bool,
    /// The image is encrypted (AES or LUKS): reading it needs a secret.
    pub encrypted: bool,
}

impl Qcow2Header {
    /// The header of the qcow2 image at `path`; `None` when the file is not qcow2 (no magic,
    /// or too short).
    pub fn read(path: &Path) -> Result<Option<Qcow2Header>> {
        let mut head = [0u8; 104];
        let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                path: path.to_owned(),
            },
            _ => Error::io(path, e),
        })?;
        let mut got = 0;
        while got < head.len() {
            match file.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        Ok(parse(&head[..got]))
    }

    /// Whether the image can keep persistent dirty bitmaps (version 3 and later).
    pub fn holds_bitmaps(&self) -> bool {
        self.version >= 3
    }

    /// Whether the image holds the guest's whole disk by itself.
    pub fn self_contained(&self) -> bool {
        !self.has_backing_file && !self.external_data
    }
}

fn be64(bytes: &[u8], at: usize) -> Option<u64> {
    let field: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(field))
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let field: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(field))
}

/// The header fields (big-endian): magic 0, version 4, backing file offset 8, size 24,
/// crypt method 32, and from version 3 the incompatible features at 72.
fn parse(head: &[u8]) -> Option<Qcow2Header> {
    if head.get(..4)? != MAGIC {
        return None;
    }
    let version = be32(head, 4)?;
    let incompatible = if version >= 3 { be64(head, 72)? } else { 0 };
    Some(Qcow2Header {
        version,
        virtual_size: be64(head, 24)?,
        has_backing_file: be64(head, 8)? != 0,
        external_data: incompatible & EXTERNAL_DATA_FILE != 0,
        encrypted: be32(head, 32)? != NOT_ENCRYPTED,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u32, backing: u64, size: u64, incompatible: u64) -> Vec<u8> {
        let mut head = vec![0u8; 104];
        head[..4].copy_from_slice(&MAGIC);
        head[4..8].copy_from_slice(&version.to_be_bytes());
        head[8..16].copy_from_slice(&backing.to_be_bytes());
        head[24..32].copy_from_slice(&size.to_be_bytes());
        head[72..80].copy_from_slice(&incompatible.to_be_bytes());
        head
    }

    #[test]
    fn a_header_says_size_backing_and_external_data() {
        let plain = parse(&header(3, 0, 16 << 20, 0)).expect("qcow2");
        assert_eq!(plain.virtual_size, 16 << 20);
        assert!(plain.self_contained());
        let backed = parse(&header(3, 1024, 1 << 30, 0)).expect("qcow2");
        assert!(backed.has_backing_file && !backed.self_contained());
        let external = parse(&header(3, 0, 1 << 30, EXTERNAL_DATA_FILE | 1)).expect("qcow2");
        assert!(external.external_data && !external.self_contained());
        // Version 2 has no feature fields: whatever follows is not read as them.
        let v2 = parse(&header(2, 0, 4096, EXTERNAL_DATA_FILE)).expect("qcow2");
        assert!(v2.self_contained() && !v2.holds_bitmaps() && plain.holds_bitmaps());
        assert!(!plain.encrypted);
        let mut luks = header(3, 0, 4096, 0);
        luks[32..36].copy_from_slice(&2u32.to_be_bytes());
        assert!(parse(&luks).expect("qcow2").encrypted);
    }

    #[test]
    fn not_qcow2_or_too_short_is_none() {
        assert_eq!(parse(b"\0\0\0\0raw bytes"), None);
        assert_eq!(parse(&header(3, 0, 1, 0)[..20]), None);
        assert_eq!(parse(&[]), None);
    }
}
