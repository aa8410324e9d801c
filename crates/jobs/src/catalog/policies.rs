//! Policies in the catalog: stored as their policy file, so what `policy show --toml` prints is
//! exactly what is kept.

use jiff::Timestamp;
use rusqlite::{OptionalExtension, Transaction, params};

use super::{Failure, micros, timestamp};
use crate::{Catalog, DEFAULT_POLICY, Error, Policy, PolicyName, Result};

/// A policy as the catalog lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyEntry {
    pub policy: Policy,
    pub created: Timestamp,
    pub updated: Timestamp,
    /// The VMs it protects, by name.
    pub protects: Vec<String>,
}

/// Whether [`Catalog::put_policy`] created the policy or replaced one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Put {
    Created,
    Updated,
}

impl Catalog {
    /// Adds a new policy; [`Error::PolicyExists`] if the name is taken.
    pub fn create_policy(&self, policy: &Policy, now: Timestamp) -> Result<()> {
        self.write(|tx| {
            if stored(tx, &policy.name)?.is_some() {
                return Err(Error::PolicyExists {
                    name: policy.name.clone(),
                }
                .into());
            }
            insert(tx, policy, now)
        })
    }

    /// Creates `policy`, or replaces the policy of that name. The VMs it protects follow the
    /// new version from now on: a changed schedule's first slot is its next one after `now`. A policy's type never changes
    /// ([`Error::PolicyTypeChange`]): VMs move between types by changing policy, which for
    /// Standard -> Enhanced is a migration.
    pub fn put_policy(&self, policy: &Policy, now: Timestamp) -> Result<Put> {
        let puts = self.put_policies(std::slice::from_ref(policy), now)?;
        Ok(puts.first().copied().unwrap_or(Put::Created))
    }

    /// [`Catalog::put_policy`] for several policies in one transaction: all are applied, or
    /// none (one that would change a policy's type stops them all).
    pub fn put_policies(&self, policies: &[Policy], now: Timestamp) -> Result<Vec<Put>> {
        self.write(|tx| {
            policies
                .iter()
                .map(|policy| match stored(tx, &policy.name)? {
                    None => insert(tx, policy, now).map(|()| Put::Created),
                    Some(old) if old.kind != policy.kind => Err(Error::PolicyTypeChange {
                        name: policy.name.clone(),
                        from: old.kind,
                        to: policy.kind,
                    }
                    .into()),
                    Some(old) => {
                        tx.execute(
                            "UPDATE policies SET body = ?2, updated = ?3 WHERE name = ?1",
                            params![policy.name.as_str(), policy.to_toml(), micros(now)],
                        )?;
                        if old.schedule != policy.schedule
                            || old.timezone_name() != policy.timezone_name()
                        {
                            // The new schedule starts now: its slots before the edit were never
                            // planned, so they are neither run nor reported as missed.
                            tx.execute(
                                "UPDATE protected SET handled = MAX(COALESCE(handled, since), ?2)
                                 WHERE policy = ?1",
                                params![policy.name.as_str(), micros(now)],
                            )?;
                        }
                        Ok(Put::Updated)
                    }
                })
                .collect()
        })
    }

    /// The policy `name`; [`Error::UnknownPolicy`] if there is none.
    pub fn policy(&self, name: &PolicyName) -> Result<Policy> {
        self.read(|tx| {
            stored(tx, name)?.ok_or_else(|| Error::UnknownPolicy { name: name.clone() }.into())
        })
    }

