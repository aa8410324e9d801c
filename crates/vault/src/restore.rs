use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use blockvault_core::{BlockMap, ChunkId, DiskName, RecoveryPoint, VmName};
use blockvault_store::{Repairs, cpu};
use bytes::Bytes;
use futures::StreamExt;

use crate::in_place::{self, Before};
use crate::{Error, PointSelector, Progress, Result, TransferOptions, Vault};

/// Restore one point of a VM, into new image files or in place over the existing disks.
#[derive(Clone, Debug)]
pub struct RestoreRequest {
    pub vm: VmName,
    pub point: PointSelector,
    /// The directory the disks are in: each disk is the file named after the disk. A restore
    /// into new files creates the directory if missing; an in-place restore needs every disk's
    /// file to exist there.
    pub target: PathBuf,
    /// Replace existing files of the same names (they stay untouched until the new images are
    /// complete). Ignored in place: asking for an in-place restore is itself the consent to
    /// overwrite the disks.
    pub overwrite: bool,
    /// Restore over the existing disk images, writing only the blocks that differ from the
    /// point (see [`Vault::restore`]).
    pub in_place: bool,
    /// In place: the block maps the target disks are known to hold, by disk name (the caller
    /// vouches for them, for example because it wrote the disk and nothing wrote to it since).
    /// A disk found here is not scanned; the others are. Ignored unless in place.
    pub known_content: HashMap<DiskName, BlockMap>,
    pub options: TransferOptions,
}

/// What a restore did.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    pub point: RecoveryPoint,
    pub disks: Vec<RestoredDisk>,
    pub elapsed: Duration,
    /// On a replicated vault: the objects read from the secondary because the primary's copy
    /// was missing or corrupt (and healed on the primary). Zero otherwise.
    pub repairs: Repairs,
}

/// One restored disk image.
#[derive(Clone, Debug)]
pub struct RestoredDisk {
    pub name: DiskName,
    pub path: PathBuf,
    pub size: u64,
    /// Bytes of block data written; the rest of the image is holes (new files) or was already
    /// right (in place).
    pub bytes_written: u64,
    /// Blocks in the disk.
    pub blocks: u64,
    /// Blocks written: into a new file, every non-zero block; in place, the blocks that differed
    /// from the point (rewritten, or punched back to a hole where the point has zeros).
    pub blocks_changed: u64,
    /// In place: bytes of the existing disk read and hashed to find the blocks that differ (0
    /// when its content was known, see [`RestoreRequest::known_content`]).
    pub bytes_scanned: u64,
}

/// The file a disk is restored into before it is complete and renamed into place.
fn partial_path(target: &Path, disk: &DiskName) -> PathBuf {
    target.join(format!(".{disk}.blockvault-partial"))
}

/// Refuses a restore target that exists, unless `overwrite`, and one that is not a file.
fn check_target(path: &Path, overwrite: bool) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
        Ok(meta) if !meta.is_file() => Err(Error::TargetNotAFile {
            path: path.to_owned(),
        }),
        Ok(_) if !overwrite => Err(Error::TargetExists {
            path: path.to_owned(),
        }),
        Ok(_) => Ok(()),
    }
}

/// An image being written, open, with its path for messages.
#[derive(Debug)]
pub(crate) struct ImageFile {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    /// Cleared the first time the file system refuses to punch a hole; zeros are written then.
    pub(crate) can_punch: AtomicBool,
}

impl ImageFile {
    pub(crate) fn new(file: File, path: PathBuf) -> ImageFile {
        ImageFile {
            file,
            path,
            can_punch: AtomicBool::new(true),
        }
    }
}

/// Where one block goes and what it must be. A zero `id` (in place only) clears the range.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockTarget {
    pub(crate) index: usize,
    pub(crate) offset: u64,
    pub(crate) len: usize,
    pub(crate) id: ChunkId,
    pub(crate) before: Before,
}

impl BlockTarget {
    pub(crate) fn new(map: &BlockMap, index: usize, before: Before) -> BlockTarget {
        BlockTarget {
            index,
            offset: map.offset_of(index),
            len: map.len_of(index),
            id: map.get(index).unwrap_or(ChunkId::ZERO),
            before,
        }
    }
}

