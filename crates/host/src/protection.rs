//! The protection lifecycle's rules that every front end applies the same way: what a protect
//! request keeps of the current protection, which VMs may be backed up where, when the daemon
//! backs a VM up next, what `items` shows of each protected VM, and what a vault records of
//! the VMs protected in it and by which host ([`vault_holdings`]).

use std::path::PathBuf;

use blockvault_core::VmName;
use blockvault_jobs::{
    CaptureMode, DEFAULT_POLICY, Engine, Hooks, Job, JobFilter, Operation, PointEntry,
    ProtectRequest, ProtectedItem,
};
use blockvault_snapshot::TierSpace;
use blockvault_store::VaultLocation;
use jiff::Timestamp;

use crate::{Error, Result, canonical};

/// Operations whose jobs back a VM up (what "last backup" means in `items`).
const BACKUPS: [Operation; 3] = [
    Operation::Backup,
    Operation::BackupOnDemand,
    Operation::ConfigureBackupMigrate,
];

/// What a protect request asks for, completed from the VM's current protection: the disks,
/// the policy, the hooks, the capture and the QEMU monitor not given stay as they are (a new protection needs its disks and
/// gets [`DEFAULT_POLICY`]). The vault is named by its canonical location: the daemon opens
/// it from another directory, and a VM is protected by one vault however its path is
/// written. Checked before the vault is opened: a VM protected elsewhere is refused whatever
/// this vault is.
pub async fn protect_request(
    engine: &Engine,
    vm: &VmName,
    location: &VaultLocation,
    disks: Vec<PathBuf>,
    policy: Option<&str>,
    hooks: Hooks,
    capture: Option<CaptureMode>,
) -> Result<ProtectRequest> {
    let location = canonical(location);
    let (owned_vm, at) = (vm.clone(), location.to_string());
    let existing = engine
        .catalog()
        .call(move |c| c.protection_in(&owned_vm, &at))
        .await?;
    let disks = match (&existing, disks.is_empty()) {
        (_, false) => disks,
        (Some(item), true) => item.disks.clone(),
        (None, true) => {
            return Err(Error::Usage(format!(
                "--disk is required to protect {vm}: give each of its disk images"
            )));
        }
    };
    let policy = match (policy, &existing) {
        (Some(name), _) => name.parse()?,
        (None, Some(item)) => item.policy.clone(),
        (None, None) => DEFAULT_POLICY.parse()?,
    };
    let hooks = match (&hooks.pre, &hooks.post, &existing) {
        (None, None, Some(item)) => item.hooks.clone(),
        _ => hooks,
    };
    let capture = capture
        .or(existing.as_ref().map(|item| item.capture))
        .unwrap_or_default();
    // A new `--qmp` is the caller's to set on the request.
    let qmp = existing.as_ref().and_then(|item| item.qmp.clone());
    Ok(ProtectRequest {
        vm: vm.clone(),
        vault: location.to_string(),
        disks,
        policy,
        hooks,
        capture,
        // Kept unless the caller says it (`--disk-format`).
        disk_format: existing.as_ref().and_then(|item| item.disk_format),
        qmp,
        take_over: false,
    })
}

/// Refuses a backup of `vm` to the vault at `location` when the VM's protection says
/// otherwise (protected by another vault, stopped, soft-deleted).
pub async fn check_backup(engine: &Engine, vm: &VmName, location: &VaultLocation) -> Result<()> {
    let (vm, at) = (vm.clone(), canonical(location).to_string());
    engine
        .catalog()
        .call(move |c| c.protection_in(&vm, &at))
        .await?;
    Ok(())
}

/// A VM's protection as its vault records it (`items --vault`).
#[derive(Debug)]
pub struct HeldView {
    pub record: blockvault_core::ProtectionRecord,
    /// Whether this host holds it.
    pub mine: bool,
}

