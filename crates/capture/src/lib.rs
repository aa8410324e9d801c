//! How a Snapshot fixes the instant of a VM's disks, and what changed since the last one.
//!
//! On a file system with reflinks (XFS made with `reflink=1`, btrfs), a disk image is
//! captured by [`clone_file`]: one `FICLONE` ioctl makes a new file that shares every extent
//! of the image, so the capture costs time per extent, not per byte, and later writes to the
//! image go elsewhere (copy on write). The VM is frozen only while every disk is cloned, back
//! to back; the backup then reads the clones at leisure. [`extent_count`] tells, before
//! anything is frozen, what a clone will cost.
//!
//! Two clones of one image share the physical extents of every range that did not change
//! between them. Comparing their extent maps ([`extents`], from `FIEMAP`) gives the ranges
//! that may have changed, without reading the data: the change hint of a backup that needs no
//! hypervisor.
//!
//! Everywhere else (ext4, another file system, a clone across file systems) the clone fails
//! with [`Error::Unsupported`], and the caller reads the disk under its hook as before.
//!
//! Everything here is synchronous and Linux-only. The two ioctls rustix has no safe call for
//! live in `sys.rs`, the crate's only unsafe code.

mod error;
mod extents;
mod fs;
mod reflink;
mod space;
mod sys;
#[cfg(feature = "testing")]
pub mod testing;

pub use crate::{
    error::{Error, Result},
    extents::{Extent, ExtentFlags, extent_count, extents, extents_of},
    fs::{FsKind, same_fs},
    reflink::{clone_file, clone_range},
    space::{exclusive_bytes, exclusive_bytes_of},
};
