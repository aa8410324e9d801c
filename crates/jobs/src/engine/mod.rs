//! The job engine: runs backups as Snapshot + Transfer jobs, restores from the best tier, and
//! keeps the catalog telling the truth after crashes.

mod disk_state;
mod hooks;
mod job_lock;
mod lock;
mod protection;
mod recovery;
mod restore;
mod retention;
mod soft_delete;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use blockvault_core::{BlockSize, ChunkSet, Consistency, RecoveryPoint, VmName};
use blockvault_local::SnapshotTier;
use blockvault_vault::{
    BackupRequest, EarlySend, Progress, TransferOptions, TransferRequest, Vault,
};
use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

pub use self::hooks::Hooks;
pub use self::protection::{ProtectOutcome, ProtectRequest};
pub use self::recovery::Recovered;
pub use self::restore::{ListedPoint, PointList, RestoreOutcome};
pub use self::retention::{ExpiredPoint, Pruned};
pub use self::soft_delete::{PurgeOutcome, StopMode, StopOutcome};
pub use self::verify::{VerifyOutcome, VerifyScope};

use self::disk_state::{DiskState, DiskStates, FileStat};
use self::hooks::Hook;
use self::lock::Lock;
use crate::{
    Catalog, Clock, Job, JobId, Operation, PointSummary, Result, SubtaskKind, SubtaskOutcome,
    SystemClock, Tier,
};

/// Instant-restore days a backup may ask for (the widest policy range, Enhanced's).
pub const INSTANT_RESTORE_DAYS: std::ops::RangeInclusive<u32> = 1..=30;

/// One backup to run as a job.
#[derive(Clone, Debug)]
pub struct BackupSpec {
    pub vm: VmName,
    /// The VM's disks, in order; one point covers all of them.
    pub disks: Vec<PathBuf>,
    pub block_size: Option<BlockSize>,
    /// Days the point stays in the snapshot tier (instant restore); the vault copy stays.
    pub instant_restore_days: u32,
    pub hooks: Hooks,
    /// `Backup`, `Backup (on demand)` or `Configure backup (Migrate policy)`.
    pub operation: Operation,
    pub options: TransferOptions,
    /// Why this backup stays in the snapshot tier, when its policy says so (an Enhanced hourly
    /// backup that is not the last of its day): its Transfer subtask is Skipped with this
    /// reason. `None` transfers.
    pub skip_transfer: Option<String>,
    /// An on-demand backup's `retain until`, recorded on the point.
    pub retain_until: Option<Timestamp>,
    /// The caller's shutdown signal: once it reads `true`, a job whose Snapshot has ended does
    /// not start its Transfer (the Transfer fails saying why, the job completes with a
    /// warning, and the next transfer carries the point's changes).
    pub stop: Option<watch::Receiver<bool>>,
    /// Whether the Transfer's uploads may begin while the Snapshot runs (see
    /// [`EarlySend`]); `false` leaves the vault untouched until the Snapshot completes.
    pub early_send: bool,
}

impl BackupSpec {
    /// A plain backup of `disks` (Backup operation, no hooks, default block size and
    /// transfer options, 2 days of instant restore).
    pub fn new(vm: VmName, disks: Vec<PathBuf>) -> BackupSpec {
        BackupSpec {
            vm,
            disks,
            block_size: None,
            instant_restore_days: 2,
            hooks: Hooks::default(),
            operation: Operation::Backup,
            options: TransferOptions::default(),
            skip_transfer: None,
            retain_until: None,
            stop: None,
            early_send: true,
        }
    }
}

/// A vault the engine could not open (unreachable, timing out). A backup still takes its
/// snapshot; its Transfer fails with `reason` and the job completes with a warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultUnavailable {
    /// The location as the user gave it (never with credentials).
    pub location: String,
    pub reason: String,
}

/// How a backup job ended. The job itself says whether each subtask completed; the point is
/// there when the Snapshot completed.
#[derive(Debug)]
pub struct BackupOutcome {
    pub job: Job,
    /// Why the job failed, when it did (the job record holds the same as text).
    pub failure: Option<crate::Error>,
    /// The point the Snapshot made (in the snapshot tier, and in the vault when the Transfer
    /// completed).
    pub point: Option<RecoveryPoint>,
    /// Things the user should know that did not fail the job.
    pub warnings: Vec<String>,
}