/// Every protection `vault` records (only `vm`'s when given), by VM name; a record that
/// cannot be read is an error naming it.
pub async fn vault_holdings(
    engine: &Engine,
    vault: &blockvault_vault::Vault,
    vm: Option<&VmName>,
) -> Result<Vec<HeldView>> {
    let store = vault.store();
    let vms = match vm {
        Some(vm) => vec![vm.clone()],
        None => store
            .list_protected_vms()
            .await
            .map_err(blockvault_vault::Error::from)?,
    };
    let mut views = Vec::with_capacity(vms.len());
    for vm in vms {
        if let Some(record) = store
            .protection(&vm)
            .await
            .map_err(blockvault_vault::Error::from)?
        {
            let mine = record.held_by(engine.identity());
            views.push(HeldView { record, mine });
        }
    }
    Ok(views)
}

/// The protected item of `vm`, which must exist.
pub async fn protected_item(engine: &Engine, vm: &VmName) -> Result<ProtectedItem> {
    let owned = vm.clone();
    engine
        .catalog()
        .call(move |c| c.protected_item(&owned))
        .await?
        .ok_or_else(|| Error::Jobs(blockvault_jobs::Error::NotProtected { vm: vm.clone() }))
}

/// When the daemon next backs `item` up.
pub async fn next_backup(engine: &Engine, item: &ProtectedItem) -> Result<Timestamp> {
    let name = item.policy.clone();
    let policy = engine.catalog().call(move |c| c.policy(&name)).await?;
    let after = item.handled.unwrap_or(item.since).max(engine.now());
    Ok(policy.schedule.next(&policy.timezone, after).at)
}

/// Until when an on-demand backup's point is kept when no date is given: 30 days from `now`.
pub fn default_retain_until(now: Timestamp) -> Timestamp {
    now + jiff::SignedDuration::from_hours(24 * 30)
}

/// A protected VM as `items` shows it.
#[derive(Debug)]
pub struct ItemView {
    pub item: ProtectedItem,
    /// Its newest backup job (of any backup operation).
    pub last_backup: Option<Job>,
    /// Its newest point the catalog knows.
    pub latest_point: Option<PointEntry>,
    /// When the daemon backs it up next; none when it is not scheduled (stopped,
    /// soft-deleted).
    pub next_backup: Option<Timestamp>,
    /// What its snapshot tier takes on this host, kept clones counted by what they hold alone
    /// (what the disks overwrote since); `None` when it could not be measured.
    pub snapshot_space: Option<TierSpace>,
}

/// The protected items (only `vm`'s when given), each with its last backup, latest point and
/// next backup.
pub async fn items(engine: &Engine, vm: Option<&VmName>) -> Result<Vec<ItemView>> {
    let only = vm.cloned();
    let rows = engine
        .catalog()
        .call(move |catalog| {
            let mut rows = Vec::new();
            for item in catalog.protected_items()? {
                if only.as_ref().is_some_and(|vm| *vm != item.vm) {
                    continue;
                }
                let last_backup = catalog
                    .jobs(&JobFilter {
                        vm: Some(item.vm.clone()),
                        ..JobFilter::default()
                    })?
                    .into_iter()
                    .find(|j| BACKUPS.contains(&j.operation));
                let latest_point = catalog.points(&item.vm)?.into_iter().max_by_key(|p| p.time);
                rows.push((item, last_backup, latest_point));
            }
            Ok(rows)
        })
        .await?;
    let mut views = Vec::new();
    for (item, last_backup, latest_point) in rows {
        // Stopped and soft-deleted items are not scheduled.
        let next_backup = match item.is_protected() {
            true => next_backup(engine, &item).await.ok(),
            false => None,
        };
        let snapshot_space = engine.snapshot_space(&item.vm).await.ok();
        views.push(ItemView {
            item,
            last_backup,
            latest_point,
            next_backup,
            snapshot_space,
        });
    }
    Ok(views)
}
