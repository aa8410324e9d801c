use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blockvault_core::{BlockMap, ChunkDecoder, ChunkId, DiskName, RecoveryPoint, VmName, is_zero};
use blockvault_store::cpu;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use crate::{Error, PointSelector, Progress, Result, TransferOptions, Vault};

/// Restore one point of a VM into a directory, one file per disk.
#[derive(Clone, Debug)]
pub struct RestoreRequest {
    pub vm: VmName,
    pub point: PointSelector,
    /// The directory to write the disks into (created if missing). Each disk becomes a file
    /// named after the disk.
    pub target: PathBuf,
    /// Replace existing files of the same names (they stay untouched until the new images are
    /// complete).
    pub overwrite: bool,
    pub options: TransferOptions,
}

/// What a restore did.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    pub point: RecoveryPoint,
    pub disks: Vec<RestoredDisk>,
    pub elapsed: Duration,
}

/// One restored disk image.
#[derive(Clone, Debug)]
pub struct RestoredDisk {
    pub name: DiskName,
    pub path: PathBuf,
    pub size: u64,
    /// Bytes of block data written; the rest of the image is holes.
    pub bytes_written: u64,
}

/// The file a disk is restored into before it is complete and renamed into place.
fn partial_path(target: &Path, disk: &DiskName) -> PathBuf {
    target.join(format!(".{disk}.blockvault-partial"))
}

thread_local! {
    /// One zstd context and one block buffer per rayon worker, reused for every block.
    static DECODER: RefCell<Option<(ChunkDecoder, Vec<u8>)>> = const { RefCell::new(None) };
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

/// A restored image being written: its hidden partial file, open, and its path for messages.
#[derive(Debug)]
struct Partial {
    file: File,
    path: PathBuf,
}

/// Where one block goes and what it must be.
#[derive(Clone, Copy)]
struct BlockTarget {
    index: usize,
    offset: u64,
    len: usize,
    id: ChunkId,
}

impl Vault {
    /// Restores the point `request.point` of `request.vm` into `request.target`.
    ///
    /// Every disk is written to a hidden partial file first: created sparse at the disk's size,
    /// then each non-zero block is fetched, decoded and verified against its id on the rayon
    /// pool, and written at its offset (all-zero 4 KiB pages inside a block are skipped, so the
    /// image stays as sparse as the original). Only when every disk is complete and synced are
    /// the partial files renamed to the disk names. On any failure the partial files are
    /// removed and existing files are untouched.
    pub async fn restore(
        &self,
        request: &RestoreRequest,
        progress: Arc<dyn Progress>,
    ) -> Result<RestoreReport> {
        let started = Instant::now();
        let point = self.resolve(&request.vm, &request.point).await?;
        let target = &request.target;
        for disk in &point.disks {
            check_target(&target.join(disk.name.as_str()), request.overwrite)?;
        }
        let mut maps = Vec::with_capacity(point.disks.len());
        for disk in &point.disks {
            let map = self
                .store()
                .get_map(&point.vm, &point.id, &disk.name, Some(&disk.map_digest))
                .await?;
            maps.push(map);
        }
        let total = maps
            .iter()
            .map(|m| {
                (0..m.len())
                    .filter(|&i| !m.ids()[i].is_zero())
                    .map(|i| m.len_of(i) as u64)
                    .sum::<u64>()
            })
            .sum();
        progress.begin("restore", total);
        std::fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;

        let mut partials = Vec::with_capacity(maps.len());
        let written = self
            .write_all_disks(&point, &maps, target, request, &progress, &mut partials)
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
        for (n, ((disk, partial), bytes_written)) in
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
                bytes_written,
            });
        }
        sync_dir(target)?;
        Ok(RestoreReport {
            point,
            disks,
            elapsed: started.elapsed(),
        })
    }

    /// Writes every disk of `point` to its partial file (pushed to `partials` as it is
    /// created, so the caller can clean up); returns the bytes written per disk.
    async fn write_all_disks(
        &self,
        point: &RecoveryPoint,
        maps: &[BlockMap],
        target: &Path,
        request: &RestoreRequest,
        progress: &Arc<dyn Progress>,
        partials: &mut Vec<PathBuf>,
    ) -> Result<Vec<u64>> {
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
            let image = Arc::new(Partial {
                file,
                path: partial.clone(),
            });
            let bytes = self
                .write_disk(
                    &disk.name,
                    map,
                    &image,
                    request.options.concurrency,
                    progress,
                )
                .await?;
            tokio::task::spawn_blocking(move || image.file.sync_all())
                .await
                .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
                .map_err(|e| Error::io(&partial, e))?;
            written.push(bytes);
        }
        Ok(written)
    }

    /// Fetches, verifies and writes every non-zero block of one disk; returns bytes written.
    async fn write_disk(
        &self,
        disk: &DiskName,
        map: &BlockMap,
        image: &Arc<Partial>,
        concurrency: usize,
        progress: &Arc<dyn Progress>,
    ) -> Result<u64> {
        let blocks = map
            .ids()
            .iter()
            .enumerate()
            .filter(|(_, id)| !id.is_zero())
            .map(|(index, &id)| BlockTarget {
                index,
                offset: map.offset_of(index),
                len: map.len_of(index),
                id,
            });
        let store = self.store();
        let mut flusher = Flusher::new(image);
        let written = futures::stream::iter(blocks)
            .map(|block| async move {
                let encoded = store
                    .get_chunk(&block.id)
                    .await
                    .map_err(|source| block_error(disk, block, source))?;
                let image = Arc::clone(image);
                let disk = disk.clone();
                cpu::run(move || decode_and_write(&disk, block, &encoded, &image)).await
            })
            .buffer_unordered(concurrency.max(1))
            .try_fold(0u64, |total, (len, written)| {
                progress.advance(len);
                flusher.wrote(written);
                async move { Ok(total + written) }
            })
            .await;
        flusher.finish().await;
        written
    }
}

