//! The put stage: new chunks from the scan, into the store, at most `concurrency` at once; each
//! offered to the tee (an early send) once stored, and recorded as landed.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use blockvault_core::{ChunkId, DiskName};
use blockvault_store::Store;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc::Receiver;

use super::scan::NewChunk;
use crate::landed::Landed;
use crate::{EarlySend, Error, Result};

/// What the put stage writes to and tells.
pub(super) struct Put<'a> {
    pub(super) store: &'a Store,
    /// Whether to ask the store about each new chunk first: without an index, or with one a
    /// killed writer may have left short.
    pub(super) ask_store: bool,
    /// Chunks verify found bad: never taken as present.
    pub(super) damaged: &'a HashSet<ChunkId>,
    pub(super) landed: &'a Landed,
    /// New chunks the store turned out to hold (asked about after a killed writer).
    pub(super) present: &'a Mutex<Vec<ChunkId>>,
    /// The disks' names, by their position in the request.
    pub(super) disk_names: &'a [DiskName],
    pub(super) tee: Option<&'a EarlySend>,
    pub(super) concurrency: usize,
}

/// Puts what arrives on `rx` until the scan closes it; returns (bytes, objects) stored.
///
/// The stage owns the receiver: when it stops (done or failed) the receiver is dropped, so a
/// scan blocked on a full channel wakes up with an error instead of waiting forever. On the
/// first failure the stage stops taking chunks but lets the puts in flight finish: when it
/// returns, nothing of it is still writing to the store.
pub(super) async fn put_all(mut rx: Receiver<NewChunk>, put: Put<'_>) -> Result<(u64, u64)> {
    let Put {
        store,
        ask_store,
        damaged,
        landed,
        present,
        disk_names,
        tee,
        concurrency,
    } = put;
    let stop = AtomicBool::new(false);
    let mut uploads = futures::stream::poll_fn(|cx| {
        if stop.load(Ordering::Relaxed) {
            rx.close();
            return std::task::Poll::Ready(None);
        }
        rx.poll_recv(cx)
    })
    .map(|chunk: NewChunk| async move {
        if ask_store && !damaged.contains(&chunk.id) && store.has_chunk(&chunk.id).await? {
            present
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(chunk.id);
            return Ok::<u64, Error>(0);
        }
        let len = chunk.encoded.len() as u64;
        let encoded = Bytes::from(chunk.encoded);
        store.put_chunk(&chunk.id, encoded.clone()).await?;
        if let Some(tee) = tee {
            let place = disk_names.get(chunk.disk).map(|name| (name, chunk.block));
            tee.offer(chunk.id, &encoded, place);
        }
        landed.put(chunk.id, len).await?;
        Ok(len)
    })
    .buffer_unordered(concurrency);
    let (mut bytes, mut count, mut first_error) = (0u64, 0u64, None);
    while let Some(result) = uploads.next().await {
        match result {
            Ok(len) => {
                bytes += len;
                count += u64::from(len > 0);
            }
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok((bytes, count)), Err)
}
