//! The two ioctls rustix has no safe call for: `FS_IOC_FIEMAP` (a file's extent map) and
//! `FICLONERANGE` (share a range of one file's extents with another). Everything unsafe in the
//! crate is here, each call with the layout it relies on.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd};

use rustix::ioctl::{Setter, Updater, ioctl, opcode};

/// `struct fiemap`, the request header (linux/fiemap.h), 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct FiemapHeader {
    fm_start: u64,
    fm_length: u64,
    fm_flags: u32,
    fm_mapped_extents: u32,
    fm_extent_count: u32,
    fm_reserved: u32,
}

/// `struct fiemap_extent`, 56 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RawExtent {
    pub(crate) logical: u64,
    pub(crate) physical: u64,
    pub(crate) length: u64,
    reserved64: [u64; 2],
    pub(crate) flags: u32,
    reserved: [u32; 3],
}

/// Extents asked for per call.
pub(crate) const BATCH: usize = 256;

/// The header and room for [`BATCH`] extents, as the kernel reads and fills them.
#[repr(C)]
#[derive(Debug)]
struct Fiemap {
    header: FiemapHeader,
    extents: [RawExtent; BATCH],
}

/// `FIEMAP_FLAG_SYNC`: write the file's dirty pages back first, so delayed allocations have
/// their place.
const FIEMAP_FLAG_SYNC: u32 = 0x1;

/// `FS_IOC_FIEMAP` = `_IOWR('f', 11, struct fiemap)`: the size in the opcode is the header's.
const FS_IOC_FIEMAP: rustix::ioctl::Opcode = opcode::read_write::<FiemapHeader>(b'f', 11);

/// Up to [`BATCH`] extents of `fd` from byte `start` on (synced first), in logical order.
pub(crate) fn fiemap(fd: impl AsFd, start: u64) -> rustix::io::Result<Vec<RawExtent>> {
    let mut map = Box::new(Fiemap {
        header: FiemapHeader {
            fm_start: start,
            fm_length: u64::MAX - start,
            fm_flags: FIEMAP_FLAG_SYNC,
            fm_extent_count: BATCH as u32,
            ..FiemapHeader::default()
        },
        extents: [RawExtent::default(); BATCH],
    });
    // SAFETY: `Fiemap` is `struct fiemap` followed by `fm_extent_count` = BATCH
    // `struct fiemap_extent`s, both `repr(C)` with the kernel's field order and sizes (32 and
    // 56 bytes); the kernel writes at most `fm_extent_count` extents and the header, all
    // inside the box, which outlives the call.
    unsafe {
        ioctl(fd, Updater::<{ FS_IOC_FIEMAP }, Fiemap>::new(&mut map))?;
    }
    let mapped = (map.header.fm_mapped_extents as usize).min(BATCH);
    Ok(map.extents[..mapped].to_vec())
}

/// The number of extents of `fd` (`fm_extent_count` = 0: the kernel only counts), synced first.
pub(crate) fn fiemap_count(fd: impl AsFd) -> rustix::io::Result<u32> {
    let mut header = FiemapHeader {
        fm_start: 0,
        fm_length: u64::MAX,
        fm_flags: FIEMAP_FLAG_SYNC,
        fm_extent_count: 0,
        ..FiemapHeader::default()
    };
    // SAFETY: with `fm_extent_count` = 0 the kernel reads and writes the 32-byte header only.
    unsafe {
        ioctl(
            fd,
            Updater::<{ FS_IOC_FIEMAP }, FiemapHeader>::new(&mut header),
        )?;
    }
    Ok(header.fm_mapped_extents)
}

/// `struct file_clone_range`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct FileCloneRange {
    src_fd: i64,
    src_offset: u64,
    src_length: u64,
    dest_offset: u64,
}

/// `FICLONERANGE` = `_IOW(0x94, 13, struct file_clone_range)`.
const FICLONERANGE: rustix::ioctl::Opcode = opcode::write::<FileCloneRange>(0x94, 13);

/// Makes `len` bytes of `dst` at `offset` share the extents of `src` at the same offset
/// (`len` 0: to the end of `src`).
pub(crate) fn ficlonerange(
    dst: impl AsFd,
    src: impl AsFd,
    offset: u64,
    len: u64,
) -> rustix::io::Result<()> {
    let range = FileCloneRange {
        src_fd: i64::from(src.as_fd().as_raw_fd()),
        src_offset: offset,
        src_length: len,
        dest_offset: offset,
    };
    // SAFETY: `FileCloneRange` is `struct file_clone_range` (`repr(C)`, four 64-bit fields);
    // the kernel only reads it, and `src` stays open for the call (borrowed).
    unsafe { ioctl(dst, Setter::<{ FICLONERANGE }, FileCloneRange>::new(range)) }
}