/// What a Snapshot subtask made: the point, the chunks it wrote to the snapshot tier (which
/// the Transfer copies without decoding them again), and the early send it fed, which the
/// Transfer takes over.
#[derive(Debug)]
struct Taken {
    point: RecoveryPoint,
    fresh: ChunkSet,
    early: Option<EarlySend>,
}

/// Progress of one subtask (labels the phases "snapshot" and "transfer").
struct Phase(&'static str, Arc<dyn Progress>);

impl Progress for Phase {
    fn begin(&self, _phase: &str, total_bytes: u64) {
        self.1.begin(self.0, total_bytes);
    }

    fn advance(&self, bytes: u64) {
        self.1.advance(bytes);
    }
}

/// This host's job engine: the catalog, the snapshot tier and the locks, all under the state
/// directory.
///
/// | path | what |
/// |---|---|
/// | `STATE/catalog.sqlite` | the [`Catalog`] |
/// | `STATE/snapshots/<vm>/` | the snapshot tier (or wherever `snapshot_dir` says) |
/// | `STATE/locks/<vm>.snapshot`, `.transfer` | per-VM subtask exclusivity |
/// | `STATE/locks/job-<id>` | held by the process running the job, so others can tell it is alive (removed when the job ends) |
#[derive(Debug)]
pub struct Engine {
    state_dir: PathBuf,
    catalog: Catalog,
    snapshots: SnapshotTier,
    clock: Arc<dyn Clock>,
}

impl Engine {
    /// Opens the engine on `state_dir` (created if missing), with the snapshot tier in
    /// `snapshot_dir` (default `STATE/snapshots`). Jobs that a crash or kill interrupted are
    /// marked Failed and their leftovers cleaned before anything else runs.
    pub async fn open(
        state_dir: impl Into<PathBuf>,
        snapshot_dir: Option<PathBuf>,
    ) -> Result<(Engine, Recovered)> {
        let state_dir = state_dir.into();
        std::fs::create_dir_all(&state_dir).map_err(|e| crate::Error::lock(&state_dir, e))?;
        let catalog = Catalog::open(state_dir.join("catalog.sqlite"))?;
        let snapshots =
            SnapshotTier::new(snapshot_dir.unwrap_or_else(|| state_dir.join("snapshots")));
        let engine = Engine {
            state_dir,
            catalog,
            snapshots,
            clock: Arc::new(SystemClock),
        };
        let recovered = engine.recover().await?;
        Ok((engine, recovered))
    }

    /// The engine with another clock: job times, point times and snapshot expiry follow it
    /// (a [`SimulatedClock`](crate::SimulatedClock) runs weeks of schedule in seconds). What
    /// is compared with files' timestamps stays on the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Engine {
        self.clock = clock;
        self
    }

    /// The engine's time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn snapshots(&self) -> &SnapshotTier {
        &self.snapshots
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Takes `vm`'s snapshot lock, waiting on a blocking thread: exclusive for what writes or
    /// deletes in the VM's snapshot tier (a Snapshot, expiry, an in-place restore), shared for
    /// what only reads it (listing, restoring from it).
    async fn lock_snapshots(&self, vm: &VmName, exclusive: bool) -> Result<Lock> {
        let path = self.vm_lock(vm, SubtaskKind::Snapshot);
        tokio::task::spawn_blocking(move || {
            if exclusive {
                Lock::acquire(&path)
            } else {
                Lock::acquire_shared(&path)
            }
        })
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
    }

    fn vm_lock(&self, vm: &VmName, kind: SubtaskKind) -> PathBuf {
        let suffix = match kind {
            SubtaskKind::Snapshot => "snapshot",
            SubtaskKind::Transfer => "transfer",
        };
        self.state_dir.join("locks").join(format!("{vm}.{suffix}"))
    }

    /// Runs one backup job: the Snapshot subtask into the snapshot tier (hooks around it, all
    /// disks read while the VM is quiesced), then the Transfer subtask from that snapshot to
    /// `vault`.
    ///
    /// At most one Snapshot and one Transfer of a VM run at a time, across processes: a second
    /// Snapshot waits for the first; a Transfer that finds another Transfer of the VM running
    /// is Skipped (the next one carries this point's churn). A failed Snapshot fails the job; a
    /// failed Transfer leaves the job "Completed with warning" and the point in the snapshot
    /// tier. Errors of the job are in the returned job record, not in `Err`: `Err` means the
    /// catalog itself could not be written.
    pub async fn backup(
        &self,
        vault: std::result::Result<&Vault, &VaultUnavailable>,
        spec: &BackupSpec,
        progress: Arc<dyn Progress>,
    ) -> Result<BackupOutcome> {
        let now = self.now();
        let disks: Vec<PathBuf> = spec
            .disks
            .iter()
            .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.clone()))
            .collect();
        // Before the job exists: an error here leaves no job behind.
        self.catalog
            .upsert_vm(&spec.vm, &location(vault), &disks, now)?;
        let (job, job_lock) = self.begin_job(
            &spec.vm,
            spec.operation,
            &[SubtaskKind::Snapshot, SubtaskKind::Transfer],
        )?;
        let mut warnings = Vec::new();

        let early = early_send(vault, spec);
        // The snapshot tier's record names the vault the point is for (see `find_points`).
        let vault_id = vault.ok().map(|v| v.config().id.clone());
        let mut taken = match self
            .snapshot(job, spec, vault_id, &progress, &mut warnings, early)
            .await?
        {
            Ok(taken) => taken,
            Err(error) => {
                job_lock.remove();
                return Ok(BackupOutcome {
                    job: self.catalog.job(job)?,
                    failure: Some(error),
                    point: None,
                    warnings,
                });
            }
        };
        self.transfer(job, vault, &mut taken, spec, &progress, &mut warnings)
            .await?;
        let snapshot = taken.point;
        self.catalog
            .finish_job(job, Some(&snapshot.id), self.now())?;
        job_lock.remove();
        Ok(BackupOutcome {
            job: self.catalog.job(job)?,
            failure: None,
            point: Some(snapshot),
            warnings,
        })
    }

    /// The Snapshot subtask, holding the VM's snapshot lock until the subtask is recorded as
    /// ended (so the catalog never shows two Snapshots of one VM in progress at once). It feeds
    /// `early` and hands it over in [`Taken`]; on failure it ends it. On failure the job is
    /// failed, still under the lock, and the inner result is the error. The outer `Err` is
    /// for catalog failures only.
    async fn snapshot(
        &self,
        job: JobId,
        spec: &BackupSpec,
        vault_id: Option<String>,
        progress: &Arc<dyn Progress>,
        warnings: &mut Vec<String>,
        early: Option<EarlySend>,
    ) -> Result<Result<Taken>> {
        let held = self.lock_snapshots(&spec.vm, true).await;
        let taken = match held {
            Ok(_) => {
                self.take_snapshot(job, spec, vault_id, progress, warnings, early.as_ref())
                    .await
            }
            Err(e) => Err(e),
        };
        let taken = match (taken, early) {
            (Ok(taken), early) => Ok(Taken { early, ..taken }),
            (Err(e), Some(early)) => {
                warnings.extend(early.abandon().await);
                Err(e)
            }
            (Err(e), None) => Err(e),
        };
        match taken {
            Ok(taken) => {
                let stats = &taken.point.stats;
                self.catalog.finish_subtask(
                    job,
                    SubtaskKind::Snapshot,
                    &SubtaskOutcome::completed(
                        stats.bytes_scanned,
                        stats.bytes_changed,
                        stats.bytes_stored,
                    ),
                    self.now(),
                )?;
                // Expiry after the subtask is on record (a cancelled sweep must not fail a job
                // whose point is committed), still under the lock.
                if let Err(e) = self
                    .expire_snapshots(&spec.vm, self.now(), Some(&taken.point.id))
                    .await
                {
                    warnings.push(format!(
                        "could not expire old snapshots of {}: {e}",
                        spec.vm
                    ));
                }
                Ok(Ok(taken))
            }
            Err(error) => {
                self.catalog.fail_job(job, &error.to_string(), self.now())?;
                Ok(Err(error))
            }
        }
        // `held` is released here.
    }

    /// The work of the Snapshot subtask, with the VM's snapshot lock held by the caller: the
    /// point, and the chunks it wrote to the snapshot tier.
    async fn take_snapshot(
        &self,
        job: JobId,
        spec: &BackupSpec,
        vault_id: Option<String>,
        progress: &Arc<dyn Progress>,
        warnings: &mut Vec<String>,
        early: Option<&EarlySend>,
    ) -> Result<Taken> {
        let vm = &spec.vm;
        if !INSTANT_RESTORE_DAYS.contains(&spec.instant_restore_days) {
            return Err(crate::Error::InstantRestoreDays {
                days: spec.instant_restore_days,
                min: *INSTANT_RESTORE_DAYS.start(),
                max: *INSTANT_RESTORE_DAYS.end(),
            });
        }
        self.catalog
            .start_subtask(job, SubtaskKind::Snapshot, self.now())?;

        let tier = self.snapshots.open_or_init(vm).await?;
        // From the pre-hook on, the VM may be quiesced: it is thawed on every path, even if
        // this job is cancelled.
        let mut thaw = hooks::Thaw::new(&spec.hooks, vm, &spec.disks);
        if let Err(message) = hooks::run(&spec.hooks, Hook::Pre, vm, &spec.disks).await {
            // A pre-hook that failed may have quiesced part of the VM (one file system frozen
            // of two): the post-hook runs all the same, so the VM is always thawed.
            if let Err(e) = hooks::run(&spec.hooks, Hook::Post, vm, &spec.disks).await {
                warnings.push(e);
            }
            thaw.disarm();
            return Err(crate::Error::Hook { message });
        }
        let request = BackupRequest {
            vm: vm.clone(),
            disks: spec.disks.clone(),
            block_size: spec.block_size,
            consistency: if spec.hooks.quiesce() {
                Consistency::ApplicationConsistent
            } else {
                Consistency::CrashConsistent
            },
            options: spec.options,
            time: Some(self.now()),
            retain_until: spec.retain_until,
            vault: vault_id,
        };
        // The disks' stats around the read: a disk nothing wrote to meanwhile is on record
        // as holding this point (see `disk_state`), so a later in-place rollback skips its scan.
        // Only when a pre-hook quiesced the VM: a write the kernel has stamped may still be in
        // flight (asynchronous direct I/O) while the disk is read.
        let read_at = Timestamp::now();
        let before: Vec<Option<FileStat>> =
            spec.disks.iter().map(|d| FileStat::of(d).ok()).collect();
        let taken = tier
            .backup_teeing(
                &request,
                Arc::new(Phase("snapshot", Arc::clone(progress))),
                early,
            )
            .await;
        // The VM is thawed whatever happened to the read.
        if let Err(e) = hooks::run(&spec.hooks, Hook::Post, vm, &spec.disks).await {
            warnings.push(e);
        }
        thaw.disarm();
        let report = match taken {
            Ok(report) => report,
            Err(e) => {
                // Free what the failed snapshot wrote (a full disk must not stay full).
                if let Err(sweep) = self.snapshots.sweep(vm).await {
                    warnings.push(format!("could not clean the failed snapshot: {sweep}"));
                }
                return Err(e.into());
            }
        };
        warnings.extend(report.warnings.iter().cloned());
        let point = report.point;
        let states = DiskStates::new(&self.state_dir);
        for ((path, before), disk) in spec.disks.iter().zip(before).zip(&point.disks) {
            let after = FileStat::of(path).ok();
            if let (true, Some(stat), Some(after)) = (spec.hooks.quiesce(), before, after)
                && stat == after
                && stat.settled_at(read_at)
                && let Ok(canonical) = std::fs::canonicalize(path)
            {
                states.record(&DiskState {
                    boot: disk_state::boot_id(),
                    path: canonical,
                    stat,
                    taken: read_at,
                    vm: vm.clone(),
                    point: point.id.clone(),
                    disk: disk.name.clone(),
                    map_digest: disk.map_digest.clone(),
                });
            }
        }
        let expires =
            point.time + SignedDuration::from_hours(24 * i64::from(spec.instant_restore_days));
        let summary = PointSummary::from(&point);
        self.catalog
            .add_point_tier(vm, &summary, Tier::Snapshot, Some(expires))?;
        Ok(Taken {
            point,
            fresh: report.new_chunks,
            early: None,
        })
    }

    /// The Transfer subtask. Its failure is recorded on the subtask (the job then completes
    /// with a warning), so only catalog errors come out as `Err`.
    async fn transfer(
        &self,
        job: JobId,
        vault: std::result::Result<&Vault, &VaultUnavailable>,
        taken: &mut Taken,
        spec: &BackupSpec,
        progress: &Arc<dyn Progress>,
        warnings: &mut Vec<String>,
    ) -> Result<()> {
        let ran = self
            .run_transfer(job, vault, taken, spec, progress, warnings)
            .await;
        // Where the Transfer did not run (skipped, stopping, failed to start), the early send
        // ends here: its uploads stay for the next transfer, its lease goes.
        if let Some(early) = taken.early.take() {
            warnings.extend(early.abandon().await);
        }
        ran
    }

    /// The body of [`Engine::transfer`]; takes over the early send when it runs the vault's
    /// transfer.
    async fn run_transfer(
        &self,
        job: JobId,
        vault: std::result::Result<&Vault, &VaultUnavailable>,
        taken: &mut Taken,
        spec: &BackupSpec,
        progress: &Arc<dyn Progress>,
        warnings: &mut Vec<String>,
    ) -> Result<()> {
        let point = &taken.point;
        let kind = SubtaskKind::Transfer;
        if let Some(reason) = &spec.skip_transfer {
            let outcome = SubtaskOutcome::skipped(reason.clone());
            self.catalog
                .finish_subtask(job, kind, &outcome, self.now())?;
            return Ok(());
        }
        if spec.stop.as_ref().is_some_and(|stop| *stop.borrow()) {
            let outcome = SubtaskOutcome::failed(format!(
                "blockvault was stopping, so the transfer did not start; the point is in the \
                 snapshot tier and the next transfer of {} carries its changes",
                point.vm
            ));
            self.catalog
                .finish_subtask(job, kind, &outcome, self.now())?;
            return Ok(());
        }
        let held = match Lock::try_acquire(&self.vm_lock(&point.vm, kind)) {
            Ok(held) => held,
            Err(e) => {
                let outcome = SubtaskOutcome::failed(e.to_string());
                self.catalog
                    .finish_subtask(job, kind, &outcome, self.now())?;
                return Ok(());
            }
        };
        let Some(_held) = held else {
            let running = self
                .catalog
                .unfinished_jobs()?
                .into_iter()
                .filter(|j| j.id != job && j.vm == point.vm)
                // The holder: its transfer started (it may have just ended; the job has not).
                .find(|j| {
                    j.subtask(kind)
                        .is_some_and(|s| s.status != crate::SubtaskStatus::Pending)
                })
                .map(|j| format!(" (job {})", j.id))
                .unwrap_or_default();
            let reason = format!(
                "an earlier transfer of {} is still running{running}; the next transfer \
                 carries this point's changes",
                point.vm
            );
            self.catalog
                .finish_subtask(job, kind, &SubtaskOutcome::skipped(reason), self.now())?;
            return Ok(());
        };
        self.catalog.start_subtask(job, kind, self.now())?;
        let outcome = match (vault, self.snapshots.open(&point.vm).await) {
            (Err(unavailable), _) => Err(format!(
                "the vault {} is unavailable: {}",
                unavailable.location, unavailable.reason
            )),
            (Ok(vault), Ok(Some(tier))) => {
                let request = TransferRequest {
                    source: &tier,
                    point,
                    fresh: &taken.fresh,
                    options: spec.options,
                    progress: Arc::new(Phase("transfer", Arc::clone(progress))),
                };
                let copied = match taken.early.take() {
                    Some(early) => vault.transfer_early(&request, early.finish().await).await,
                    None => vault.transfer(&request).await,
                };
                copied.map_err(|e| e.to_string())
            }
            (Ok(_), Ok(None)) => Err(format!("the snapshot tier of {} is gone", point.vm)),
            (Ok(_), Err(e)) => Err(e.to_string()),
        };
        let outcome = match outcome {
            Ok(report) => {
                warnings.extend(report.warnings);
                let summary = PointSummary::from(&report.point);
                self.catalog
                    .add_point_tier(&point.vm, &summary, Tier::Vault, None)?;
                let stats = &report.point.stats;
                // A transfer reads no disk: nothing scanned; changed is since the newest
                // vault point.
                SubtaskOutcome::completed(0, stats.bytes_changed, stats.bytes_stored)
            }
            Err(error) => SubtaskOutcome::failed(error),
        };
        self.catalog
            .finish_subtask(job, kind, &outcome, self.now())?;
        Ok(())
    }

    /// Deletes the snapshot points of `vm` whose instant-restore days are over at `now` (their
    /// vault copies stay) and frees the chunks no remaining snapshot names. Waits for a running
    /// Snapshot of the VM to end first. Every Snapshot subtask also does this when it ends.
    pub async fn expire(&self, vm: &VmName, now: Timestamp) -> Result<()> {
        let _held = self.lock_snapshots(vm, true).await?;
        self.expire_snapshots(vm, now, None).await
    }

    /// Deletes what no committed snapshot point of `vm` needs (what an interrupted Snapshot
    /// left), if the VM's snapshot lock is free; `None` when something holds it (that holder
    /// sweeps after itself, or the next one does).
    pub async fn sweep_snapshots_if_idle(&self, vm: &VmName) -> Result<Option<u64>> {
        let Some(_held) = Lock::try_acquire(&self.vm_lock(vm, SubtaskKind::Snapshot))? else {
            return Ok(None);
        };
        Ok(Some(self.snapshots.sweep(vm).await?.bytes_freed))
    }

    /// [`Engine::expire`] if the VM's snapshot lock is free right now; whether it ran. A
    /// scheduler must not wait: a Snapshot holding the lock expires on its own when it ends.
    pub async fn expire_if_idle(&self, vm: &VmName, now: Timestamp) -> Result<bool> {
        let Some(_held) = Lock::try_acquire(&self.vm_lock(vm, SubtaskKind::Snapshot))? else {
            return Ok(false);
        };
        self.expire_snapshots(vm, now, None).await?;
        Ok(true)
    }

    /// [`Engine::expire`] with the VM's snapshot lock held by the caller; `keep` is never
    /// expired (the point a Snapshot just made, which its Transfer is about to read, however
    /// long the Snapshot took).
    async fn expire_snapshots(
        &self,
        vm: &VmName,
        now: Timestamp,
        keep: Option<&blockvault_core::PointId>,
    ) -> Result<()> {
        let expires: std::collections::HashMap<_, _> = self
            .catalog
            .points(vm)?
            .into_iter()
            .map(|p| (p.id, p.snapshot_expires))
            .collect();
        let expired: Vec<_> = self
            .snapshots
            .points(vm)
            .await?
            .into_iter()
            .filter(|p| {
                // A point the catalog lost track of expires after the shortest allowed stay.
                let until = expires.get(&p.id).copied().flatten().unwrap_or_else(|| {
                    p.time
                        + SignedDuration::from_hours(24 * i64::from(*INSTANT_RESTORE_DAYS.start()))
                });
                until <= now && Some(&p.id) != keep
            })
            .map(|p| p.id)
            .collect();
        if expired.is_empty() {
            return Ok(());
        }
        self.snapshots.expire(vm, &expired).await?;
        for id in &expired {
            self.catalog.remove_point_tier(vm, id, Tier::Snapshot)?;
        }
        Ok(())
    }
}

/// The early send of a backup's Transfer (see [`blockvault_vault::EarlySend`]), when the job
/// will transfer: not when its policy keeps it in the snapshot tier, not when blockvault is
/// stopping, not without a vault.
fn early_send(
    vault: std::result::Result<&Vault, &VaultUnavailable>,
    spec: &BackupSpec,
) -> Option<EarlySend> {
    let vault = vault.ok()?;
    if !spec.early_send
        || spec.skip_transfer.is_some()
        || spec.stop.as_ref().is_some_and(|stop| *stop.borrow())
    {
        return None;
    }
    let disks = spec
        .disks
        .iter()
        .filter_map(|path| path.file_name())
        .filter_map(|name| blockvault_core::DiskName::new(name.to_string_lossy()).ok())
        .collect();
    Some(vault.early_send(&spec.vm, disks, spec.options))
}

fn location(vault: std::result::Result<&Vault, &VaultUnavailable>) -> String {
    match vault {
        Ok(vault) => vault.store().location().to_owned(),
        Err(unavailable) => unavailable.location.clone(),
    }
}
