//! Protected items in the catalog: which VM is protected by which vault and policy, and the
//! scheduler's progress through each VM's schedule.

use std::path::PathBuf;
use std::time::Duration;

use blockvault_core::VmName;
use jiff::Timestamp;
use rusqlite::{OptionalExtension, Row, Transaction, params};
use serde::{Deserialize, Serialize};

use super::{Failure, micros, optional_timestamp, parse, policies, timestamp};
use crate::{Catalog, Error, Hooks, PolicyName, ProtectedItem, Result};

/// Hooks as stored (JSON).
#[derive(Serialize, Deserialize)]
struct StoredHooks {
    pre: Option<String>,
    post: Option<String>,
    timeout_secs: Option<u64>,
}

const COLUMNS: &str = "vm, vault, disks, policy, hooks, since, handled";

impl Catalog {
    /// Protects `item.vm` (or updates its protection): vault, disks, policy, hooks. The policy
    /// must exist. A VM already protected keeps the later of its `handled` and `item.handled`,
    /// so no slot runs twice.
    pub fn protect(&self, item: &ProtectedItem) -> Result<()> {
        let disks = paths_json(&item.disks)?;
        let hooks = serde_json::to_string(&StoredHooks {
            pre: item.hooks.pre.clone(),
            post: item.hooks.post.clone(),
            timeout_secs: item.hooks.timeout.map(|t| t.as_secs()),
        })
        .unwrap_or_default();
        self.write(|tx| {
            if policies::stored(tx, &item.policy)?.is_none() {
                return Err(Error::UnknownPolicy {
                    name: item.policy.clone(),
                }
                .into());
            }
            tx.execute(
                "INSERT INTO protected (vm, vault, disks, policy, hooks, since, handled)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (vm) DO UPDATE SET vault = excluded.vault, disks = excluded.disks,
                     policy = excluded.policy, hooks = excluded.hooks,
                     handled = CASE
                         WHEN excluded.handled IS NULL THEN protected.handled
                         WHEN protected.handled IS NULL THEN excluded.handled
                         ELSE MAX(protected.handled, excluded.handled) END",
                params![
                    item.vm.as_str(),
                    item.vault,
                    disks,
                    item.policy.as_str(),
                    hooks,
                    micros(item.since),
                    item.handled.map(micros)
                ],
            )?;
            Ok(())
        })
    }

    /// The protection of `vm`, if it is protected.
    pub fn protected_item(&self, vm: &VmName) -> Result<Option<ProtectedItem>> {
        self.read(|tx| {
            tx.query_row(
                &format!("SELECT {COLUMNS} FROM protected WHERE vm = ?1"),
                [vm.as_str()],
                raw,
            )
            .optional()?
            .map(item)
            .transpose()
        })
    }

    /// The protection of `vm` when it is protected by `vault` (or by nothing);
    /// [`Error::ProtectedElsewhere`] when another vault protects it (a VM is protected by one
    /// vault only). `vault` must be spelled as protections record it (canonically).
    pub fn protection_in(&self, vm: &VmName, vault: &str) -> Result<Option<ProtectedItem>> {
        match self.protected_item(vm)? {
            Some(item) if item.vault != vault => Err(Error::ProtectedElsewhere {
                vm: vm.clone(),
                protected_by: item.vault,
            }),
            found => Ok(found),
        }
    }

    /// Every protected VM, by name.
    pub fn protected_items(&self) -> Result<Vec<ProtectedItem>> {
        self.read(select)
    }

    /// Records that the scheduler handles `vm`'s slot at `slot`, unless that slot (or a later
    /// one) was already handled: whether this caller got it. Two schedulers never run one slot,
    /// and a restarted one never runs a slot again.
    pub fn claim_slot(&self, vm: &VmName, slot: Timestamp) -> Result<bool> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE protected SET handled = ?2
                 WHERE vm = ?1 AND (handled IS NULL OR handled < ?2)",
                params![vm.as_str(), micros(slot)],
            )?;
            Ok(changed == 1)
        })
    }

    /// Moves `vm` to `policy` (which must exist); [`Error::NotProtected`] if it is not
    /// protected.
    pub fn set_item_policy(&self, vm: &VmName, policy: &PolicyName) -> Result<()> {
        self.write(|tx| {
            if policies::stored(tx, policy)?.is_none() {
                return Err(Error::UnknownPolicy {
                    name: policy.clone(),
                }
                .into());
            }
            let changed = tx.execute(
                "UPDATE protected SET policy = ?2 WHERE vm = ?1",
                params![vm.as_str(), policy.as_str()],
            )?;
            if changed == 0 {
                return Err(Error::NotProtected { vm: vm.clone() }.into());
            }
            Ok(())
        })
    }
}

fn select(tx: &Transaction<'_>) -> Result<Vec<ProtectedItem>, Failure> {
    let rows = tx
        .prepare(&format!("SELECT {COLUMNS} FROM protected ORDER BY vm"))?
        .query_map([], raw)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(item).collect()
}