    /// Every policy, by name, with the VMs each protects.
    pub fn policies(&self) -> Result<Vec<PolicyEntry>> {
        self.read(|tx| {
            let rows = tx
                .prepare(
                    "SELECT p.name, p.body, p.created, p.updated,
                            (SELECT group_concat(vm, ',') FROM
                                (SELECT vm FROM protected WHERE policy = p.name ORDER BY vm))
                     FROM policies p ORDER BY p.name",
                )?
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(name, body, created, updated, protects)| {
                    Ok(PolicyEntry {
                        policy: decode(&name, &body)?,
                        created: timestamp(format_args!("policy {name} created"), created)?,
                        updated: timestamp(format_args!("policy {name} updated"), updated)?,
                        protects: protects
                            .map(|vms| vms.split(',').map(str::to_owned).collect())
                            .unwrap_or_default(),
                    })
                })
                .collect()
        })
    }

    /// Deletes the policy `name`. Refused while it protects a VM ([`Error::PolicyInUse`],
    /// naming them), and for [`DEFAULT_POLICY`], which every catalog has (`protect` without a
    /// policy uses it).
    pub fn delete_policy(&self, name: &PolicyName) -> Result<()> {
        if name.as_str() == DEFAULT_POLICY {
            return Err(Error::DefaultPolicyKept { name: name.clone() });
        }
        self.write(|tx| {
            if stored(tx, name)?.is_none() {
                return Err(Error::UnknownPolicy { name: name.clone() }.into());
            }
            let vms = tx
                .prepare("SELECT vm FROM protected WHERE policy = ?1 ORDER BY vm")?
                .query_map([name.as_str()], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if !vms.is_empty() {
                return Err(Error::PolicyInUse {
                    name: name.clone(),
                    vms,
                }
                .into());
            }
            tx.execute("DELETE FROM policies WHERE name = ?1", [name.as_str()])?;
            Ok(())
        })
    }

    /// Makes sure `policy` exists, leaving an existing policy of that name as it is. Whether it
    /// was added.
    pub fn ensure_policy(&self, policy: &Policy, now: Timestamp) -> Result<bool> {
        self.write(|tx| {
            if stored(tx, &policy.name)?.is_some() {
                return Ok(false);
            }
            insert(tx, policy, now).map(|()| true)
        })
    }
}

pub(super) fn insert(tx: &Transaction<'_>, policy: &Policy, now: Timestamp) -> Result<(), Failure> {
    tx.execute(
        "INSERT INTO policies (name, type, body, created, updated) VALUES (?1, ?2, ?3, ?4, ?4)",
        params![
            policy.name.as_str(),
            policy.kind.key(),
            policy.to_toml(),
            micros(now)
        ],
    )?;
    Ok(())
}

