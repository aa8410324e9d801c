//! [`detect_format`]: what a disk image's header says it is.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use blockvault_core::DiskFormat;

use crate::{Error, Result};

/// The first bytes of every qcow2 image (`QFI\xfb`).
pub const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";

/// The format of the image at `path`, from its first bytes: qcow2 when it starts with
/// [`QCOW2_MAGIC`], raw otherwise (a file shorter than the magic is raw).
pub fn detect_format(path: &Path) -> Result<DiskFormat> {
    let mut file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound {
            path: path.to_owned(),
        },
        _ => Error::io(path, e),
    })?;
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match file.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(if got == head.len() && head == QCOW2_MAGIC {
        DiskFormat::Qcow2
    } else {
        DiskFormat::Raw
    })
}
