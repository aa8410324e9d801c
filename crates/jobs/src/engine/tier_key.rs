//! The key of a backup's snapshot tier: the tier of a VM is encoded with its vault's codec,
//! so the Transfer copies bytes (see the snapshot crate's `keys.rs`).
//!
//! The Snapshot learns the vault's key without waiting for it: from the vault when it is open
//! already (a directory vault), else from what this host saw of it last (a memo written each
//! time a job opens the vault). A tier under another key is started fresh, its points dropped
//! from the catalog's snapshot tier with a warning naming them (their vault copies stay). A
//! first backup of a VM to an encrypted S3 vault this host never opened makes a plain tier;
//! its Transfer then refuses to copy ([`mismatch`]) and the next backup starts the tier
//! afresh under the vault's key.

use blockvault_core::VmName;
use blockvault_repo::Repository;
use blockvault_snapshot::TierKey;
use blockvault_vault::Vault;

use super::Engine;
use crate::events::Warnings;
use crate::{Result, Tier};

impl Engine {
    /// The VM's snapshot tier for the Snapshot of `run` (its snapshot lock held), under the
    /// key of the job's vault when that is known.
    pub(super) async fn open_tier(
        &self,
        run: &super::backup::Run<'_>,
        warnings: &mut Warnings,
    ) -> Result<Repository> {
        let vm = &run.spec.vm;
        let key = match &*run.seen.borrow() {
            Some(Ok(vault)) => Some(TierKey::of(vault.config())),
            _ => None,
        };
        let key = key.or_else(|| self.snapshots.remembered(run.location));
        let opened = self.snapshots.open_for(vm, key.as_ref()).await?;
        if let Some(was) = opened.restarted_from {
            let dropped = self.drop_snapshot_points(vm).await?;
            let now = match key.as_ref().and_then(|k| k.encryption.as_ref()) {
                Some(e) => format!("key {}", e.key_id),
                None => "no key (plain)".to_owned(),
            };
            let named = if dropped.is_empty() {
                "no points".to_owned()
            } else {
                format!("its point(s) {}", dropped.join(", "))
            };
            warnings.push(format!(
                "the snapshot tier of {vm} was under {was} and its vault {} is under {now}: \
                 it was started fresh, dropping {named} from this host (copies already \
                 transferred to a vault stay there)",
                run.location
            ));
        }
        Ok(opened.repository)
    }

    /// Forgets the snapshot-tier copies of `vm`'s points (the tier was started fresh); their
    /// ids.
    async fn drop_snapshot_points(&self, vm: &VmName) -> Result<Vec<String>> {
        let owned = vm.clone();
        self.db(move |c| {
            let mut dropped = Vec::new();
            for point in c.points(&owned)? {
                if point.tiers.has(Tier::Snapshot) {
                    c.remove_point_tier(&owned, &point.id, Tier::Snapshot)?;
                    dropped.push(point.id.to_string());
                }
            }
            Ok(dropped)
        })
        .await
    }
}

/// Why the Transfer of `vm` cannot copy from `tier` to `vault`: their keys differ.
pub(super) fn mismatch(vm: &VmName, tier: &Repository, vault: &Vault) -> String {
    let key = |k: Option<&str>| match k {
        Some(id) => format!("key {id}"),
        None => "no key (plain)".to_owned(),
    };
    format!(
        "the snapshot tier of {vm} is under {} and the vault {} under {}, so its points cannot \
         be copied there; the point stays in the snapshot tier, and the next backup starts the \
         tier afresh under the vault's key",
        key(tier.codec().key_id()),
        vault.store().location(),
        key(vault.store().codec().key_id())
    )
}
