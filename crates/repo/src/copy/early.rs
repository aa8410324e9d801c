//! Early send: the Transfer's uploads, begun while the Snapshot still runs.
//!
//! A backup job's Snapshot writes each changed block into the local snapshot tier; its Transfer
//! then copies what the vault lacks and commits the vault's point. Run one after the other, the
//! vault's copies wait for the whole scan, so the job costs scan + copy. An [`EarlySend`] lets
//! the Snapshot hand each chunk it has just written (the encoded bytes still in memory) to the
//! vault at once, overlapping the vault's writes or uploads with the scan and the compression.
//! The Transfer still starts only after the Snapshot completes, and still decides and commits
//! everything: it finds the early chunks landed and copies only the rest.
//!
//! An early send never slows the Snapshot down or fails it: an offer is declined (the Transfer
//! copies that chunk later) when the bytes held for the vault reach [`HELD_BYTES`], when the
//! vault is not ready yet, or once an upload failed. It takes the vault's writer lease first,
//! like any writer, before it reads what decides which chunks to skip, and hands that lease,
//! what it read and what landed to the Transfer (see [`Repository::transfer_early`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use blockvault_core::{ChunkId, DiskName, VmName};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::prepared::Sent;
use crate::landed::Landed;
use crate::{Error, Repository, Result, TransferOptions};

/// The most bytes of encoded chunks an early send holds (queued or uploading) at once.
pub const HELD_BYTES: usize = 32 << 20;

/// A chunk offered to the vault, where the Snapshot found it, with its share of
/// [`HELD_BYTES`] (freed when it is done).
struct Offer {
    id: ChunkId,
    encoded: Bytes,
    place: Option<(DiskName, usize)>,
    _held: OwnedSemaphorePermit,
}

/// The vault's side of a backup job while its Snapshot runs: takes chunks as the snapshot tier
/// stores them and uploads those the vault lacks. See the module docs.
#[derive(Debug)]
pub struct EarlySend {
    offers: mpsc::UnboundedSender<Offer>,
    /// [`HELD_BYTES`] in KiB permits.
    room: Arc<Semaphore>,
    declined: AtomicU64,
    task: tokio::task::JoinHandle<Sent>,
}

impl Repository {
    /// Starts an early send for a backup of `vm`'s disks `disks` (their names, to read the
    /// vault's newest maps of them). Returns at once: the lease and the reads happen in the
    /// background, and chunks offered before they are done are declined.
    pub fn early_send(
        &self,
        vm: &VmName,
        disks: HashSet<DiskName>,
        options: TransferOptions,
    ) -> EarlySend {
        self.early_send_holding(vm, disks, options, HELD_BYTES)
    }

    /// [`Repository::early_send`] holding at most `held` bytes of chunks (rounded down to KiB).
    pub fn early_send_holding(
        &self,
        vm: &VmName,
        disks: HashSet<DiskName>,
        options: TransferOptions,
        held: usize,
    ) -> EarlySend {
        let (offers, queue) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(self.clone(), vm.clone(), disks, options, queue));
        EarlySend {
            offers,
            room: Arc::new(Semaphore::new(held >> 10)),
            declined: AtomicU64::new(0),
            task,
        }
    }
}

impl EarlySend {
    /// [`Repository::early_send`] for a vault still being opened, which `vault` yields: offers wait
    /// in the queue (within [`HELD_BYTES`], then are declined) until it is open, then go as
    /// with [`Repository::early_send`]. If it yields `None` (the vault did not open), nothing is
    /// sent and the Transfer, which does not run then, owes nothing to it.
    pub fn when_open(
        vault: impl Future<Output = Option<impl Into<Repository> + Send>> + Send + 'static,
        vm: &VmName,
        disks: HashSet<DiskName>,
        options: TransferOptions,
    ) -> EarlySend {
        let (offers, queue) = mpsc::unbounded_channel();
        let vm = vm.clone();
        let task = tokio::spawn(async move {
            match vault.await {
                Some(vault) => run(vault.into(), vm, disks, options, queue).await,
                None => Sent {
                    prepared: Err(Error::NotOpened),
                    declined: 0,
                },
            }
        });
        EarlySend {
            offers,
            room: Arc::new(Semaphore::new(HELD_BYTES >> 10)),
            declined: AtomicU64::new(0),
            task,
        }
    }

