//! Stopping protection, soft delete, undelete and purge (SPEC "Protection lifecycle").
//!
//! - **Retain data**: the item becomes [`ProtectionState::Stopped`]. No backups are scheduled
//!   and every point stays where it is, in the vault and in the snapshot tier: the daemon
//!   leaves a stopped VM alone (no snapshot expiry either) and retention must not expire its
//!   points ([`ProtectedItem::is_protected`] says whether protection is on). `protect` in the
//!   same vault resumes it.
//! - **Delete data**: a `Delete backup data` job writes the vault's soft-delete marker
//!   (`deleted/<vm>`, so any host reading the vault sees it), marks the item
//!   [`ProtectionState::SoftDeleted`], and removes the VM's points from the local snapshot tier
//!   at once: they are this host's instant-restore copies of the vault points, not the backup
//!   data itself, and a soft-deleted point must not be restorable. The vault points stay for
//!   [`SOFT_DELETE_DAYS`](blockvault_core::SOFT_DELETE_DAYS) days: listed as soft-deleted, refused by restore, and brought back
//!   by [`Engine::undelete`] (the item is then stopped with data retained).
//! - **Purge**: once the period is over, [`Engine::purge`] (run by the daemon) deletes the
//!   VM's vault points (each record first, then its maps: [`Store::delete_point`]), then the
//!   marker, then the catalog item, in another `Delete backup data` job. Their chunks become
//!   garbage for the collector; nothing here deletes a chunk. Each step can run again, so a
//!   purge cut short is finished by the next one.
//!
//! [`Store::delete_point`]: blockvault_store::Store::delete_point

use blockvault_core::{PointId, SoftDeleteMarker, VmName};
use blockvault_vault::Vault;
use serde::Serialize;

use super::{Engine, VaultUnavailable};
use crate::{Error, Job, Operation, ProtectedItem, ProtectionState, Result, Tier, Vaults};

/// What happens to a VM's backup data when its protection stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopMode {
    /// Keep every point until protection resumes or the data is deleted.
    RetainData,
    /// Soft-delete the points: purged after [`SOFT_DELETE_DAYS`](blockvault_core::SOFT_DELETE_DAYS) days unless undeleted.
    DeleteData,
}

/// How a stop-protection request ended.
#[derive(Debug)]
pub struct StopOutcome {
    /// The item as it now stands.
    pub item: ProtectedItem,
    /// The `Delete backup data` job (delete data only).
    pub job: Option<Job>,
    /// The snapshot-tier points removed (delete data only).
    pub snapshot_points_removed: Vec<PointId>,
    /// Why the job failed, when it did (the data may be soft-deleted all the same: `item`
    /// says).
    pub failure: Option<Error>,
}

/// What a purge deleted.
#[derive(Debug)]
pub struct PurgeOutcome {
    pub vm: VmName,
    /// The `Delete backup data` job of the purge.
    pub job: Job,
    /// The vault points deleted (none when the job failed before deleting any): all of the
    /// VM's, or its forgotten points due ([`Engine::purge_forgotten`]).
    pub points_deleted: Vec<PointId>,
    /// Why the job failed, when it did (the item stays soft-deleted; the next purge retries).
    pub failure: Option<Error>,
}

