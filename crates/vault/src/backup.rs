use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use blockvault_source::{Chunker, DataBlocks, DiskImage, changed_blocks};
use blockvault_core::{
    BlockMap, BlockSize, ChunkEncoder, ChunkId, ChunkSet, Consistency, DiskName, DiskRecord,
    PointId, PointStats, RecoveryPoint, VmName,
};
use bytes::Bytes;
use futures::StreamExt;
use jiff::Timestamp;

use crate::landed::Landed;
use crate::{ChunkIndex, EarlySend, Error, Lease, Progress, Result, TransferOptions, Vault};

/// An ad hoc backup of one VM's disks into the vault.
#[derive(Clone, Debug)]
pub struct BackupRequest {
    pub vm: VmName,
    /// The VM's disk images, in order. Each disk is named by its file name.
    pub disks: Vec<PathBuf>,
    /// Block size for the disks; by default a disk keeps the block size of its previous point,
    /// and new disks get the vault's default.
    pub block_size: Option<BlockSize>,
    /// What the caller guarantees about the instant of the read: crash-consistent unless
    /// pre-snapshot hooks quiesced the VM.
    pub consistency: Consistency,
    pub options: TransferOptions,
    /// The instant the point is recorded at; default: when the backup starts. A scheduler on
    /// a simulated clock passes its own.
    pub time: Option<Timestamp>,
    /// Recorded on the point: an on-demand backup's `retain until`.
    pub retain_until: Option<Timestamp>,
    /// Recorded on the point: the vault a snapshot-tier point is for
    /// ([`RecoveryPoint::vault`]); `None` for a backup straight into a vault.
    pub vault: Option<String>,
}

/// What a backup did.
#[derive(Clone, Debug)]
pub struct BackupReport {
    /// The committed point (its `stats` hold the byte counts).
    pub point: RecoveryPoint,
    pub elapsed: Duration,
    /// Things the user should know that did not stop the backup.
    pub warnings: Vec<String>,
    /// The chunks this backup wrote (encoded from blocks it had just hashed).
    pub new_chunks: ChunkSet,
}

/// A chunk on its way from the scan to the upload stage, with where it was found: the disk
/// (its position in the request) and the block.
struct NewChunk {
    id: ChunkId,
    encoded: Vec<u8>,
    disk: usize,
    block: usize,
}

/// One disk being backed up.
struct Source {
    name: DiskName,
    /// The path as the user gave it (for messages) and made absolute (for the record).
    given: PathBuf,
    path: PathBuf,
    image: DiskImage,
    block_size: BlockSize,
    /// The blocks that overlap data; the others are holes.
    blocks: DataBlocks,
}

thread_local! {
    /// One zstd context per rayon worker, reused for every block it compresses.
    static ENCODER: RefCell<Option<ChunkEncoder>> = const { RefCell::new(None) };
}

fn encode(block: &[u8]) -> Result<Vec<u8>> {
    ENCODER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let mut encoder = match slot.take() {
            Some(encoder) => encoder,
            None => ChunkEncoder::new().map_err(blockvault_source::Error::from)?,
        };
        let encoded = encoder.encode(block);
        *slot = Some(encoder);
        Ok(encoded)
    })
}

impl Vault {
    /// Backs up `request.disks` as one new point of `request.vm`.
    ///
    /// The data path, per disk, in one pass over the image:
    ///
    /// ```text
    /// read (pread, holes skipped) -> zero check -> BLAKE3          rayon workers
    ///   -> skip chunks the vault is known to hold                  (previous point's maps,
    ///                                                               the local chunk index,
    ///                                                               this backup's own)
    ///   -> zstd-1 -> bounded channel                               rayon workers
    ///   -> PUT                                                     tokio, `concurrency` at once
    /// ```
    ///
    /// With a state directory ([`Vault::with_state_dir`]) the vault's chunks are known from the
    /// local [`ChunkIndex`], so no chunk costs a round trip before its upload. Without one, each
    /// new chunk is checked with a `HEAD` first. Chunks that landed are journaled as they land
    /// and added to the index even when the backup fails or the process is killed, so a retry
    /// sends only what is still missing.
    ///
    /// Then the block maps and, last, the point record (the commit). A failure at any step
    /// before the record leaves no point; chunks already uploaded are reused by the next
    /// backup.
    pub async fn backup(
        &self,
        request: &BackupRequest,
        progress: Arc<dyn Progress>,
    ) -> Result<BackupReport> {
        self.backup_teeing(request, progress, None).await
    }

