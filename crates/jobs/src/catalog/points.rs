//! The inventory in the catalog: recovery points with their tiers, and VMs.

use std::collections::HashSet;
use std::path::PathBuf;

use blockvault_core::{Consistency, PointId, VmName};
use jiff::Timestamp;
use rusqlite::{Transaction, params};

use super::{Failure, micros, optional_timestamp, parse, timestamp};
use crate::{Catalog, PointEntry, PointSummary, Result, Tier, Tiers, VmEntry};

/// The `points` column that holds a tier's flag.
fn column(tier: Tier) -> &'static str {
    match tier {
        Tier::Snapshot => "in_snapshot",
        Tier::Vault => "in_vault",
    }
}

impl Catalog {
    /// Records that `point` of `vm` now lives in `tier` (adding the point if the catalog did
    /// not know it, keeping the other tier's flag). For the snapshot tier, `snapshot_expires`
    /// replaces the known expiry; for the vault tier it is ignored.
    pub fn add_point_tier(
        &self,
        vm: &VmName,
        point: &PointSummary,
        tier: Tier,
        snapshot_expires: Option<Timestamp>,
    ) -> Result<()> {
        let expires = match tier {
            Tier::Snapshot => snapshot_expires,
            Tier::Vault => None,
        };
        self.write(|tx| upsert_point(tx, vm, point, tier, expires, tier == Tier::Snapshot))
    }

    /// Records that point `id` of `vm` no longer lives in `tier`; forgets the point when it
    /// lives nowhere. Unknown points are ignored.
    pub fn remove_point_tier(&self, vm: &VmName, id: &PointId, tier: Tier) -> Result<()> {
        self.write(|tx| {
            clear_flag(tx, vm, id, tier)?;
            forget_tierless(tx, vm)
        })
    }

    /// Makes the catalog agree with a store's listing of `vm`'s points in `tier`: exactly the
    /// `listed` points have the tier's flag. Points the catalog did not know are added; the
    /// flag is cleared on the others, and points left in no tier are forgotten. Time and
    /// consistency are taken from the listing (the stores are the source of truth); a known
    /// snapshot expiry is kept.
    pub fn sync_tier(&self, vm: &VmName, tier: Tier, listed: &[PointSummary]) -> Result<()> {
        self.write(|tx| {
            let flagged: Vec<String> = tx
                .prepare(&format!(
                    "SELECT id FROM points WHERE vm = ?1 AND {} != 0",
                    column(tier)
                ))?
                .query_map([vm.as_str()], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let keep: HashSet<&str> = listed.iter().map(|p| p.id.as_str()).collect();
            for id in flagged.iter().filter(|id| !keep.contains(id.as_str())) {
                let id: PointId = parse(format_args!("point of {vm}"), id)?;
                clear_flag(tx, vm, &id, tier)?;
            }
            for point in listed {
                upsert_point(tx, vm, point, tier, None, false)?;
            }
            forget_tierless(tx, vm)
        })
    }

    /// The points of `vm` the catalog knows, oldest first.
    pub fn points(&self, vm: &VmName) -> Result<Vec<PointEntry>> {
        self.read(|tx| select_points(tx, Some(vm)))
    }

    /// The points of every VM the catalog knows: by VM name, then oldest first.
    pub fn all_points(&self) -> Result<Vec<PointEntry>> {
        self.read(|tx| select_points(tx, None))
    }

    /// Records `vm` as protected by `vault` with these disks (replacing what was known).
    pub fn upsert_vm(
        &self,
        vm: &VmName,
        vault: &str,
        disks: &[PathBuf],
        now: Timestamp,
    ) -> Result<()> {
        let disks_json = super::protection::paths_json(disks)?;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO vms (name, vault, disks, updated) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET
                     vault = excluded.vault, disks = excluded.disks, updated = excluded.updated",
                params![vm.as_str(), vault, disks_json, micros(now)],
            )?;
            Ok(())
        })
    }

    /// The VMs the catalog knows, by name.
    pub fn vms(&self) -> Result<Vec<VmEntry>> {
        self.read(|tx| {
            let rows = tx
                .prepare("SELECT name, vault, disks, updated FROM vms ORDER BY name")?
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(name, vault, disks, updated)| {
                    let disks: Vec<PathBuf> = serde_json::from_str(&disks).map_err(|e| {
                        Failure::Corrupt(format!("VM {name} disks: {disks:?} is not a list ({e})"))
                    })?;
                    Ok(VmEntry {
                        name: parse("VM name", &name)?,
                        updated: timestamp(format_args!("VM {name} updated"), updated)?,
                        vault,
                        disks,
                    })
                })
                .collect()
        })
    }
}

