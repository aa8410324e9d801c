//! The protection lifecycle (SPEC "Protection lifecycle"): protecting a VM with a vault and a
//! policy, moving it to another policy (a migration when it goes from Standard to Enhanced),
//! and on-demand backups of protected VMs.

use std::path::PathBuf;
use std::sync::Arc;

use blockvault_core::{DiskFormat, VmName};
use blockvault_vault::{Progress, TransferOptions, Vault};
use jiff::{SignedDuration, Timestamp};

use super::holder::{Holding, held_by};
use super::{
    BackupOutcome, BackupSpec, CaptureMode, CaptureOptions, DoomedPoint, Engine, Hooks,
    VaultUnavailable,
};
use crate::{
    Error, Job, JobStatus, Operation, Policy, PolicyName, PolicyType, ProtectedItem,
    ProtectionState, Result,
};

/// Longest an on-demand backup's `retain until` may reach (Azure: 99 years).
const MAX_RETAIN_YEARS: i64 = 99;

/// A VM to protect: its disks, the vault and the policy.
#[derive(Clone, Debug)]
pub struct ProtectRequest {
    pub vm: VmName,
    /// The vault location as the user gave it (never with credentials).
    pub vault: String,
    pub disks: Vec<PathBuf>,
    pub policy: PolicyName,
    pub hooks: Hooks,
    /// How its backups capture the disks.
    pub capture: CaptureMode,
    /// The format of its disks, when said outright (`--disk-format`); `None`: by the headers.
    pub disk_format: Option<DiskFormat>,
    /// The QEMU monitor of the running VM (`--qmp`), when its disks are fixed by fleecing.
    pub qmp: Option<PathBuf>,
    /// Whether to take the VM over from another host that holds it in the vault
    /// (`--take-over`); without it, a VM another host holds is refused.
    pub take_over: bool,
}

/// How a protect request ended.
#[derive(Debug)]
pub struct ProtectOutcome {
    /// The `Configure backup` job, or the `Configure backup (Migrate policy)` job for a
    /// migration.
    pub job: Job,
    /// The protection as it now stands (none when the job failed before writing it).
    pub item: Option<ProtectedItem>,
    /// A migration's backup.
    pub backup: Option<BackupOutcome>,
    /// Why the job failed, when it did.
    pub failure: Option<Error>,
    /// With a QEMU monitor: each disk as a backup will read it, and the changed-block
    /// tracking it gets.
    pub checks: Vec<String>,
    /// The VM's vault points that the policy's retention removes at the next prune, oldest
    /// first.
    pub doomed: Vec<DoomedPoint>,
    /// The host this one took the VM over from (`take_over`), when another held it.
    pub taken_from: Option<blockvault_core::ProtectionRecord>,
}

/// What a protect request does to a VM's protection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// Not protected yet, or protected with a policy of the same type.
    Configure,
    /// Standard -> Enhanced.
    Migrate,
}

