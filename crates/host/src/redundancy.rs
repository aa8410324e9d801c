//! A vault's redundancy: chosen when it is created, changed only while it holds no backup
//! items; a lost secondary replaced or resynced, a replica promoted when the primary is lost.

use blockvault_core::VmName;
use blockvault_jobs::{Policy, ProtectedItem};
use blockvault_store::{ResyncOptions, VaultLocation};
use blockvault_vault::{Progress, SecondaryReplaced, Vault};

use crate::{Error, Host, Result, canonical};

/// Single or replicated, as asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedundancyKind {
    Single,
    Replicated,
}

/// The secondary a redundancy and a secondary location ask for: replicated needs a secondary,
/// a secondary needs replicated, and it must be another place than the vault, neither inside
/// it nor around it.
pub fn secondary_for(
    location: &VaultLocation,
    redundancy: Option<RedundancyKind>,
    secondary: Option<VaultLocation>,
) -> Result<Option<VaultLocation>> {
    match (redundancy, secondary) {
        (None | Some(RedundancyKind::Single), None) => Ok(None),
        (Some(RedundancyKind::Replicated), None) => Err(Error::Usage(
            "--redundancy replicated needs --secondary DIR|s3://BUCKET/PREFIX: the store every \
             object is also written to"
                .into(),
        )),
        (None | Some(RedundancyKind::Single), Some(secondary)) => Err(Error::Usage(format!(
            "--secondary {secondary} is only for --redundancy replicated (a single vault has \
             one store)"
        ))),
        (Some(RedundancyKind::Replicated), Some(secondary)) => {
            let (a, b) = (canonical(location), canonical(&secondary));
            let nested = match (&a, &b) {
                (VaultLocation::Local(a), VaultLocation::Local(b)) => {
                    a.starts_with(b) || b.starts_with(a)
                }
                _ => a == b,
            };
            if nested {
                return Err(Error::Usage(format!(
                    "--secondary {secondary} must be another place than the vault {location}, \
                     neither inside it nor around it"
                )));
            }
            Ok(Some(secondary))
        }
    }
}

/// A secondary replaced or resynced (see [`Host::replace_secondary`]).
#[derive(Debug)]
pub struct Replaced {
    /// The vault's location, canonical.
    pub location: VaultLocation,
    /// The vault as it was before.
    pub before: Vault,
    pub done: SecondaryReplaced,
}

/// A replica promoted to be the vault (see [`Host::promote`]).
#[derive(Debug)]
pub struct Promoted {
    /// The replica's location, canonical: the vault's location from now on.
    pub location: VaultLocation,
    pub vault: Vault,
    /// Where the primary was, as the replica's config recorded it.
    pub previous_primary: Option<VaultLocation>,
    /// This host's protected VMs moved to the promoted vault.
    pub moved: Vec<String>,
    pub warnings: Vec<String>,
}

impl Host {
    /// A new vault at `location` with the redundancy asked for. Every vault starts with the
    /// default policy (a new catalog already has it; this brings it back if it was deleted).
    pub async fn create_vault(
        &self,
        location: &VaultLocation,
        redundancy: Option<RedundancyKind>,
        secondary: Option<VaultLocation>,
    ) -> Result<Vault> {
        let secondary = secondary_for(location, redundancy, secondary)?;
        let vault = self.init_vault(location, secondary.as_ref()).await?;
        self.catalog()
            .await?
            .call(|c| c.ensure_policy(&Policy::default_policy(), jiff::Timestamp::now()))
            .await?;
        Ok(vault)
    }

    /// Makes the vault at `location` single or replicated to `secondary`: the vault, and
    /// whether it changed (it may be so already). Refused while the vault holds backup items:
    /// VMs with points, or VMs this host protects with it.
    pub async fn set_redundancy(
        &self,
        location: &VaultLocation,
        redundancy: RedundancyKind,
        secondary: Option<VaultLocation>,
    ) -> Result<(Vault, bool)> {
        let secondary = secondary_for(location, Some(redundancy), secondary)?;
        let vault = self.vault(location).await?;
        let wanted = secondary.as_ref().map(|s| canonical(s).to_string());
        if vault.config().redundancy.secondary() == wanted.as_deref() {
            return Ok((vault, false));
        }
        self.refuse_if_protected(location, &vault).await?;
        let new_secondary = match &secondary {
            Some(secondary) => Some(self.new_store(secondary).await?),
            None => None,
        };
        Ok((vault.set_redundancy(new_secondary).await?, true))
    }

    /// Refuses when this host's catalog has VMs protected by the vault (backup items before
    /// their first backup), with the same error the vault gives for VMs with points.
    async fn refuse_if_protected(&self, location: &VaultLocation, vault: &Vault) -> Result<()> {
        let canonical = canonical(location).to_string();
        let mut vms: Vec<VmName> = self
            .catalog()
            .await?
            .call(|c| c.protected_items())
            .await?
            .into_iter()
            .filter(|item| item.vault == canonical)
            .map(|item| item.vm)
            .collect();
        if vms.is_empty() {
            return Ok(());
        }
        vms.sort();
        Err(blockvault_vault::Error::RedundancyFixed {
            location: location.to_string(),
            redundancy: vault.config().redundancy.clone(),
            vms,
        }
        .into())
    }

