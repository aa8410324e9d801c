//! In-place restore: roll existing disk images back (or forward) to a point, writing only the
//! blocks that differ from it.
//!
//! ```text
//! check + open every target disk        nothing is touched until all are there
//!   -> set_len(point's disk size)       truncate, or extend with a hole
//!   -> scan: SEEK_DATA, pread,          the disk's current block map, as a backup reads it
//!      zero check, BLAKE3
//!   -> diff with the point's map        only the blocks whose ids differ
//!   -> fetch -> verify -> write         the shared restore data path, straight into the disk;
//!      (or punch a hole)                a block that is zero in the point becomes a hole
//!   -> fdatasync
//! ```

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;

use blockvault_core::{BlockMap, BlockSize, ChunkCodec, RecoveryPoint};
use blockvault_source::{Chunker, DataBlocks, RawFile};
use jiff::Timestamp;

use super::blocks::{BlockTarget, SyncKind, sync, write_blocks};
use super::image::{Before, ImageFile};
use super::request::{RestoreRequest, RestoredDisk};
use crate::reader::PointReader;
use crate::{Error, Progress, Result};

/// Checks that every disk of `point` exists in `target` as a regular file (symlinks are
/// followed) and opens each one read-write, before any is touched: a missing disk fails the
/// restore with nothing written.
pub(crate) fn open_targets(point: &RecoveryPoint, target: &Path) -> Result<Vec<ImageFile>> {
    point
        .disks
        .iter()
        .map(|disk| {
            let path = target.join(disk.name.as_str());
            match std::fs::metadata(&path) {
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(Error::TargetMissing { path });
                }
                Err(e) => return Err(Error::io(&path, e)),
                Ok(meta) if !meta.is_file() => return Err(Error::TargetNotAFile { path }),
                Ok(_) => {}
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            Ok(ImageFile::new(file, path))
        })
        .collect()
}

/// Restores `point` over the disks `targets` (from [`open_targets`], in the point's disk
/// order); see [`Repository::restore`](crate::Repository::restore) for what happens and the crash semantics.
pub(super) async fn restore_in_place(
    reader: &PointReader,
    targets: Vec<ImageFile>,
    request: &RestoreRequest,
    progress: &Arc<dyn Progress>,
) -> Result<Vec<RestoredDisk>> {
    let (point, maps) = (reader.point(), reader.maps());
    let images: Vec<Arc<ImageFile>> = targets.into_iter().map(Arc::new).collect();
    // A disk whose content the caller knows, in the point's shape, is not scanned.
    let known: Vec<Option<BlockMap>> = point
        .disks
        .iter()
        .zip(maps)
        .map(|(disk, map)| {
            request
                .known_content
                .get(&disk.name)
                .filter(|k| k.disk_size() == map.disk_size() && k.block_size() == map.block_size())
                .cloned()
        })
        .collect();
    let shapes: Vec<(u64, BlockSize)> = maps
        .iter()
        .map(|m| (m.disk_size(), m.block_size()))
        .collect();
    let current = {
        let (images, codec) = (images.clone(), reader.codec().clone());
        let progress = Arc::clone(progress);
        tokio::task::spawn_blocking(move || {
            scan_all(&images, &shapes, &codec, known, progress.as_ref())
        })
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))?
    };
    let plans: Vec<Vec<BlockTarget>> = current
        .iter()
        .zip(maps)
        .map(|((current, _), map)| changes(current, map))
        .collect();
    let total = plans.iter().flatten().map(|b| b.len as u64).sum();
    progress.begin("restore", total);

    let mut disks = Vec::with_capacity(maps.len());
    let scanned = current.iter().map(|(_, bytes)| *bytes);
    for (n, ((((disk, map), image), plan), scanned)) in point
        .disks
        .iter()
        .zip(maps)
        .zip(&images)
        .zip(plans)
        .zip(scanned)
        .enumerate()
    {
        // A failure here may come after some of the disk's blocks were written: say so.
        let rewriting = !plan.is_empty();
        let written = write_blocks(
            reader,
            n,
            plan.into_iter(),
            image,
            request.options.concurrency,
            progress,
        )
        .await
        .map_err(|source| {
            if rewriting {
                Error::InPlacePartial {
                    disk: disk.name.clone(),
                    source: Box::new(source),
                }
            } else {
                source
            }
        })?;
        sync(Arc::clone(image), SyncKind::Data).await?;
        disks.push(RestoredDisk {
            name: disk.name.clone(),
            path: image.path.clone(),
            size: map.disk_size(),
            bytes_written: written.bytes,
            blocks: map.len() as u64,
            blocks_changed: written.blocks,
            bytes_scanned: scanned,
        });
    }
    Ok(disks)
}

/// What a disk holds now: known from the caller, or to be found by scanning these blocks.
enum Current {
    Known(BlockMap),
    Scan(RawFile, Chunker, DataBlocks),
}

