//! Reads disks as fixed-size blocks and describes them as block maps.
//!
//! A disk is a [`BlockSource`]: its size, the extents that may hold data, and positional reads.
//! [`RawFile`] (a raw image file or a block device: `pread`, `SEEK_DATA`/`SEEK_HOLE`) is one
//! source; [`NbdSource`] (an NBD export: qcow2 or any format through `qemu-nbd`, a running VM's
//! fleecing node) is the other, over the crate's own synchronous NBD client (fixed newstyle
//! handshake, structured replies, `base:allocation` for holes and zeros,
//! `qemu:dirty-bitmap:NAME` for a QEMU dirty bitmap's extents, pipelined reads; its design is
//! in `src/nbd/mod.rs`). [`detect_format`] tells a qcow2 (vmdk, vdi, ...) image by its header; the
//! `blockvault-qemu` crate serves one through a `qemu-nbd` it starts and stops. The scanner
//! reads any source the same way.
//!
//! # Data path
//!
//! ```text
//! BlockSource::data_extents   the extents that may hold data: holes are never read
//!   ChangeHint                Everything, or the dirty extents since the parent point
//!   -> Chunker::plan          the blocks to read: data blocks, or data blocks that are dirty
//!                             when the hint applies (parent map of the same size and block
//!                             size); otherwise a full scan and the FullScanReason
//!   -> ScanPlan::scan         read_at + the codec's id (zero check + BLAKE3), in parallel on
//!      (Chunker::scan)        the rayon pool, one reusable buffer per worker; each block
//!                             goes to a visitor
//!   -> BlockMap               the disk at this instant: blocks read now, holes as zero, and
//!                             for an incremental plan every clean block from the parent's map
//! changed_blocks(old, new)  -> the non-zero blocks an incremental backup must consider
//! ```
//!
//! Everything here is synchronous. The caller decides what a visitor does with a block
//! (the repository's write session compresses and stores new ones); a visitor that blocks applies back-pressure to
//! the read.
//!
//! # Consistency
//!
//! A scan reads the disk as it is while it runs. The source's size is checked after the scan,
//! and a read that ends early is an error, so a disk that is truncated or grows during the read
//! never yields a block map; these checks belong to the scan and hold for every source.
//! Capturing several disks at one instant is the job engine's Snapshot, not this crate's.
//!
//! A change hint can only cost extra reads, never a wrong map: every block that overlaps a
//! dirty extent is read again, whatever the extent's alignment, and a hint is applied only to a
//! parent map of the same disk size and block size. Proving that the hint belongs to this
//! parent (the clone or the dirty bitmap recorded for it) is its producer's job: for QEMU,
//! [`NbdSource::dirty_extents`] gives the bitmap's extents, at its granularity, ready to be a
//! [`ChangeHint::Dirty`] once the caller has checked the bitmap is the one recorded.

mod blocks;
mod diff;
mod error;
mod format;
mod hint;
mod nbd;
mod plan;
mod raw;
mod scan;
mod source;

pub use crate::{
    blocks::DataBlocks,
    diff::{changed_blocks, missed_by_hint},
    error::{Error, Result},
    format::{QCOW2_MAGIC, VMDK_DESCRIPTOR, detect_format},
    hint::{ChangeHint, FullScanReason},
    nbd::{Allocation, NbdAddress, NbdExportInfo, NbdOptions, NbdSource},
    plan::ScanPlan,
    raw::RawFile,
    scan::{Block, Chunker},
    source::BlockSource,
};
