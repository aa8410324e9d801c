//! Protected items in the catalog: which VM is protected by which vault and policy, where it
//! stands in the protection lifecycle (protected, stopped, soft-deleted), and the scheduler's
//! progress through each VM's schedule.

use std::path::PathBuf;
use std::time::Duration;

use blockvault_core::VmName;
use jiff::Timestamp;
use rusqlite::{OptionalExtension, Row, Transaction, params};
use serde::{Deserialize, Serialize};

use super::{Failure, micros, optional_timestamp, parse, policies, timestamp};
use crate::{
    CaptureMode, Catalog, Error, Hooks, PolicyName, ProtectedItem, ProtectionState, Result,
};

/// Hooks as stored (JSON).
#[derive(Serialize, Deserialize)]
struct StoredHooks {
    pre: Option<String>,
    post: Option<String>,
    timeout_secs: Option<u64>,
    /// How the VM's backups capture its disks: with the hooks, since they go together
    /// (absent in items protected before it: `auto`).
    #[serde(default)]
    capture: CaptureMode,
    /// The disks' format when said outright (absent: by the headers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disk_format: Option<blockvault_core::DiskFormat>,
}

const COLUMNS: &str = "vm, vault, disks, policy, hooks, since, handled, state, stopped, deleted";

impl Catalog {
    /// Protects `item.vm` (or updates its protection): vault, disks, policy, hooks, state. The
    /// policy must exist. A VM already protected keeps the later of its `handled` and
    /// `item.handled`, so no slot runs twice; one that moves to another vault (allowed once its
    /// protection is stopped, see [`Catalog::protection_in`]) starts over with `item.since` and
    /// `item.handled`. A soft-deleted item is never overwritten ([`Error::SoftDeleted`]):
    /// `undelete` first.
    pub fn protect(&self, item: &ProtectedItem) -> Result<()> {
        let disks = paths_json(&item.disks)?;
        let hooks = serde_json::to_string(&StoredHooks {
            pre: item.hooks.pre.clone(),
            post: item.hooks.post.clone(),
            timeout_secs: item.hooks.timeout.map(|t| t.as_secs()),
            capture: item.capture,
            disk_format: item.disk_format,
        })
        .unwrap_or_default();
        let (stopped, deleted) = state_times(&item.state);
        self.write(|tx| {
            if policies::stored(tx, &item.policy)?.is_none() {
                return Err(Error::UnknownPolicy {
                    name: item.policy.clone(),
                }
                .into());
            }
            if let Some(existing) = read_item(tx, &item.vm)?
                && let Some(purge_after) = existing.state.purge_after()
            {
                return Err(Error::SoftDeleted {
                    vm: item.vm.clone(),
                    vault: existing.vault,
                    purge_after,
                }
                .into());
            }
            tx.execute(
                "INSERT INTO protected (vm, vault, disks, policy, hooks, since, handled, state,
                                        stopped, deleted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (vm) DO UPDATE SET
                     since = CASE WHEN protected.vault = excluded.vault THEN protected.since
                                  ELSE excluded.since END,
                     handled = CASE
                         WHEN protected.vault != excluded.vault THEN excluded.handled
                         WHEN excluded.handled IS NULL THEN protected.handled
                         WHEN protected.handled IS NULL THEN excluded.handled
                         ELSE MAX(protected.handled, excluded.handled) END,
                     vault = excluded.vault, disks = excluded.disks,
                     policy = excluded.policy, hooks = excluded.hooks, state = excluded.state,
                     stopped = excluded.stopped, deleted = excluded.deleted",
                params![
                    item.vm.as_str(),
                    item.vault,
                    disks,
                    item.policy.as_str(),
                    hooks,
                    micros(item.since),
                    item.handled.map(micros),
                    item.state.key(),
                    stopped,
                    deleted
                ],
            )?;
            Ok(())
        })
    }

