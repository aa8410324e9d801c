//! The data path both kinds of restore share: blocks of one disk fetched and verified through
//! the [`PointReader`], written into the image at most `concurrency` at once, with writeback
//! started as it goes.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use blockvault_core::{BlockMap, ChunkId};
use futures::StreamExt;

use super::image::{Before, ImageFile, clear, write_block};
use crate::reader::{BlockRef, PointReader};
use crate::{Error, Progress, Result};

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
pub(super) fn data_blocks(map: &BlockMap) -> impl Iterator<Item = BlockTarget> + '_ {
    map.data().map(|(index, id)| BlockTarget {
        index,
        offset: map.offset_of(index),
        len: map.len_of(index),
        id,
        before: Before::Zeros,
    })
}

/// Bytes and blocks [`write_blocks`] wrote.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Written {
    pub(crate) bytes: u64,
    pub(crate) blocks: u64,
}

/// Fetches, verifies and writes `blocks` of disk `disk` (its position in the point) into
/// `image`, at most `concurrency` at once, starting writeback as it goes. A block with a zero
/// id is not fetched: its range is cleared.
///
/// On the first failure no further block is started, but the blocks in flight finish: when
/// this returns, nothing of it is still writing to the image.
pub(crate) async fn write_blocks(
    reader: &PointReader,
    disk: usize,
    blocks: impl Iterator<Item = BlockTarget>,
    image: &Arc<ImageFile>,
    concurrency: usize,
    progress: &Arc<dyn Progress>,
) -> Result<Written> {
    let stop = AtomicBool::new(false);
    let mut writes = futures::stream::iter(blocks)
        .take_while(|_| std::future::ready(!stop.load(Ordering::Relaxed)))
        .map(|block| async move {
            let image = Arc::clone(image);
            if block.id.is_zero() {
                return clear_block(image, block).await;
            }
            let target = BlockRef {
                index: block.index,
                offset: block.offset,
                len: block.len,
                id: block.id,
            };
            reader
                .with_block(disk, target, move |buf| {
                    let written = write_block(&image, buf, block.offset, block.before)
                        .map_err(|e| Error::io(&image.path, e))?;
                    Ok((block.len as u64, written))
                })
                .await
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