impl Engine {
    /// Stops the protection of `vm`. [`StopMode::RetainData`] only stops scheduling (no job;
    /// stopping a stopped VM again changes nothing): every point stays, in the vault and the
    /// snapshot tier, until protection resumes or the data is deleted.
    /// [`StopMode::DeleteData`] runs a `Delete backup data` job, which needs `vault` (the
    /// item's vault) to be reachable: it writes the vault's soft-delete marker (every reader of
    /// the vault then sees the points deleted), marks the item soft-deleted, and removes the
    /// VM's snapshot-tier points at once (they are this host's instant-restore copies of the
    /// vault points, and a soft-deleted point must not restore). The vault points stay until
    /// [`Engine::undelete`] or [`Engine::purge`].
    ///
    /// Refused: a VM that is not protected ([`Error::NotProtected`]); data already
    /// soft-deleted ([`Error::SoftDeleted`]); deleting data while a backup job of the VM runs
    /// ([`Error::DeleteWhileBackup`]).
    pub async fn stop_protection(
        &self,
        vault: std::result::Result<&Vault, &VaultUnavailable>,
        vm: &VmName,
        mode: StopMode,
    ) -> Result<StopOutcome> {
        let item = self
            .protected_item(vm)
            .await?
            .ok_or_else(|| Error::NotProtected { vm: vm.clone() })?;
        let stopped = match item.state {
            ProtectionState::SoftDeleted { purge_after, .. } => {
                return Err(Error::SoftDeleted {
                    vm: vm.clone(),
                    vault: item.vault,
                    purge_after,
                });
            }
            ProtectionState::Stopped { stopped } => stopped,
            ProtectionState::Protected => self.now(),
        };
        if mode == StopMode::RetainData {
            self.set_protection_state(vm, ProtectionState::Stopped { stopped })
                .await?;
            // The vault's record says stopped, still held by this host (see `holder.rs`); a
            // vault that does not answer now gets it at the next daemon start.
            if let Ok(vault) = vault {
                let item = self.item(vm).await?;
                self.reconcile_item(vault, &item).await?;
            }
            return Ok(StopOutcome {
                item: self.item(vm).await?,
                job: None,
                snapshot_points_removed: Vec::new(),
                failure: None,
            });
        }
        let unfinished = self.db(|c| c.unfinished_jobs()).await?;
        let backing_up = unfinished.into_iter().find(|j| {
            j.vm == *vm
                && matches!(
                    j.operation,
                    Operation::Backup
                        | Operation::BackupOnDemand
                        | Operation::ConfigureBackupMigrate
                )
        });
        if let Some(job) = backing_up {
            return Err(Error::DeleteWhileBackup {
                vm: vm.clone(),
                job: job.id,
            });
        }

        let (job, job_lock) = self.begin_job(vm, Operation::DeleteBackupData, &[]).await?;
        let deleted = self.now();
        let soft_delete = async {
            let vault = vault.map_err(unreachable)?;
            let marker = SoftDeleteMarker::new(vm.clone(), deleted);
            // The vault first: from here on every reader of the vault sees the data deleted.
            vault
                .store()
                .put_soft_delete(&marker)
                .await
                .map_err(blockvault_vault::Error::from)?;
            self.set_protection_state(vm, ProtectionState::soft_deleted(stopped, deleted))
                .await?;
            // The marker refuses every protector from now on: the record goes.
            self.release(vault, vm).await
        };
        if let Err(error) = soft_delete.await {
            self.fail_job(&job, &error.to_string()).await?;
            job_lock.remove();
            return Err(error);
        }
        let (removed, failure) = match self.remove_snapshot_points(vm).await {
            Ok(removed) => {
                self.finish_job(&job, None).await?;
                (removed, None)
            }
            Err(error) => {
                let message = format!(
                    "the backup data of {vm} is soft-deleted, but its snapshot-tier points \
                     could not be removed ({error}); the purge removes them"
                );
                self.fail_job(&job, &message).await?;
                (Vec::new(), Some(error))
            }
        };
        job_lock.remove();
        let id = job.id;
        Ok(StopOutcome {
            item: self.item(vm).await?,
            job: Some(self.db(move |c| c.job(id)).await?),
            snapshot_points_removed: removed,
            failure,
        })
    }

