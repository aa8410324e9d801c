//! A file's extent map (FIEMAP): where each range of the file lies on the device.

use std::fs::File;
use std::path::Path;

use crate::sys::{self, BATCH};
use crate::{Error, Result};

/// One extent: `len` bytes of the file at `logical` stored at `physical` on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub logical: u64,
    pub physical: u64,
    pub len: u64,
    pub flags: ExtentFlags,
}

impl Extent {
    /// The file's byte range this extent covers.
    pub fn range(&self) -> std::ops::Range<u64> {
        self.logical..self.logical.saturating_add(self.len)
    }
}

/// The `FIEMAP_EXTENT_*` flags of an extent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExtentFlags(pub u32);

impl ExtentFlags {
    /// The last extent of the file.
    pub const LAST: u32 = 0x1;
    /// Its place is not known yet.
    pub const UNKNOWN: u32 = 0x2;
    /// Delayed allocation: no place yet.
    pub const DELALLOC: u32 = 0x4;
    /// Stored transformed (compressed, for instance): the bytes at `physical` are not the data.
    pub const ENCODED: u32 = 0x8;
    pub const DATA_ENCRYPTED: u32 = 0x80;
    /// Not block aligned.
    pub const NOT_ALIGNED: u32 = 0x100;
    /// Stored with the metadata, not in a block of its own.
    pub const DATA_INLINE: u32 = 0x200;
    /// Packed with other files' tails.
    pub const DATA_TAIL: u32 = 0x400;
    /// Allocated, never written: reads as zeros.
    pub const UNWRITTEN: u32 = 0x800;
    /// Merged from several extents by the file system for the report.
    pub const MERGED: u32 = 0x1000;
    /// Shared with another file (a reflink clone, a snapshot).
    pub const SHARED: u32 = 0x2000;

    pub fn contains(self, flag: u32) -> bool {
        self.0 & flag == flag
    }

    /// Flags under which the physical address does not say where the data lies: an extent
    /// with one of these cannot tell whether two files share it.
    pub fn placement_unknown(self) -> bool {
        self.0
            & (Self::UNKNOWN
                | Self::DELALLOC
                | Self::ENCODED
                | Self::DATA_ENCRYPTED
                | Self::NOT_ALIGNED
                | Self::DATA_INLINE
                | Self::DATA_TAIL)
            != 0
    }
}

/// The extents of the file at `path`, in logical order, its dirty pages written back first.
pub fn extents(path: &Path) -> Result<Vec<Extent>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    extents_of(&file, path)
}

/// [`extents`] of an open file (`path` names it in errors).
pub fn extents_of(file: &File, path: &Path) -> Result<Vec<Extent>> {
    let mut all = Vec::new();
    let mut start = 0u64;
    loop {
        let batch = sys::fiemap(file, start).map_err(|e| Error::fiemap(path, e))?;
        let Some(last) = batch.last() else {
            return Ok(all);
        };
        let done = batch.len() < BATCH || last.flags & ExtentFlags::LAST != 0;
        let next = last.logical.saturating_add(last.length);
        all.extend(batch.iter().map(|e| Extent {
            logical: e.logical,
            physical: e.physical,
            len: e.length,
            flags: ExtentFlags(e.flags),
        }));
        if done || next <= start {
            return Ok(all);
        }
        start = next;
    }
}

/// How many extents the file at `path` has: what a clone of it costs (the file system copies
/// each extent's record), known before anything is frozen.
pub fn extent_count(path: &Path) -> Result<u64> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    sys::fiemap_count(&file)
        .map(u64::from)
        .map_err(|e| Error::fiemap(path, e))
}