    /// [`Vault::backup`] that also offers each chunk it stores to `tee`: the Snapshot of a
    /// backup job (into the snapshot tier) feeding the early send of its Transfer.
    pub async fn backup_teeing(
        &self,
        request: &BackupRequest,
        progress: Arc<dyn Progress>,
        tee: Option<&EarlySend>,
    ) -> Result<BackupReport> {
        let started = Instant::now();
        let mut warnings = Vec::new();
        // Before anything is read that decides what to skip (see the store crate's docs).
        let (lease, damaged) = self
            .begin_write(&format!("backup of {}", request.vm), &mut warnings)
            .await?;
        let writing = Writing {
            lease: lease.as_ref(),
            damaged: &damaged,
            warnings,
        };
        let outcome = self.backup_leased(request, progress, writing, tee).await;
        // Released on every path: a lease left behind would hold off collections.
        let released = release(lease).await;
        let mut report = outcome?;
        report.warnings.extend(released);
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// The backup itself, once the writer's lease is held.
    async fn backup_leased(
        &self,
        request: &BackupRequest,
        progress: Arc<dyn Progress>,
        writing: Writing<'_>,
        tee: Option<&EarlySend>,
    ) -> Result<BackupReport> {
        let Writing {
            lease,
            damaged,
            mut warnings,
        } = writing;
        let started = Instant::now();
        let time = request.time.unwrap_or_else(Timestamp::now);
        let vm = &request.vm;
        let parent = self.latest_point(vm).await?;
        let names: HashSet<DiskName> = request
            .disks
            .iter()
            .filter_map(|p| disk_name(p).ok())
            .collect();
        let previous = self
            .previous_maps(parent.as_ref(), &names, &mut warnings)
            .await;
        let sources = open_sources(request, parent.as_ref(), self.config().default_block_size)?;
        let disk_names: Vec<DiskName> = sources.iter().map(|s| s.name.clone()).collect();
        let total = sources
            .iter()
            .map(|s| Chunker::new(s.block_size).bytes_of(&s.image, &s.blocks))
            .sum();
        progress.begin("backup", total);

        let previous = Arc::new(previous);
        let claimed = Arc::new(Claimed::default());
        let known = Known {
            previous: Arc::clone(&previous),
            claimed: Arc::clone(&claimed),
            index: self.chunk_index().await?.map(Arc::new),
            damaged: damaged.clone(),
        };
        let index = known.index.clone();
        let journal = index.as_ref().map(|i| i.journal()).transpose()?;
        // The claimed ids are the list of what landed (see below), so it keeps none of its own.
        let landed = Landed::uncounted(self.store(), journal);
        // New chunks the store turned out to hold (asked about after a killed writer).
        let present = Mutex::new(Vec::new());
        let concurrency = request.options.concurrency.max(1);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<NewChunk>(concurrency);
        let scanned = Arc::new(AtomicU64::new(0));

        let scan = {
            let scanned = Arc::clone(&scanned);
            let progress = Arc::clone(&progress);
            tokio::task::spawn_blocking(move || {
                scan_all(sources, known, time, &tx, &scanned, progress.as_ref())
            })
        };
        // The upload stage owns the receiver: when it stops (done or failed) the receiver is
        // dropped, so a scan blocked on a full channel wakes up with an error instead of
        // waiting forever.
        let store = self.store();
        // Without an index, or with one a killed writer may have left short, each new chunk is
        // looked up first.
        let ask_store = index.as_ref().is_none_or(|i| i.may_lack_landed());
        let landed_ref = &landed;
        let present_ref = &present;
        let damaged_ref = &damaged;
        let disk_names = &disk_names;
        let upload = async move {
            // On the first failure the stage stops taking chunks (closing the channel wakes a
            // blocked scan with an error) but lets the uploads in flight finish: when backup()
            // returns, nothing of it is still writing to the vault.
            let stop = AtomicBool::new(false);
            let mut uploads = futures::stream::poll_fn(|cx| {
                if stop.load(Ordering::Relaxed) {
                    rx.close();
                    return std::task::Poll::Ready(None);
                }
                rx.poll_recv(cx)
            })
            .map(|chunk: NewChunk| async move {
                if ask_store
                    && !damaged_ref.contains(&chunk.id)
                    && store.has_chunk(&chunk.id).await?
                {
                    lock(present_ref).push(chunk.id);
                    return Ok::<u64, Error>(0);
                }
                let len = chunk.encoded.len() as u64;
                let encoded = Bytes::from(chunk.encoded);
                store.put_chunk(&chunk.id, encoded.clone()).await?;
                if let Some(tee) = tee {
                    let place = disk_names.get(chunk.disk).map(|name| (name, chunk.block));
                    tee.offer(chunk.id, &encoded, place);
                }
                landed_ref.put(chunk.id, len).await?;
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
        };
        let (scan, upload) = tokio::join!(scan, upload);
        let scan = scan.unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()));
        let (_, synced) = landed.finish().await;
        // When every claimed chunk went through the upload stage and is synced, the claimed
        // ids are exactly what landed, but for those the store held already. Otherwise only
        // the journal says what landed.
        let whole = scan.is_ok() && upload.is_ok() && synced.is_ok();
        // The scan dropped its handle on the claims when it ended.
        let claimed = Arc::try_unwrap(claimed).ok();
        debug_assert!(claimed.is_some(), "the scan still holds the claimed ids");
        let landed = match claimed {
            Some(claimed) if whole => {
                let present = ChunkSet::from_vec(std::mem::take(&mut *lock(&present)));
                Some(claimed.into_set(&present))
            }
            _ => None,
        };
        if let Some(index) = index {
            // Whatever landed is in the vault now, whether or not this backup commits.
            let mut index = Arc::unwrap_or_clone(index);
            match &landed {
                Some(landed) => index.add_and_save(landed)?,
                // Best effort: a journal left behind is folded in by the next load anyway.
                None => {
                    let _ = index.save_journaled();
                }
            }
        }
        let landed = landed.unwrap_or_default();
        // An upload failure stops the scan too; report the cause, not the echo.
        let (bytes_stored, chunks_stored) = upload?;
        let scanned_disks = scan?;
        synced?;

        let id = PointId::generate(time, format!("{vm}:{}", std::process::id()).as_bytes());
        let mut records = Vec::with_capacity(scanned_disks.len());
        let mut bytes_changed = 0u64;
        for (source, map) in &scanned_disks {
            bytes_changed += changed_blocks(previous.get(&source.name).map(Arc::as_ref), map)
                .map(|i| map.len_of(i) as u64)
                .sum::<u64>();
            let map_digest = self.store().put_map(vm, &id, &source.name, map).await?;
            records.push(DiskRecord {
                name: source.name.clone(),
                source: source.path.display().to_string(),
                size: map.disk_size(),
                block_size: map.block_size(),
                map_digest,
                blocks: map.len() as u64,
                data_blocks: map.data_blocks() as u64,
            });
        }
        let point = RecoveryPoint {
            vm: vm.clone(),
            id,
            time,
            consistency: request.consistency,
            parent: parent.map(|p| p.id),
            disks: records,
            stats: PointStats {
                bytes_scanned: scanned.load(Ordering::Relaxed),
                bytes_changed,
                bytes_stored,
                chunks_stored,
            },
            retain_until: request.retain_until,
            vault: request.vault.clone(),
        };
        // Every chunk and map is durable (puts are, when they return): now the commit.
        if let Some(lease) = lease {
            lease.check().await?;
        }
        self.store().put_point(&point).await?;
        self.clear_damage_marks(damaged, landed.as_slice(), &mut warnings)
            .await;
        Ok(BackupReport {
            point,
            elapsed: started.elapsed(),
            warnings,
            new_chunks: landed,
        })
    }

    /// What a writer (backup, transfer) does first: take a writer's lease (waiting out a
    /// sweep), and learn which chunks verify found damaged, so they are sent again rather than
    /// trusted. The lease must be held before the writer reads anything that decides which
    /// chunks it may skip: the parent's maps and the chunk index.
    pub(crate) async fn begin_write(
        &self,
        holder: &str,
        warnings: &mut Vec<String>,
    ) -> Result<(Option<Lease>, HashSet<ChunkId>)> {
        if !self.is_shared() {
            // No lease in a private vault (the snapshot tier), but damage marks still: a chunk
            // a transfer found bad there must be written again, not taken as present.
            let damaged = self.store().damaged_chunks().await?.into_iter().collect();
            return Ok((None, damaged));
        }
        let (lease, waited) = Lease::writer(self.store(), holder).await?;
        if waited >= Duration::from_secs(1) {
            warnings.push(format!(
                "waited {:.1} s for a garbage collection's sweep to run",
                waited.as_secs_f64()
            ));
        }
        let damaged = self.store().damaged_chunks().await?.into_iter().collect();
        Ok((Some(lease), damaged))
    }

    /// What a writer does once its point is committed: clear the damage marks of the chunks
    /// it sent again. That does not undo the commit, so a failure is a warning.
    pub(crate) async fn clear_damage_marks(
        &self,
        damaged: &HashSet<ChunkId>,
        landed: &[ChunkId],
        warnings: &mut Vec<String>,
    ) {
        for id in landed.iter().filter(|id| damaged.contains(id)) {
            match self.store().clear_damaged(id).await {
                Ok(()) => warnings.push(format!("chunk {id}, found damaged, was sent again")),
                Err(e) => warnings.push(format!("could not clear the damage mark of {id}: {e}")),
            }
        }
    }

    /// The block maps of the parent point for the disks being backed up again. A map that
    /// cannot be read only costs a full scan of that disk, so it is a warning, not an error.
    ///
    /// A map another reader in this process holds is shared, not read again (see
    /// [`SharedMaps`]).
    pub(crate) async fn previous_maps(
        &self,
        parent: Option<&RecoveryPoint>,
        names: &HashSet<DiskName>,
        warnings: &mut Vec<String>,
    ) -> HashMap<DiskName, Arc<BlockMap>> {
        let mut maps = HashMap::new();
        let Some(parent) = parent else {
            return maps;
        };
        for disk in parent.disks.iter().filter(|d| names.contains(&d.name)) {
            // This store's copy is still read and checked, so damage to it is noticed (and
            // on a replicated store healed, by the read below) as when nothing is shared.
            if let Some(map) = SharedMaps::get(&disk.map_digest)
                && let Ok(true) = self
                    .store()
                    .map_matches(&parent.vm, &parent.id, &disk.name, &disk.map_digest)
                    .await
            {
                maps.insert(disk.name.clone(), map);
                continue;
            }
            match self
                .store()
                .get_map(&parent.vm, &parent.id, &disk.name, Some(&disk.map_digest))
                .await
            {
                Ok(map) => {
                    maps.insert(disk.name.clone(), SharedMaps::share(&disk.map_digest, map));
                }
                Err(e) => warnings.push(format!(
                    "the previous point's map of disk {} is unusable ({e}); the disk was backed \
                     up in full",
                    disk.name
                )),
            }
        }
        maps
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The block maps this process's writers hold, by digest. A backup job's Snapshot and its
/// early send both read the newest map of each disk, from the snapshot tier and from the
/// vault, and when the vault's newest point is the tier's (transfers keeping up) the two are
/// the same map, with the same digest: 32 MB each for a disk of a million blocks. The digest
/// is checked as a map is read, so a map found here is the one asked for; the second reader
/// still reads its own store's copy and checks its digest (the bytes, not a second decoded
/// map), so a damaged copy warns as before. Only weak references are kept: a map lives as
/// long as a writer holds it.
struct SharedMaps;

static SHARED_MAPS: Mutex<Vec<(String, std::sync::Weak<BlockMap>)>> = Mutex::new(Vec::new());

impl SharedMaps {
    fn get(digest: &str) -> Option<Arc<BlockMap>> {
        let mut maps = lock(&SHARED_MAPS);
        maps.retain(|(_, map)| map.strong_count() > 0);
        maps.iter()
            .find(|(d, _)| d == digest)
            .and_then(|(_, map)| map.upgrade())
    }

    /// `map`, read with digest `digest`, shared; or the one another reader shared meanwhile.
    fn share(digest: &str, map: BlockMap) -> Arc<BlockMap> {
        if let Some(shared) = SharedMaps::get(digest) {
            return shared;
        }
        let map = Arc::new(map);
        lock(&SHARED_MAPS).push((digest.to_owned(), Arc::downgrade(&map)));
        map
    }
}

/// What a writer holds while it writes, from [`Vault::begin_write`]: its lease (none in a
/// private vault), the chunks verify found damaged, and the warnings so far.
pub(crate) struct Writing<'a> {
    pub(crate) lease: Option<&'a Lease>,
    pub(crate) damaged: &'a HashSet<ChunkId>,
    pub(crate) warnings: Vec<String>,
}

/// Releases a writer's lease, on success and failure alike; a failure to remove it is a
/// warning (the lease dies by itself after [`LEASE_TTL`](crate::LEASE_TTL)).
pub(crate) async fn release(lease: Option<Lease>) -> Option<String> {
    match lease?.release().await {
        Ok(()) => None,
        Err(e) => Some(format!(
            "could not release the vault lease (it expires by itself): {e}"
        )),
    }
}

/// The name a disk gets from its path: its file name.
pub(crate) fn disk_name(path: &Path) -> Result<DiskName> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    DiskName::new(file_name).map_err(|source| Error::DiskName {
        path: path.to_owned(),
        source,
    })
}

/// Opens every disk before anything is written, so a missing disk fails the backup up front.
/// A disk keeps the block size its parent point recorded unless the request sets one.
fn open_sources(
    request: &BackupRequest,
    parent: Option<&RecoveryPoint>,
    default_block_size: BlockSize,
) -> Result<Vec<Source>> {
    if request.disks.is_empty() {
        return Err(Error::NoDisks);
    }
    let mut sources: Vec<Source> = Vec::with_capacity(request.disks.len());
    for path in &request.disks {
        let image = DiskImage::open(path)?;
        let name = disk_name(path)?;
        if let Some(first) = sources.iter().find(|s| s.name == name) {
            return Err(Error::DuplicateDiskName {
                name,
                first: first.given.clone(),
                second: path.clone(),
            });
        }
        let block_size = request
            .block_size
            .or_else(|| {
                parent
                    .and_then(|p| p.disks.iter().find(|d| d.name == name))
                    .map(|d| d.block_size)
            })
            .unwrap_or(default_block_size);
        let blocks = Chunker::new(block_size).data_blocks(&image)?;
        sources.push(Source {
            given: path.clone(),
            path: std::path::absolute(path).unwrap_or_else(|_| path.clone()),
            name,
            image,
            block_size,
            blocks,
        });
    }
    Ok(sources)
}

/// What the scan may skip: a block whose id the previous point's map has at the same place,
/// a chunk the vault's chunk index holds (when there is one), and an id this backup has
/// already claimed. Chunks verify found bad are never taken as present.
///
/// The previous point's chunks are found by position, not in a set of them: a block that did
/// not change is where it was, and one that moved is in the index. Without an index a moved
/// block costs a `HEAD` before its upload, never a second copy.
struct Known {
    previous: Arc<HashMap<DiskName, Arc<BlockMap>>>,
    claimed: Arc<Claimed>,
    index: Option<Arc<ChunkIndex>>,
    damaged: HashSet<ChunkId>,
}

impl Known {
    /// True the first time a new id is seen: the caller must send it. `previous` is the
    /// previous point's map of the disk block `index` belongs to. A block found only in the
    /// index costs a `pread` there (see [`ChunkIndex`]): a disk that moved all its blocks, a
    /// million of them, about a second on the scan's workers.
    fn claim(&self, previous: Option<&BlockMap>, index: usize, id: ChunkId) -> bool {
        if self.damaged.contains(&id) {
            return self.claimed.insert(id);
        }
        let in_place = previous.is_some_and(|map| map.get(index) == Some(id));
        if in_place || self.index.as_ref().is_some_and(|i| i.contains(&id)) {
            return false;
        }
        self.claimed.insert(id)
    }
}

/// The new ids a backup has claimed, in 64 shards by ranges of the ids' first byte: the scan's
/// workers seldom wait on one another, and the shards in order are one sorted list, which is
/// the list of chunks the backup stored when it succeeds (see [`Claimed::into_set`]).
///
/// A shard keeps its ids sorted, 32 bytes each, and the latest in a small hash set that is
/// merged into them when it reaches a sixteenth of their number (at least 1,024): a million
/// ids cost about 34 MB, where hash sets cost 50 to 70 bytes an id and twice that while one
/// grew.
struct Claimed {
    shards: Vec<Mutex<Shard>>,
}

#[derive(Default)]
struct Shard {
    sorted: ChunkSet,
    recent: HashSet<ChunkId>,
}

impl Shard {
    fn insert(&mut self, id: ChunkId) -> bool {
        if self.sorted.contains(&id) || !self.recent.insert(id) {
            return false;
        }
        if self.recent.len() >= (self.sorted.len() / 16).max(1024) {
            self.settle();
        }
        true
    }