pub(super) fn stored(tx: &Transaction<'_>, name: &PolicyName) -> Result<Option<Policy>, Failure> {
    let body: Option<String> = tx
        .query_row(
            "SELECT body FROM policies WHERE name = ?1",
            [name.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    body.map(|body| decode(name.as_str(), &body)).transpose()
}

fn decode(name: &str, body: &str) -> Result<Policy, Failure> {
    Policy::from_toml(body).map_err(|e| Failure::Corrupt(format!("policy {name}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DEFAULT_POLICY, PolicyType, Schedule};

    fn catalog() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = Catalog::open(dir.path().join("catalog.sqlite")).expect("open");
        (dir, catalog)
    }

    fn name(s: &str) -> PolicyName {
        s.parse().expect("name")
    }

    fn now() -> Timestamp {
        "2026-11-23T10:00:00Z".parse().expect("time")
    }

    #[test]
    fn a_new_catalog_has_the_default_policy() {
        let (_dir, catalog) = catalog();
        let default = catalog.policy(&name(DEFAULT_POLICY)).expect("default");
        assert_eq!(default, Policy::default_policy());
        assert_eq!(default.kind, PolicyType::Standard);
        assert_eq!(default.instant_restore_days, 2);
        assert_eq!(default.retention.daily_days, Some(30));
    }

    #[test]
    fn create_edit_list_delete() {
        let (_dir, catalog) = catalog();
        let tz = jiff::tz::TimeZone::get("Europe/Paris").expect("zone");
        let mut web = Policy::enhanced(name("web-4h"), tz);
        catalog.create_policy(&web, now()).expect("create");
        let err = catalog.create_policy(&web, now()).expect_err("twice");
        assert!(matches!(err, Error::PolicyExists { .. }), "{err}");

        web.instant_restore_days = 30;
        let later = now() + jiff::SignedDuration::from_hours(1);
        assert_eq!(catalog.put_policy(&web, later).expect("edit"), Put::Updated);
        assert_eq!(catalog.policy(&web.name).expect("read"), web);

        let standard = Policy::standard(web.name.clone(), jiff::tz::TimeZone::UTC);
        let err = catalog
            .put_policy(&standard, later)
            .expect_err("type change");
        assert!(matches!(err, Error::PolicyTypeChange { .. }), "{err}");
        assert_eq!(catalog.policy(&web.name).expect("unchanged"), web);

        let listed = catalog.policies().expect("list");
        let names: Vec<&str> = listed.iter().map(|p| p.policy.name.as_str()).collect();
        assert_eq!(names, [DEFAULT_POLICY, "web-4h"]);
        assert_eq!(listed[1].created, now());
        assert_eq!(listed[1].updated, later);

        catalog.delete_policy(&web.name).expect("delete");
        let err = catalog.policy(&web.name).expect_err("gone");
        assert!(matches!(err, Error::UnknownPolicy { .. }), "{err}");
        let err = catalog.delete_policy(&web.name).expect_err("gone twice");
        assert!(matches!(err, Error::UnknownPolicy { .. }), "{err}");
    }

    #[test]
    fn a_version_1_catalog_is_migrated_keeping_its_jobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("catalog.sqlite");
        {
            let conn = rusqlite::Connection::open(&path).expect("sqlite");
            conn.execute_batch(super::super::SCHEMA_1).expect("v1");
            conn.execute(
                "INSERT INTO jobs (vm, operation, status, started, pid)
                 VALUES ('web01', 'backup', 'completed', 1, 1)",
                [],
            )
            .expect("job");
            conn.pragma_update(None, "user_version", 1)
                .expect("version");
        }
        let catalog = Catalog::open(&path).expect("migrate");
        assert!(catalog.policy(&name(DEFAULT_POLICY)).is_ok());
        let job = catalog.job(crate::JobId(1)).expect("kept");
        assert_eq!(job.vm.as_str(), "web01");
        drop(catalog);
        Catalog::open(&path).expect("reopen at version 2");
    }

    #[test]
    fn a_changed_schedule_starts_at_the_edit_for_the_vms_it_protects() {
        let (_dir, catalog) = catalog();
        let mut nightly = Policy::standard(name("nightly"), jiff::tz::TimeZone::UTC);
        catalog.create_policy(&nightly, now()).expect("create");
        let vm: blockvault_core::VmName = "web01".parse().expect("vm");
        let since = now() - jiff::SignedDuration::from_hours(48);
        catalog
            .protect(&crate::ProtectedItem {
                vm: vm.clone(),
                vault: "/srv/vault".into(),
                disks: vec!["/vms/web01.raw".into()],
                policy: nightly.name.clone(),
                hooks: crate::Hooks::default(),
                since,
                handled: None,
                state: crate::ProtectionState::Protected,
                capture: crate::CaptureMode::Auto,
                disk_format: None,
            })
            .expect("protect");
        let handled = |c: &Catalog| {
            c.protected_item(&vm)
                .expect("read")
                .expect("protected")
                .handled
        };
        // Retention only: the schedule's place is kept.
        nightly.retention.daily_days = Some(60);
        catalog.put_policy(&nightly, now()).expect("edit retention");
        assert_eq!(handled(&catalog), None);
        // A new time: slots before the edit were never planned.
        nightly.schedule = Schedule::Daily {
            at: jiff::civil::Time::constant(8, 0, 0, 0),
        };
        let edit = now() + jiff::SignedDuration::from_hours(1);
        catalog.put_policy(&nightly, edit).expect("edit schedule");
        assert_eq!(handled(&catalog), Some(edit));
        // Protecting again with an older `handled` never moves it back.
        let mut item = catalog.protected_item(&vm).expect("read").expect("item");
        item.handled = Some(since);
        catalog.protect(&item).expect("re-protect");
        assert_eq!(handled(&catalog), Some(edit));
    }
}
