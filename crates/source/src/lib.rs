//! Reads raw disk images as fixed-size blocks and describes them as block maps.
//!
//! # Data path
//!
//! ```text
//! DiskImage::data_extents   SEEK_DATA / SEEK_HOLE: holes are never read
//!   -> Chunker::data_blocks   the blocks that overlap data
//!   -> Chunker::scan          pread + zero check + BLAKE3, in parallel on the rayon pool,
//!                             one reusable buffer per worker; each block goes to a visitor
//!   -> BlockMap               the disk at this instant
//! changed_blocks(old, new)  -> the non-zero blocks an incremental backup must consider
//! ```
//!
//! Everything here is synchronous. The caller decides what a visitor does with a block
//! (the vault compresses and uploads new ones); a visitor that blocks applies back-pressure to
//! the read.
//!
//! # Consistency
//!
//! A scan reads the image as it is while it runs. The image's size is checked after the scan,
//! and a read that ends early is an error, so an image that is truncated or grows during the
//! read never yields a block map. Capturing several disks at one instant is the snapshot
//! tier's job, not this crate's.

mod diff;
mod error;
mod image;
mod scan;

pub use crate::{
    diff::changed_blocks,
    error::{Error, Result},
    image::DiskImage,
    scan::{Block, Chunker, DataBlocks},
};
