//! Garbage collection of a vault: delete the chunks no committed point names, and the block
//! maps of backups that never committed, without ever deleting what a running or later backup
//! needs. The protocol (mark, then a sweep under a lease that running writers hold off) is
//! described in the store crate's docs, "Garbage collection without compare-and-swap".

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use blockvault_core::{
    ChunkId, ChunkSet, ForgottenChunks, GcEpoch, PointId, RecoveryPoint, VmName,
};
use blockvault_store::DamagedPoint;
use futures::{StreamExt, TryStreamExt, stream};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::live::{LivePoints, MapRef, maps_in_flight};
use crate::marks::{MarkCache, Marks};
use crate::{Error, Lease, Progress, Result, SweepWait, Sweeper, Vault};

/// How a collection runs.
#[derive(Clone, Copy, Debug)]
pub struct GcOptions {
    /// Unreferenced chunks younger than this are kept. The lease protocol alone keeps running
    /// backups safe; the grace period is a second line of defence (it spares the chunks of a
    /// writer whose lease was misjudged, for example across badly skewed clocks).
    pub grace: Duration,
    /// How long the sweep waits for running backups and transfers to commit before it gives
    /// up (it deletes nothing then, and says who held it up).
    pub wait: Duration,
    /// How often the sweep looks again while it waits.
    pub poll: Duration,
    /// Once the sweep has waited this long for running backups, it holds new backups and
    /// transfers back (they wait, as for a sweep) so that the running ones can finish and the
    /// sweep run. `wait` or more: never.
    pub hold_after: Duration,
    /// Holds new backups back at most this long, then lets them in again for the rest of the
    /// wait.
    pub hold_for: Duration,
    /// Mark and count, delete nothing.
    pub dry_run: bool,
    /// Map reads and deletes in flight at once.
    pub concurrency: usize,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: Duration::from_secs(3600),
            wait: Duration::from_secs(3600),
            poll: Duration::from_secs(1),
            hold_after: Duration::from_secs(5 * 60),
            hold_for: Duration::from_secs(15 * 60),
            dry_run: false,
            concurrency: 16,
        }
    }
}

/// What a collection found and freed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// Committed points whose maps were read (in the mark, and in the sweep's second look).
    pub points: u64,
    /// Block maps read from the vault.
    pub maps_read: u64,
    /// Block maps whose chunks came from this host's mark cache instead (see `marks.rs`).
    pub maps_cached: u64,
    /// Chunk objects listed.
    pub chunks: u64,
    /// Of those, named by a live map.
    pub chunks_live: u64,
    /// Unreferenced, but younger than the grace period: kept.
    pub chunks_young: u64,
    /// Unreferenced at the mark, then named by a point committed while the mark ran: kept.
    pub chunks_rescued: u64,
    /// Unreferenced and old enough: deleted (or, in a dry run, would be).
    pub chunks_deleted: u64,
    /// Of those, chunks only a replicated vault's secondary held (not listed in `chunks`):
    /// uploads whose primary `PUT` failed after the secondary's went through.
    pub chunks_secondary_only: u64,
    pub bytes_freed: u64,
    /// Block maps of backups that never committed, deleted.
    pub orphan_maps_deleted: u64,
    /// Staging files that writers killed mid-put left in a directory vault, older than the
    /// grace period: deleted (or, in a dry run, would be).
    pub leftovers_deleted: u64,
    /// Their bytes (not in `bytes_freed`).
    pub leftover_bytes: u64,
    /// Directories that could not be read, and leftovers that could not be deleted, while
    /// looking for them: skipped (the collection goes on).
    pub leftovers_skipped: u64,
    /// Records a replicated vault's secondary held alone (commits cut short), finished on the
    /// primary.
    pub commits_finished: u64,
    /// Leases of writers that died, removed.
    pub dead_leases_removed: u64,
    pub mark_seconds: f64,
    /// Time the sweep waited for running backups to commit.
    pub waited_seconds: f64,
    /// Of that, the time new backups were held back so that the running ones could drain
    /// (see [`GcOptions::hold_after`]).
    pub held_seconds: f64,
    pub sweep_seconds: f64,
}

