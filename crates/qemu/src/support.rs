//! What blockvault can do with an image in a QEMU format: read it at all, and keep dirty
//! bitmaps in it. Decided from the header (no QEMU process), before anything is written.
//!
//! ```text
//! check_readable   an encrypted qcow2 (AES or LUKS) is refused: reading it needs its secret,
//!                  which blockvault does not hold
//! no_bitmaps       why an image cannot hold blockvault's dirty bitmaps, or None when it can:
//!                  every format but qcow2, and a qcow2 of compat 0.10 (version 2)
//! ```
//!
//! An image that cannot hold bitmaps is scanned in full at every backup: the reason is said
//! once, on the job, as the full scan's reason; no bitmap is tried (and no warning repeated).

use std::path::Path;

use blockvault_core::DiskFormat;

use crate::convert::Qcow2Header;
use crate::{Error, Result};

/// Refuses an image blockvault cannot read as `format`: an encrypted qcow2
/// ([`Error::Unsupported`], saying why). Anything else is for QEMU to open.
pub fn check_readable(image: &Path, format: DiskFormat) -> Result<()> {
    if format != DiskFormat::Qcow2 {
        return Ok(());
    }
    match Qcow2Header::read(image)? {
        Some(header) if header.encrypted => Err(Error::Unsupported {
            image: image.to_owned(),
            reason: "it is an encrypted qcow2 (encrypt.format=luks or aes), which blockvault \
                     cannot read: QEMU needs the image's secret, which blockvault does not \
                     hold; back up the VM's decrypted view through its QMP socket (--qmp) or \
                     convert the image to an unencrypted one"
                .to_owned(),
        }),
        _ => Ok(()),
    }
}

/// Why the image `image` in `format` cannot hold blockvault's dirty bitmaps; `None` when it
/// can (a qcow2 of version 3). A header that cannot be read says nothing here (the read of
/// the image fails on its own, saying why).
pub fn no_bitmaps(image: &Path, format: DiskFormat) -> Option<String> {
    if !format.holds_bitmaps() {
        return Some(format!(
            "{format} images cannot hold dirty bitmaps: every backup reads every allocated \
             block (convert the disk to qcow2 for changed-block tracking)"
        ));
    }
    match Qcow2Header::read(image) {
        Ok(Some(header)) if !header.holds_bitmaps() => Some(
            "qcow2 images of compat 0.10 (version 2) cannot hold dirty bitmaps: every backup \
             reads every allocated block (qemu-img amend -o compat=1.1 upgrades the image)"
                .to_owned(),
        ),
        _ => None,
    }
}
