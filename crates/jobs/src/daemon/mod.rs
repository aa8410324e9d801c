//! The scheduler daemon (see [`Daemon`] for how it runs schedules, restarts and stops).
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the loop: wake, read the protected items, tend each, sleep |
//! | `schedule.rs` | starting the backups a VM's schedule has due (claiming slots, catch-up) |
//! | `maintenance.rs` | purges of soft-deleted data, retention + garbage collection |
//! | `verify.rs` | the rolling verification: a share of each vault's chunks a day |
//! | `shutdown.rs` | the grace period, and ending jobs as they stand |
//! | `log.rs` | the log sink, and the job-event subscriber that logs how each backup ended |
//! | `options.rs` | how vaults open, tunables, the report |

mod forgotten;
mod log;
mod maintenance;
mod options;
mod schedule;
mod shutdown;
mod verify;

pub use self::log::{Level, Log};
pub use self::options::{DEFAULT_VERIFY_EVERY_DAYS, DaemonOptions, DaemonReport};
use crate::Vaults;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use blockvault_core::VmName;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;
use tokio::task::JoinSet;

use self::log::JobLog;
use crate::{Engine, ProtectedItem, Result};

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
/// listing the points deleted. Points forgotten one by one (`forget`) are purged at each
/// maintenance (at start, then every [`DaemonOptions::maintenance_every`]) in every vault this
/// host knows, before that maintenance's retention and collection
/// ([`Engine::purge_forgotten`]).
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
/// not reach the vault ([`transfers`](blockvault_policy::transfers)); the others' Transfer
/// subtask is Skipped with the reason, and their points live in the snapshot tier only.
///
/// # Retention and garbage collection
///
/// Once at start and then every [`DaemonOptions::maintenance_every`] (a day by default), in
/// the background, the daemon applies each protected VM's retention to its vault points
/// ([`Engine::apply_retention`]) and then collects the garbage of each vault involved
/// ([`Vault::collect_garbage`](blockvault_vault::Vault::collect_garbage)). Backups keep running meanwhile: the collection only holds
/// off backups for its short sweep (and, where backups never pause, holds new ones back for
/// a while so that the running ones drain: [`GcOptions::hold_after`](blockvault_vault::GcOptions::hold_after)). A stop cancels it
/// wherever it is, which is safe (the next one finishes the job); the leases it held are
/// dropped, and removed in the background (`blockvault daemon` waits for that before it
/// exits: [`Lease::dropped_removed`](blockvault_vault::Lease::dropped_removed)).
///
/// # Rolling verification
///
/// Once at start and then at each UTC midnight, in the background, the daemon re-reads and
/// re-hashes one share of the chunks of each vault of its protected VMs, so that each vault is
/// read whole every [`DaemonOptions::verify_every_days`] days (day `d` reads slice `d mod N` of
/// the chunk id space; `verify.rs` has the details). Each share is recorded as `Verify` jobs,
/// as `blockvault verify` records them; damage is logged at error level and its chunks are
/// marked damaged, as the manual verify does. A stop cuts it and ends its jobs as they stand.
///
/// # Stopping
///
/// The caller passes a stop signal (SIGTERM, SIGINT). The daemon starts nothing more; running
/// jobs finish the step they are in (a job whose Snapshot ends does not start its Transfer: the
/// Transfer fails saying why and the job completes with a warning). Jobs still running after
/// [`DaemonOptions::grace`] are cancelled and ended in the catalog as they stand
/// ([`Catalog::interrupt_job`](crate::Catalog::interrupt_job)): a Snapshot cut short fails the
/// job and its leftovers are swept; a Transfer cut short leaves the job Completed with warning
/// with its point in the snapshot tier (their end is published on the job events with
/// `interrupted` set). Nothing stays In progress.
///
/// # The log
///
/// What the daemon decides (slots started or skipped, catch-ups, purges, retention, garbage
/// collection, the stop) it writes to its [`Log`]. How each backup it started ended comes from
/// the engine's job events ([`Engine::subscribe`]): a subscriber task logs the `Finished` event
/// of every `Backup` job, and is drained before the last line, so every job's end is logged
/// before the daemon says it stopped.
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