    /// Gives the vault at `location` the secondary `secondary` (new, empty, or this vault's
    /// replica to resume or mend), copying what the primary holds.
    pub async fn replace_secondary(
        &self,
        location: &VaultLocation,
        secondary: &VaultLocation,
        concurrency: Option<u16>,
        progress: &dyn Progress,
    ) -> Result<Replaced> {
        secondary_for(
            location,
            Some(RedundancyKind::Replicated),
            Some(secondary.clone()),
        )?;
        let location = canonical(location);
        let before = self.vault(&location).await?;
        let target = self.new_store(secondary).await?;
        let options = ResyncOptions {
            concurrency: crate::write_options(secondary, concurrency).concurrency,
        };
        let done = before.replace_secondary(target, options, progress).await?;
        Ok(Replaced {
            location,
            before,
            done,
        })
    }

    /// A replacement of the vault's secondary by the secondary it already has.
    pub async fn resync_secondary(
        &self,
        location: &VaultLocation,
        concurrency: Option<u16>,
        progress: &dyn Progress,
    ) -> Result<Replaced> {
        let vault = self.vault(&canonical(location)).await?;
        let Some(secondary) = vault.config().redundancy.secondary() else {
            return Err(Error::Usage(format!(
                "vault {} at {location} is single: it has no secondary to resync (give it one \
                 with `blockvault vault replace-secondary --vault {location} NEW_SECONDARY`)",
                vault.config().id
            )));
        };
        let secondary: VaultLocation = secondary.parse()?;
        self.replace_secondary(location, &secondary, concurrency, progress)
            .await
    }

    /// Promotes the replica at `location` to be the vault itself, refused while its primary
    /// still holds the vault (unless `force`); this host's protected items move to it.
    pub async fn promote(&self, location: &VaultLocation, force: bool) -> Result<Promoted> {
        let location = canonical(location);
        let replica = self.existing_store(&location).await?;
        let config = replica.config().await?;
        // The replica holds the vault's key (its config's copy): unlocked before anything
        // changes, so a wrong passphrase promotes nothing.
        let replica = crate::vaults::keyed(replica, &config, self.keyring())?;
        // The primary, if it still answers: promotion is refused while it holds the vault.
        let previous_primary = config
            .replica_of
            .as_ref()
            .and_then(|of| of.primary.parse::<VaultLocation>().ok());
        let primary = match &previous_primary {
            Some(at) if canonical(at) != location => self.existing_store(at).await.ok(),
            _ => None,
        };
        let vault = Vault::promote(replica, primary, force).await?;
        let (moved, warnings) = match &previous_primary {
            Some(old) => self.move_protections(old, &location).await?,
            None => (Vec::new(), Vec::new()),
        };
        Ok(Promoted {
            location,
            vault,
            previous_primary,
            moved,
            warnings,
        })
    }

    /// Moves this host's protected items from the vault at `old` to `new` (same id,
    /// promoted): the VMs moved, and warnings for those that could not be.
    async fn move_protections(
        &self,
        old: &VaultLocation,
        new: &VaultLocation,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let (old_raw, old_canonical) = (old.to_string(), canonical(old).to_string());
        let new = new.clone();
        let moved = self
            .catalog()
            .await?
            .call(move |catalog| {
                let mut moved = Vec::new();
                let mut warnings = Vec::new();
                for item in catalog.protected_items()? {
                    if item.vault != old_raw && item.vault != old_canonical {
                        continue;
                    }
                    if item.state.purge_after().is_some() {
                        warnings.push(format!(
                    "VM {} has soft-deleted data recorded in the old primary {}: undelete it \
                     (`blockvault undelete --vm {}`) and protect it again with --vault {new}",
                    item.vm, item.vault, item.vm
                ));
                        continue;
                    }
                    let vm = item.vm.to_string();
                    catalog.protect(&ProtectedItem {
                        vault: new.to_string(),
                        ..item
                    })?;
                    moved.push(vm);
                }
                Ok((moved, warnings))
            })
            .await?;
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secondary_comes_with_replicated_and_elsewhere() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vault = VaultLocation::Local(dir.path().join("v"));
        let beside = VaultLocation::Local(dir.path().join("r"));
        let inside = VaultLocation::Local(dir.path().join("v/r"));
        let kind = |r: Result<Option<VaultLocation>>| r.map_err(|e| e.kind());
        assert!(matches!(kind(secondary_for(&vault, None, None)), Ok(None)));
        assert!(matches!(
            kind(secondary_for(
                &vault,
                Some(RedundancyKind::Replicated),
                Some(beside.clone())
            )),
            Ok(Some(_))
        ));
        let usage = Err(blockvault_core::ErrorKind::Usage);
        assert_eq!(
            kind(secondary_for(
                &vault,
                Some(RedundancyKind::Replicated),
                None
            ))
            .map(|_| ()),
            usage
        );
        assert_eq!(
            kind(secondary_for(&vault, None, Some(beside))).map(|_| ()),
            usage
        );
        assert_eq!(
            kind(secondary_for(
                &vault,
                Some(RedundancyKind::Replicated),
                Some(inside)
            ))
            .map(|_| ()),
            usage
        );
    }
}
