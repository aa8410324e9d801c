//! [`detect_format`]: what a disk image's header says it is.
//!
//! ```text
//! qcow2   "QFI\xfb" at 0          vmdk   "KDMV" at 0 (a sparse extent), "COWD" at 0 (an
//!                                        ESX sparse extent), "# Disk DescriptorFile" at 0 (a
//!                                        descriptor naming its extent files)
//! vhdx    "vhdxfile" at 0         vpc    "conectix" at 0 (a dynamic VHD's footer copy)
//! qed     "QED\0" at 0            vdi    0xbeda107f (little-endian) at 64
//! ```
//!
//! Only magics that cannot be mistaken are read: a fixed VHD keeps its footer at the end of
//! the file, after what is indistinguishable from a raw disk: it reads as raw unless
//! `--disk-format vpc` says otherwise. Anything else is raw.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use blockvault_core::DiskFormat;

use crate::{Error, Result};

/// The first bytes of every qcow2 image (`QFI\xfb`).
pub const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";

/// The VDI signature, at byte 64 of the header.
const VDI_SIGNATURE: [u8; 4] = 0xbeda_107f_u32.to_le_bytes();

/// The first line of a vmdk descriptor file (its data is in the extent files it names).
pub const VMDK_DESCRIPTOR: &[u8] = b"# Disk DescriptorFile";

/// The bytes read to tell the formats apart (the VDI signature ends at 68).
const HEAD: usize = 72;

/// The format of the image at `path`, from its first bytes (see the module docs); raw when
/// no magic matches (a file shorter than a magic is raw).
pub fn detect_format(path: &Path) -> Result<DiskFormat> {
    let mut file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound {
            path: path.to_owned(),
        },
        _ => Error::io(path, e),
    })?;
    let mut head = [0u8; HEAD];
    let mut got = 0;
    while got < head.len() {
        match file.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(format_of(&head[..got]))
}

/// The format the header bytes `head` say.
fn format_of(head: &[u8]) -> DiskFormat {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(0, &QCOW2_MAGIC) {
        DiskFormat::Qcow2
    } else if at(0, b"KDMV") || at(0, b"COWD") || at(0, VMDK_DESCRIPTOR) {
        DiskFormat::Vmdk
    } else if at(0, b"vhdxfile") {
        DiskFormat::Vhdx
    } else if at(0, b"conectix") {
        DiskFormat::Vpc
    } else if at(0, b"QED\0") {
        DiskFormat::Qed
    } else if at(64, &VDI_SIGNATURE) {
        DiskFormat::Vdi
    } else {
        DiskFormat::Raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(offset: usize, magic: &[u8]) -> Vec<u8> {
        let mut head = vec![0u8; HEAD];
        head[offset..offset + magic.len()].copy_from_slice(magic);
        head
    }

    #[test]
    fn each_magic_names_its_format_and_anything_else_is_raw() {
        let cases: [(Vec<u8>, DiskFormat); 11] = [
            (with(0, b"QFI\xfb"), DiskFormat::Qcow2),
            (with(0, b"KDMV"), DiskFormat::Vmdk),
            (with(0, b"COWD"), DiskFormat::Vmdk),
            (
                with(0, b"# Disk DescriptorFile\nversion=1\n"),
                DiskFormat::Vmdk,
            ),
            (with(0, b"vhdxfile"), DiskFormat::Vhdx),
            (with(0, b"conectix"), DiskFormat::Vpc),
            (with(0, b"QED\0"), DiskFormat::Qed),
            (with(64, &[0x7f, 0x10, 0xda, 0xbe]), DiskFormat::Vdi),
            // The VDI signature anywhere else, a truncated magic: raw.
            (with(0, &[0x7f, 0x10, 0xda, 0xbe]), DiskFormat::Raw),
            (b"vhdxfil".to_vec(), DiskFormat::Raw),
            (Vec::new(), DiskFormat::Raw),
        ];
        for (head, expected) in cases {
            assert_eq!(
                format_of(&head),
                expected,
                "{:?}",
                &head[..head.len().min(8)]
            );
        }
    }
}
