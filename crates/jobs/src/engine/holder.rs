//! Protection held by the vault: which host protects a VM, recorded in the vault
//! (`protection/<vm>`, a [`ProtectionRecord`]) so that a second host is refused, a new host sees
//! what is protected, and a VM moves between hosts only deliberately (`protect --take-over`).
//!
//! # This host
//!
//! A host is named by a [`HostIdentity`] kept in `STATE/host.json`: a random id made the first
//! time the engine opens on the state directory, the machine's host name, and the directory.
//! Two state directories on one machine are two hosts.
//!
//! # Order of writes, and what a crash leaves
//!
//! `protect` writes the vault record first, then the catalog row. A crash between them leaves
//! the vault saying this host protects the VM (with the new policy) while the catalog does not
//! (yet) say so: another host is refused in the meantime (the safe side), and the next
//! `protect` here, or the next daemon start ([`Engine::reconcile_holdings`]), writes the record
//! again from what the catalog says. Stopping (retain data) writes the catalog first and the
//! record after when the vault answers; the daemon start mends a record that missed it. Delete
//! data writes the soft-delete marker, then the catalog, then removes the record (the marker
//! alone refuses every protector); purge removes it again, undelete records it stopped.
//!
//! # Taken over
//!
//! When another host took a VM over, this host's daemon finds it at start, and before each
//! scheduled backup of the VM: the local item is stopped (data retained) and the log says by
//! whom. `backup-now` is refused the same way.

use std::path::Path;

use blockvault_core::{HeldState, HostIdentity, ProtectionRecord, StateDir, VmName};
use blockvault_vault::Vault;
use jiff::Timestamp;

use super::{Engine, Vaults};
use crate::{Error, Policy, ProtectedItem, ProtectionState, Result};

/// This host's identity in `state`, made (and kept in `STATE/host.json`) when missing.
pub(super) fn identity(state: &StateDir) -> Result<HostIdentity> {
    let path = state.host_identity();
    if let Ok(bytes) = std::fs::read(&path)
        && let Ok(identity) = serde_json::from_slice::<HostIdentity>(&bytes)
    {
        return Ok(identity);
    }
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let root = std::path::absolute(state.root()).unwrap_or_else(|_| state.root().to_owned());
    let seed = format!(
        "{name}:{}:{}:{}",
        root.display(),
        std::process::id(),
        Timestamp::now().as_nanosecond()
    );
    let identity = HostIdentity {
        id: blake3::hash(seed.as_bytes()).to_hex()[..16].to_owned(),
        name,
        state_dir: root.display().to_string(),
    };
    write_atomically(
        &path,
        &serde_json::to_vec_pretty(&identity).unwrap_or_default(),
    )?;
    Ok(identity)
}

/// Writes `bytes` to `path` through a temporary file, synced and renamed.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let fail = |e| Error::lock(path, e);
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.as_file().sync_all().map_err(fail)?;
    file.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

/// What a VM's vault record says, seen from this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holding {
    /// No host holds it.
    Free,
    /// This host holds it.
    Mine(ProtectionRecord),
    /// Another host holds it.
    Theirs(ProtectionRecord),
}

impl Engine {
    /// This host's identity (`STATE/host.json`).
    pub fn identity(&self) -> &HostIdentity {
        &self.identity
    }

    /// Who holds `vm` in `vault`.
    pub async fn holding(&self, vault: &Vault, vm: &VmName) -> Result<Holding> {
        let record = vault
            .store()
            .protection(vm)
            .await
            .map_err(blockvault_vault::Error::from)?;
        Ok(match record {
            None => Holding::Free,
            Some(r) if r.held_by(&self.identity) => Holding::Mine(r),
            Some(r) => Holding::Theirs(r),
        })
    }

    /// Refuses when another host holds `vm` in `vault` ([`Error::HeldByAnotherHost`], naming
    /// it and since when).
    pub async fn check_holder(&self, vault: &Vault, vm: &VmName) -> Result<()> {
        match self.holding(vault, vm).await? {
            Holding::Theirs(record) => Err(held_by(&record)),
            _ => Ok(()),
        }
    }