/// Starts writeback of a restored image while it is still being written, so the fsync at the
/// end waits for the last stretch only, not the whole image: every [`Flusher::EVERY`] bytes
/// written, one `fdatasync` runs on a blocking thread (never more than one at a time) while
/// decoding goes on. Without it the kernel starts writeback only at its dirty thresholds
/// (gigabytes on a large host) and a restore idles through one long final fsync.
struct Flusher {
    image: Arc<Partial>,
    since_last: u64,
    running: Option<tokio::task::JoinHandle<()>>,
}

impl Flusher {
    const EVERY: u64 = 128 << 20;

    fn new(image: &Arc<Partial>) -> Flusher {
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
            // Errors surface in the final, awaited fsync; this one only starts the writeback.
            self.running = Some(tokio::task::spawn_blocking(move || {
                let _ = image.file.sync_data();
            }));
        }
    }

    async fn finish(self) {
        if let Some(running) = self.running {
            let _ = running.await;
        }
    }
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
    image: &Partial,
) -> Result<(u64, u64)> {
    let corrupt = |source| {
        let source = blockvault_store::Error::ChunkCorrupt {
            id: block.id,
            source,
        };
        block_error(disk, block, source)
    };
    DECODER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let (mut decoder, mut buf) = match slot.take() {
            Some(state) => state,
            None => (ChunkDecoder::new().map_err(corrupt)?, Vec::new()),
        };
        let result = decoder
            .decode_verified(encoded, block.id, &mut buf)
            .map_err(corrupt)
            .and_then(|()| {
                if buf.len() != block.len {
                    return Err(Error::BlockLength {
                        disk: disk.clone(),
                        index: block.index,
                        offset: block.offset,
                        expected: block.len,
                        actual: buf.len(),
                    });
                }
                write_sparse(&image.file, &buf, block.offset).map_err(|e| Error::io(&image.path, e))
            });
        *slot = Some((decoder, buf));
        result.map(|written| (block.len as u64, written))
    })
}

/// Page size for sparse writes: runs of all-zero 4 KiB pages are left as holes.
const PAGE: usize = 4096;

/// Writes `data` at `offset` of a file whose range there is a hole, skipping all-zero pages.
/// Returns the bytes written.
fn write_sparse(file: &File, data: &[u8], offset: u64) -> std::io::Result<u64> {
    let mut written = 0u64;
    let mut run_start: Option<usize> = None;
    for (i, page) in data.chunks(PAGE).enumerate() {
        let at = i * PAGE;
        match (is_zero(page), run_start) {
            (false, None) => run_start = Some(at),
            (true, Some(start)) => {
                file.write_all_at(&data[start..at], offset + start as u64)?;
                written += (at - start) as u64;
                run_start = None;
            }
            _ => {}
        }
    }
    if let Some(start) = run_start {
        file.write_all_at(&data[start..], offset + start as u64)?;
        written += (data.len() - start) as u64;
    }
    Ok(written)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_writes_skip_zero_pages_and_keep_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let file = File::create(&path).expect("create");
        file.set_len(1 << 20).expect("len");
        let mut data = vec![0u8; 64 << 10];
        data[5000] = 1; // page 1
        data[(64 << 10) - 1] = 2; // last page
        let written = write_sparse(&file, &data, 128 << 10).expect("write");
        assert_eq!(written, 2 * PAGE as u64);
        let content = std::fs::read(&path).expect("read");
        assert_eq!(&content[128 << 10..(128 << 10) + (64 << 10)], &data[..]);
        assert!(content[..128 << 10].iter().all(|&b| b == 0));
    }
}