impl Engine {
    /// Protects `request.vm` with `request.policy` in `request.vault`, or changes the disks,
    /// hooks or policy of a VM already protected there.
    ///
    /// Refused before anything is written: a vault that cannot be opened (access is checked
    /// now, not at the first backup); an unknown policy; a VM another host holds in the vault
    /// ([`Error::HeldByAnotherHost`], naming it and since when) unless `request.take_over`;
    /// a VM protected by another vault (a VM is protected by one vault only); a VM whose data is soft-deleted, here or in another
    /// vault (see [`Catalog::protection_in`](crate::Catalog::protection_in); `undelete`
    /// first); an Enhanced VM moving to a Standard policy (migration is irreversible); a
    /// Standard VM moving to Enhanced while a backup job of it is in progress (the error names
    /// the job).
    ///
    /// A VM whose protection is stopped (data retained) in this vault resumes: its schedule
    /// starts now. One stopped in another vault is protected here afresh.
    ///
    /// Otherwise a `Configure backup` job checks every disk (it exists and is a readable disk
    /// image) and records the protection; the first backup runs at the next scheduled time
    /// (or with `backup now`). A move from Standard to Enhanced is a `Configure backup (Migrate
    /// policy)` job instead: a backup job (Snapshot, Transfer) whose success switches the VM to
    /// the Enhanced policy. Existing points are kept either way; the outcome lists those the
    /// policy's retention removes at the next prune ([`ProtectOutcome::doomed`]).
    ///
    /// The protection is recorded in the vault (`protection/<vm>`, this host as the holder)
    /// before the catalog: see `holder.rs` for the order and what a crash leaves.
    pub async fn protect(
        &self,
        vault: std::result::Result<&Vault, &VaultUnavailable>,
        request: &ProtectRequest,
        options: TransferOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<ProtectOutcome> {
        let vault = vault.map_err(|unavailable| Error::VaultUnreachable {
            location: unavailable.location.clone(),
            reason: unavailable.reason.clone(),
        })?;
        let (name, vm, at) = (
            request.policy.clone(),
            request.vm.clone(),
            request.vault.clone(),
        );
        let (policy, existing) = self
            .db(move |c| Ok((c.policy(&name)?, c.protection_in(&vm, &at)?)))
            .await?;
        // Soft-deleted in this vault by another host (this catalog may not know): the vault
        // says so.
        if let Some(marker) = vault
            .store()
            .soft_delete(&request.vm)
            .await
            .map_err(blockvault_vault::Error::from)?
        {
            return Err(Error::SoftDeleted {
                vm: request.vm.clone(),
                vault: request.vault.clone(),
                purge_after: marker.purge_after,
            });
        }
        let taken_from = match self.holding(vault, &request.vm).await? {
            Holding::Theirs(record) if !request.take_over => return Err(held_by(&record)),
            Holding::Theirs(record) => Some(record),
            _ => None,
        };
        let change = self
            .check_change(request, &policy, existing.as_ref())
            .await?;
        let points = vault
            .store()
            .list_points(&request.vm)
            .await
            .map_err(blockvault_vault::Error::from)?
            .points;
        let doomed = super::doomed::doomed(&points, &policy, self.now());
        let disks: Vec<PathBuf> = request
            .disks
            .iter()
            .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.clone()))
            .collect();
        let item = ProtectedItem {
            vm: request.vm.clone(),
            vault: request.vault.clone(),
            disks: disks.clone(),
            policy: policy.name.clone(),
            hooks: request.hooks.clone(),
            capture: request.capture,
            disk_format: request.disk_format,
            qmp: request.qmp.clone(),
            since: existing.as_ref().map_or_else(|| self.now(), |e| e.since),
            // A new policy's schedule starts now: its earlier slots were never planned. So does
            // a stopped VM's when protection resumes: no catch-up of the slots it was stopped.
            handled: match &existing {
                Some(e) if e.policy != policy.name || !e.is_protected() => {
                    Some(e.handled.unwrap_or(e.since).max(self.now()))
                }
                Some(e) => e.handled,
                None => None,
            },
            state: ProtectionState::Protected,
        };
        if change == Change::Migrate {
            let mut outcome = self
                .migrate(vault, item, &policy, options, progress)
                .await?;
            outcome.doomed = doomed;
            outcome.taken_from = taken_from;
            return Ok(outcome);
        }
        let (vm, at, paths, now) = (
            request.vm.clone(),
            request.vault.clone(),
            disks.clone(),
            self.now(),
        );
        self.db(move |c| c.upsert_vm(&vm, &at, &paths, now)).await?;
        let (job, job_lock) = self
            .begin_job(&request.vm, Operation::ConfigureBackup, &[])
            .await?;
        let qmp = request.qmp.clone();
        // The point the next backup's bitmaps must follow, to describe them (none: first).
        let parent = match (&qmp, self.snapshots.open(&request.vm).await) {
            (Some(_), Ok(Some(tier))) => tier.latest_point(&request.vm).await.ok().flatten(),
            _ => None,
        };
        let (tier, vm, said, mode) = (
            self.snapshots.clone(),
            request.vm.clone(),
            request.disk_format,
            request.capture,
        );
        let checked = crate::bridge::blocking(move || {
            check_disks(&disks)?;
            match &qmp {
                Some(qmp) => super::fleece::check_disks(qmp, &disks, parent.as_ref()),
                None => {
                    super::tracking::check_readable(&disks, said)?;
                    Ok(super::tracking::describe(&tier, &vm, &disks, said, mode))
                }
            }
        })
        .await;
        let outcome = match checked {
            Err(error) => {
                self.fail_job(&job, &error.to_string()).await?;
                let id = job.id;
                ProtectOutcome {
                    job: self.db(move |c| c.job(id)).await?,
                    item: None,
                    backup: None,
                    failure: Some(error),
                    checks: Vec::new(),
                    doomed,
                    taken_from,
                }
            }
            Ok(checks) => {
                let protected = item.clone();
                // The vault first (see `holder.rs`): a crash before the catalog leaves the
                // record, which refuses other hosts and is written again by the next protect.
                let held = self.hold(vault, &item, &policy).await;
                let recorded = match held {
                    Ok(_) => self.db(move |c| c.protect(&protected)).await,
                    Err(error) => Err(error),
                };
                if let Err(error) = recorded {
                    // For example, the policy was deleted meanwhile: the job says so.
                    self.fail_job(&job, &error.to_string()).await?;
                    job_lock.remove();
                    return Err(error);
                }
                let ended = self.finish_job(&job, None).await?;
                let vm = request.vm.clone();
                ProtectOutcome {
                    job: ended,
                    item: self.db(move |c| c.protected_item(&vm)).await?,
                    backup: None,
                    failure: None,
                    checks,
                    doomed,
                    taken_from,
                }
            }
        };
        job_lock.remove();
        Ok(outcome)
    }

    async fn check_change(
        &self,
        request: &ProtectRequest,
        policy: &Policy,
        existing: Option<&ProtectedItem>,
    ) -> Result<Change> {
        let Some(existing) = existing else {
            return Ok(Change::Configure);
        };
        let name = existing.policy.clone();
        let current = self.db(move |c| c.policy(&name)).await?;
        match (current.kind, policy.kind) {
            (PolicyType::Enhanced, PolicyType::Standard) => Err(Error::MigrationIrreversible {
                vm: request.vm.clone(),
                from: current.name,
                to: policy.name.clone(),
            }),
            (PolicyType::Standard, PolicyType::Enhanced) => {
                let unfinished = self.db(|c| c.unfinished_jobs()).await?;
                let backing_up = unfinished.into_iter().find(|j| {
                    j.vm == request.vm
                        && matches!(
                            j.operation,
                            Operation::Backup
                                | Operation::BackupOnDemand
                                | Operation::ConfigureBackupMigrate
                        )
                });
                match backing_up {
                    Some(job) => Err(Error::MigrationWhileBackup {
                        vm: request.vm.clone(),
                        to: policy.name.clone(),
                        job: job.id,
                    }),
                    None => Ok(Change::Migrate),
                }
            }
            _ => Ok(Change::Configure),
        }
    }

    /// The migration job: a backup with the Enhanced policy's instant-restore days; when its
    /// Snapshot succeeded, the VM moves to the Enhanced policy.
    async fn migrate(
        &self,
        vault: &Vault,
        item: ProtectedItem,
        policy: &Policy,
        options: TransferOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<ProtectOutcome> {
        let spec = item.backup_spec(policy, Operation::ConfigureBackupMigrate, options);
        let backup = self.backup(Ok(vault), &spec, progress).await?;
        let migrated = backup.job.status != JobStatus::Failed;
        if migrated {
            self.hold(vault, &item, policy).await?;
        }
        let protected = self
            .db(move |c| {
                if migrated {
                    c.protect(&item)?;
                }
                c.protected_item(&item.vm)
            })
            .await?;
        Ok(ProtectOutcome {
            job: backup.job.clone(),
            item: protected,
            failure: None,
            backup: Some(backup),
            checks: Vec::new(),
            doomed: Vec::new(),
            taken_from: None,
        })
    }

    /// A `Backup (on demand)` job of the protected VM `vm` (refused while its protection is
    /// stopped or its data soft-deleted), with its policy's instant-restore
    /// days; the point is kept at least until `retain_until` (which must be in the future and
    /// within 99 years), whatever the policy's retention says.
    pub async fn backup_now<'v>(
        &self,
        vault: impl Into<super::JobVault<'v>>,
        vm: &VmName,
        retain_until: Timestamp,
        options: TransferOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<BackupOutcome> {
        let owned = vm.clone();
        let item = self
            .db(move |c| c.protected_item(&owned))
            .await?
            .ok_or_else(|| Error::NotProtected { vm: vm.clone() })?;
        match item.state {
            ProtectionState::Protected => {}
            ProtectionState::Stopped { .. } => {
                return Err(Error::ProtectionStopped {
                    vm: vm.clone(),
                    vault: item.vault,
                });
            }
            ProtectionState::SoftDeleted { purge_after, .. } => {
                return Err(Error::SoftDeleted {
                    vm: vm.clone(),
                    vault: item.vault,
                    purge_after,
                });
            }
        }
        self.check_retain_until(retain_until)?;
        let name = item.policy.clone();
        let policy = self.db(move |c| c.policy(&name)).await?;
        let spec = BackupSpec {
            retain_until: Some(retain_until),
            ..item.backup_spec(&policy, Operation::BackupOnDemand, options)
        };
        self.backup(vault, &spec, progress).await
    }
}