    /// Records in `vault` that this host protects `item` with `policy`, as `item.state` says.
    /// `since` is kept from this host's earlier record; a record of another host is replaced
    /// only with `take_over` (the caller checked).
    pub(super) async fn hold(
        &self,
        vault: &Vault,
        item: &ProtectedItem,
        policy: &Policy,
    ) -> Result<ProtectionRecord> {
        let since = match self.holding(vault, &item.vm).await? {
            Holding::Mine(record) => record.since.min(item.since),
            _ => item.since,
        };
        let state = match item.state {
            ProtectionState::Stopped { stopped } => HeldState::Stopped { stopped },
            _ => HeldState::Protected,
        };
        let record = ProtectionRecord {
            vm: item.vm.clone(),
            host: self.identity.clone(),
            policy: policy.name.to_string(),
            policy_settings: policy.to_toml(),
            since,
            updated: self.now(),
            state,
        };
        vault
            .store()
            .put_protection(&record)
            .await
            .map_err(blockvault_vault::Error::from)?;
        Ok(record)
    }

    /// Removes `vm`'s record from `vault` if this host holds it.
    pub(super) async fn release(&self, vault: &Vault, vm: &VmName) -> Result<()> {
        if let Holding::Mine(_) = self.holding(vault, vm).await? {
            vault
                .store()
                .remove_protection(vm)
                .await
                .map_err(blockvault_vault::Error::from)?;
        }
        Ok(())
    }

    /// Makes `item`'s vault record agree with the catalog: written when missing or stale and
    /// this host holds it; when another host took the VM over, the local item is stopped (data
    /// retained) and the warning says by whom. Soft-deleted items are left alone.
    pub async fn reconcile_item(
        &self,
        vault: &Vault,
        item: &ProtectedItem,
    ) -> Result<Option<String>> {
        if matches!(item.state, ProtectionState::SoftDeleted { .. }) {
            return Ok(None);
        }
        match self.holding(vault, &item.vm).await? {
            Holding::Theirs(record) => {
                if let ProtectionState::Protected = item.state {
                    let (vm, now) = (item.vm.clone(), self.now());
                    self.db(move |c| {
                        c.set_protection_state(&vm, ProtectionState::Stopped { stopped: now })
                    })
                    .await?;
                    return Ok(Some(format!(
                        "{}: taken over by {} (since {}); its protection here is stopped \
                         (data retained), no backups run from this host",
                        item.vm,
                        record.host.describe(),
                        record.since
                    )));
                }
                Ok(None)
            }
            holding => {
                let name = item.policy.clone();
                let policy = self.db(move |c| c.policy(&name)).await?;
                let stale = match &holding {
                    Holding::Mine(r) => {
                        r.policy != policy.name.to_string()
                            || r.policy_settings != policy.to_toml()
                            || matches!(r.state, HeldState::Protected) != item.is_protected()
                    }
                    _ => true,
                };
                if stale {
                    self.hold(vault, item, &policy).await?;
                }
                Ok(None)
            }
        }
    }

    /// [`Engine::reconcile_item`] for every item of the catalog, each in its vault (opened
    /// with `vaults`; one that does not open is left for the next time): what the daemon runs
    /// when it starts. Returns what to warn about.
    pub async fn reconcile_holdings(&self, vaults: &dyn Vaults) -> Result<Vec<String>> {
        let mut warnings = Vec::new();
        for item in self.db(|c| c.protected_items()).await? {
            if matches!(item.state, ProtectionState::SoftDeleted { .. }) {
                continue;
            }
            let vault = match vaults.open(&item.vault).await {
                Ok(vault) => vault,
                Err(_) => continue,
            };
            match self.reconcile_item(&vault, &item).await {
                Ok(Some(warning)) => warnings.push(warning),
                Ok(None) => {}
                Err(e) => warnings.push(format!(
                    "{}: the protection record in {} could not be checked: {e}",
                    item.vm, item.vault
                )),
            }
        }
        Ok(warnings)
    }
}

/// The refusal of a VM held by the host `record` names.
pub(super) fn held_by(record: &ProtectionRecord) -> Error {
    Error::HeldByAnotherHost {
        vm: record.vm.clone(),
        holder: record.host.describe(),
        since: record.since,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_dir_keeps_its_identity_and_another_gets_its_own() {
        let dir = tempfile::tempdir().expect("dir");
        let (a, b) = (
            StateDir::new(dir.path().join("a")),
            StateDir::new(dir.path().join("b")),
        );
        std::fs::create_dir_all(a.root()).expect("a");
        std::fs::create_dir_all(b.root()).expect("b");
        let first = identity(&a).expect("made");
        assert_eq!(first.id.len(), 16);
        assert!(first.state_dir.ends_with("/a"), "{first:?}");
        assert_eq!(identity(&a).expect("kept"), first);
        assert_ne!(identity(&b).expect("other").id, first.id);
    }
}
