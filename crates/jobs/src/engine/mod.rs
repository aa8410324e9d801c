//! The job engine: runs backups as Snapshot + Transfer jobs, restores from the best tier, and
//! keeps the catalog telling the truth after crashes.

mod backup;
mod bitmaps;
mod capture;
mod capture_report;
mod changes;
mod clone_restore;
mod disk_format;
mod disk_size;
mod disk_state;
mod doomed;
mod fleece;
mod forget;
mod holder;
mod hooks;
mod job_lock;
mod job_vault;
mod lock;
mod points;
mod protection;
mod record;
mod recovery;
mod restore;
mod restore_format;
mod retention;
mod rollback;
mod soft_delete;
mod tier_key;
mod tracking;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use blockvault_core::StateDir;
use blockvault_core::{BlockSize, ChunkSet, RecoveryPoint, VmName};
use blockvault_snapshot::SnapshotTier;
use blockvault_vault::{Progress, TransferOptions};
use jiff::{SignedDuration, Timestamp};
use tokio::sync::{broadcast, watch};

pub use self::capture::{CaptureMode, CaptureOptions};
pub use self::clone_restore::{DiskRestore, RestoreMethod};
pub use self::doomed::DoomedPoint;
pub use self::forget::{ForgetOutcome, ForgetRequest, ForgetTarget, KeptPoint};
pub use self::holder::Holding;
pub use self::hooks::Hooks;
pub use self::job_vault::{JobVault, Vaults};
pub use self::points::{ListedPoint, PointList};
pub use self::protection::{ProtectOutcome, ProtectRequest};
pub use self::recovery::Recovered;
pub use self::restore::RestoreOutcome;
pub use self::retention::{ExpiredPoint, Pruned};
pub use self::soft_delete::{PurgeOutcome, StopMode, StopOutcome};
pub use self::verify::{VerifyOutcome, VerifyScope};

use self::lock::Lock;
use crate::events::{EVENT_CAPACITY, Events, JobEvent};
use crate::{Catalog, Clock, Job, Operation, Result, SubtaskKind, SystemClock, Tier};

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
    /// [`EarlySend`](blockvault_vault::EarlySend); with a vault still opening, they begin
    /// when it opens); `false` leaves the vault untouched until the Snapshot completes.
    pub early_send: bool,
    /// How the disks are captured (`--capture`: reflink clones where possible by default), and
    /// the thresholds of its warnings and checks.
    pub capture: CaptureOptions,
    /// The QEMU monitor (QMP) socket of the running VM whose disks these are (`--qmp`): the
    /// disks are fixed by QEMU fleecing and read over NBD (see `fleece.rs`), instead of
    /// `capture`.
    pub qmp: Option<PathBuf>,
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
            capture: CaptureOptions::default(),
            qmp: None,
        }
    }
}

/// A vault that could not be opened (unreachable, timing out, misconfigured). A backup still
/// takes its snapshot; its Transfer fails with `reason` and the job completes with a warning.
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

/// What a Snapshot subtask made: the point, and the chunks it wrote to the snapshot tier
/// (which the Transfer copies without decoding them again).
#[derive(Debug)]
struct Taken {
    point: RecoveryPoint,
    fresh: ChunkSet,
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

    fn waiting(&self, holders: &str, expires: Timestamp, gives_up: Timestamp) {
        self.1.waiting(holders, expires, gives_up);
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
/// | `STATE/host.json` | this host's identity in the vaults' protection records (made on first open) |
#[derive(Debug)]
pub struct Engine {
    state: StateDir,
    /// This host, as protection records in vaults name it (`STATE/host.json`).
    identity: blockvault_core::HostIdentity,
    catalog: Catalog,
    snapshots: SnapshotTier,
    clock: Arc<dyn Clock>,
    events: Events,
}

impl Engine {
    /// Opens the engine on `state_dir` (created if missing), with the snapshot tier in
    /// `snapshot_dir` (default `STATE/snapshots`). Jobs that a crash or kill interrupted are
    /// marked Failed and their leftovers cleaned before anything else runs.
    pub async fn open(
        state_dir: impl Into<PathBuf>,
        snapshot_dir: Option<PathBuf>,
    ) -> Result<(Engine, Recovered)> {
        Engine::open_with_keyring(state_dir, snapshot_dir, blockvault_repo::Keyring::default())
            .await
    }

    /// [`Engine::open`], the snapshot tiers of encrypted vaults unlocked through `keyring`
    /// (the process's: a key unlocked for the vault opens its VMs' tiers too).
    pub async fn open_with_keyring(
        state_dir: impl Into<PathBuf>,
        snapshot_dir: Option<PathBuf>,
        keyring: blockvault_repo::Keyring,
    ) -> Result<(Engine, Recovered)> {
        let state = StateDir::new(state_dir).with_snapshot_dir(snapshot_dir);
        let root = state.root();
        std::fs::create_dir_all(root).map_err(|e| crate::Error::lock(root, e))?;
        let catalog = Catalog::open_async(state.catalog()).await?;
        let identity = {
            let state = state.clone();
            crate::bridge::blocking(move || holder::identity(&state)).await?
        };
        let snapshots = SnapshotTier::new(state.snapshots()).with_keyring(keyring);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let engine = Engine {
            state,
            identity,
            catalog,
            snapshots,
            events: Events::new(EVENT_CAPACITY, Arc::clone(&clock)),
            clock,
        };
        let recovered = engine.recover().await?;
        Ok((engine, recovered))
    }

    /// The engine with another clock: job times, point times and snapshot expiry follow it
    /// (a [`SimulatedClock`](crate::SimulatedClock) runs weeks of schedule in seconds). What
    /// is compared with files' timestamps stays on the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Engine {
        self.events = self.events.with_clock(Arc::clone(&clock));
        self.clock = clock;
        self
    }

    /// A new subscriber to the events of the jobs this engine runs, from now on (see
    /// [`JobEvent`] and the `events` module: publishing never waits for a subscriber; one that
    /// falls [`EVENT_CAPACITY`](crate::EVENT_CAPACITY) events behind loses the oldest).
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    /// The engine's time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The catalog. Its methods block: from async code, go through [`Catalog::call`].
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn snapshots(&self) -> &SnapshotTier {
        &self.snapshots
    }

    pub fn state_dir(&self) -> &Path {
        self.state.root()
    }

    /// Takes `vm`'s snapshot lock, waiting on a blocking thread: exclusive for what writes or
    /// deletes in the VM's snapshot tier (a Snapshot, expiry, an in-place restore), shared for
    /// what only reads it (listing, restoring from it).
    async fn lock_snapshots(&self, vm: &VmName, exclusive: bool) -> Result<Lock> {
        let path = self.vm_lock(vm, SubtaskKind::Snapshot);
        crate::bridge::blocking(move || {
            if exclusive {
                Lock::acquire(&path)
            } else {
                Lock::acquire_shared(&path)
            }
        })
        .await
    }

    fn vm_lock(&self, vm: &VmName, kind: SubtaskKind) -> PathBuf {
        let suffix = match kind {
            SubtaskKind::Snapshot => "snapshot",
            SubtaskKind::Transfer => "transfer",
        };
        self.state.subtask_lock(vm.as_str(), suffix)
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
        let owned = vm.clone();
        let expires: std::collections::HashMap<_, _> = self
            .db(move |c| c.points(&owned))
            .await?
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
        let vm = vm.clone();
        self.db(move |c| {
            for id in &expired {
                c.remove_point_tier(&vm, id, Tier::Snapshot)?;
            }
            Ok(())
        })
        .await
    }
}
