//! The daemon's purge of forgotten points (`blockvault forget`): at each maintenance, every
//! vault this host knows (those of protected VMs, and those it backed up to or forgot points
//! in) is opened and its forgotten points whose soft-delete period is over are purged
//! ([`Engine::purge_forgotten`]). Their chunks are then garbage for the collection that
//! follows in the vaults of protected VMs, or for `blockvault gc`.

use std::collections::BTreeSet;

use super::{Level, Log};
use crate::{Engine, Vaults};

/// Purges the forgotten points due in every vault of `locations` and every vault the
/// catalog remembers, logging what went.
pub(super) async fn purge_forgotten(
    engine: &Engine,
    vaults: &dyn Vaults,
    log: &dyn Log,
    locations: impl IntoIterator<Item = String>,
) {
    let mut all: BTreeSet<String> = locations.into_iter().collect();
    match engine.catalog().call(|c| c.vault_locations()).await {
        Ok(known) => all.extend(known),
        Err(e) => log.log(
            Level::Warning,
            &format!("cannot list the vaults this host knows for forgotten points: {e}"),
        ),
    }
    for location in all {
        let vault = match vaults.open(&location).await {
            Ok(vault) => vault,
            Err(e) => {
                log.log(
                    Level::Info,
                    &format!(
                        "forgotten points of {} not purged: {}",
                        e.location, e.reason
                    ),
                );
                continue;
            }
        };
        let purged = match engine.purge_forgotten(&vault).await {
            Ok(purged) => purged,
            Err(e) => {
                log.log(
                    Level::Error,
                    &format!("cannot purge the forgotten points of {location}: {e}"),
                );
                continue;
            }
        };
        for purge in purged {
            let ids: Vec<String> = purge
                .points_deleted
                .iter()
                .map(ToString::to_string)
                .collect();
            let (level, message) = match &purge.failure {
                None => (
                    Level::Info,
                    format!(
                        "{}: purged {} forgotten point(s) from {location} (job {}): {}",
                        purge.vm,
                        ids.len(),
                        purge.job.id,
                        ids.join(", ")
                    ),
                ),
                Some(e) => (
                    Level::Error,
                    format!(
                        "{}: the purge of its forgotten points in {location} failed (job {}): {e}",
                        purge.vm, purge.job.id
                    ),
                ),
            };
            log.log(level, &message);
        }
    }
}
