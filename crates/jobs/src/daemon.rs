//! The scheduler daemon (see [`Daemon`] for how it runs schedules, restarts and stops).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use blockvault_core::VmName;
use blockvault_policy::transfers;
use blockvault_vault::{GcOptions, NoProgress, TransferOptions, Vault};
use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::{
    BackupSpec, Engine, JobStatus, Operation, Policy, ProtectedItem, Result, Slot, SubtaskKind,
    VaultUnavailable,
};

/// Opens the vault a protected VM names (the daemon reopens it for every job, so a vault that
/// was down comes back by itself).
pub trait Vaults: Send + Sync + fmt::Debug {
    fn open<'a>(
        &'a self,
        location: &'a str,
    ) -> Pin<Box<dyn Future<Output = std::result::Result<Vault, VaultUnavailable>> + Send + 'a>>;

    /// Transfer settings for the vault at `location`.
    fn transfer_options(&self, _location: &str) -> TransferOptions {
        TransferOptions::default()
    }
}

/// How bad a log line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
}

/// Where the daemon reports what it does.
pub trait Log: Send + Sync {
    fn log(&self, level: Level, message: &str);
}

/// Tunables of the daemon.
#[derive(Clone, Copy, Debug)]
pub struct DaemonOptions {
    /// Longest sleep between two looks at the catalog (new protections, policy edits).
    pub poll: Duration,
    /// How long running jobs may take to finish their step after a stop.
    pub grace: Duration,
    /// How often each VM's expired snapshot points are deleted when no backup does it.
    pub expiry_every: Duration,
    /// How often retention is applied to the vault points of protected VMs, followed by a
    /// garbage collection of each vault that protects them (see [`Daemon`]).
    pub maintenance_every: Duration,
    /// The collection's settings (its grace period, how long it waits for running backups).
    pub gc: GcOptions,
}

impl Default for DaemonOptions {
    fn default() -> DaemonOptions {
        DaemonOptions {
            poll: Duration::from_secs(60),
            grace: Duration::from_secs(60),
            expiry_every: Duration::from_secs(3600),
            maintenance_every: Duration::from_secs(24 * 3600),
            gc: GcOptions::default(),
        }
    }
}

/// What a daemon run did, for its caller's last log line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DaemonReport {
    pub jobs_started: u64,
    /// Slots folded into a catch-up backup (missed while no daemon ran).
    pub slots_missed: u64,
    /// Jobs still running at the end of the grace period, ended as they stood.
    pub jobs_interrupted: u64,
}

/// The scheduler over one engine: runs every protected VM's policy through the job engine.
///
/// # The loop
///
/// Each time it wakes, the daemon reads the protected items and their policies from the
/// catalog (so `protect` and `policy edit` take effect without a restart), starts a backup job
/// for each VM with a slot due, expires snapshot points whose instant-restore days are over,
/// and sleeps until the next slot of any VM, or at most [`DaemonOptions::poll`].
///
/// Only items whose protection is on are scheduled: a VM whose protection is stopped (data
/// retained) or whose data is soft-deleted gets no backup and no snapshot expiry. Soft-deleted
/// data whose 14 days are over is purged at each wake ([`Engine::purge_due`]), and the daemon
/// wakes when the next purge is due; each purge is a `Delete backup data` job and a log line
/// listing the points deleted.
///
/// A slot is **claimed** in the catalog ([`Catalog::claim_slot`](crate::Catalog::claim_slot))
/// before its job starts, in one transaction that only succeeds for a slot later than the last
/// one handled. So:
///
/// - **nothing runs twice**: a slot once claimed is never run again, by this daemon after a
///   restart or by a second daemon on the same catalog;
/// - **nothing missed is dropped silently**: slots that passed while no daemon ran (the host
///   was down, the daemon stopped) are all due at the next wake. They are caught up by **one**
///   backup, started at once, and logged as a warning that lists the missed slots. One backup
///   covers them because a backup captures the disks as they are now: several back to back would
///   capture the same state. When any missed slot would have gone to the vault (the Enhanced
///   hourly rule), the catch-up backup goes to the vault.
///
/// A job interrupted by a stop or a crash is not re-run: it is in the job list as it ended
/// (see below), and the next slot runs as scheduled.
///
/// # What goes to the vault
///
/// Every backup of a daily or weekly schedule is transferred. For an Enhanced hourly schedule
/// only the last backup of each local day is, or the first of the next day when that one did
/// not reach the vault ([`transfers`]); the others' Transfer
/// subtask is Skipped with the reason, and their points live in the snapshot tier only.
///
/// # Retention and garbage collection
///
/// Once at start and then every [`DaemonOptions::maintenance_every`] (a day by default), in
/// the background, the daemon applies each protected VM's retention to its vault points
/// ([`Engine::apply_retention`]) and then collects the garbage of each vault involved
/// ([`Vault::collect_garbage`]). Backups keep running meanwhile: the collection only holds
/// off backups for its short sweep (and, where backups never pause, holds new ones back for
/// a while so that the running ones drain: [`GcOptions::hold_after`]). A stop cancels it
/// wherever it is, which is safe (the next one finishes the job); the leases it held are
/// dropped, and removed in the background (`blockvault daemon` waits for that before it
/// exits: [`Lease::dropped_removed`](blockvault_vault::Lease::dropped_removed)).
///
/// # Stopping
///
/// The caller passes a stop signal (SIGTERM, SIGINT). The daemon starts nothing more; running
/// jobs finish the step they are in (a job whose Snapshot ends does not start its Transfer: the
/// Transfer fails saying why and the job completes with a warning). Jobs still running after
/// [`DaemonOptions::grace`] are cancelled and ended in the catalog as they stand
/// ([`Catalog::interrupt_job`](crate::Catalog::interrupt_job)): a Snapshot cut short fails the
/// job and its leftovers are swept; a Transfer cut short leaves the job Completed with warning
/// with its point in the snapshot tier. Nothing stays In progress.
pub struct Daemon {
    engine: Arc<Engine>,
    vaults: Arc<dyn Vaults>,
    log: Arc<dyn Log>,
    options: DaemonOptions,
}