/// Sets every disk to its point's size (`shapes`: disk size and block size, in disk order),
/// then reads and hashes each one as a backup would (the ids `codec`'s), unless its content is
/// `known` (same shape, vouched for by the caller): the current block maps, with the bytes
/// read for each.
fn scan_all(
    images: &[Arc<ImageFile>],
    shapes: &[(u64, BlockSize)],
    codec: &ChunkCodec,
    known: Vec<Option<BlockMap>>,
    progress: &dyn Progress,
) -> Result<Vec<(BlockMap, u64)>> {
    let mut scans = Vec::with_capacity(images.len());
    for ((image, &(size, block_size)), known) in images.iter().zip(shapes).zip(known) {
        let io = |e| Error::io(&image.path, e);
        let len = image.file.metadata().map_err(io)?.len();
        if let Some(map) = known.filter(|_| len == size) {
            scans.push(Current::Known(map));
            continue;
        }
        // Only when it differs: a disk already right is not touched at all, not even its mtime.
        if len != size {
            image.file.set_len(size).map_err(io)?;
        }
        let disk = RawFile::open(&image.path)?;
        let chunker = Chunker::new(block_size, codec.clone());
        let blocks = chunker.data_blocks(&disk)?;
        scans.push(Current::Scan(disk, chunker, blocks));
    }
    let total = scans
        .iter()
        .map(|scan| match scan {
            Current::Known(_) => 0,
            Current::Scan(disk, chunker, blocks) => chunker.bytes_of(disk, blocks),
        })
        .sum();
    progress.begin("scan", total);
    let now = Timestamp::now();
    scans
        .into_iter()
        .map(|scan| match scan {
            Current::Known(map) => Ok((map, 0)),
            Current::Scan(disk, chunker, blocks) => {
                let bytes = chunker.bytes_of(&disk, &blocks);
                let map = chunker.scan_blocks(&disk, &blocks, now, |block| {
                    progress.advance(block.data.len() as u64);
                    Ok::<(), Error>(())
                })?;
                Ok((map, bytes))
            }
        })
        .collect()
}

/// The blocks to write so that a disk whose map is `current` becomes `point` (same size and
/// block size): those whose ids differ. A block zero in the point is cleared; one zero on disk
/// needs only its data pages written.
fn changes(current: &BlockMap, point: &BlockMap) -> Vec<BlockTarget> {
    debug_assert_eq!(current.len(), point.len());
    current
        .iter()
        .zip(point.iter())
        .enumerate()
        .filter(|(_, (now, then))| now != then)
        .map(|(index, (now, _))| {
            let before = if now.is_zero() {
                Before::Zeros
            } else {
                Before::Data
            };
            BlockTarget::new(point, index, before)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use blockvault_core::ChunkId;

    use super::*;

    fn map_of(ids: &[u8]) -> BlockMap {
        let bs = BlockSize::new(64 << 10).expect("bs");
        let size = ids.len() as u64 * (64 << 10) - 10;
        let ids = ids
            .iter()
            .map(|&b| {
                if b == 0 {
                    ChunkId::ZERO
                } else {
                    ChunkId::of(&[b])
                }
            })
            .collect();
        BlockMap::from_ids(size, bs, Timestamp::UNIX_EPOCH, ids).expect("map")
    }

    /// One block to write: its index, what is under it, and whether it is cleared (zero in the
    /// point) rather than fetched.
    type Change = (usize, Before, bool);

    #[test]
    fn changes_are_the_blocks_whose_ids_differ() {
        // (current block ids, point block ids, expected changes); 0 is the zero block.
        let cases: &[(&[u8], &[u8], &[Change])] = &[
            (&[1, 2, 3], &[1, 2, 3], &[]),
            (&[0, 0, 0], &[0, 0, 0], &[]),
            (&[1, 2, 3], &[1, 9, 3], &[(1, Before::Data, false)]),
            (&[1, 0, 3], &[1, 2, 3], &[(1, Before::Zeros, false)]),
            (&[1, 2, 3], &[1, 0, 3], &[(1, Before::Data, true)]),
            (
                &[5, 0, 7, 8],
                &[0, 6, 7, 9],
                &[
                    (0, Before::Data, true),
                    (1, Before::Zeros, false),
                    (3, Before::Data, false),
                ],
            ),
        ];
        for (current, point, expected) in cases {
            let point_map = map_of(point);
            let got: Vec<Change> = changes(&map_of(current), &point_map)
                .iter()
                .map(|b| (b.index, b.before, b.id.is_zero()))
                .collect();
            assert_eq!(&got, expected, "{current:?} -> {point:?}");
            for b in changes(&map_of(current), &point_map) {
                assert_eq!(b.offset, point_map.offset_of(b.index));
                assert_eq!(b.len, point_map.len_of(b.index));
            }
        }
    }
}