type Raw = (String, String, String, String, String, i64, Option<i64>);

fn raw(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn item((vm, vault, disks, policy, hooks, since, handled): Raw) -> Result<ProtectedItem, Failure> {
    let disks: Vec<PathBuf> = serde_json::from_str(&disks)
        .map_err(|e| Failure::Corrupt(format!("protected VM {vm} disks: {disks:?} ({e})")))?;
    let hooks: StoredHooks = serde_json::from_str(&hooks)
        .map_err(|e| Failure::Corrupt(format!("protected VM {vm} hooks: {hooks:?} ({e})")))?;
    Ok(ProtectedItem {
        since: timestamp(format_args!("protected VM {vm} since"), since)?,
        handled: optional_timestamp(format_args!("protected VM {vm} handled"), handled)?,
        policy: parse(format_args!("protected VM {vm} policy"), &policy)?,
        vm: parse("protected VM", &vm)?,
        vault,
        disks,
        hooks: Hooks {
            pre: hooks.pre,
            post: hooks.post,
            timeout: hooks.timeout_secs.map(Duration::from_secs),
        },
    })
}

/// Disk paths as a JSON list of strings (the catalog stores text).
pub(super) fn paths_json(disks: &[PathBuf]) -> Result<String> {
    let paths = disks
        .iter()
        .map(|d| {
            d.to_str()
                .ok_or_else(|| Error::NonUtf8Path { path: d.clone() })
        })
        .collect::<Result<Vec<&str>>>()?;
    // A list of strings always serializes.
    Ok(serde_json::to_string(&paths).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DEFAULT_POLICY, Policy};

    fn vm(s: &str) -> VmName {
        s.parse().expect("vm")
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    fn web01() -> ProtectedItem {
        ProtectedItem {
            vm: vm("web01"),
            vault: "/srv/vault".into(),
            disks: vec![PathBuf::from("/vms/web01.raw")],
            policy: DEFAULT_POLICY.parse().expect("name"),
            hooks: Hooks {
                pre: Some("virsh domfsfreeze web01".into()),
                post: None,
                timeout: Some(Duration::from_secs(60)),
            },
            since: at("2026-11-23T10:00:00Z"),
            handled: None,
        }
    }

    #[test]
    fn protect_read_back_and_claim_slots_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = Catalog::open(dir.path().join("c.sqlite")).expect("open");
        assert_eq!(catalog.protected_item(&vm("web01")).expect("read"), None);
        catalog.protect(&web01()).expect("protect");
        assert_eq!(catalog.protected_items().expect("list"), [web01()]);

        let slot = at("2026-11-23T23:00:00Z");
        assert!(catalog.claim_slot(&vm("web01"), slot).expect("claim"));
        assert!(!catalog.claim_slot(&vm("web01"), slot).expect("again"));
        assert!(
            !catalog
                .claim_slot(&vm("web01"), at("2026-11-22T23:00:00Z"))
                .expect("older")
        );
        assert!(!catalog.claim_slot(&vm("db01"), slot).expect("unprotected"));

        // Re-protecting (new disks) keeps the scheduler's place.
        let mut changed = web01();
        changed.disks.push(PathBuf::from("/vms/web01-data.raw"));
        catalog.protect(&changed).expect("update");
        let read = catalog
            .protected_item(&vm("web01"))
            .expect("read")
            .expect("protected");
        assert_eq!(read.disks.len(), 2);
        assert_eq!(read.handled, Some(slot));
    }

    #[test]
    fn policies_in_use_cannot_be_deleted_and_unknown_ones_not_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = Catalog::open(dir.path().join("c.sqlite")).expect("open");
        let mut item = web01();
        item.policy = "nope".parse().expect("name");
        let err = catalog.protect(&item).expect_err("unknown policy");
        assert!(matches!(err, Error::UnknownPolicy { .. }), "{err}");

        let enhanced = Policy::enhanced("e4".parse().expect("name"), jiff::tz::TimeZone::UTC);
        catalog
            .create_policy(&enhanced, at("2026-11-23T10:00:00Z"))
            .expect("create");
        catalog.protect(&web01()).expect("protect");
        catalog
            .set_item_policy(&vm("web01"), &enhanced.name)
            .expect("move");
        let err = catalog.delete_policy(&enhanced.name).expect_err("in use");
        assert!(
            matches!(&err, Error::PolicyInUse { vms, .. } if vms == &["web01"]),
            "{err}"
        );
        assert!(err.to_string().contains("web01"), "{err}");
        let listed = catalog.policies().expect("list");
        assert_eq!(listed[1].protects, ["web01"]);
        catalog
            .delete_policy(&DEFAULT_POLICY.parse().expect("name"))
            .expect("unused default can go");
    }
}