impl fmt::Debug for Daemon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Daemon")
            .field("engine", &self.engine)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A job the daemon started, as its task reports back.
struct Finished {
    vm: VmName,
    summary: String,
    level: Level,
}

impl Daemon {
    pub fn new(
        engine: Arc<Engine>,
        vaults: Arc<dyn Vaults>,
        log: Arc<dyn Log>,
        options: DaemonOptions,
    ) -> Daemon {
        Daemon {
            engine,
            vaults,
            log,
            options,
        }
    }

    /// Runs the schedules until `stop` reads `true` (see [`Daemon`]).
    pub async fn run(&self, mut stop: watch::Receiver<bool>) -> Result<DaemonReport> {
        let mut report = DaemonReport::default();
        let mut running: JoinSet<Finished> = JoinSet::new();
        let mut busy: HashMap<VmName, usize> = HashMap::new();
        let mut expired_at: HashMap<VmName, Timestamp> = HashMap::new();
        let clock = Arc::clone(self.engine.clock());
        let mut maintenance: Option<tokio::task::JoinHandle<()>> = None;
        let mut maintained_at: Option<Timestamp> = None;
        self.log.log(Level::Info, "blockvault daemon started");
        while !*stop.borrow() {
            let now = clock.now();
            let mut wake = now + signed(self.options.poll);
            self.purge_due().await;
            match self.engine.catalog().protected_items() {
                Ok(items) => {
                    // Soft-deleted data is purged when its period ends: wake for it.
                    if let Some(purge) = items
                        .iter()
                        .filter_map(|i| i.state.purge_after())
                        .filter(|at| *at > now)
                        .min()
                    {
                        wake = wake.min(purge);
                    }
                    // Stopped and soft-deleted VMs are left alone: no backups, no expiry.
                    let items: Vec<&ProtectedItem> =
                        items.iter().filter(|i| i.is_protected()).collect();
                    let every = signed(self.options.maintenance_every);
                    let idle = maintenance.as_ref().is_none_or(|m| m.is_finished());
                    if idle && maintained_at.is_none_or(|last| last + every <= now) {
                        maintenance = Some(self.maintain(&items));
                        maintained_at = Some(now);
                    }
                    if let Some(last) = maintained_at {
                        wake = wake.min((last + every).max(now));
                    }
                    let live: HashSet<&VmName> = items.iter().map(|i| &i.vm).collect();
                    expired_at.retain(|vm, _| live.contains(vm));
                    for &item in &items {
                        if *stop.borrow() {
                            break;
                        }
                        match self.tend(item, now, &stop, &mut running, &mut busy, &mut report) {
                            Ok(next) => wake = wake.min(next),
                            Err(e) => self.log.log(Level::Error, &format!("{}: {e}", item.vm)),
                        }
                        // Expiry of VMs with no job of this daemon running (a job's Snapshot
                        // expires when it ends), never waiting for another process's lock.
                        if busy.get(&item.vm).copied().unwrap_or(0) > 0 {
                            continue;
                        }
                        let due = expired_at
                            .get(&item.vm)
                            .is_none_or(|last| *last + signed(self.options.expiry_every) <= now);
                        if due {
                            match self.engine.expire_if_idle(&item.vm, now).await {
                                Ok(true) => {
                                    expired_at.insert(item.vm.clone(), now);
                                }
                                // Held elsewhere: tried again at the next poll.
                                Ok(false) => {}
                                Err(e) => {
                                    self.log.log(
                                        Level::Warning,
                                        &format!("{}: could not expire snapshots: {e}", item.vm),
                                    );
                                    expired_at.insert(item.vm.clone(), now);
                                }
                            }
                        }
                        if let Some(last) = expired_at.get(&item.vm) {
                            wake = wake.min((*last + signed(self.options.expiry_every)).max(now));
                        }
                    }
                }
                Err(e) => self
                    .log
                    .log(Level::Error, &format!("cannot read the catalog: {e}")),
            }
            tokio::select! {
                () = clock.sleep_until(wake, !running.is_empty()) => {}
                Some(done) = running.join_next(), if !running.is_empty() => {
                    self.finished(done, &mut busy);
                }
                _ = stop.changed() => {}
            }
        }
        if let Some(maintenance) = maintenance {
            // Cut wherever it is (safe: the next collection finishes it), and waited for, so
            // nothing of it outlives the run.
            maintenance.abort();
            let _ = maintenance.await;
        }
        self.shut_down(running, &mut busy, &mut report).await?;
        self.log.log(
            Level::Info,
            &format!(
                "blockvault daemon stopped ({} job(s) started, {} missed slot(s) caught up, {} \
                 job(s) interrupted)",
                report.jobs_started, report.slots_missed, report.jobs_interrupted
            ),
        );
        Ok(report)
    }

