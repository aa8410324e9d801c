//! The source stage: the disks of a write session, opened (and their data blocks found)
//! before anything is written.

use std::path::{Path, PathBuf};

use blockvault_core::{BlockSize, ChunkCodec, DiskName, RecoveryPoint};
use blockvault_source::{Chunker, DataBlocks, RawFile};

use crate::{Error, Result};

/// One disk being backed up.
pub(super) struct Source {
    pub(super) name: DiskName,
    /// The path as the user gave it (for messages) and made absolute (for the record).
    pub(super) given: PathBuf,
    pub(super) path: PathBuf,
    pub(super) image: RawFile,
    /// Its block size, and the repository's codec for the ids.
    pub(super) chunker: Chunker,
    /// The blocks that overlap data; the others are holes.
    pub(super) blocks: DataBlocks,
}

/// The name a disk gets from its path: its file name.
pub fn disk_name(path: &Path) -> Result<DiskName> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    DiskName::new(file_name).map_err(|source| Error::DiskName {
        path: path.to_owned(),
        source,
    })
}

/// Opens every disk before anything is written, so a missing disk fails the backup up front.
/// A disk keeps the block size its parent point recorded unless `block_size` is given; its ids
/// are `codec`'s.
pub(super) fn open_sources(
    disks: &[PathBuf],
    block_size: Option<BlockSize>,
    parent: Option<&RecoveryPoint>,
    default_block_size: BlockSize,
    codec: &ChunkCodec,
) -> Result<Vec<Source>> {
    if disks.is_empty() {
        return Err(Error::NoDisks);
    }
    let mut sources: Vec<Source> = Vec::with_capacity(disks.len());
    for path in disks {
        let image = RawFile::open(path)?;
        let name = disk_name(path)?;
        if let Some(first) = sources.iter().find(|s| s.name == name) {
            return Err(Error::DuplicateDiskName {
                name,
                first: first.given.clone(),
                second: path.clone(),
            });
        }
        let block_size = block_size
            .or_else(|| {
                parent
                    .and_then(|p| p.disks.iter().find(|d| d.name == name))
                    .map(|d| d.block_size)
            })
            .unwrap_or(default_block_size);
        let chunker = Chunker::new(block_size, codec.clone());
        let blocks = chunker.data_blocks(&image)?;
        sources.push(Source {
            given: path.clone(),
            path: std::path::absolute(path).unwrap_or_else(|_| path.clone()),
            name,
            image,
            chunker,
            blocks,
        });
    }
    Ok(sources)
}
