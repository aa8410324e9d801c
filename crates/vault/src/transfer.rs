use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use blockvault_chunker::changed_blocks;
use blockvault_core::{ChunkId, DiskName, PointStats, RecoveryPoint};
use blockvault_store::cpu;
use bytes::Bytes;
use futures::StreamExt;

use crate::{Error, Progress, Result, TransferOptions, Vault};

/// What a transfer did.
#[derive(Clone, Debug)]
pub struct TransferReport {
    /// The point as this vault records it: same id, time, consistency and maps as the source's,
    /// with its parent and byte counts relative to this vault.
    pub point: RecoveryPoint,
    /// True when this vault already held the point and nothing was copied.
    pub already_present: bool,
    pub elapsed: Duration,
    /// Things the user should know that did not stop the transfer.
    pub warnings: Vec<String>,
}

/// The chunks a transfer put in the vault, as they land: journaled (when the vault has a
/// chunk index on this host) and collected for the index.
struct Landed {
    journal: Option<crate::Journal>,
    ids: Mutex<Vec<ChunkId>>,
}

impl Landed {
    fn record(&self, id: ChunkId) -> Result<()> {
        if let Some(journal) = &self.journal {
            journal.record(&id)?;
        }
        self.ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(id);
        Ok(())
    }
}

/// Decodes `encoded` and checks it hashes to `id`, on the calling (rayon) thread.
fn check_chunk(encoded: &[u8], id: ChunkId) -> blockvault_store::Result<()> {
    let corrupt = |source| blockvault_store::Error::ChunkCorrupt { id, source };
    crate::decode::verified(encoded, id, corrupt, |_| Ok(()))
}