    /// Brings back the soft-deleted data of `vm` before its purge: the vault's marker is
    /// removed and the item is stopped with data retained (`protect` resumes it). Needs the
    /// item's vault. Refused: nothing soft-deleted ([`Error::NotSoftDeleted`], also after the
    /// purge), or the period over ([`Error::SoftDeletePeriodOver`]).
    pub async fn undelete(
        &self,
        vault: std::result::Result<&Vault, &VaultUnavailable>,
        vm: &VmName,
    ) -> Result<ProtectedItem> {
        let not_deleted = || Error::NotSoftDeleted { vm: vm.clone() };
        let item = self.protected_item(vm).await?.ok_or_else(not_deleted)?;
        let ProtectionState::SoftDeleted {
            stopped,
            purge_after,
            ..
        } = item.state
        else {
            return Err(not_deleted());
        };
        if self.now() >= purge_after {
            return Err(Error::SoftDeletePeriodOver {
                vm: vm.clone(),
                purge_after,
            });
        }
        let vault = vault.map_err(unreachable)?;
        vault
            .store()
            .remove_soft_delete(vm)
            .await
            .map_err(blockvault_vault::Error::from)?;
        self.set_protection_state(vm, ProtectionState::Stopped { stopped })
            .await?;
        let item = self.item(vm).await?;
        self.reconcile_item(vault, &item).await?;
        Ok(item)
    }

    /// Purges the soft-deleted data of `vm` from `vault` (the item's vault) once its
    /// soft-delete period is over, as a `Delete backup data` job: every vault point (record,
    /// then maps), maps no point names, what is left in the snapshot tier, then the marker,
    /// then the catalog item. Refused: nothing soft-deleted ([`Error::NotSoftDeleted`]), or
    /// the period not over ([`Error::PurgeNotDue`]). A failure fails the job and leaves the
    /// item soft-deleted, so the next purge finishes the work.
    pub async fn purge(&self, vault: &Vault, vm: &VmName) -> Result<PurgeOutcome> {
        let item = self
            .protected_item(vm)
            .await?
            .ok_or_else(|| Error::NotSoftDeleted { vm: vm.clone() })?;
        let Some(purge_after) = item.state.purge_after() else {
            return Err(Error::NotSoftDeleted { vm: vm.clone() });
        };
        if self.now() < purge_after {
            return Err(Error::PurgeNotDue {
                vm: vm.clone(),
                purge_after,
            });
        }
        let (job, job_lock) = self.begin_job(vm, Operation::DeleteBackupData, &[]).await?;
        let mut deleted = Vec::new();
        let purged = self.purge_data(vault, vm, &mut deleted).await;
        let failure = match purged {
            Ok(()) => {
                self.finish_job(&job, None).await?;
                None
            }
            Err(error) => {
                self.fail_job(&job, &error.to_string()).await?;
                Some(error)
            }
        };
        job_lock.remove();
        let id = job.id;
        Ok(PurgeOutcome {
            vm: vm.clone(),
            job: self.db(move |c| c.job(id)).await?,
            points_deleted: deleted,
            failure,
        })
    }

    /// Purges every soft-deleted item whose period is over, each from its vault (opened with
    /// `vaults`): what the daemon runs at each wake. One result per item due.
    pub async fn purge_due(
        &self,
        vaults: &dyn Vaults,
    ) -> Result<Vec<(VmName, Result<PurgeOutcome>)>> {
        let now = self.now();
        let mut done = Vec::new();
        for item in self.db(|c| c.protected_items()).await? {
            if item.state.purge_after().is_none_or(|after| now < after) {
                continue;
            }
            let purged = match vaults.open(&item.vault).await {
                Ok(vault) => self.purge(&vault, &item.vm).await,
                Err(unavailable) => Err(unreachable(&unavailable)),
            };
            done.push((item.vm, purged));
        }
        Ok(done)
    }

    /// Whether the points of `vm` are soft-deleted: by this host's catalog, else by the marker
    /// in `vault` (another host may have deleted them). The marker says when they go.
    pub async fn soft_deleted(
        &self,
        vault: Option<&Vault>,
        vm: &VmName,
    ) -> Result<Option<(String, SoftDeleteMarker)>> {
        if let Some(item) = self.protected_item(vm).await?
            && let ProtectionState::SoftDeleted {
                deleted,
                purge_after,
                ..
            } = item.state
        {
            let marker = SoftDeleteMarker {
                vm: vm.clone(),
                deleted,
                purge_after,
            };
            return Ok(Some((item.vault, marker)));
        }
        let Some(vault) = vault else {
            return Ok(None);
        };
        let marker = vault
            .store()
            .soft_delete(vm)
            .await
            .map_err(blockvault_vault::Error::from)?;
        Ok(marker.map(|m| (vault.store().location().to_owned(), m)))
    }

