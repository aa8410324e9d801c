//! The vaults this host has opened: the id last seen at each location.
//!
//! A backup job's Snapshot records in its point which vault it is for (by id, so that a
//! listing against one vault does not show the points taken for another). The Snapshot does
//! not wait for the vault to open (an unreachable endpoint must not hold up the freeze), so it
//! takes the id from here when the vault is not open yet; once the vault opens, the job
//! corrects the point if the location now holds another vault, and records what it saw here.

use jiff::Timestamp;
use rusqlite::{OptionalExtension, params};

use super::micros;
use crate::{Catalog, Result};

impl Catalog {
    /// Records that the vault at `location` has id `id`, as seen at `now`.
    pub fn remember_vault(&self, location: &str, id: &str, now: Timestamp) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO vaults (location, id, seen) VALUES (?1, ?2, ?3)
                 ON CONFLICT (location) DO UPDATE SET id = excluded.id, seen = excluded.seen",
                params![location, id, micros(now)],
            )?;
            Ok(())
        })
    }

    /// Every location where this host has opened a vault (for the purge of forgotten points).
    pub fn vault_locations(&self) -> Result<Vec<String>> {
        self.read(|tx| {
            let mut statement = tx.prepare("SELECT location FROM vaults ORDER BY location")?;
            let rows = statement.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
    }

    /// The id of the vault last seen at `location`, if this host ever opened one there.
    pub fn vault_id(&self, location: &str) -> Result<Option<String>> {
        self.read(|tx| {
            Ok(tx
                .query_row(
                    "SELECT id FROM vaults WHERE location = ?1",
                    [location],
                    |r| r.get(0),
                )
                .optional()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{catalog, ts};

    #[test]
    fn the_last_vault_seen_at_a_location_is_the_one_remembered() {
        let (_dir, catalog) = catalog();
        let here = "s3://backups/site-a";
        assert_eq!(catalog.vault_id(here).expect("read"), None);
        catalog
            .remember_vault(here, "v-old", ts("2026-01-01T00:00:00Z"))
            .expect("remember");
        catalog
            .remember_vault("/srv/other", "v-other", ts("2026-01-01T00:00:00Z"))
            .expect("remember");
        // The location was made a new vault: the newest id wins.
        catalog
            .remember_vault(here, "v-new", ts("2026-01-02T00:00:00Z"))
            .expect("remember");
        assert_eq!(
            catalog.vault_id(here).expect("read").as_deref(),
            Some("v-new")
        );
        assert_eq!(
            catalog.vault_id("/srv/other").expect("read").as_deref(),
            Some("v-other")
        );
        assert_eq!(
            catalog.vault_locations().expect("locations"),
            ["/srv/other", here]
        );
    }
}