/// Every non-zero block of `map`, to be written into a file of zeros.
fn data_blocks(map: &BlockMap) -> impl Iterator<Item = BlockTarget> + '_ {
    map.data().map(|(index, id)| BlockTarget {
        index,
        offset: map.offset_of(index),
        len: map.len_of(index),
        id,
        before: Before::Zeros,
    })
}

/// Bytes and blocks [`Vault::write_blocks`] wrote.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Written {
    pub(crate) bytes: u64,
    pub(crate) blocks: u64,
}

impl Vault {
    /// Restores the point `request.point` of `request.vm` into `request.target`.
    ///
    /// Into new files (the default): every disk is written to a hidden partial file first:
    /// created sparse at the disk's size, then each non-zero block is fetched, decoded and
    /// verified against its id on the rayon pool, and written at its offset (all-zero 4 KiB
    /// pages inside a block are skipped, so the image stays as sparse as the original). Only
    /// when every disk is complete and synced are the partial files renamed to the disk names.
    /// On any failure the partial files are removed and existing files are untouched.
    ///
    /// In place (`request.in_place`): every disk of the point must already exist in
    /// `request.target` as a regular file, and all are checked and opened before any is
    /// touched. Each is then set to the point's size, read and hashed like a backup reads it
    /// (holes skipped), and only the blocks whose content differs from the point are fetched,
    /// verified and written straight into the disk; a block that is zero in the point but holds
    /// data on disk is punched back to a hole. The cost is one read of the disk plus the churn,
    /// not the disk size.
    ///
    /// # Crash semantics in place
    ///
    /// There is no partial file to throw away: a restore that fails or is killed leaves each
    /// disk a mix of old and restored blocks (and possibly already at the point's size). Running
    /// the same restore again finishes the job: it is idempotent, blocks already right are
    /// neither fetched nor rewritten. Do not start the VM on a disk whose in-place restore did
    /// not complete.
    pub async fn restore(
        &self,
        request: &RestoreRequest,
        progress: Arc<dyn Progress>,
    ) -> Result<RestoreReport> {
        let started = Instant::now();
        let repaired_before = self.store().repairs();
        let point = self.resolve(&request.vm, &request.point).await?;
        let disks = if request.in_place {
            let targets = in_place::open_targets(&point, &request.target)?;
            let maps = self.point_maps(&point).await?;
            self.restore_in_place(&point, &maps, targets, request, &progress)
                .await?
        } else {
            for disk in &point.disks {
                check_target(&request.target.join(disk.name.as_str()), request.overwrite)?;
            }
            let maps = self.point_maps(&point).await?;
            self.restore_new(&point, &maps, request, &progress).await?
        };
        Ok(RestoreReport {
            point,
            disks,
            elapsed: started.elapsed(),
            repairs: self.store().repairs().since(&repaired_before),
        })
    }

    /// The block map of every disk of `point`, in order.
    async fn point_maps(&self, point: &RecoveryPoint) -> Result<Vec<BlockMap>> {
        let mut maps = Vec::with_capacity(point.disks.len());
        for disk in &point.disks {
            let map = self
                .store()
                .get_map(&point.vm, &point.id, &disk.name, Some(&disk.map_digest))
                .await?;
            maps.push(map);
        }
        Ok(maps)
    }

    /// A restore into new files: partial files, renamed into place once all are complete.
    async fn restore_new(
        &self,
        point: &RecoveryPoint,
        maps: &[BlockMap],
        request: &RestoreRequest,
        progress: &Arc<dyn Progress>,
    ) -> Result<Vec<RestoredDisk>> {
        let target = &request.target;
        let total = maps
            .iter()
            .flat_map(data_blocks)
            .map(|b| b.len as u64)
            .sum();
        progress.begin("restore", total);
        std::fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;

        let mut partials = Vec::with_capacity(maps.len());
        let written = self
            .write_all_disks(point, maps, target, request, progress, &mut partials)
            .await;
        let written = match written {
            Ok(written) => written,
            Err(e) => {
                for partial in &partials {
                    let _ = std::fs::remove_file(partial);
                }
                return Err(e);
            }
        };
        let mut disks = Vec::with_capacity(maps.len());
        for (n, ((disk, partial), written)) in
            point.disks.iter().zip(&partials).zip(written).enumerate()
        {
            let path = target.join(disk.name.as_str());
            if let Err(e) = std::fs::rename(partial, &path) {
                for rest in &partials[n..] {
                    let _ = std::fs::remove_file(rest);
                }
                return Err(Error::io(&path, e));
            }
            disks.push(RestoredDisk {
                name: disk.name.clone(),
                path,
                size: disk.size,
                bytes_written: written.bytes,
                blocks: maps[n].len() as u64,
                blocks_changed: written.blocks,
                bytes_scanned: 0,
            });
        }
        sync_dir(target)?;
        Ok(disks)
    }

