//! `blockvault protect`, `items` and `backup-now`: the protection lifecycle.

use std::sync::Arc;

use anyhow::Result;
use blockvault_jobs::{
    DEFAULT_POLICY, Engine, JobFilter, JobStatus, Operation, ProtectRequest, ProtectedItem,
};
use blockvault_vault::NoProgress;
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::Report;
use crate::args::{BackupNowArgs, ItemsArgs, ProtectArgs};
use crate::exit::{JobFailed, UsageError};
use crate::format;
use crate::open::Host;
use crate::progress::Bar;

/// Operations whose jobs back a VM up (what "last backup" means in `items`).
const BACKUPS: [Operation; 3] = [
    Operation::Backup,
    Operation::BackupOnDemand,
    Operation::ConfigureBackupMigrate,
];

pub async fn protect(args: ProtectArgs, host: &Host, bar: Arc<Bar>) -> Result<Report> {
    let (engine, mut warnings) = host.engine().await?;
    // The daemon opens the vault from another directory, and a VM is protected by one vault
    // however its path is written.
    let location = crate::open::canonical(&args.vault.vault);
    // Before the vault is opened: a VM protected elsewhere is refused whatever this vault is.
    let existing = engine
        .catalog()
        .protection_in(&args.vm, &location.to_string())?;
    let disks = match (&existing, args.disks.is_empty()) {
        (_, false) => args.disks.clone(),
        (Some(item), true) => item.disks.clone(),
        (None, true) => {
            return Err(UsageError(format!(
                "--disk is required to protect {}: give each of its disk images",
                args.vm
            ))
            .into());
        }
    };
    let policy = match (&args.policy, &existing) {
        (Some(name), _) => name.parse()?,
        (None, Some(item)) => item.policy.clone(),
        (None, None) => DEFAULT_POLICY.parse()?,
    };
    let hooks = match (&args.hooks.pre_hook, &args.hooks.post_hook, &existing) {
        (None, None, Some(item)) => item.hooks.clone(),
        _ => args.hooks.hooks(),
    };
    let request = ProtectRequest {
        vm: args.vm.clone(),
        vault: location.to_string(),
        disks,
        policy,
        hooks,
    };
    let vault = super::backup::job_vault(host, &location).await?;
    let options = crate::open::transfer(&location, args.transfer.concurrency);
    let shown = bar.follow(engine.subscribe());
    let outcome = engine
        .protect(vault.as_ref(), &request, options, Arc::new(NoProgress))
        .await;
    shown.finish().await;
    let outcome = outcome?;
    if let Some(backup) = outcome.backup {
        // A migration: its backup job is the report, with a line on what changed.
        let migrated = backup.job.status != JobStatus::Failed;
        let mut report = super::backup::report(backup, std::mem::take(&mut warnings))?;
        if migrated {
            report.text = format!(
                "migrated {} to the Enhanced policy {} (irreversible)\n{}",
                request.vm, request.policy, report.text
            );
        }
        report.json["item"] = json!(outcome.item);
        return Ok(report);
    }
    let job = outcome.job;
    if let Some(cause) = outcome.failure {
        return Err(JobFailed {
            job: job.id,
            error: job.error.clone().unwrap_or_default(),
            cause: Some(cause),
        }
        .into());
    }
    let next = outcome
        .item
        .as_ref()
        .and_then(|item| next_backup(&engine, item).ok());
    let text = format!(
        "job {} {}: {} is protected by {} with policy {}{}",
        job.id,
        job.status,
        request.vm,
        request.vault,
        request.policy,
        next.map(|t| format!("; next backup {}", format::time(t)))
            .unwrap_or_default()
    );
    Ok(Report {
        text,
        json: json!({ "job": job, "item": outcome.item, "next_backup": next, "warnings": warnings }),
        warnings,
        exit_code: None,
    })
}

/// When the daemon next backs `item` up.
fn next_backup(engine: &Engine, item: &ProtectedItem) -> Result<Timestamp> {
    let policy = engine.catalog().policy(&item.policy)?;
    let after = item.handled.unwrap_or(item.since).max(engine.now());
    Ok(policy.schedule.next(&policy.timezone, after).at)
}

