//! In-place restore: roll existing disk images back (or forward) to a point, writing only the
//! blocks that differ from it; and the page-level writer both kinds of restore share, which
//! knows what already lies under a block (zeros to skip, or old data to clear).
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
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use blockvault_source::{Chunker, DataBlocks, DiskImage};
use blockvault_core::{BlockMap, BlockSize, RecoveryPoint, is_zero};
use jiff::Timestamp;
use rustix::fs::FallocateFlags;

use crate::restore::{BlockTarget, ImageFile, SyncKind, sync};
use crate::{Error, Progress, RestoreRequest, RestoredDisk, Result, Vault};

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

impl Vault {
    /// Restores `point` over the disks `targets` (from [`open_targets`], in the point's disk
    /// order); see [`Vault::restore`] for what happens and the crash semantics.
    pub(crate) async fn restore_in_place(
        &self,
        point: &RecoveryPoint,
        maps: &[BlockMap],
        targets: Vec<ImageFile>,
        request: &RestoreRequest,
        progress: &Arc<dyn Progress>,
    ) -> Result<Vec<RestoredDisk>> {
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
                    .filter(|k| {
                        k.disk_size() == map.disk_size() && k.block_size() == map.block_size()
                    })
                    .cloned()
            })
            .collect();
        let shapes: Vec<(u64, BlockSize)> = maps
            .iter()
            .map(|m| (m.disk_size(), m.block_size()))
            .collect();
        let current = {
            let images = images.clone();
            let progress = Arc::clone(progress);
            tokio::task::spawn_blocking(move || {
                scan_all(&images, &shapes, known, progress.as_ref())
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
        for ((((disk, map), image), plan), scanned) in point
            .disks
            .iter()
            .zip(maps)
            .zip(&images)
            .zip(plans)
            .zip(scanned)
        {
            // A failure here may come after some of the disk's blocks were written: say so.
            let rewriting = !plan.is_empty();
            let written = self
                .write_blocks(
                    &disk.name,
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
}

/// What a disk holds now: known from the caller, or to be found by scanning these blocks.
enum Current {
    Known(BlockMap),
    Scan(DiskImage, Chunker, DataBlocks),
}

/// Sets every disk to its point's size (`shapes`: disk size and block size, in disk order),
/// then reads and hashes each one as a backup would, unless its content is `known` (same
/// shape, vouched for by the caller): the current block maps, with the bytes read for each.
fn scan_all(
    images: &[Arc<ImageFile>],
    shapes: &[(u64, BlockSize)],
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
        let disk = DiskImage::open(&image.path)?;
        let chunker = Chunker::new(block_size);
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

/// What a block's range of the file holds before the block is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Before {
    /// Zeros (a hole, or zeros on disk): the block's zero pages need no write.
    Zeros,
    /// Other data: the block's zero pages must be cleared too.
    Data,
}

/// Page size for sparse writes: runs of all-zero 4 KiB pages are left as (or made) holes.
const PAGE: usize = 4096;

/// Writes `data` at `offset`, page run by page run: runs of non-zero pages are written; runs of
/// all-zero pages are skipped where the file holds zeros, and cleared where it holds other
/// data. Returns the bytes written.
pub(crate) fn write_block(
    image: &ImageFile,
    data: &[u8],
    offset: u64,
    before: Before,
) -> std::io::Result<u64> {
    let page_at = |at: usize| &data[at..(at + PAGE).min(data.len())];
    let mut written = 0u64;
    let mut start = 0usize;
    while start < data.len() {
        let zero = is_zero(page_at(start));
        let mut end = start + page_at(start).len();
        while end < data.len() && is_zero(page_at(end)) == zero {
            end += page_at(end).len();
        }
        let at = offset + start as u64;
        if !zero {
            image.file.write_all_at(&data[start..end], at)?;
            written += (end - start) as u64;
        } else if before == Before::Data {
            written += clear(image, at, (end - start) as u64)?;
        }
        start = end;
    }
    Ok(written)
}

/// Clears a block that is zero in the point but holds data on disk, on a blocking thread;
/// returns (block length, bytes written).
pub(crate) async fn clear_block(image: Arc<ImageFile>, block: BlockTarget) -> Result<(u64, u64)> {
    let len = block.len as u64;
    tokio::task::spawn_blocking(move || {
        clear(&image, block.offset, len)
            .map(|written| (len, written))
            .map_err(|e| Error::io(&image.path, e))
    })
    .await
    .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
}

/// Makes `len` bytes at `offset` zeros: punches a hole (the size is kept), or writes zeros
/// where the file system cannot punch (remembered for the rest of the image). Returns the
/// bytes written: 0 for a hole.
pub(crate) fn clear(image: &ImageFile, offset: u64, len: u64) -> std::io::Result<u64> {
    if image.can_punch.load(Ordering::Relaxed) {
        let mode = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        match rustix::fs::fallocate(&image.file, mode, offset, len) {
            Ok(()) => return Ok(0),
            Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => {
                image.can_punch.store(false, Ordering::Relaxed);
            }
            Err(e) => return Err(e.into()),
        }
    }
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(ZEROS.len() as u64);
        image
            .file
            .write_all_at(&ZEROS[..n as usize], offset + done)?;
        done += n;
    }
    Ok(len)
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

    fn data_file(dir: &Path) -> ImageFile {
        let path = dir.join("disk.img");
        std::fs::write(&path, vec![0x5a; 256 << 10]).expect("write");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        ImageFile::new(file, path)
    }

    #[test]
    fn sparse_writes_skip_zero_pages_and_keep_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = data_file(dir.path());
        image.file.set_len(0).expect("empty");
        image.file.set_len(1 << 20).expect("len");
        let mut data = vec![0u8; 64 << 10];
        data[5000] = 1; // page 1
        data[(64 << 10) - 1] = 2; // last page
        let written = write_block(&image, &data, 128 << 10, Before::Zeros).expect("write");
        assert_eq!(written, 2 * PAGE as u64);
        let content = std::fs::read(&image.path).expect("read");
        assert_eq!(&content[128 << 10..(128 << 10) + (64 << 10)], &data[..]);
        assert!(content[..128 << 10].iter().all(|&b| b == 0));
    }

    #[test]
    fn writes_over_data_clear_zero_pages_and_keep_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = data_file(dir.path());
        // Page 0 zero, pages 1-2 data, pages 3.. zero, and a short tail page of data.
        let mut data = vec![0u8; (48 << 10) + 100];
        data[PAGE..3 * PAGE].fill(7);
        data[48 << 10..].fill(9);
        let written = write_block(&image, &data, 0, Before::Data).expect("write");
        let punched = image.can_punch.load(Ordering::Relaxed);
        let data_pages = 2 * PAGE as u64 + 100;
        assert_eq!(
            written,
            if punched {
                data_pages
            } else {
                data.len() as u64
            }
        );
        let content = std::fs::read(&image.path).expect("read");
        assert_eq!(content.len(), 256 << 10, "the size is kept");
        assert_eq!(&content[..data.len()], &data[..]);
        assert!(content[data.len()..].iter().all(|&b| b == 0x5a));
    }

    #[test]
    fn clear_punches_a_hole_and_keeps_the_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = data_file(dir.path());
        let written = clear(&image, 64 << 10, 128 << 10).expect("clear");
        let content = std::fs::read(&image.path).expect("read");
        assert_eq!(content.len(), 256 << 10);
        assert!(content[64 << 10..192 << 10].iter().all(|&b| b == 0));
        assert!(content[..64 << 10].iter().all(|&b| b == 0x5a));
        assert!(content[192 << 10..].iter().all(|&b| b == 0x5a));
        if image.can_punch.load(Ordering::Relaxed) {
            assert_eq!(written, 0, "a punched hole writes nothing");
            let extents = DiskImage::open(&image.path)
                .expect("open")
                .data_extents()
                .expect("extents");
            assert!(
                extents
                    .iter()
                    .all(|r| r.end <= 64 << 10 || r.start >= 192 << 10),
                "{extents:?}"
            );
        } else {
            assert_eq!(written, 128 << 10);
        }
    }

    #[test]
    fn clear_writes_zeros_where_holes_cannot_be_punched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = data_file(dir.path());
        image.can_punch.store(false, Ordering::Relaxed);
        let written = clear(&image, 10, (150 << 10) + 3).expect("clear");
        assert_eq!(written, (150 << 10) + 3);
        let content = std::fs::read(&image.path).expect("read");
        assert_eq!(content.len(), 256 << 10);
        assert_eq!(content[9], 0x5a);
        assert!(content[10..10 + (150 << 10) + 3].iter().all(|&b| b == 0));
        assert_eq!(content[10 + (150 << 10) + 3], 0x5a);
    }
}