    /// Writes every disk of `point` to its partial file (pushed to `partials` as it is
    /// created, so the caller can clean up); returns what was written per disk.
    async fn write_all_disks(
        &self,
        point: &RecoveryPoint,
        maps: &[BlockMap],
        target: &Path,
        request: &RestoreRequest,
        progress: &Arc<dyn Progress>,
        partials: &mut Vec<PathBuf>,
    ) -> Result<Vec<Written>> {
        let mut written = Vec::with_capacity(maps.len());
        for (disk, map) in point.disks.iter().zip(maps) {
            let partial = partial_path(target, &disk.name);
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&partial)
                .map_err(|e| Error::io(&partial, e))?;
            partials.push(partial.clone());
            file.set_len(map.disk_size())
                .map_err(|e| Error::io(&partial, e))?;
            let image = Arc::new(ImageFile::new(file, partial));
            let done = self
                .write_blocks(
                    &disk.name,
                    data_blocks(map),
                    &image,
                    request.options.concurrency,
                    progress,
                )
                .await?;
            sync(image, SyncKind::All).await?;
            written.push(done);
        }
        Ok(written)
    }

    /// The data path shared by both kinds of restore: fetches, verifies and writes `blocks` of
    /// one disk, at most `concurrency` at once, starting writeback as it goes. A block with a
    /// zero id is not fetched: its range is cleared.
    ///
    /// On the first failure no further block is started, but the blocks in flight finish: when
    /// this returns, nothing of it is still writing to the image.
    pub(crate) async fn write_blocks(
        &self,
        disk: &DiskName,
        blocks: impl Iterator<Item = BlockTarget>,
        image: &Arc<ImageFile>,
        concurrency: usize,
        progress: &Arc<dyn Progress>,
    ) -> Result<Written> {
        let store = self.store();
        let stop = AtomicBool::new(false);
        let mut writes = futures::stream::iter(blocks)
            .take_while(|_| std::future::ready(!stop.load(Ordering::Relaxed)))
            .map(|block| async move {
                let image = Arc::clone(image);
                if block.id.is_zero() {
                    return in_place::clear_block(image, block).await;
                }
                let encoded = store
                    .get_chunk(&block.id)
                    .await
                    .map_err(|source| block_error(disk, block, source))?;
                let disk = disk.clone();
                let (written, disk, image) = cpu::run(move || {
                    let written = decode_and_write(&disk, block, &encoded, &image);
                    (written, disk, image)
                })
                .await;
                match written {
                    // A replicated vault has another copy: verified, used, healed.
                    Err(Error::Block { source, .. })
                        if store.is_replicated()
                            && matches!(*source, blockvault_store::Error::ChunkCorrupt { .. }) =>
                    {
                        let good = store
                            .chunk_from_replica(&block.id, *source)
                            .await
                            .map_err(|source| block_error(&disk, block, source))?;
                        cpu::run(move || decode_and_write(&disk, block, &good, &image)).await
                    }
                    other => other,
                }
            })
            .buffer_unordered(concurrency.max(1));
        let mut flusher = Flusher::new(image);
        let (mut total, mut first_error) = (Written::default(), None);
        while let Some(result) = writes.next().await {
            match result {
                Ok((len, written)) => {
                    progress.advance(len);
                    flusher.wrote(written);
                    total.bytes += written;
                    total.blocks += 1;
                }
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    first_error.get_or_insert(e);
                }
            }
        }
        flusher.finish().await;
        first_error.map_or(Ok(total), Err)
    }
}

