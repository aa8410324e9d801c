//! The write session: one new point of a VM, in named stages.
//!
//! ```text
//! guard + damage marks          the writer's right to write (a vault's lease), taken first
//!   -> parent                   the point it is incremental from, chosen by the caller
//!   -> sources                  every disk opened (the image or its capture)  `sources.rs`
//!   -> plan                     its data blocks, and the change hint applied to
//!                               the parent's map when the write named the parent
//!   -> scan                     read, zero check, BLAKE3, skip known, encode  `scan.rs`, `known.rs`
//!   -> put                      bounded channel, `concurrency` puts at once   `put.rs`
//!   -> commit                   block maps, then the point record
//! ```

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use blockvault_core::{
    BlockSize, Capture, ChunkId, ChunkSet, Consistency, DiskName, DiskRecord, PointId, PointStats,
    RecoveryPoint, VmName,
};
use blockvault_source::changed_blocks;
use jiff::Timestamp;

use crate::guard::Held;
use crate::landed::Landed;
use crate::{EarlySend, Progress, Repository, Result, TransferOptions};

mod known;
mod parent;
mod put;
mod scan;
mod sources;

pub(crate) use parent::Parent;
pub use parent::ParentChoice;
pub use sources::{DiskInput, DiskScan, disk_name};

use known::{Claimed, Known};
use put::{Put, put_all};
use scan::{NewChunk, Scanned, scan_all};
use sources::open_sources;

/// A new id for a point of `vm` made at `time` (salted with the VM and this process, so
/// concurrent writers differ): what a backup names its point by unless its caller chose one.
pub fn new_point_id(vm: &VmName, time: Timestamp) -> PointId {
    PointId::generate(time, format!("{vm}:{}", std::process::id()).as_bytes())
}

/// An ad hoc backup of one VM's disks into the vault.
#[derive(Clone, Debug)]
pub struct BackupRequest {
    pub vm: VmName,
    /// The VM's disks, in order: each one's image (its file name names the disk), what to
    /// read (the image or a capture of it) and its change hint.
    pub disks: Vec<DiskInput>,
    /// Block size for the disks; by default a disk keeps the block size of its previous point,
    /// and new disks get the vault's default.
    pub block_size: Option<BlockSize>,
    /// What the caller guarantees about the instant of the read: crash-consistent unless
    /// pre-snapshot hooks quiesced the VM.
    pub consistency: Consistency,
    /// How the caller fixed the instant of the disks, recorded on the point; `None` records
    /// nothing (a backup straight into a vault reads the disks as they are).
    pub capture: Option<Capture>,
    pub options: TransferOptions,
    /// The instant the point is recorded at; default: when the backup starts. A scheduler on
    /// a simulated clock passes its own.
    pub time: Option<Timestamp>,
    /// Recorded on the point: an on-demand backup's `retain until`.
    pub retain_until: Option<Timestamp>,
    /// The point's id, when the caller chose it before the capture (a QEMU dirty bitmap
    /// started at the capture is named after the point it follows); default: a new id from
    /// `time`.
    pub id: Option<PointId>,
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
    /// How each disk was read, in the request's order.
    pub scans: Vec<DiskScan>,
}

impl Repository {
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
    /// With a state directory ([`Repository::with_state_dir`]) the vault's chunks are known from the
    /// local [`ChunkIndex`](crate::ChunkIndex), so no chunk costs a round trip before its upload. Without one, each
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

    /// [`Repository::backup`] incremental from the newest point, that also offers each chunk
    /// it stores to `tee`: the Snapshot of a backup job (into the snapshot tier) feeding the
    /// early send of its Transfer.
    pub async fn backup_teeing(
        &self,
        request: &BackupRequest,
        progress: Arc<dyn Progress>,
        tee: Option<&EarlySend>,
    ) -> Result<BackupReport> {
        self.write(request, &ParentChoice::Newest, progress, tee)
            .await
    }