    /// Purges the soft-deleted data whose period is over ([`Engine::purge_due`]), logging
    /// what each purge deleted.
    async fn purge_due(&self) {
        let purged = match self.engine.purge_due(self.vaults.as_ref()).await {
            Ok(purged) => purged,
            Err(e) => {
                let message = format!("cannot look for soft-deleted data to purge: {e}");
                return self.log.log(Level::Error, &message);
            }
        };
        for (vm, outcome) in purged {
            let (level, message) = match outcome {
                Ok(p) if p.failure.is_none() => (
                    Level::Info,
                    format!(
                        "{vm}: purged its soft-deleted backup data (job {}): {} vault point(s) \
                         deleted{}",
                        p.job.id,
                        p.points_deleted.len(),
                        if p.points_deleted.is_empty() {
                            String::new()
                        } else {
                            let ids: Vec<String> =
                                p.points_deleted.iter().map(ToString::to_string).collect();
                            format!(" ({})", ids.join(", "))
                        }
                    ),
                ),
                Ok(p) => (
                    Level::Error,
                    format!(
                        "{vm}: the purge of its soft-deleted backup data failed (job {}): {}",
                        p.job.id,
                        p.job.error.as_deref().unwrap_or("unknown error")
                    ),
                ),
                Err(e) => (
                    Level::Error,
                    format!("{vm}: cannot purge its soft-deleted backup data: {e}"),
                ),
            };
            self.log.log(level, &message);
        }
    }