pub async fn items(args: ItemsArgs, host: &Host) -> Result<Report> {
    let (engine, warnings) = host.engine().await?;
    let catalog = engine.catalog();
    let mut rows = Vec::new();
    let mut docs = Vec::new();
    for item in catalog.protected_items()? {
        if args.vm.as_ref().is_some_and(|vm| *vm != item.vm) {
            continue;
        }
        let last = catalog
            .jobs(&JobFilter {
                vm: Some(item.vm.clone()),
                ..JobFilter::default()
            })?
            .into_iter()
            .find(|j| BACKUPS.contains(&j.operation));
        let latest = catalog.points(&item.vm)?.into_iter().max_by_key(|p| p.time);
        // Stopped and soft-deleted items are not scheduled.
        let next = item
            .is_protected()
            .then(|| next_backup(&engine, &item).ok())
            .flatten();
        rows.push([
            item.vm.to_string(),
            super::soft_delete::state_text(&item.state),
            item.policy.to_string(),
            last.as_ref()
                .map(|j| j.status.to_string())
                .unwrap_or_else(|| "-".into()),
            last.as_ref()
                .map(|j| format::time(j.started))
                .unwrap_or_else(|| "-".into()),
            latest
                .as_ref()
                .map(|p| format::time(p.time))
                .unwrap_or_else(|| "-".into()),
            latest
                .as_ref()
                .map(|p| p.tiers.to_string())
                .unwrap_or_else(|| "-".into()),
            next.map(format::time).unwrap_or_else(|| "-".into()),
        ]);
        let mut doc = json!({
            "vm": item.vm,
            "vault": item.vault,
            "disks": item.disks,
            "policy": item.policy,
            "protected_since": item.since,
            "last_backup": last.as_ref().map(|j| json!({
                "job": j.id, "status": j.status, "started": j.started, "operation": j.operation,
            })),
            "latest_point": latest,
            "next_backup": next,
        });
        // `state`, and `stopped`, `deleted`, `purge_after` when they apply.
        if let (Some(doc), serde_json::Value::Object(state)) =
            (doc.as_object_mut(), json!(item.state))
        {
            doc.extend(state);
        }
        docs.push(doc);
    }
    let text = if rows.is_empty() {
        "no protected VMs (see `blockvault protect --help`)".to_owned()
    } else {
        format::table(
            &[
                "VM",
                "STATE",
                "POLICY",
                "LAST BACKUP",
                "STARTED",
                "LATEST POINT",
                "TIERS",
                "NEXT BACKUP",
            ],
            &rows,
        )
    };
    Ok(Report {
        text,
        json: json!({ "items": docs, "warnings": warnings }),
        warnings,
        exit_code: None,
    })
}

pub async fn backup_now(args: BackupNowArgs, host: &Host, bar: Arc<Bar>) -> Result<Report> {
    let (engine, warnings) = host.engine().await?;
    let item = engine.catalog().protected_item(&args.vm)?.ok_or_else(|| {
        blockvault_jobs::Error::NotProtected {
            vm: args.vm.clone(),
        }
    })?;
    let retain_until = match args.retain_until.as_deref() {
        Some(text) => crate::when::parse_time("--retain-until", text)?,
        None => Timestamp::now() + SignedDuration::from_hours(24 * 30),
    };
    let location = item.vault.parse()?;
    // Opened by the job, alongside its Snapshot.
    let vault = host.backup_vault(&location).await?;
    let options = crate::open::transfer(&location, args.transfer.concurrency);
    let shown = bar.follow(engine.subscribe());
    let outcome = engine
        .backup_now(vault, &args.vm, retain_until, options, Arc::new(NoProgress))
        .await;
    shown.finish().await;
    let mut report = super::backup::report(outcome?, warnings)?;
    report.text = format!(
        "{} (kept until at least {})",
        report.text,
        format::time(retain_until)
    );
    report.json["retain_until"] = json!(retain_until);
    Ok(report)
}