impl Engine {
    /// Refuses a `retain until` that is not after now or more than 99 years away (what
    /// `backup-now` and `backup --retain-until` accept).
    pub fn check_retain_until(&self, retain_until: Timestamp) -> Result<()> {
        let now = self.now();
        let latest = now + SignedDuration::from_hours(24 * 366 * MAX_RETAIN_YEARS);
        if retain_until <= now || retain_until > latest {
            return Err(Error::InvalidValue {
                what: "retain until",
                value: retain_until.to_string(),
                expected: format!("a time after now ({now}) and within {MAX_RETAIN_YEARS} years"),
            });
        }
        Ok(())
    }
}

impl ProtectedItem {
    /// A backup of this VM under `policy`: its disks and hooks, the policy's instant-restore
    /// days.
    pub fn backup_spec(
        &self,
        policy: &Policy,
        operation: Operation,
        options: TransferOptions,
    ) -> BackupSpec {
        BackupSpec {
            instant_restore_days: policy.instant_restore_days,
            hooks: self.hooks.clone(),
            operation,
            options,
            capture: CaptureOptions {
                mode: self.capture,
                disk_format: self.disk_format,
                ..CaptureOptions::default()
            },
            qmp: self.qmp.clone(),
            ..BackupSpec::new(self.vm.clone(), self.disks.clone())
        }
    }
}

/// Every disk exists and opens as a disk image.
fn check_disks(disks: &[PathBuf]) -> Result<()> {
    if disks.is_empty() {
        return Err(blockvault_repo::Error::NoDisks.into());
    }
    for disk in disks {
        blockvault_source::RawFile::open(disk).map_err(blockvault_vault::Error::from)?;
    }
    Ok(())
}