    /// Starts `item`'s backup if a slot is due; returns when its next slot is.
    fn tend(
        &self,
        item: &ProtectedItem,
        now: Timestamp,
        stop: &watch::Receiver<bool>,
        running: &mut JoinSet<Finished>,
        busy: &mut HashMap<VmName, usize>,
        report: &mut DaemonReport,
    ) -> Result<Timestamp> {
        let catalog = self.engine.catalog();
        let policy = catalog.policy(&item.policy)?;
        let tz = &policy.timezone;
        let after = item.handled.unwrap_or(item.since).max(item.since);
        let due = policy.schedule.slots(tz, after, now);
        let next = policy.schedule.next(tz, now.max(after)).at;
        if let Some(slot) = due.last()
            && catalog.claim_slot(&item.vm, slot.at)?
        {
            // A Snapshot of the VM that is still running (a slow or hung disk) would make this
            // job wait behind it, and the next one too: the slot is handled, with a warning.
            let snapshotting = catalog.unfinished_jobs()?.into_iter().find(|j| {
                j.vm == item.vm
                    && j.subtask(SubtaskKind::Snapshot)
                        .is_some_and(|s| !s.status.is_done())
            });
            if let Some(job) = snapshotting {
                self.log.log(
                    Level::Warning,
                    &format!(
                        "{}: skipped the backup scheduled for {}: the snapshot of job {} is \
                         still running",
                        item.vm,
                        local(slot, &policy),
                        job.id
                    ),
                );
                return Ok(next);
            }
            let missed = &due[..due.len() - 1];
            if !missed.is_empty() {
                report.slots_missed += missed.len() as u64;
                self.log.log(
                    Level::Warning,
                    &format!(
                        "{}: {} scheduled backup(s) were missed while no daemon ran ({}); one \
                         backup now stands for them and the slot of {}",
                        item.vm,
                        missed.len(),
                        missed
                            .iter()
                            .map(|s| local(s, &policy))
                            .collect::<Vec<_>>()
                            .join(", "),
                        local(slot, &policy),
                    ),
                );
            }
            let newest_vault_point = catalog
                .points(&item.vm)?
                .into_iter()
                .filter(|p| p.tiers.vault)
                .map(|p| p.time)
                .max();
            let to_vault = due
                .iter()
                .any(|s| transfers(&policy.schedule, tz, s, newest_vault_point));
            let skip_transfer = (!to_vault).then(|| {
                format!(
                    "policy {} transfers only the last backup of each day to the vault; this \
                     point stays in the snapshot tier ({} days)",
                    policy.name, policy.instant_restore_days
                )
            });
            self.log.log(
                Level::Info,
                &format!(
                    "{}: starting the backup scheduled for {}{}",
                    item.vm,
                    local(slot, &policy),
                    if to_vault {
                        ""
                    } else {
                        " (snapshot tier only)"
                    }
                ),
            );
            report.jobs_started += 1;
            *busy.entry(item.vm.clone()).or_default() += 1;
            self.start(item, &policy, skip_transfer, stop.clone(), running);
        }
        Ok(next)
    }

    /// Applies retention to the vault points of `items` and collects the garbage of their
    /// vaults, in a background task that logs what it did.
    fn maintain(&self, items: &[&ProtectedItem]) -> tokio::task::JoinHandle<()> {
        let mut by_vault: HashMap<String, Vec<ProtectedItem>> = HashMap::new();
        for item in items {
            by_vault
                .entry(item.vault.clone())
                .or_default()
                .push((*item).clone());
        }
        let (engine, vaults, log, gc) = (
            Arc::clone(&self.engine),
            Arc::clone(&self.vaults),
            Arc::clone(&self.log),
            self.options.gc,
        );
        tokio::spawn(async move {
            for (location, items) in by_vault {
                let vault = match vaults.open(&location).await {
                    Ok(vault) => vault,
                    Err(e) => {
                        log.log(
                            Level::Warning,
                            &format!(
                                "retention and garbage collection of {} skipped: {}",
                                e.location, e.reason
                            ),
                        );
                        continue;
                    }
                };
                let mut expired = 0;
                for item in &items {
                    match engine.apply_retention(&vault, item, false).await {
                        Ok(pruned) if !pruned.expired.is_empty() => {
                            expired += pruned.expired.len();
                            let ids: Vec<String> =
                                pruned.expired.iter().map(|p| p.id.to_string()).collect();
                            log.log(
                                Level::Info,
                                &format!(
                                    "{}: retention of policy {} deleted {} vault point(s): {}",
                                    item.vm,
                                    item.policy,
                                    ids.len(),
                                    ids.join(", ")
                                ),
                            );
                        }
                        Ok(_) => {}
                        Err(e) => log.log(
                            Level::Error,
                            &format!("{}: could not apply retention: {e}", item.vm),
                        ),
                    }
                }
                match vault.collect_garbage(gc, Arc::new(NoProgress)).await {
                    Ok(report)
                        if report.chunks_deleted
                            + report.orphan_maps_deleted
                            + report.leftovers_deleted
                            > 0 =>
                    {
                        log.log(
                            Level::Info,
                            &format!(
                                "garbage collection of {location}: deleted {} chunk(s) ({} \
                                 bytes), {} orphan block map(s) and {} staging leftover(s)",
                                report.chunks_deleted,
                                report.bytes_freed,
                                report.orphan_maps_deleted,
                                report.leftovers_deleted
                            ),
                        );
                    }
                    Ok(_) => {}
                    Err(e) => log.log(
                        if expired > 0 {
                            Level::Warning
                        } else {
                            Level::Info
                        },
                        &format!("garbage collection of {location} did not run: {e}"),
                    ),
                }
            }
        })
    }