/// The points of `vm`, or of every VM: by VM name, then oldest first.
fn select_points(tx: &Transaction<'_>, vm: Option<&VmName>) -> Result<Vec<PointEntry>, Failure> {
    let rows = tx
        .prepare(
            "SELECT vm, id, time, consistency, in_snapshot, in_vault, snapshot_expires
             FROM points WHERE ?1 IS NULL OR vm = ?1 ORDER BY vm, time, id",
        )?
        .query_map([vm.map(VmName::as_str)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, bool>(4)?,
                r.get::<_, bool>(5)?,
                r.get::<_, Option<i64>>(6)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(vm, id, time, consistency, snapshot, vault, expires)| {
            let what = |column: &str| format!("point {vm}/{id} {column}");
            Ok(PointEntry {
                vm: parse(what("vm"), &vm)?,
                id: parse(what("id"), &id)?,
                time: timestamp(what("time"), time)?,
                consistency: consistency_from(&what("consistency"), &consistency)?,
                tiers: Tiers { snapshot, vault },
                snapshot_expires: optional_timestamp(what("snapshot_expires"), expires)?,
            })
        })
        .collect()
}

/// Inserts `point` in `tier`, or sets the tier's flag (and refreshes time and consistency) if
/// the catalog knows it. `set_expiry` replaces the snapshot expiry with `expires`.
fn upsert_point(
    tx: &Transaction<'_>,
    vm: &VmName,
    point: &PointSummary,
    tier: Tier,
    expires: Option<Timestamp>,
    set_expiry: bool,
) -> Result<(), Failure> {
    let flag = column(tier);
    tx.execute(
        &format!(
            "INSERT INTO points (vm, id, time, consistency, {flag}, snapshot_expires)
             VALUES (?1, ?2, ?3, ?4, 1, ?5)
             ON CONFLICT (vm, id) DO UPDATE SET
                 time = excluded.time, consistency = excluded.consistency, {flag} = 1,
                 snapshot_expires = CASE WHEN ?6 THEN excluded.snapshot_expires
                                         ELSE snapshot_expires END"
        ),
        params![
            vm.as_str(),
            point.id.as_str(),
            micros(point.time),
            point.consistency.to_string(),
            expires.map(micros),
            set_expiry
        ],
    )?;
    Ok(())
}

fn clear_flag(tx: &Transaction<'_>, vm: &VmName, id: &PointId, tier: Tier) -> Result<(), Failure> {
    let expiry = match tier {
        Tier::Snapshot => ", snapshot_expires = NULL",
        Tier::Vault => "",
    };
    tx.execute(
        &format!(
            "UPDATE points SET {} = 0{expiry} WHERE vm = ?1 AND id = ?2",
            column(tier)
        ),
        params![vm.as_str(), id.as_str()],
    )?;
    Ok(())
}

/// Forgets the points of `vm` that live in no tier.
fn forget_tierless(tx: &Transaction<'_>, vm: &VmName) -> Result<(), Failure> {
    tx.execute(
        "DELETE FROM points WHERE vm = ?1 AND in_snapshot = 0 AND in_vault = 0",
        [vm.as_str()],
    )?;
    Ok(())
}

/// `Consistency` from its display form (the core type speaks serde, not `FromStr`).
fn consistency_from(what: &str, value: &str) -> Result<Consistency, Failure> {
    serde_json::from_value(serde_json::Value::String(value.to_owned()))
        .map_err(|e| Failure::Corrupt(format!("{what}: {value:?} does not parse ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    use super::super::fixtures::{catalog, ts, vm};

    fn point(minute: u32) -> PointSummary {
        let time = ts(&format!("2026-11-23T10:{minute:02}:00Z"));
        PointSummary {
            id: PointId::generate(time, b"test"),
            time,
            consistency: Consistency::CrashConsistent,
        }
    }

    fn tiers_of(catalog: &Catalog, name: &str) -> Vec<(PointId, String)> {
        catalog
            .points(&vm(name))
            .expect("points")
            .into_iter()
            .map(|p| (p.id, p.tiers.to_string()))
            .collect()
    }

    #[test]
    fn adding_a_tier_keeps_the_other_and_removing_the_last_forgets_the_point() {
        let (_dir, catalog) = catalog();
        let web = vm("web01");
        let p = point(0);
        let expires = ts("2026-11-25T10:00:00Z");
        catalog
            .add_point_tier(&web, &p, Tier::Snapshot, Some(expires))
            .expect("snapshot");
        let listed = catalog.points(&web).expect("points");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].snapshot_expires, Some(expires));
        assert_eq!(listed[0].time, p.time);
        assert_eq!(listed[0].consistency, Consistency::CrashConsistent);
        catalog
            .add_point_tier(&web, &p, Tier::Vault, None)
            .expect("vault");
        let listed = catalog.points(&web).expect("points");
        assert_eq!(listed[0].tiers.to_string(), "snapshot+vault");
        assert_eq!(
            listed[0].snapshot_expires,
            Some(expires),
            "vault leaves the expiry"
        );
        catalog
            .remove_point_tier(&web, &p.id, Tier::Snapshot)
            .expect("remove snapshot");
        let listed = catalog.points(&web).expect("points");
        assert_eq!(listed[0].tiers.to_string(), "vault");
        assert_eq!(listed[0].snapshot_expires, None);
        catalog
            .remove_point_tier(&web, &p.id, Tier::Vault)
            .expect("remove vault");
        assert!(catalog.points(&web).expect("points").is_empty());
        catalog
            .remove_point_tier(&web, &p.id, Tier::Vault)
            .expect("removing an unknown point is a no-op");
    }

    #[test]
    fn points_are_listed_by_vm_then_oldest_first() {
        let (_dir, catalog) = catalog();
        for (name, minute) in [("web01", 30), ("db01", 5), ("web01", 10)] {
            catalog
                .add_point_tier(&vm(name), &point(minute), Tier::Vault, None)
                .expect("add");
        }
        let all: Vec<_> = catalog
            .all_points()
            .expect("points")
            .into_iter()
            .map(|p| (p.vm.to_string(), p.time))
            .collect();
        assert_eq!(
            all,
            [
                ("db01".to_owned(), point(5).time),
                ("web01".to_owned(), point(10).time),
                ("web01".to_owned(), point(30).time),
            ]
        );
        let json = serde_json::to_value(&catalog.all_points().expect("points")[0]).expect("json");
        assert_eq!(json["tiers"], serde_json::json!(["vault"]));
        assert_eq!(json["consistency"], "crash-consistent");
    }

    #[test]
    fn sync_makes_the_tier_flag_true_exactly_for_the_listed_points() {
        let (_dir, catalog) = catalog();
        let web = vm("web01");
        let (a, b, c, d) = (point(0), point(10), point(20), point(30));
        let expires = ts("2026-11-25T10:00:00Z");
        // a: vault only; b: both; c: snapshot only.
        catalog
            .add_point_tier(&web, &a, Tier::Vault, None)
            .expect("a");
        catalog
            .add_point_tier(&web, &b, Tier::Vault, None)
            .expect("b");
        catalog
            .add_point_tier(&web, &b, Tier::Snapshot, Some(expires))
            .expect("b");
        catalog
            .add_point_tier(&web, &c, Tier::Snapshot, Some(expires))
            .expect("c");
        // Another VM's points are not touched.
        catalog
            .add_point_tier(&vm("db01"), &a, Tier::Snapshot, None)
            .expect("db01");

        // The snapshot tier now holds b and d (c expired; d was made by a run the catalog
        // missed).
        let d_app = PointSummary {
            consistency: Consistency::ApplicationConsistent,
            ..d.clone()
        };
        catalog
            .sync_tier(&web, Tier::Snapshot, &[b.clone(), d_app])
            .expect("sync");
        assert_eq!(
            tiers_of(&catalog, "web01"),
            [
                (a.id.clone(), "vault".to_owned()),
                (b.id.clone(), "snapshot+vault".to_owned()),
                (d.id.clone(), "snapshot".to_owned()),
            ]
        );
        let listed = catalog.points(&web).expect("points");
        assert_eq!(
            listed[1].snapshot_expires,
            Some(expires),
            "known expiry kept"
        );
        assert_eq!(listed[2].snapshot_expires, None);
        assert_eq!(listed[2].consistency, Consistency::ApplicationConsistent);

        // The vault was emptied.
        catalog.sync_tier(&web, Tier::Vault, &[]).expect("sync");
        assert_eq!(
            tiers_of(&catalog, "web01"),
            [
                (b.id.clone(), "snapshot".to_owned()),
                (d.id.clone(), "snapshot".to_owned()),
            ]
        );
        assert_eq!(tiers_of(&catalog, "db01"), [(a.id, "snapshot".to_owned())]);
    }

    #[test]
    fn vms_are_upserted_and_listed_by_name() {
        let (_dir, catalog) = catalog();
        let t0 = ts("2026-11-23T10:00:00Z");
        let t1 = ts("2026-11-24T10:00:00Z");
        catalog
            .upsert_vm(
                &vm("web01"),
                "/srv/vault",
                &[PathBuf::from("/vms/web01.raw")],
                t0,
            )
            .expect("web01");
        catalog
            .upsert_vm(&vm("db01"), "s3://backups/a", &[], t0)
            .expect("db01");
        let disks = [
            PathBuf::from("/vms/web01.raw"),
            PathBuf::from("/vms/web01-data.raw"),
        ];
        catalog
            .upsert_vm(&vm("web01"), "/srv/vault2", &disks, t1)
            .expect("web01 again");
        let vms = catalog.vms().expect("vms");
        assert_eq!(vms.len(), 2);
        assert_eq!(vms[0].name, vm("db01"));
        assert_eq!(vms[1].vault, "/srv/vault2");
        assert_eq!(vms[1].disks, disks);
        assert_eq!(vms[1].updated, t1);
    }

    #[test]
    fn a_row_that_does_not_parse_is_corrupt_not_a_panic() {
        let (_dir, catalog) = catalog();
        catalog
            .add_point_tier(&vm("web01"), &point(0), Tier::Vault, None)
            .expect("add");
        catalog
            .lock()
            .execute("UPDATE points SET consistency = 'sort-of'", [])
            .expect("damage");
        let err = catalog.all_points().expect_err("corrupt");
        assert!(
            matches!(&err, Error::Corrupt { what, .. } if what.contains("sort-of")),
            "{err:?}"
        );
    }
}