/// A job task the daemon started, as it reports back: the VM, and why the backup could not
/// run as a job, if it could not (how a job ended is logged from the job events).
struct Finished {
    vm: VmName,
    not_run: Option<String>,
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
        let mut verify_days = verify::VerifyDays::new(self.options.verify_every_days);
        let mut verifying: Option<tokio::task::JoinHandle<()>> = None;
        // How each backup ends is logged from the job events.
        let job_log = JobLog::follow(self.engine.subscribe(), Arc::clone(&self.log));
        self.log.log(Level::Info, "blockvault daemon started");
        // Vault records agree with the catalog; VMs another host took over stop here.
        match self.engine.reconcile_holdings(&*self.vaults).await {
            Ok(warnings) => {
                for warning in warnings {
                    self.log.log(Level::Warning, &warning);
                }
            }
            Err(e) => self.log.log(
                Level::Error,
                &format!("the protection records could not be checked: {e}"),
            ),
        }
        while !*stop.borrow() {
            let now = clock.now();
            let mut wake = now + signed(self.options.poll);
            self.purge_due().await;
            match self.engine.catalog().call(|c| c.protected_items()).await {
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
                        self.purge_forgotten(&items).await;
                        maintenance = Some(self.maintain(&items));
                        maintained_at = Some(now);
                    }
                    if let Some(last) = maintained_at {
                        wake = wake.min((last + every).max(now));
                    }
                    if verifying.is_none() && !items.is_empty() {
                        let days = verify_days.take_due(now);
                        if !days.is_empty() {
                            verifying = Some(self.verify_days(&items, days));
                        }
                    }
                    if let Some(midnight) = verify_days.next(now) {
                        wake = wake.min(midnight);
                    }
                    let live: HashSet<&VmName> = items.iter().map(|i| &i.vm).collect();
                    expired_at.retain(|vm, _| live.contains(vm));
                    for &item in &items {
                        if *stop.borrow() {
                            break;
                        }
                        let tended = self
                            .tend(item, now, &stop, &mut running, &mut busy, &mut report)
                            .await;
                        match tended {
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
            // A simulated clock waits for the rolling verify as for jobs (a real one does not).
            let working = !running.is_empty() || verifying.is_some();
            tokio::select! {
                () = clock.sleep_until(wake, working) => {}
                () = verify::ended(&mut verifying) => {}
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
        if let Some(task) = verifying {
            self.stop_verifying(task).await;
        }
        let shut = self.shut_down(running, &mut busy, &mut report).await;
        job_log.close().await;
        shut?;
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
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Mutex;

    use blockvault_vault::{NoProgress, TransferOptions, Vault};

    use super::*;
    use crate::{DEFAULT_POLICY, Hooks, ProtectRequest, SimulatedClock, VaultUnavailable};

    #[derive(Debug)]
    struct OneVault(Vault);

    impl Vaults for OneVault {
        fn open<'a>(
            &'a self,
            _location: &'a str,
        ) -> Pin<Box<dyn Future<Output = std::result::Result<Vault, VaultUnavailable>> + Send + 'a>>
        {
            Box::pin(async { Ok(self.0.clone()) })
        }
    }

    #[derive(Default)]
    struct Lines(Mutex<Vec<(Level, String)>>);

    impl Log for Lines {
        fn log(&self, level: Level, message: &str) {
            self.0
                .lock()
                .expect("lines")
                .push((level, message.to_owned()));
        }
    }

    /// The end of each scheduled backup reaches the log through the job events, before the
    /// daemon's last line.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_scheduled_backup_ends_in_the_log_before_the_daemon_stops() {
        let dir = tempfile::tempdir().expect("tmp");
        let start: Timestamp = "2026-03-02T12:00:00Z".parse().expect("time");
        let (clock, stop) =
            SimulatedClock::new(start, start + SignedDuration::from_hours(72), |_| {});
        let (engine, _) = Engine::open(dir.path().join("state"), None)
            .await
            .expect("engine");
        let engine = Arc::new(engine.with_clock(Arc::new(clock)));
        let vault = Vault::init_local(dir.path().join("vault"))
            .await
            .expect("vault");
        let disk = dir.path().join("disk.img");
        std::fs::write(&disk, vec![7u8; 1 << 20]).expect("disk");
        let request = ProtectRequest {
            vm: "web01".parse().expect("vm"),
            vault: vault.store().location().to_owned(),
            disks: vec![disk],
            policy: DEFAULT_POLICY.parse().expect("policy"),
            hooks: Hooks::default(),
            capture: crate::CaptureMode::Auto,
            disk_format: None,
            qmp: None,
            take_over: false,
        };
        engine
            .protect(
                Ok(&vault),
                &request,
                TransferOptions::default(),
                Arc::new(NoProgress),
            )
            .await
            .expect("protect");
        let lines = Arc::new(Lines::default());
        let daemon = Daemon::new(
            Arc::clone(&engine),
            Arc::new(OneVault(vault)),
            lines.clone(),
            DaemonOptions::default(),
        );
        let report = daemon.run(stop).await.expect("run");
        assert!(report.jobs_started >= 2, "{report:?}");
        let lines = lines.0.lock().expect("lines").clone();
        let ended: Vec<&String> = lines
            .iter()
            .filter(|(level, line)| {
                *level == Level::Info
                    && line.starts_with("web01: job ")
                    && line.contains(" Completed, point ")
            })
            .map(|(_, line)| line)
            .collect();
        assert_eq!(ended.len() as u64, report.jobs_started, "{lines:#?}");
        assert!(
            lines
                .last()
                .is_some_and(|(_, line)| line.starts_with("blockvault daemon stopped")),
            "{lines:#?}"
        );
    }
}
