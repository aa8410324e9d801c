//! Starting the backups a protected VM's schedule has due.

use std::collections::HashMap;
use std::sync::Arc;

use blockvault_core::VmName;
use blockvault_vault::NoProgress;
use jiff::Timestamp;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{Daemon, Finished, Level};
use crate::{
    BackupSpec, DaemonReport, Operation, Policy, ProtectedItem, Result, Slot, SubtaskKind,
};
use blockvault_policy::transfers;

impl Daemon {
    /// Starts `item`'s backup if a slot is due; returns when its next slot is.
    pub(super) async fn tend(
        &self,
        item: &ProtectedItem,
        now: Timestamp,
        stop: &watch::Receiver<bool>,
        running: &mut JoinSet<Finished>,
        busy: &mut HashMap<VmName, usize>,
        report: &mut DaemonReport,
    ) -> Result<Timestamp> {
        let catalog = self.engine.catalog();
        let name = item.policy.clone();
        let policy = catalog.call(move |c| c.policy(&name)).await?;
        let tz = &policy.timezone;
        let after = item.handled.unwrap_or(item.since).max(item.since);
        let due = policy.schedule.slots(tz, after, now);
        let next = policy.schedule.next(tz, now.max(after)).at;
        let Some(slot) = due.last() else {
            return Ok(next);
        };
        // A VM another host took over is stopped here instead of backed up (a vault that does
        // not open says nothing: the backup runs, its Transfer fails).
        if let Ok(vault) = self.vaults.open(&item.vault).await
            && let Some(warning) = self.engine.reconcile_item(&vault, item).await?
        {
            self.log.log(Level::Warning, &warning);
            return Ok(next);
        }
        let (vm, at) = (item.vm.clone(), slot.at);
        if catalog.call(move |c| c.claim_slot(&vm, at)).await? {
            // A Snapshot of the VM that is still running (a slow or hung disk) would make this
            // job wait behind it, and the next one too: the slot is handled, with a warning.
            let unfinished = catalog.call(|c| c.unfinished_jobs()).await?;
            let snapshotting = unfinished.into_iter().find(|j| {
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
            let vm = item.vm.clone();
            let newest_vault_point = catalog
                .call(move |c| c.points(&vm))
                .await?
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
            // How the job ended goes to the log through the job events (see `JobLog`); only a
            // backup that could not run as a job comes back here.
            let outcome = engine.backup(vault, &spec, Arc::new(NoProgress)).await;
            Finished {
                vm: spec.vm,
                not_run: outcome.err().map(|e| e.to_string()),
            }
        });
    }
}

/// A slot as people read it: the local time it was scheduled for, with the zone.
fn local(slot: &Slot, policy: &Policy) -> String {
    format!(
        "{} {}",
        slot.scheduled.strftime("%Y-%m-%d %H:%M"),
        policy.timezone_name()
    )
}