    /// Moves the recent ids into the sorted ones.
    fn settle(&mut self) {
        self.sorted.merge(&self.recent.drain().collect());
    }
}

const SHARDS: usize = 64;

impl Default for Claimed {
    fn default() -> Claimed {
        Claimed {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl Claimed {
    /// True if `id` was not claimed before.
    fn insert(&self, id: ChunkId) -> bool {
        let shard = usize::from(id.as_bytes()[0]) * SHARDS / 256;
        lock(&self.shards[shard]).insert(id)
    }

    /// Every id claimed but those of `except`, as one set; the shards are freed one by one
    /// as they are copied out.
    fn into_set(self, except: &ChunkSet) -> ChunkSet {
        let mut shards: Vec<Shard> = self
            .shards
            .into_iter()
            .map(|s| s.into_inner().unwrap_or_else(PoisonError::into_inner))
            .collect();
        let total = shards.iter().map(|s| s.sorted.len() + s.recent.len()).sum();
        let mut ids = Vec::with_capacity(total);
        for shard in &mut shards {
            shard.settle();
            let shard = std::mem::take(shard);
            ids.extend(shard.sorted.iter().filter(|id| !except.contains(id)));
        }
        // Already sorted and distinct, so the sort in `from_vec` is one pass over them.
        ChunkSet::from_vec(ids)
    }
}

/// The scan stage: runs on a blocking thread, fans out on the rayon pool, and hands new chunks
/// to the upload stage through `tx` (blocking when it is full: back-pressure).
fn scan_all(
    sources: Vec<Source>,
    known: Known,
    time: Timestamp,
    tx: &tokio::sync::mpsc::Sender<NewChunk>,
    scanned: &AtomicU64,
    progress: &dyn Progress,
) -> Result<Vec<(Source, BlockMap)>> {
    let mut maps = Vec::with_capacity(sources.len());
    for (disk, source) in sources.into_iter().enumerate() {
        let chunker = Chunker::new(source.block_size);
        let previous = known.previous.get(&source.name).map(Arc::as_ref);
        let map = chunker.scan_blocks(&source.image, &source.blocks, time, |block| {
            let len = block.data.len() as u64;
            scanned.fetch_add(len, Ordering::Relaxed);
            progress.advance(len);
            // Each new id is compressed and sent at most once.
            if block.id.is_zero() || !known.claim(previous, block.index, block.id) {
                return Ok(());
            }
            let encoded = encode(block.data)?;
            tx.blocking_send(NewChunk {
                id: block.id,
                encoded,
                disk,
                block: block.index,
            })
            .map_err(|_| Error::UploadStopped)
        })?;
        maps.push((source, map));
    }
    Ok(maps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_held_by_one_reader_is_shared_with_the_next_and_forgotten_when_dropped() {
        let map = || {
            let ids = vec![ChunkId::of(b"a"); 4];
            BlockMap::from_ids(4 << 20, BlockSize::default(), Timestamp::UNIX_EPOCH, ids)
                .expect("map")
        };
        let digest = "shared-map-test";
        let first = SharedMaps::share(digest, map());
        let second = SharedMaps::share(digest, map());
        assert!(
            Arc::ptr_eq(&first, &second),
            "the second read is the first map"
        );
        let found = SharedMaps::get(digest).expect("held, so found");
        assert!(Arc::ptr_eq(&first, &found));
        drop((first, second, found));
        assert!(
            SharedMaps::get(digest).is_none(),
            "no reader holds it any more"
        );
    }

    #[test]
    fn claimed_ids_are_claimed_once_and_come_out_sorted_without_the_exceptions() {
        // Enough ids that every shard settles its recent ids into its sorted ones many times.
        let ids: Vec<ChunkId> = (0u32..200_000)
            .map(|n| ChunkId::of(&n.to_le_bytes()))
            .collect();
        let claimed = Claimed::default();
        let firsts = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|w| {
                    let (claimed, ids) = (&claimed, &ids);
                    // Every worker claims every id, each in its own order.
                    scope.spawn(move || {
                        let order: Box<dyn Iterator<Item = &ChunkId>> = if w % 2 == 0 {
                            Box::new(ids.iter())
                        } else {
                            Box::new(ids.iter().rev())
                        };
                        order.filter(|id| claimed.insert(**id)).count()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("worker"))
                .sum::<usize>()
        });
        assert_eq!(firsts, ids.len(), "each id claimed exactly once");
        let except = ChunkSet::from_vec(ids[..10].to_vec());
        let set = claimed.into_set(&except);
        let mut expected = ids[10..].to_vec();
        expected.sort_unstable();
        assert_eq!(set.as_slice(), &expected[..]);
    }
}
