//! Reflink clones: a new file sharing every extent of another, made in one ioctl (`FICLONE`),
//! whose cost is per extent, not per byte. Later writes to either file go to new places
//! (copy on write), so the clone holds the source as it was at the instant of the call.

use std::fs::{File, OpenOptions};
use std::path::Path;

use rustix::fs::IFlags;

use crate::{Error, Result, sys};

/// Clones the file at `src` into a new file at `dst` (which must not exist), on the same
/// file system. The clone is made with `src`'s size and content at the instant of the call.
///
/// On btrfs, a `nodatacow` (`chattr +C`) file clones only into a `nodatacow` file: `dst` is
/// given the flag first when `src` has it. Where the file system has no reflinks, or `dst` is
/// on another one, the error is [`Error::Unsupported`] and `dst` is removed; other errors
/// remove it too.
pub fn clone_file(src: &Path, dst: &Path) -> Result<()> {
    let source = File::open(src).map_err(|e| Error::io(src, e))?;
    let target = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(|e| Error::io(dst, e))?;
    let cloned = nocow_like(&source, &target, dst).and_then(|()| {
        rustix::fs::ioctl_ficlone(&target, &source).map_err(|e| Error::clone(src, dst, e))
    });
    if cloned.is_err() {
        let _ = std::fs::remove_file(dst);
    }
    cloned
}

/// Gives the empty `target` the `nodatacow` flag when `source` has it (btrfs refuses a clone
/// between files that differ in it). A file system without these flags has neither.
fn nocow_like(source: &File, target: &File, dst: &Path) -> Result<()> {
    let Ok(flags) = rustix::fs::ioctl_getflags(source) else {
        return Ok(());
    };
    if !flags.contains(IFlags::NOCOW) {
        return Ok(());
    }
    let theirs = rustix::fs::ioctl_getflags(target).unwrap_or(IFlags::empty());
    rustix::fs::ioctl_setflags(target, theirs | IFlags::NOCOW).map_err(|e| Error::Io {
        path: dst.to_owned(),
        source: e.into(),
    })
}

/// Makes `len` bytes of `dst` at `offset` the same extents as `src` at `offset`: an instant
/// copy of a range (an in-place rollback of what diverged). `offset` and `len` must be
/// multiples of the file system's block size, but for a `len` reaching `src`'s end.
pub fn clone_range(src: &Path, dst: &Path, offset: u64, len: u64) -> Result<()> {
    let source = File::open(src).map_err(|e| Error::io(src, e))?;
    let target = OpenOptions::new()
        .write(true)
        .open(dst)
        .map_err(|e| Error::io(dst, e))?;
    sys::ficlonerange(&target, &source, offset, len).map_err(|e| Error::clone(src, dst, e))
}
