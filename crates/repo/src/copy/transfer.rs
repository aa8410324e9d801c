use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use blockvault_core::{ChunkCodec, ChunkId, ChunkSet, PointStats, RecoveryPoint};
use blockvault_source::changed_blocks;
use blockvault_store::{Store, cpu};
use bytes::Bytes;
use futures::StreamExt;

use super::prepared::{Prepared, Sent};
use crate::landed::Landed;
use crate::{Error, Progress, Repository, Result, TransferOptions};

/// One point to copy into a vault (see [`Repository::transfer`]).
#[derive(Clone)]
pub struct TransferRequest<'a> {
    /// Where the point is: the local snapshot tier.
    pub source: &'a Repository,
    pub point: &'a RecoveryPoint,
    /// Chunks the caller wrote into `source` itself moments before, encoded from blocks it had
    /// just hashed (the Snapshot of the same job,
    /// [`BackupReport::new_chunks`](crate::BackupReport)): not decoded and checked again.
    pub fresh: &'a ChunkSet,
    pub options: TransferOptions,
    pub progress: Arc<dyn Progress>,
}

impl std::fmt::Debug for TransferRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransferRequest")
            .field("source", &self.source.config().id)
            .field("point", &self.point.id)
            .field("fresh", &self.fresh.len())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// What a transfer did.
#[derive(Clone, Debug)]
pub struct TransferReport {
    /// The point as this vault records it: same id, time, consistency and maps as the source's,
    /// with its parent and byte counts relative to this vault.
    pub point: RecoveryPoint,
    /// True when this vault already held the point and nothing was copied.
    pub already_present: bool,
    /// Chunks an [`EarlySend`](crate::EarlySend) stored while the Snapshot ran (counted in the
    /// point's `chunks_stored` too).
    pub sent_early: u64,
    pub elapsed: Duration,
    /// Things the user should know that did not stop the transfer.
    pub warnings: Vec<String>,
}

/// A chunk of the source (the snapshot tier) found missing or corrupt: marked damaged there,
/// best effort, so that the next Snapshot does not take it as present but reads its block
/// from the disk and writes it again. Unmarked, every later transfer would meet it, since an
/// unchanged block is never read again.
async fn mark_bad_source_chunk(source: &Store, error: &blockvault_store::Error) {
    if let blockvault_store::Error::ChunkMissing { id }
    | blockvault_store::Error::ChunkCorrupt { id, .. } = error
    {
        let _ = source.mark_damaged(id).await;
    }
}

/// Decodes `encoded` with `codec` and checks it is chunk `id`, on the calling (rayon) thread.
fn check_chunk(codec: &ChunkCodec, encoded: &[u8], id: ChunkId) -> blockvault_store::Result<()> {
    let corrupt = |source| blockvault_store::Error::ChunkCorrupt { id, source };
    crate::decode::verified(codec, encoded, id, corrupt, |_| Ok(()))
}