/// The least age of a staging file a collection deletes (see [`GcReport::leftovers_deleted`]).
pub const LEFTOVER_AGE: Duration = Duration::from_secs(3600);

/// A chunk that may go.
struct Candidate {
    id: ChunkId,
    size: u64,
}

/// What the mark found to go: counted, and kept for the sweep unless this is a dry run.
#[derive(Default)]
struct Garbage {
    keep: bool,
    count: u64,
    bytes: u64,
    candidates: Vec<Candidate>,
}

impl Garbage {
    fn add(&mut self, id: ChunkId, size: u64) {
        self.count += 1;
        self.bytes += size;
        if self.keep {
            self.candidates.push(Candidate { id, size });
        }
    }
}

impl Vault {
    /// Collects the vault's garbage: marks every chunk the committed points' maps name, then
    /// (unless `options.dry_run`) takes the sweeper's lease, waits until no backup or transfer
    /// runs, looks at the points committed meanwhile, and deletes what is still unreferenced.
    ///
    /// A map that cannot be read stops the collection before anything is deleted: a chunk goes
    /// only when every live map was read and none names it. Backups are never blocked by the
    /// mark (the long part); one that starts during the sweep waits for the sweep to end.
    pub async fn collect_garbage(
        &self,
        options: GcOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<GcReport> {
        let started = Instant::now();
        let mut report = GcReport {
            dry_run: options.dry_run,
            ..GcReport::default()
        };
        let now = Timestamp::now();
        let old_enough = now
            - SignedDuration::try_from(options.grace).map_err(|_| Error::GcGrace {
                grace: options.grace,
            })?;

        // Mark: every point, the records a replicated vault's secondary holds alone, and what
        // damaged records may name (see `live.rs`).
        let marked = self.live_points().await?;
        let points = &marked.points;
        let maps = self.maps_to_mark(points, &marked.damaged).await?;
        let mut live = Marks::default();
        self.mark(
            maps,
            points,
            &mut live,
            &mut report,
            options,
            progress.as_ref(),
        )
        .await?;
        if let Some(cache) = self.mark_cache() {
            let digests: HashSet<&str> = points
                .iter()
                .flat_map(|p| p.disks.iter().map(|d| d.map_digest.as_str()))
                .collect();
            cache.retain(&digests)?;
        }
        // The listing is streamed against the marks. A dry run only counts what could go; a
        // real one keeps the candidates (40 bytes each) for the sweep.
        let mut garbage = Garbage {
            keep: !options.dry_run,
            ..Garbage::default()
        };
        let secondary = self.store().secondary();
        // A replicated vault's primary listing, to tell the secondary's own chunks from it.
        let mut on_primary = Vec::new();
        let mut chunks = self.store().list_chunk_objects();
        while let Some(chunk) = chunks.try_next().await? {
            report.chunks += 1;
            if secondary.is_some() {
                on_primary.push(chunk.id);
            }
            if live.contains(&chunk.id) {
                report.chunks_live += 1;
            } else if chunk.last_modified > old_enough {
                report.chunks_young += 1;
            } else {
                garbage.add(chunk.id, chunk.size);
            }
        }
        drop(chunks);
        // The secondary of a replicated vault may hold chunks the primary never got (the
        // primary's PUT failed, the secondary's went through). Nothing else would ever delete
        // them: those no point names and old enough go too (from both stores, as every delete).
        // Live ones the primary lacks are verify's to heal, not garbage.
        if let Some(secondary) = secondary {
            let on_primary = ChunkSet::from_vec(on_primary);
            let mut chunks = secondary.list_chunk_objects();
            while let Some(chunk) = chunks.try_next().await? {
                if !on_primary.contains(&chunk.id)
                    && !live.contains(&chunk.id)
                    && chunk.last_modified <= old_enough
                {
                    report.chunks_secondary_only += 1;
                    garbage.add(chunk.id, chunk.size);
                }
            }
        }
        let Garbage {
            count: garbage,
            bytes: garbage_bytes,
            candidates,
            ..
        } = garbage;
        drop(live);
        report.mark_seconds = started.elapsed().as_secs_f64();
        // Staging files of writers that died: no object names them and no running writer's is
        // that old, so they go without the sweep (see the store's `leftovers.rs`). Not younger
        // than an hour whatever the grace: backups run meanwhile, and a grace of zero must not
        // take the file a running put is about to rename.
        let leftovers = self
            .store()
            .remove_staging_leftovers(options.grace.max(LEFTOVER_AGE), options.dry_run)
            .await;
        report.leftovers_deleted = leftovers.files;
        report.leftover_bytes = leftovers.bytes;
        report.leftovers_skipped = leftovers.skipped;
        if options.dry_run {
            report.chunks_deleted = garbage;
            report.bytes_freed = garbage_bytes;
            report.orphan_maps_deleted = self.orphan_maps(&marked).await?.len() as u64;
            return Ok(report);
        }

        // Nothing to delete: no sweep, and no new epoch to make hosts rebuild their indexes.
        if candidates.is_empty()
            && marked.unfinished.is_empty()
            && self.orphan_maps(&marked).await?.is_empty()
        {
            return Ok(report);
        }

        // Sweep, under the sweeper's lease, once no writer runs.
        let patience = SweepWait {
            wait: options.wait,
            poll: options.poll,
            hold_after: options.hold_after,
            hold_for: options.hold_for,
        };
        let Sweeper {
            lease,
            waited,
            held,
            dead_removed,
        } = Lease::sweeper_with(
            self.store(),
            "garbage collection",
            patience,
            progress.as_ref(),
        )
        .await?;
        report.waited_seconds = waited.as_secs_f64();
        report.held_seconds = held.as_secs_f64();
        report.dead_leases_removed = dead_removed;
        let sweeping = Instant::now();
        let swept = self
            .sweep(&lease, &marked, candidates, &mut report, options, progress)
            .await;
        // Released on every path: a sweeper's lease left behind would hold off every backup
        // until it expires.
        let released = lease.release().await;
        swept?;
        released?;
        report.sweep_seconds = sweeping.elapsed().as_secs_f64();
        Ok(report)
    }

    /// The sweep, under the sweeper's lease: look at the points committed since the mark,
    /// move to a new epoch, delete what is still garbage.
    async fn sweep(
        &self,
        lease: &Lease,
        marked: &LivePoints,
        mut candidates: Vec<Candidate>,
        report: &mut GcReport,
        options: GcOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<()> {
        // Points committed (and records damaged) while the mark ran may name candidates: look
        // at them too.
        let seen = marked.names();
        let now = self.live_points().await?;
        let newer: Vec<RecoveryPoint> = now
            .points
            .iter()
            .filter(|p| !seen.contains(&(p.vm.clone(), p.id.clone())))
            .cloned()
            .collect();
        let newly_damaged: Vec<DamagedPoint> = now
            .damaged
            .iter()
            .filter(|d| !seen.contains(&(d.vm.clone(), d.id.clone())))
            .cloned()
            .collect();
        let maps = self.maps_to_mark(&newer, &newly_damaged).await?;
        let mut rescued = Marks::default();
        self.mark(
            maps,
            &newer,
            &mut rescued,
            report,
            options,
            progress.as_ref(),
        )
        .await?;
        // No writer runs now: a record the secondary holds alone is a commit cut short, and
        // finishing it makes the two stores agree (see `live.rs`).
        for (vm, id) in &now.unfinished {
            lease.check().await?;
            self.store().finish_commit(vm, id).await?;
            report.commits_finished += 1;
        }
        let before = candidates.len();
        candidates.retain(|c| !rescued.contains(&c.id));
        candidates.shrink_to_fit();
        // Sorted by id: the damage marks below are looked up in it.
        candidates.sort_unstable_by_key(|c| c.id);
        report.chunks_rescued = (before - candidates.len()) as u64;
        let orphans = self.orphan_maps(&now).await?;

        // Every host's cache of what the vault holds is stale from here on. The candidates go
        // first, under the new epoch's name: a host one sweep behind drops them from its cache
        // instead of listing every chunk again.
        let previous_epoch = self.store().gc_epoch().await?.map(|e| e.id);
        let time = Timestamp::now();
        let epoch = GcEpoch {
            id: blake3::hash(format!("gc:{}:{}", time, std::process::id()).as_bytes()).to_hex()
                [..16]
                .to_owned(),
            time,
        };
        let forgotten = ForgottenChunks::encode_sorted(
            previous_epoch.as_deref(),
            candidates.iter().map(|c| c.id),
        );
        self.store().put_forgotten(&epoch.id, forgotten).await?;
        self.store().put_gc_epoch(&epoch).await?;

        progress.begin("sweep", candidates.iter().map(|c| c.size).sum());
        let deleted = self
            .delete_chunks(&candidates, lease, options, progress.as_ref())
            .await;
        report.chunks_deleted = deleted.count;
        report.bytes_freed = deleted.bytes;
        // The damage marks of candidates, looked up while the candidates are at hand (cleared
        // below, once every candidate is known deleted).
        let damaged = self.store().damaged_chunks().await.map(|marks| {
            marks
                .into_iter()
                .filter(|id| candidates.binary_search_by_key(id, |c| c.id).is_ok())
                .collect::<Vec<_>>()
        });
        // The candidates' ids alone (32 bytes each, sorted): the candidates go before the index
        // is loaded, so a sweep of a million chunks never holds both and a copy.
        let ids: Vec<ChunkId> = candidates.iter().map(|c| c.id).collect();
        drop(candidates);
        // This host's index moves to the new epoch without every candidate, not only those
        // known deleted: a delete that failed (on either store of a replicated vault, or
        // whose answer was lost) or was cut short by another's failure may still have
        // removed the object, and an entry for a chunk the vault lacks would make this host's
        // next backup skip it. Forgetting a chunk that is still there costs one upload.
        if let Some(mut index) = self.saved_chunk_index(previous_epoch.as_deref()) {
            index.forget(ids, &epoch.id)?;
        }
        deleted.error.map_or(Ok(()), Err)?;
        // Past the error check every candidate was deleted. A damage mark of a chunk that is
        // gone has nothing left to repair.
        for id in damaged? {
            self.store().clear_damaged(&id).await?;
        }
        for (vm, id) in &orphans {
            lease.check().await?;
            self.store().delete_maps(vm, id).await?;
            report.orphan_maps_deleted += 1;
        }
        self.store().delete_forgotten_except(&epoch.id).await?;
        Ok(())
    }

    /// Adds every chunk `maps` name to `live` (`points`: their records, for sizing). Fails on
    /// the first map that cannot be read, unless its point was deleted meanwhile (its chunks
    /// then need no mark).
    async fn mark(
        &self,
        maps: Vec<MapRef>,
        points: &[RecoveryPoint],
        live: &mut Marks,
        report: &mut GcReport,
        options: GcOptions,
        progress: &dyn Progress,
    ) -> Result<()> {
        let in_flight = maps_in_flight(points, options.concurrency);
        progress.begin("mark", maps.len() as u64);
        let (store, cache) = (self.store(), self.mark_cache());
        let cache = &cache;
        let mut reads = stream::iter(maps)
            .map(|map: MapRef| async move {
                let MapRef {
                    vm,
                    point: id,
                    disk,
                    digest,
                } = map;
                let cached = digest.as_ref().zip(cache.as_ref());
                if let Some(keys) = cached.and_then(|(digest, c)| c.get(digest)) {
                    return Ok(Some((keys, true)));
                }
                match store.get_map(&vm, &id, &disk, digest.as_deref()).await {
                    Ok(map) => {
                        let keys = Marks::keys_of(map.data_ids());
                        if let Some((digest, cache)) = cached {
                            cache.put(digest, &keys)?;
                        }
                        Ok(Some((keys, false)))
                    }
                    // Deleted meanwhile: a map under a damaged record (found by listing), or
                    // the map of a point whose record is gone too.
                    Err(blockvault_store::Error::MapMissing { .. })
                        if digest.is_none()
                            || matches!(
                                store.get_point(&vm, &id).await,
                                Err(blockvault_store::Error::PointMissing { .. })
                            ) =>
                    {
                        Ok(None)
                    }
                    Err(source) => Err(Error::GcMark {
                        source: Box::new(source.into()),
                    }),
                }
            })
            .buffer_unordered(in_flight);
        while let Some(read) = reads.try_next().await? {
            if let Some((keys, cached)) = read {
                live.extend(&keys);
                if cached {
                    report.maps_cached += 1;
                } else {
                    report.maps_read += 1;
                }
            }
            progress.advance(1);
        }
        report.points += points.len() as u64;
        Ok(())
    }

    /// This host's cache of what each map names, when the vault has a state directory.
    fn mark_cache(&self) -> Option<MarkCache> {
        self.gc_marks_path().map(MarkCache::new)
    }

    /// The map directories with no point record: backups that never committed (or points
    /// whose deletion was cut short).
    /// A map directory under a damaged record is not an orphan: the record may name it.
    async fn orphan_maps(&self, live: &LivePoints) -> Result<Vec<(VmName, PointId)>> {
        let mut committed: HashMap<VmName, HashSet<PointId>> = HashMap::new();
        for (vm, id) in live.names() {
            committed.entry(vm).or_default().insert(id);
        }
        let mut orphans = Vec::new();
        for vm in self.store().list_map_vms().await? {
            for id in self.store().list_map_point_ids(&vm).await? {
                if !committed.get(&vm).is_some_and(|ids| ids.contains(&id)) {
                    orphans.push((vm.clone(), id));
                }
            }
        }
        Ok(orphans)
    }

    /// Deletes `candidates` with bounded concurrency, checking the lease as it goes. Returns
    /// how much was deleted even when it stops on an error, so the caller can account for it.
    async fn delete_chunks(
        &self,
        candidates: &[Candidate],
        lease: &Lease,
        options: GcOptions,
        progress: &dyn Progress,
    ) -> Deleted {
        let bytes = AtomicU64::new(0);
        let bytes = &bytes;
        let store = self.store();
        // Indices, not borrowed items: a stream over `&Candidate` makes the future's Send-ness
        // unprovable, and a copy of every candidate would double the sweep's memory.
        let mut deletes = stream::iter(0..candidates.len())
            .map(|i| (candidates[i].id, candidates[i].size))
            .map(|(id, size)| async move {
                // A sweeper that was paused past its lease must stop: writers may be running.
                lease.check().await?;
                store.delete_chunk(&id).await?;
                bytes.fetch_add(size, Ordering::Relaxed);
                progress.advance(size);
                Ok::<_, Error>(())
            })
            .buffer_unordered(options.concurrency.max(1));
        let mut deleted = Deleted::default();
        while let Some(result) = deletes.next().await {
            match result {
                Ok(()) => deleted.count += 1,
                Err(e) => {
                    deleted.error.get_or_insert(e);
                }
            }
            if deleted.error.is_some() {
                break;
            }
        }
        drop(deletes);
        deleted.bytes = bytes.load(Ordering::Relaxed);
        deleted
    }
}

#[derive(Default)]
struct Deleted {
    count: u64,
    bytes: u64,
    error: Option<Error>,
}