impl Vault {
    /// Copies `point` of `source` (the local snapshot tier) into this vault: the Transfer
    /// subtask of a backup job.
    ///
    /// Every chunk read from `source` is decoded and checked against its id before it is
    /// uploaded, except those in `fresh`: chunks the caller wrote into `source` itself moments
    /// before (the Snapshot of the same job, [`BackupReport::new_chunks`](crate::BackupReport)),
    /// encoded from blocks it had just hashed. Chunks that sat in the snapshot tier since an
    /// earlier snapshot are always checked, so local damage never reaches the vault.
    ///
    /// The point's maps are complete descriptions of its disks, so the copy captures all churn
    /// since this vault's newest point of the VM, whatever snapshots were taken (and not
    /// transferred) in between. Only chunks this vault is not known to hold are copied (known:
    /// the newest vault point's maps, the chunk index, the journal); each is read from the
    /// source as stored (already compressed: nothing is compressed twice), checked against its
    /// id, and uploaded with at most `options.concurrency` in flight. Then the maps and, last,
    /// the point record, under the source point's id: the commit, as for a backup.
    ///
    /// Idempotent: a point the vault already holds is not copied again; a transfer that failed
    /// halfway resumes without re-sending what landed.
    pub async fn transfer(
        &self,
        source: &Vault,
        point: &RecoveryPoint,
        fresh: &HashSet<ChunkId>,
        options: TransferOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<TransferReport> {
        let started = Instant::now();
        let vm = &point.vm;
        match self.store().get_point(vm, &point.id).await {
            Ok(present) => {
                return Ok(TransferReport {
                    point: present,
                    already_present: true,
                    elapsed: started.elapsed(),
                    warnings: Vec::new(),
                });
            }
            Err(blockvault_store::Error::PointMissing { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let mut warnings = Vec::new();
        let (lease, damaged) = self
            .begin_write(
                &format!("transfer of {vm} point {}", point.id),
                &mut warnings,
            )
            .await?;
        let outcome = self
            .transfer_leased(
                source,
                point,
                fresh,
                options,
                progress,
                crate::backup::Writing {
                    lease: lease.as_ref(),
                    damaged: &damaged,
                    warnings,
                },
            )
            .await;
        // Released on every path: a lease left behind would hold off collections.
        let released = crate::backup::release(lease).await;
        let mut report = outcome?;
        report.warnings.extend(released);
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// The transfer itself, once the writer's lease is held.
    async fn transfer_leased(
        &self,
        source: &Vault,
        point: &RecoveryPoint,
        fresh: &HashSet<ChunkId>,
        options: TransferOptions,
        progress: Arc<dyn Progress>,
        writing: crate::backup::Writing<'_>,
    ) -> Result<TransferReport> {
        let crate::backup::Writing {
            lease,
            damaged,
            mut warnings,
        } = writing;
        let started = Instant::now();
        let vm = &point.vm;
        let parent = self.latest_point(vm).await?;
        let names: HashSet<DiskName> = point.disks.iter().map(|d| d.name.clone()).collect();
        let previous = self
            .previous_maps(parent.as_ref(), &names, &mut warnings)
            .await;
        let mut maps = Vec::with_capacity(point.disks.len());
        for disk in &point.disks {
            let map = source
                .store()
                .get_map(vm, &point.id, &disk.name, Some(&disk.map_digest))
                .await?;
            maps.push(map);
        }

        let index = self.chunk_index().await?;
        let mut claimed: HashSet<ChunkId> = previous
            .values()
            .flat_map(|m| m.ids().iter().copied())
            .filter(|id| !damaged.contains(id))
            .collect();
        let mut todo = Vec::new();
        for map in &maps {
            for (i, id) in map.ids().iter().enumerate() {
                let known = id.is_zero()
                    || (!damaged.contains(id) && index.as_ref().is_some_and(|x| x.contains(id)));
                if !known && claimed.insert(*id) {
                    // Without an index, ask the store first, unless verify found it bad.
                    let ask = index.is_none() && !damaged.contains(id);
                    todo.push((*id, map.len_of(i) as u64, ask));
                }
            }
        }
        progress.begin("transfer", todo.iter().map(|(_, len, _)| len).sum());

        let landed = Landed {
            journal: index.as_ref().map(|i| i.journal()).transpose()?,
            ids: Mutex::new(Vec::new()),
        };
        let copied = self
            .copy_chunks(source, todo, fresh, options, &landed, progress.as_ref())
            .await;
        let landed = landed
            .ids
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(mut index) = index {
            // Whatever landed is in the vault now, whether or not this transfer commits.
            index.add_and_save(landed.iter().copied())?;
        }
        let (bytes_stored, chunks_stored) = copied?;

        let mut record = point.clone();
        let mut bytes_changed = 0u64;
        for (disk, map) in record.disks.iter_mut().zip(&maps) {
            let changed = changed_blocks(previous.get(&disk.name), map);
            bytes_changed += changed.iter().map(|&i| map.len_of(i) as u64).sum::<u64>();
            disk.map_digest = self.store().put_map(vm, &point.id, &disk.name, map).await?;
        }
        record.parent = parent.map(|p| p.id);
        record.stats = PointStats {
            bytes_scanned: point.stats.bytes_scanned,
            bytes_changed,
            bytes_stored,
            chunks_stored,
        };
        if let Some(lease) = lease {
            lease.check().await?;
        }
        self.store().put_point(&record).await?;
        self.clear_damage_marks(damaged, &landed, &mut warnings)
            .await;
        Ok(TransferReport {
            point: record,
            already_present: false,
            elapsed: started.elapsed(),
            warnings,
        })
    }

    /// Copies the chunks `todo` (id, length, whether to ask the store first) from `source`,
    /// checking each; returns (bytes, objects) stored.
    /// On the first failure no new copy starts, the ones in flight finish (so nothing of the
    /// transfer is still writing when this returns), and the first error is returned.
    async fn copy_chunks(
        &self,
        source: &Vault,
        todo: Vec<(ChunkId, u64, bool)>,
        fresh: &HashSet<ChunkId>,
        options: TransferOptions,
        landed: &Landed,
        progress: &dyn Progress,
    ) -> Result<(u64, u64)> {
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
                let encoded: Bytes = source.store().get_chunk(&id).await?;
                if !fresh.contains(&id) {
                    let checked = encoded.clone();
                    cpu::run(move || check_chunk(&checked, id)).await?;
                }
                let size = encoded.len() as u64;
                self.store().put_chunk(&id, encoded).await?;
                landed.record(id)?;
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