    /// [`Error::SoftDeleted`] when the points of `vm` are soft-deleted (restore refuses them:
    /// undelete first).
    pub(super) async fn refuse_soft_deleted(
        &self,
        vault: Option<&Vault>,
        vm: &VmName,
    ) -> Result<()> {
        match self.soft_deleted(vault, vm).await? {
            Some((vault, marker)) => Err(Error::SoftDeleted {
                vm: vm.clone(),
                vault,
                purge_after: marker.purge_after,
            }),
            None => Ok(()),
        }
    }

    async fn item(&self, vm: &VmName) -> Result<ProtectedItem> {
        self.protected_item(vm)
            .await?
            .ok_or_else(|| Error::NotProtected { vm: vm.clone() })
    }

    async fn protected_item(&self, vm: &VmName) -> Result<Option<ProtectedItem>> {
        let vm = vm.clone();
        self.db(move |c| c.protected_item(&vm)).await
    }

    async fn set_protection_state(&self, vm: &VmName, state: ProtectionState) -> Result<()> {
        let vm = vm.clone();
        self.db(move |c| c.set_protection_state(&vm, state)).await
    }

    async fn remove_point_tiers(&self, vm: &VmName, ids: &[PointId], tier: Tier) -> Result<()> {
        let (vm, ids) = (vm.clone(), ids.to_vec());
        self.db(move |c| {
            for id in &ids {
                c.remove_point_tier(&vm, id, tier)?;
            }
            Ok(())
        })
        .await
    }

    /// Removes every snapshot-tier point of `vm` (and the chunks only they named), under the
    /// VM's exclusive snapshot lock; the ids removed.
    async fn remove_snapshot_points(&self, vm: &VmName) -> Result<Vec<PointId>> {
        let _held = self.lock_snapshots(vm, true).await?;
        let ids: Vec<PointId> = self
            .snapshots
            .points(vm)
            .await?
            .into_iter()
            .map(|p| p.id)
            .collect();
        if !ids.is_empty() {
            self.snapshots.expire(vm, &ids).await?;
        }
        self.remove_point_tiers(vm, &ids, Tier::Snapshot).await?;
        Ok(ids)
    }

    /// The work of a purge; `deleted` collects the vault points deleted as it goes.
    async fn purge_data(
        &self,
        vault: &Vault,
        vm: &VmName,
        deleted: &mut Vec<PointId>,
    ) -> Result<()> {
        let store = vault.store();
        let store_error = |e| Error::from(blockvault_vault::Error::from(e));
        // The secondary's too: a commit cut short there must not come back after the purge.
        for id in store
            .list_point_ids_everywhere(vm)
            .await
            .map_err(store_error)?
        {
            store.delete_point(vm, &id).await.map_err(store_error)?;
            self.remove_point_tiers(vm, std::slice::from_ref(&id), Tier::Vault)
                .await?;
            deleted.push(id);
        }
        // Maps of backups that never committed.
        for id in store.list_map_point_ids(vm).await.map_err(store_error)? {
            store.delete_maps(vm, &id).await.map_err(store_error)?;
        }
        self.remove_snapshot_points(vm).await?;
        self.release(vault, vm).await?;
        store.remove_soft_delete(vm).await.map_err(store_error)?;
        let vm = vm.clone();
        self.db(move |c| {
            c.sync_tier(&vm, Tier::Vault, &[])?;
            c.remove_protected_item(&vm).map(|_| ())
        })
        .await
    }
}

fn unreachable(unavailable: &VaultUnavailable) -> Error {
    Error::VaultUnreachable {
        location: unavailable.location.clone(),
        reason: unavailable.reason.clone(),
    }
}