    /// Offers chunk `id`, just stored in the snapshot tier as `encoded`, found at block
    /// `place` (disk, index) when the caller knows where: a block the vault's newest point
    /// has at the same place is not sent, nor one the vault's chunk index names. Without an
    /// index (no state directory), a chunk the newest point holds at another place is sent
    /// again, harmlessly. Never waits.
    ///
    /// Each chunk is meant to be offered once (a Snapshot stores each new chunk once), so no
    /// set of the ids offered is kept: a million-chunk disk would need one. An id offered
    /// again is uploaded again, harmlessly: the Transfer counts the chunk once and the bytes
    /// sent twice.
    pub fn offer(&self, id: ChunkId, encoded: &Bytes, place: Option<(&DiskName, usize)>) {
        let kib = u32::try_from(encoded.len().div_ceil(1024)).unwrap_or(u32::MAX);
        let queued = Arc::clone(&self.room)
            .try_acquire_many_owned(kib)
            .ok()
            .is_some_and(|held| {
                self.offers
                    .send(Offer {
                        id,
                        encoded: encoded.clone(),
                        place: place.map(|(disk, block)| (disk.clone(), block)),
                        _held: held,
                    })
                    .is_ok()
            });
        if !queued {
            self.declined.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Ends the offers and waits for the uploads in flight; what it leaves is for
    /// [`Repository::transfer_early`].
    pub async fn finish(self) -> Sent {
        let EarlySend {
            offers,
            declined,
            task,
            ..
        } = self;
        drop(offers);
        let mut sent = task
            .await
            .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()));
        sent.declined += declined.into_inner();
        sent
    }

    /// Ends an early send whose Transfer will not run: waits for the uploads in flight (what
    /// landed stays, journaled in the chunk index, for the next transfer) and releases the
    /// lease. A failure to release is returned as a warning.
    pub async fn abandon(self) -> Option<String> {
        let prepared = self.finish().await.prepared.ok()?;
        prepared.release().await
    }
}

/// The early send's task: takes the writer's lease and reads what decides which chunks to
/// skip, then uploads the offers the vault lacks.
async fn run(
    vault: Repository,
    vm: VmName,
    disks: HashSet<DiskName>,
    options: TransferOptions,
    mut queue: mpsc::UnboundedReceiver<Offer>,
) -> Sent {
    let prepared = match vault.prepare_write(&vm, &disks).await {
        Ok(prepared) => prepared,
        Err(e) => {
            return Sent {
                prepared: Err(e),
                declined: 0,
            };
        }
    };
    // Offers that arrived meanwhile wait in the queue: they were held within HELD_BYTES.
    let journal = match prepared.index.as_ref().map(|i| i.journal()).transpose() {
        Ok(journal) => journal,
        Err(_) => {
            // Nothing goes early; the Transfer opens the journal itself and reports a failure.
            return Sent {
                prepared: Ok(prepared),
                declined: 0,
            };
        }
    };
    let recorded = Landed::new(vault.store(), journal);
    let stopped = AtomicBool::new(false);
    let store = vault.store();
    {
        let recorded = &recorded;
        let (stopped, prepared) = (&stopped, &prepared);
        futures::stream::poll_fn(|cx| queue.poll_recv(cx))
            .map(|offer: Offer| async move {
                let place = offer.place.as_ref().map(|(disk, block)| (disk, *block));
                if stopped.load(Ordering::Relaxed) || prepared.knows(place, &offer.id) {
                    return;
                }
                let size = offer.encoded.len() as u64;
                let put: Result<()> = match store.put_chunk(&offer.id, offer.encoded).await {
                    Ok(()) => recorded.put(offer.id, size).await,
                    Err(e) => Err(e.into()),
                };
                if put.is_err() {
                    // The Transfer copies the rest and reports what it meets.
                    stopped.store(true, Ordering::Relaxed);
                }
            })
            .buffer_unordered(options.concurrency.max(1))
            .collect::<()>()
            .await;
    }
    // Only what is durable and journaled went early; a failed last sync leaves the rest for
    // the Transfer to copy again.
    let (recorded, _) = recorded.finish().await;
    let mut prepared = prepared;
    prepared.sent = recorded.ids;
    prepared.sent_bytes = recorded.bytes;
    Sent {
        prepared: Ok(prepared),
        declined: 0,
    }
}
