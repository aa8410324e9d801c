//! The daemon's upkeep besides backups: purging soft-deleted data whose period is over, and
//! the periodic retention + garbage collection of the vaults of protected VMs (after the purge
//! of forgotten points due, `forgotten.rs`, which the run loop awaits first).

use std::collections::HashMap;
use std::sync::Arc;

use blockvault_vault::NoProgress;

use super::{Daemon, Level};
use crate::ProtectedItem;

impl Daemon {
    /// Purges the soft-deleted data whose period is over ([`Engine::purge_due`](crate::Engine::purge_due)), logging
    /// what each purge deleted.
    pub(super) async fn purge_due(&self) {
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

    /// Purges the forgotten points due in the vaults of `items` and every vault this host
    /// knows (see `forgotten.rs`): awaited before [`Daemon::maintain`], so the collection
    /// that follows frees their chunks.
    pub(super) async fn purge_forgotten(&self, items: &[&ProtectedItem]) {
        let locations = items.iter().map(|item| item.vault.clone());
        super::forgotten::purge_forgotten(
            &self.engine,
            self.vaults.as_ref(),
            self.log.as_ref(),
            locations,
        )
        .await;
    }

    /// Applies retention to the vault points of `items` and collects the garbage of their
    /// vaults, in a background task that logs what it did.
    pub(super) fn maintain(&self, items: &[&ProtectedItem]) -> tokio::task::JoinHandle<()> {
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
}