/// How much of a file [`sync`] makes durable.
#[derive(Clone, Copy, Debug)]
pub(crate) enum SyncKind {
    /// `fsync`: data and all metadata.
    All,
    /// `fdatasync`: data and the metadata needed to read it (size, extents).
    Data,
}

/// Syncs an image on a blocking thread.
pub(crate) async fn sync(image: Arc<ImageFile>, kind: SyncKind) -> Result<()> {
    tokio::task::spawn_blocking(move || {
        match kind {
            SyncKind::All => image.file.sync_all(),
            SyncKind::Data => image.file.sync_data(),
        }
        .map_err(|e| Error::io(&image.path, e))
    })
    .await
    .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
}

/// Starts writeback of a restored image while it is still being written, and keeps the image
/// out of the page cache: every [`Flusher::EVERY`] bytes written, [`release_written`] runs on a
/// blocking thread (never more than one at a time) while decoding goes on.
///
/// Without it the kernel starts writeback only at its dirty thresholds (gigabytes on a large
/// host) and a restore idles through one long final fsync. And a restored image is not read
/// back soon: left in the page cache it would push out what the host's running VMs use, a
/// gigabyte per gigabyte restored. Each round typically drops what the round before wrote
/// (what its writeback has finished), so the image holds about two rounds of the cache.
struct Flusher {
    image: Arc<ImageFile>,
    since_last: u64,
    running: Option<tokio::task::JoinHandle<()>>,
}

impl Flusher {
    const EVERY: u64 = 128 << 20;

    fn new(image: &Arc<ImageFile>) -> Flusher {
        Flusher {
            image: Arc::clone(image),
            since_last: 0,
            running: None,
        }
    }

    fn wrote(&mut self, bytes: u64) {
        self.since_last += bytes;
        let idle = self.running.as_ref().is_none_or(|r| r.is_finished());
        if self.since_last >= Self::EVERY && idle {
            self.since_last = 0;
            let image = Arc::clone(&self.image);
            self.running = Some(tokio::task::spawn_blocking(move || {
                release_written(&image.file);
            }));
        }
    }

    async fn finish(self) {
        if let Some(running) = self.running {
            let _ = running.await;
        }
    }
}

/// Starts writeback of every dirty page of `file` without waiting for it, and drops the pages
/// already written back from the page cache (`POSIX_FADV_DONTNEED`, which does both on Linux).
///
/// It makes nothing durable: the final fsync does, and reports any error this writeback met
/// (the kernel keeps it for the next fsync). A `fdatasync` here instead waits for the writeback
/// and leaves every page cached; measured on the benchmark VM, restores then took 25-30% longer
/// in the runs after the first, the kernel's copies into fresh page-cache pages costing two to
/// three times the system time (BENCHMARKS.md, "Restores out of the page cache").
fn release_written(file: &File) {
    #[cfg(target_os = "linux")]
    let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed);
    // Elsewhere, a plain fdatasync (waits, keeps the pages; where a failed fsync clears the
    // error, the final one may not see it again).
    #[cfg(not(target_os = "linux"))]
    let _ = file.sync_data();
}

fn block_error(disk: &DiskName, block: BlockTarget, source: blockvault_store::Error) -> Error {
    Error::Block {
        disk: disk.clone(),
        index: block.index,
        offset: block.offset,
        id: block.id,
        source: Box::new(source),
    }
}

/// Decodes and verifies one chunk, then writes it at its offset; returns (block length, bytes
/// actually written).
fn decode_and_write(
    disk: &DiskName,
    block: BlockTarget,
    encoded: &Bytes,
    image: &ImageFile,
) -> Result<(u64, u64)> {
    let corrupt = |source| {
        let source = blockvault_store::Error::ChunkCorrupt {
            id: block.id,
            source,
        };
        block_error(disk, block, source)
    };
    crate::decode::verified(encoded, block.id, corrupt, |buf| {
        if buf.len() != block.len {
            return Err(Error::BlockLength {
                disk: disk.clone(),
                index: block.index,
                offset: block.offset,
                expected: block.len,
                actual: buf.len(),
            });
        }
        let written = in_place::write_block(image, buf, block.offset, block.before)
            .map_err(|e| Error::io(&image.path, e))?;
        Ok((block.len as u64, written))
    })
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}
