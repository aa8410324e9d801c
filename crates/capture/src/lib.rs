//! How a Snapshot fixes the instant of a VM's disks, and what changed since the last one.
//!
//! On a file system with reflinks (XFS made with `reflink=1`, btrfs), a disk image is
//! captured by [`clone_file`]: one `FICLONE` ioctl makes a new file that shares every extent
//! of the image, so the capture costs time per extent, not per byte, and later writes to the
//! image go elsewhere (copy on write). The VM is frozen only while every disk is cloned, back
//! to back; the backup then reads the clones at leisure. [`extent_count`] tells, before
//! anything is frozen, what a clone will cost.
//!
//! Everywhere else (ext4, another file system, a clone across file systems) the clone fails
//! with [`Error::Unsupported`], and the caller reads the disk under its hook as before.
//!
//! Two clones of one image share the physical extents of every range that did not change
//! between them. [`changed_extents`] compares their extent maps ([`extents`], from `FIEMAP`)
//! and gives the ranges that may have changed, without reading the data: the change hint of a
//! backup that needs no hypervisor. Its guarantee: everything outside the [`Changes::Dirty`]
//! ranges is provably identical in the two clones (the same place on the device for the same
//! offset, or a hole in both); a range that moved without changing (a defragmentation) is
//! dirty, which costs reads and nothing else. Whenever that cannot be proven (no reflinks, two
//! devices, a resized disk, an extent whose place means nothing, a map that cannot be read) the
//! answer is [`Changes::Unknown`] with the [`Doubt`] to record, and the caller scans the whole
//! disk: never a wrong point. [`allocated_bytes`] is what the disk holds, to set the bytes a
//! scan read against; [`Changes::hint`] is the hint for the scan.
//!
//! Everything here is synchronous and Linux-only. The two ioctls rustix has no safe call for
//! live in `sys.rs`, the crate's only unsafe code.

mod changes;
mod error;
mod extents;
mod fs;
mod reflink;
mod space;
mod sys;
#[cfg(feature = "testing")]
pub mod testing;

pub use crate::{
    changes::{Changes, Doubt, Side, allocated_bytes, changed_extents, compare_extents},
    error::{Error, Result},
    extents::{Extent, ExtentFlags, extent_count, extents, extents_of},
    fs::{FsKind, same_fs},
    reflink::{clone_file, clone_range},
    space::{exclusive_bytes, exclusive_bytes_of},
};