    fn start(
        &self,
        item: &ProtectedItem,
        policy: &Policy,
        skip_transfer: Option<String>,
        stop: watch::Receiver<bool>,
        running: &mut JoinSet<Finished>,
    ) {
        let engine = Arc::clone(&self.engine);
        let vaults = Arc::clone(&self.vaults);
        let spec = BackupSpec {
            skip_transfer,
            stop: Some(stop),
            ..item.backup_spec(
                policy,
                Operation::Backup,
                vaults.transfer_options(&item.vault),
            )
        };
        let location = item.vault.clone();
        running.spawn(async move {
            // The vault opens alongside the Snapshot, which never waits for it.
            let vault = crate::JobVault::opening(location.clone(), vaults.open(&location));
            let outcome = engine.backup(vault, &spec, Arc::new(NoProgress)).await;
            let (summary, level) = match outcome {
                Err(e) => (format!("the backup could not run: {e}"), Level::Error),
                Ok(outcome) => {
                    let job = &outcome.job;
                    let level = match job.status {
                        JobStatus::Failed => Level::Error,
                        JobStatus::CompletedWithWarning => Level::Warning,
                        _ => Level::Info,
                    };
                    let point = outcome
                        .point
                        .as_ref()
                        .map(|p| format!(", point {}", p.id))
                        .unwrap_or_default();
                    let error = job
                        .error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default();
                    (
                        format!("job {} {}{point}{error}", job.id, job.status),
                        level,
                    )
                }
            };
            Finished {
                vm: spec.vm,
                summary,
                level,
            }
        });
    }

    fn finished(
        &self,
        done: std::result::Result<Finished, tokio::task::JoinError>,
        busy: &mut HashMap<VmName, usize>,
    ) {
        match done {
            Ok(done) => {
                if let Some(n) = busy.get_mut(&done.vm) {
                    *n = n.saturating_sub(1);
                }
                self.log
                    .log(done.level, &format!("{}: {}", done.vm, done.summary));
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {}
        }
    }

    /// Lets running jobs finish their step for up to the grace period, then ends the rest in
    /// the catalog as they stand.
    async fn shut_down(
        &self,
        mut running: JoinSet<Finished>,
        busy: &mut HashMap<VmName, usize>,
        report: &mut DaemonReport,
    ) -> Result<()> {
        if running.is_empty() {
            return Ok(());
        }
        self.log.log(
            Level::Info,
            &format!(
                "stopping: waiting up to {} s for {} running job(s) to finish their step",
                self.options.grace.as_secs(),
                running.len()
            ),
        );
        let drained = tokio::time::timeout(self.options.grace, async {
            while let Some(done) = running.join_next().await {
                self.finished(done, busy);
            }
        })
        .await;
        if drained.is_ok() {
            return Ok(());
        }
        running.abort_all();
        while running.join_next().await.is_some() {}
        let pid = std::process::id();
        let reason = "blockvault stopped before the job finished (the daemon was shut down)";
        for job in self.engine.catalog().unfinished_jobs()? {
            if job.pid != pid {
                continue;
            }
            let snapshot_cut = job
                .subtask(SubtaskKind::Snapshot)
                .is_some_and(|s| !s.status.is_done());
            let ended = self
                .engine
                .catalog()
                .interrupt_job(job.id, reason, self.engine.now());
            let status = match ended {
                Ok(status) => status,
                // Another process's recovery ended it first: it is not In progress.
                Err(crate::Error::JobEnded { .. }) => continue,
                Err(e) => {
                    self.log.log(
                        Level::Error,
                        &format!("{}: could not end job {}: {e}", job.vm, job.id),
                    );
                    continue;
                }
            };
            report.jobs_interrupted += 1;
            if snapshot_cut {
                // What the cut snapshot wrote is swept (committed points are untouched); if
                // another process holds the VM's lock, its own end or the next start does it.
                if let Err(e) = self.engine.sweep_snapshots_if_idle(&job.vm).await {
                    self.log.log(
                        Level::Warning,
                        &format!("{}: could not clean after job {}: {e}", job.vm, job.id),
                    );
                }
            }
            self.log.log(
                Level::Warning,
                &format!("{}: job {} ended {status}: {reason}", job.vm, job.id),
            );
        }
        Ok(())
    }
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// A slot as people read it: the local time it was scheduled for, with the zone.
fn local(slot: &Slot, policy: &Policy) -> String {
    format!(
        "{} {}",
        slot.scheduled.strftime("%Y-%m-%d %H:%M"),
        policy.timezone_name()
    )
}
