//! The scan stage: read, hash, skip known, encode; new chunks go to the put stage through a
//! bounded channel.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use blockvault_core::{BlockMap, ChunkCodec, ChunkEncoder, ChunkId};
use blockvault_source::missed_by_hint;
use jiff::Timestamp;

use super::known::Known;
use super::sources::{DiskScan, Source};
use crate::{Error, Progress, Result};

/// A chunk on its way from the scan to the upload stage, with where it was found: the disk
/// (its position in the request) and the block.
pub(super) struct NewChunk {
    pub(super) id: ChunkId,
    pub(super) encoded: Vec<u8>,
    pub(super) disk: usize,
    pub(super) block: usize,
}

thread_local! {
    /// One zstd context per rayon worker, reused for every block it compresses (it holds no
    /// key: it serves every codec).
    static ENCODER: RefCell<Option<ChunkEncoder>> = const { RefCell::new(None) };
}

/// The chunk object of block `id` by `codec`, with this thread's encoder.
fn encode(codec: &ChunkCodec, id: ChunkId, block: &[u8]) -> Result<Vec<u8>> {
    ENCODER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let mut encoder = match slot.take() {
            Some(encoder) => encoder,
            None => ChunkEncoder::new().map_err(blockvault_source::Error::from)?,
        };
        let encoded = codec.encode(&mut encoder, id, block);
        *slot = Some(encoder);
        Ok(encoded)
    })
}

/// The scan stage: runs on a blocking thread, fans out on the rayon pool, and hands new chunks
/// to the upload stage through `tx` (blocking when it is full: back-pressure).
///
/// Every disk's scan is planned first (its data blocks found, its change hint applied to the
/// parent's map when `parent_named`), so progress starts with the bytes that will really be
/// read.
pub(super) fn scan_all(
    sources: Vec<Source>,
    known: Known,
    time: Timestamp,
    parent_named: bool,
    tx: &tokio::sync::mpsc::Sender<NewChunk>,
    scanned: &AtomicU64,
    progress: &dyn Progress,
) -> Result<Vec<Scanned>> {
    let mut plans = Vec::with_capacity(sources.len());
    for source in &sources {
        let parent = known.previous.get(&source.name).map(Arc::as_ref);
        let (plan, fallback) = source.plan(parent, parent_named)?;
        let record = source.record(&plan, fallback);
        plans.push((plan, record));
    }
    progress.begin("backup", plans.iter().map(|(plan, _)| plan.bytes()).sum());
    let mut scans = Vec::with_capacity(sources.len());
    for (disk, (source, (plan, record))) in sources.iter().zip(plans).enumerate() {
        let codec = source.chunker.codec();
        let previous = known.previous.get(&source.name).map(Arc::as_ref);
        let started = std::time::Instant::now();
        let map = plan.scan(source.image.as_ref(), time, |block| {
            let len = block.data.len() as u64;
            scanned.fetch_add(len, Ordering::Relaxed);
            progress.advance(len);
            // Each new id is compressed and sent at most once.
            if block.id.is_zero() || !known.claim(previous, block.index, block.id) {
                return Ok(());
            }
            let encoded = encode(codec, block.id, block.data)?;
            tx.blocking_send(NewChunk {
                id: block.id,
                encoded,
                disk,
                block: block.index,
            })
            .map_err(|_| Error::UploadStopped)
        })?;
        let mut record = record;
        record.scan_time = started.elapsed();
        if source.checks_hint(parent_named)
            && let Some(parent) = previous
        {
            record.hint_missed = Some(missed_by_hint(parent, &map, &source.hint).len() as u64);
        }
        scans.push((map, record));
    }
    Ok(sources
        .into_iter()
        .zip(scans)
        .map(|(source, (map, record))| Scanned {
            source,
            map,
            record,
        })
        .collect())
}

/// One disk, scanned: its new map and how it was read.
pub(super) struct Scanned {
    pub(super) source: Source,
    pub(super) map: BlockMap,
    pub(super) record: DiskScan,
}