    /// The write session: [`Repository::backup`] incremental from the point `parent` names,
    /// offering each chunk it stores to `tee`.
    pub async fn write(
        &self,
        request: &BackupRequest,
        parent: &ParentChoice,
        progress: Arc<dyn Progress>,
        tee: Option<&EarlySend>,
    ) -> Result<BackupReport> {
        let started = Instant::now();
        let mut warnings = Vec::new();
        // Before anything is read that decides what to skip (see the store crate's docs).
        let (held, damaged) = self
            .begin_write(&format!("backup of {}", request.vm), &mut warnings)
            .await?;
        let writing = Writing {
            held: held.as_ref(),
            damaged: &damaged,
            warnings,
        };
        let outcome = self.session(request, parent, progress, writing, tee).await;
        // Released on every path: a lease left behind would hold off collections.
        let released = held.release().await;
        let mut report = outcome?;
        report.warnings.extend(released);
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// The session itself, once the writer's guard is held.
    async fn session(
        &self,
        request: &BackupRequest,
        parent: &ParentChoice,
        progress: Arc<dyn Progress>,
        writing: Writing<'_>,
        tee: Option<&EarlySend>,
    ) -> Result<BackupReport> {
        let Writing {
            held,
            damaged,
            mut warnings,
        } = writing;
        let started = Instant::now();
        let time = request.time.unwrap_or_else(Timestamp::now);
        let vm = &request.vm;
        let names: HashSet<DiskName> = request
            .disks
            .iter()
            .filter_map(|d| disk_name(&d.path).ok())
            .collect();
        let parent_named = matches!(parent, ParentChoice::Point(_));
        let Parent {
            point: parent,
            maps: previous,
        } = self.read_parent(vm, parent, &names, &mut warnings).await?;
        let sources = open_sources(
            &request.disks,
            request.block_size,
            parent.as_ref(),
            self.config().default_block_size,
            self.codec(),
        )?;
        let disk_names: Vec<DiskName> = sources.iter().map(|s| s.name.clone()).collect();

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
        let (tx, rx) = tokio::sync::mpsc::channel::<NewChunk>(concurrency);
        let scanned = Arc::new(AtomicU64::new(0));

        let scan = {
            let scanned = Arc::clone(&scanned);
            let progress = Arc::clone(&progress);
            tokio::task::spawn_blocking(move || {
                scan_all(
                    sources,
                    known,
                    time,
                    parent_named,
                    &tx,
                    &scanned,
                    progress.as_ref(),
                )
            })
        };
        // Without an index, or with one a killed writer may have left short, each new chunk is
        // looked up first.
        let ask_store = index.as_ref().is_none_or(|i| i.may_lack_landed());
        let upload = put_all(
            rx,
            Put {
                store: self.store(),
                ask_store,
                damaged,
                landed: &landed,
                present: &present,
                disk_names: &disk_names,
                tee,
                concurrency,
            },
        );
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
                let present = ChunkSet::from_vec(std::mem::take(
                    &mut *present.lock().unwrap_or_else(PoisonError::into_inner),
                ));
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

        let id = request.id.clone().unwrap_or_else(|| new_point_id(vm, time));
        let mut records = Vec::with_capacity(scanned_disks.len());
        let mut scans = Vec::with_capacity(scanned_disks.len());
        let mut bytes_changed = 0u64;
        for Scanned {
            source,
            map,
            record,
        } in scanned_disks
        {
            scans.push(record);
            bytes_changed += changed_blocks(previous.get(&source.name).map(Arc::as_ref), &map)
                .map(|i| map.len_of(i) as u64)
                .sum::<u64>();
            let map_digest = self.store().put_map(vm, &id, &source.name, &map).await?;
            records.push(DiskRecord {
                name: source.name.clone(),
                source: source.path.display().to_string(),
                size: map.disk_size(),
                block_size: map.block_size(),
                map_digest,
                blocks: map.len() as u64,
                data_blocks: map.data_blocks() as u64,
                format: source.format,
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
                capture: request.capture,
            },
            retain_until: request.retain_until,
            vault: request.vault.clone(),
        };
        // Every chunk and map is durable (puts are, when they return): now the commit.
        held.check().await?;
        self.store().put_point(&point).await?;
        self.clear_damage_marks(damaged, landed.as_slice(), &mut warnings)
            .await;
        Ok(BackupReport {
            point,
            elapsed: started.elapsed(),
            warnings,
            new_chunks: landed,
            scans,
        })
    }
}

/// What a writer holds while it writes: its guard, the chunks verify found damaged, and the
/// warnings so far.
struct Writing<'a> {
    held: &'a dyn Held,
    damaged: &'a HashSet<ChunkId>,
    warnings: Vec<String>,
}

#[cfg(test)]
mod tests;