impl Repository {
    /// Copies `request.point` of `request.source` (the local snapshot tier) into this vault:
    /// the Transfer subtask of a backup job.
    ///
    /// Every chunk read from the source is decoded and checked against its id before it is
    /// uploaded, except those in `request.fresh`. Chunks that sat in the snapshot tier since an
    /// earlier snapshot are always checked, so local damage never reaches the vault.
    ///
    /// The point's maps are complete descriptions of its disks, so the copy captures all churn
    /// since this vault's newest point of the VM, whatever snapshots were taken (and not
    /// transferred) in between. Only chunks this vault is not known to hold are copied (known:
    /// at the same block in the newest vault point's maps, or in the chunk index, journal
    /// included; see `Prepared::knows`); each is read from the
    /// source as stored (already compressed: nothing is compressed twice), checked against its
    /// id, and uploaded with at most `request.options.concurrency` in flight. Then the maps
    /// and, last, the point record, under the source point's id: the commit, as for a backup.
    ///
    /// Idempotent: a point the vault already holds is not copied again; a transfer that failed
    /// halfway resumes without re-sending what landed.
    ///
    /// A copy of bytes: both repositories use the same [`ChunkCodec`] (ids and objects mean
    /// the same in both), and chunks are checked with it.
    pub async fn transfer(&self, request: &TransferRequest<'_>) -> Result<TransferReport> {
        debug_assert_eq!(
            request.source.codec(),
            self.codec(),
            "a transfer copies bytes"
        );
        let started = Instant::now();
        let point = request.point;
        let vm = &point.vm;
        match self.store().get_point(vm, &point.id).await {
            Ok(present) => {
                return Ok(TransferReport {
                    point: present,
                    already_present: true,
                    sent_early: 0,
                    elapsed: started.elapsed(),
                    warnings: Vec::new(),
                });
            }
            Err(blockvault_store::Error::PointMissing { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let names = point.disks.iter().map(|d| d.name.clone()).collect();
        let prepared = self.prepare_write(vm, &names).await?;
        self.transfer_prepared(request, prepared).await
    }

    /// [`Repository::transfer`] after an [`EarlySend`](crate::EarlySend) of the same job: its lease,
    /// what it read under it and the chunks it stored carry over, so only the rest is copied.
    /// When the early send could not take the lease or read the vault, that is this transfer's
    /// error. The point is the one the Snapshot has just made, so the vault cannot hold it yet.
    pub async fn transfer_early(
        &self,
        request: &TransferRequest<'_>,
        sent: Sent,
    ) -> Result<TransferReport> {
        let prepared = sent.prepared?;
        self.transfer_prepared(request, prepared).await
    }

    /// The transfer itself, once the writer's lease is held and the vault's state is read;
    /// releases the lease on every path (a lease left behind would hold off collections).
    async fn transfer_prepared(
        &self,
        request: &TransferRequest<'_>,
        mut prepared: Prepared,
    ) -> Result<TransferReport> {
        let started = Instant::now();
        let outcome = self.copy_and_commit(request, &mut prepared).await;
        let released = prepared.release().await;
        let mut report = outcome?;
        report.warnings.extend(released);
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Copies what the vault lacks of `point`, then its maps and, last, its record.
    async fn copy_and_commit(
        &self,
        request: &TransferRequest<'_>,
        prepared: &mut Prepared,
    ) -> Result<TransferReport> {
        let started = Instant::now();
        let mut warnings = std::mem::take(&mut prepared.warnings);
        let point = request.point;
        let vm = &point.vm;
        let mut maps = Vec::with_capacity(point.disks.len());
        for disk in &point.disks {
            let map = request
                .source
                .store()
                .get_map(vm, &point.id, &disk.name, Some(&disk.map_digest))
                .await?;
            maps.push(map);
        }

        let early = std::mem::take(&mut prepared.sent);
        let mut todo = Vec::new();
        for (disk, map) in point.disks.iter().zip(&maps) {
            for (i, id) in map.data() {
                let again = todo.last().is_some_and(|(last, _, _)| *last == id);
                if !again && !early.contains(&id) && !prepared.knows(Some((&disk.name, i)), &id) {
                    // Without an index, or with one a killed writer may have left short, ask
                    // the store first, unless verify found it bad.
                    let ask = prepared.index.as_ref().is_none_or(|i| i.may_lack_landed())
                        && !prepared.damaged.contains(&id);
                    todo.push((id, map.len_of(i) as u64, ask));
                }
            }
        }
        // One copy of each chunk, however many blocks hold it.
        todo.sort_unstable_by_key(|(id, _, _)| *id);
        todo.dedup_by_key(|(id, _, _)| *id);
        let damaged = &prepared.damaged;
        let index = prepared.index.take();
        let total = todo.iter().map(|(_, len, _)| len).sum();
        request.progress.begin("transfer", total);

        let landed = Landed::new(
            self.store(),
            index.as_ref().map(|i| i.journal()).transpose()?,
        );
        let copied = self.copy_chunks(request, todo, &landed).await;
        let (recorded, synced) = landed.finish().await;
        // What the early send stored counts as landed too: one list of both, grown in place.
        let sent_early = early.len() as u64;
        let mut landed = early;
        landed.merge(&recorded.ids);
        drop(recorded);
        if let Some(mut index) = index {
            // Whatever landed is in the vault now, whether or not this transfer commits.
            index.add_and_save(&landed)?;
        }
        let (bytes_copied, chunks_copied) = copied?;
        synced?;

        let mut record = point.clone();
        let mut bytes_changed = 0u64;
        for (disk, map) in record.disks.iter_mut().zip(&maps) {
            bytes_changed +=
                changed_blocks(prepared.previous.get(&disk.name).map(Arc::as_ref), map)
                    .map(|i| map.len_of(i) as u64)
                    .sum::<u64>();
            disk.map_digest = self.store().put_map(vm, &point.id, &disk.name, map).await?;
        }
        record.parent = prepared.parent.as_ref().map(|p| p.id.clone());
        // Which vault the point is for is the snapshot tier's to know; in a vault it is plain.
        record.vault = None;
        record.stats = PointStats {
            bytes_scanned: point.stats.bytes_scanned,
            bytes_changed,
            bytes_stored: bytes_copied + prepared.sent_bytes,
            chunks_stored: chunks_copied + sent_early,
            capture: point.stats.capture,
        };
        prepared.held.check().await?;
        self.store().put_point(&record).await?;
        self.clear_damage_marks(damaged, landed.as_slice(), &mut warnings)
            .await;
        Ok(TransferReport {
            point: record,
            already_present: false,
            sent_early,
            elapsed: started.elapsed(),
            warnings,
        })
    }

    /// Copies the chunks `todo` (id, length, whether to ask the store first) from the source,
    /// checking each; returns (bytes, objects) stored.
    /// On the first failure no new copy starts, the ones in flight finish (so nothing of the
    /// transfer is still writing when this returns), and the first error is returned.
    async fn copy_chunks(
        &self,
        request: &TransferRequest<'_>,
        todo: Vec<(ChunkId, u64, bool)>,
        landed: &Landed,
    ) -> Result<(u64, u64)> {
        let TransferRequest {
            source,
            fresh,
            options,
            ..
        } = request;
        let progress = request.progress.as_ref();
        let stop = AtomicBool::new(false);
        let stop = &stop;
        let mut copies = futures::stream::iter(todo)
            .map(|(id, len, ask)| async move {
                if stop.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                if ask && self.store().has_chunk(&id).await? {
                    progress.advance(len);
                    return Ok(None);
                }
                let read = async {
                    let encoded = source.store().get_chunk(&id).await?;
                    if !fresh.contains(&id) {
                        let (codec, checked) = (source.codec().clone(), encoded.clone());
                        cpu::run(move || check_chunk(&codec, &checked, id)).await?;
                    }
                    Ok::<Bytes, blockvault_store::Error>(encoded)
                };
                let encoded = match read.await {
                    Ok(encoded) => encoded,
                    Err(e) => {
                        mark_bad_source_chunk(source.store(), &e).await;
                        return Err(e.into());
                    }
                };
                let size = encoded.len() as u64;
                self.store().put_chunk(&id, encoded).await?;
                landed.put(id, size).await?;
                progress.advance(len);
                Ok::<_, Error>(Some(size))
            })
            .buffer_unordered(options.concurrency.max(1));
        let (mut bytes, mut count, mut first_error) = (0u64, 0u64, None);
        while let Some(result) = copies.next().await {
            match result {
                Ok(Some(size)) => {
                    bytes += size;
                    count += 1;
                }
                Ok(None) => {}
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok((bytes, count)), Err)
    }
}