    /// Moves `vm` to `state` (stop protection, soft-delete, undelete); [`Error::NotProtected`]
    /// when the catalog has no item for it. The engine checks that the move is allowed.
    pub fn set_protection_state(&self, vm: &VmName, state: ProtectionState) -> Result<()> {
        let (stopped, deleted) = state_times(&state);
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE protected SET state = ?2, stopped = ?3, deleted = ?4 WHERE vm = ?1",
                params![vm.as_str(), state.key(), stopped, deleted],
            )?;
            if changed == 0 {
                return Err(Error::NotProtected { vm: vm.clone() }.into());
            }
            Ok(())
        })
    }

    /// Forgets the protected item of `vm` (its soft-deleted data was purged); whether there was
    /// one.
    pub fn remove_protected_item(&self, vm: &VmName) -> Result<bool> {
        self.write(|tx| {
            let changed = tx.execute("DELETE FROM protected WHERE vm = ?1", [vm.as_str()])?;
            Ok(changed == 1)
        })
    }

    /// The protected item of `vm` in any state (protected, stopped, soft-deleted), if the
    /// catalog has one.
    pub fn protected_item(&self, vm: &VmName) -> Result<Option<ProtectedItem>> {
        self.read(|tx| read_item(tx, vm))
    }

    /// The protected item of `vm` in `vault`, if any: the one check of "may `vm` be backed up
    /// or protected in `vault`" (backup, protect and the engine use it). `vault` must be
    /// spelled as protections record it (canonically). Refused:
    ///
    /// - [`Error::ProtectedElsewhere`]: another vault protects the VM (a VM is protected by one
    ///   vault only);
    /// - [`Error::SoftDeletedElsewhere`]: the VM's data is soft-deleted in another vault
    ///   (naming that vault and the purge date): refused until it is undeleted or purged;
    /// - [`Error::SoftDeleted`]: the VM's data is soft-deleted in `vault` itself: undelete
    ///   first (a new point would be purged with the others).
    ///
    /// An item **stopped with its data retained** in another vault does not refuse: the SPEC
    /// says a VM is *protected* by one vault only, and a stopped VM is protected by none; and
    /// undeleting a soft-deleted VM (which leaves it stopped with data retained) is what ends
    /// the soft-delete block, so a stopped VM must be protectable elsewhere. It is then `None`
    /// (nothing in `vault`): protecting it replaces the item, and the retained points stay in
    /// the old vault as unprotected points (listed and restored with `--vault OLD`, never
    /// expired by a policy). Azure Backup is stricter here (it wants the data deleted first);
    /// the SPEC's wording is followed.
    pub fn protection_in(&self, vm: &VmName, vault: &str) -> Result<Option<ProtectedItem>> {
        let Some(item) = self.protected_item(vm)? else {
            return Ok(None);
        };
        match (item.state, item.vault == vault) {
            (ProtectionState::SoftDeleted { purge_after, .. }, false) => {
                Err(Error::SoftDeletedElsewhere {
                    vm: vm.clone(),
                    vault: item.vault,
                    purge_after,
                })
            }
            (ProtectionState::SoftDeleted { purge_after, .. }, true) => Err(Error::SoftDeleted {
                vm: vm.clone(),
                vault: item.vault,
                purge_after,
            }),
            (ProtectionState::Protected, false) => Err(Error::ProtectedElsewhere {
                vm: vm.clone(),
                protected_by: item.vault,
            }),
            (ProtectionState::Stopped { .. }, false) => Ok(None),
            (_, true) => Ok(Some(item)),
        }
    }

    /// Every protected item (in any state), by name. What is scheduled is those whose
    /// [`ProtectedItem::is_protected`] says protection is on.
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

fn read_item(tx: &Transaction<'_>, vm: &VmName) -> Result<Option<ProtectedItem>, Failure> {
    tx.query_row(
        &format!("SELECT {COLUMNS} FROM protected WHERE vm = ?1"),
        [vm.as_str()],
        raw,
    )
    .optional()?
    .map(item)
    .transpose()
}

/// A state's `stopped` and `deleted` columns.
fn state_times(state: &ProtectionState) -> (Option<i64>, Option<i64>) {
    match *state {
        ProtectionState::Protected => (None, None),
        ProtectionState::Stopped { stopped } => (Some(micros(stopped)), None),
        ProtectionState::SoftDeleted {
            stopped, deleted, ..
        } => (Some(micros(stopped)), Some(micros(deleted))),
    }
}

/// A row of `protected`, as stored.
struct Raw {
    vm: String,
    vault: String,
    disks: String,
    policy: String,
    hooks: String,
    since: i64,
    handled: Option<i64>,
    state: String,
    stopped: Option<i64>,
    deleted: Option<i64>,
}

fn raw(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok(Raw {
        vm: r.get(0)?,
        vault: r.get(1)?,
        disks: r.get(2)?,
        policy: r.get(3)?,
        hooks: r.get(4)?,
        since: r.get(5)?,
        handled: r.get(6)?,
        state: r.get(7)?,
        stopped: r.get(8)?,
        deleted: r.get(9)?,
    })
}

fn state(vm: &str, raw: &Raw) -> Result<ProtectionState, Failure> {
    let at = |column: &str, value: Option<i64>| {
        let what = format!("protected VM {vm} {column}");
        optional_timestamp(&what, value)?
            .ok_or_else(|| Failure::Corrupt(format!("{what}: missing for state {:?}", raw.state)))
    };
    Ok(match raw.state.as_str() {
        "protected" => ProtectionState::Protected,
        "stopped" => ProtectionState::Stopped {
            stopped: at("stopped", raw.stopped)?,
        },
        "soft-deleted" => {
            ProtectionState::soft_deleted(at("stopped", raw.stopped)?, at("deleted", raw.deleted)?)
        }
        other => {
            return Err(Failure::Corrupt(format!(
                "protected VM {vm} state: {other:?} is not protected, stopped or soft-deleted"
            )));
        }
    })
}

fn item(raw: Raw) -> Result<ProtectedItem, Failure> {
    let state = state(&raw.vm, &raw)?;
    let Raw {
        vm,
        vault,
        disks,
        policy,
        hooks,
        since,
        handled,
        ..
    } = raw;
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
        capture: hooks.capture,
        disk_format: hooks.disk_format,
        state,
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
mod tests;
