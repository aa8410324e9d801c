//! `blockvault protect`, `items` and `backup-now`: the protection lifecycle.

use std::sync::Arc;

use anyhow::Result;
use blockvault_core::{HeldState, VmName};
use blockvault_host::{Host, ItemView};
use blockvault_jobs::{Engine, JobStatus, JobVault, ProtectOutcome};
use blockvault_store::VaultLocation;
use blockvault_vault::NoProgress;
use jiff::Timestamp;
use serde_json::json;

use super::Report;
use crate::args::{BackupNowArgs, ItemsArgs, ProtectArgs};
use crate::format;
use crate::progress::Bar;

pub async fn protect(args: ProtectArgs, host: &Host, bar: Arc<Bar>) -> Result<Report> {
    let (engine, mut warnings) = host.engine().await?;
    let hooks = args.hooks.hooks();
    let mut request = blockvault_host::protect_request(
        &engine,
        &args.vm,
        &args.vault.vault,
        args.disks,
        args.policy.as_deref(),
        hooks,
        args.hooks.capture(),
    )
    .await?;
    if let Some(format) = args.hooks.disk_format() {
        request.disk_format = format;
    }
    if let Some(qmp) = args.hooks.qmp.clone() {
        request.qmp = Some(qmp);
    }
    request.take_over = args.take_over;
    let location = blockvault_host::canonical(&args.vault.vault);
    // Access is checked now: a vault this host cannot read (a wrong secret, an unreadable
    // directory) is refused before anything is recorded.
    let vault = host.vault(&location).await?;
    warnings.extend(blockvault_host::secondary_warning(&vault));
    let options = blockvault_host::write_options(&location, args.transfer.concurrency);
    let shown = bar.follow(engine.subscribe());
    let outcome = engine
        .protect(Ok(&vault), &request, options, Arc::new(NoProgress))
        .await;
    shown.finish().await;
    let outcome = outcome?;
    let said = holder_lines(&outcome);
    let doomed = json!(outcome.doomed);
    let taken_from = json!(outcome.taken_from);
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
        report.json["doomed_points"] = doomed;
        report.json["taken_over_from"] = taken_from;
        report.text.push_str(&said);
        return Ok(report);
    }
    let job = outcome.job;
    if let Some(cause) = outcome.failure {
        return Err(blockvault_host::Error::JobFailed {
            job: job.id,
            error: job.error.clone().unwrap_or_default(),
            cause: Some(cause),
        }
        .into());
    }
    let next = match &outcome.item {
        Some(item) => blockvault_host::next_backup(&engine, item).await.ok(),
        None => None,
    };
    let mut text = format!(
        "job {} {}: {} is protected by {} with policy {}{}",
        job.id,
        job.status,
        request.vm,
        request.vault,
        request.policy,
        next.map(|t| format!("; next backup {}", format::time(t)))
            .unwrap_or_default()
    );
    for check in &outcome.checks {
        text.push_str(&format!("\n  {check}"));
    }
    text.push_str(&said);
    Ok(Report {
        text,
        json: json!({ "job": job, "item": outcome.item, "next_backup": next,
                      "disk_checks": outcome.checks, "doomed_points": doomed,
                      "taken_over_from": taken_from, "warnings": warnings }),
        warnings,
        exit_code: None,
    })
}

/// What `protect` says of the points the policy's retention removes at the next prune, and of
/// the host it took the VM over from.
fn holder_lines(outcome: &ProtectOutcome) -> String {
    let mut text = String::new();
    if let Some(record) = &outcome.taken_from {
        text.push_str(&format!(
            "\ntaken over from {} (protected there since {}); its daemon stops protecting {} \
             when it next looks",
            record.host.describe(),
            format::time(record.since),
            record.vm
        ));
    }
    if !outcome.doomed.is_empty() {
        text.push_str(&format!(
            "\nwarning: the policy's retention removes {} existing point(s) at the next prune \
             (keep a point with `blockvault backup --retain-until`):",
            outcome.doomed.len()
        ));
        for point in &outcome.doomed {
            text.push_str(&format!(
                "\n  {} {}: {}",
                point.id,
                format::time(point.time),
                point.why
            ));
        }
    }
    text
}

pub async fn items(args: ItemsArgs, host: &Host) -> Result<Report> {
    let (engine, warnings) = host.engine().await?;
    if let Some(location) = &args.vault {
        return vault_items(&engine, host, location, args.vm.as_ref(), warnings).await;
    }
    let mut rows = Vec::new();
    let mut docs = Vec::new();
    for view in blockvault_host::items(&engine, args.vm.as_ref()).await? {
        let ItemView {
            item,
            last_backup: last,
            latest_point: latest,
            next_backup: next,
            snapshot_space: space,
        } = view;
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
            space
                .map(|s| format::bytes(s.bytes()))
                .unwrap_or_else(|| "-".into()),
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
            "snapshot_tier": space.as_ref().map(super::tier_space),
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
                "SNAPSHOT SPACE",
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

/// `items --vault`: what the vault records of the VMs protected in it.
async fn vault_items(
    engine: &Engine,
    host: &Host,
    location: &VaultLocation,
    vm: Option<&VmName>,
    warnings: Vec<String>,
) -> Result<Report> {
    let vault = host.vault(&blockvault_host::canonical(location)).await?;
    let views = blockvault_host::vault_holdings(engine, &vault, vm).await?;
    let rows: Vec<[String; 5]> = views
        .iter()
        .map(|v| {
            let r = &v.record;
            [
                r.vm.to_string(),
                match r.state {
                    HeldState::Protected => "Protected".to_owned(),
                    HeldState::Stopped { .. } => "Stopped (data retained)".to_owned(),
                },
                r.policy.clone(),
                format::time(r.since),
                match v.mine {
                    true => format!("this host ({})", r.host.name),
                    false => format!("another host: {}", r.host.describe()),
                },
            ]
        })
        .collect();
    let text = if rows.is_empty() {
        format!("no VM is protected in {location}")
    } else {
        format::table(&["VM", "STATE", "POLICY", "SINCE", "HELD BY"], &rows)
    };
    let docs: Vec<_> = views
        .iter()
        .map(|v| {
            let mut doc = json!(v.record);
            doc["held_by_this_host"] = json!(v.mine);
            doc
        })
        .collect();
    Ok(Report {
        text,
        json: json!({ "vault": location.to_string(), "items": docs, "warnings": warnings }),
        warnings,
        exit_code: None,
    })
}

pub async fn backup_now(args: BackupNowArgs, host: &Host, bar: Arc<Bar>) -> Result<Report> {
    let (engine, warnings) = host.engine().await?;
    let item = blockvault_host::protected_item(&engine, &args.vm).await?;
    let retain_until = match args.retain_until.as_deref() {
        Some(text) => crate::when::parse_time("--retain-until", text)?,
        None => blockvault_host::default_retain_until(Timestamp::now()),
    };
    let location: VaultLocation = item.vault.parse()?;
    // A vault that answers says whether another host took the VM over (refused); one that
    // does not is opened by the job, alongside its Snapshot.
    let vault = match host.vault(&location).await {
        Ok(vault) => {
            engine.check_holder(&vault, &args.vm).await?;
            JobVault::open(location.to_string(), vault)
        }
        Err(_) => host.backup_vault(&location).await?,
    };
    let options = blockvault_host::write_options(&location, args.transfer.concurrency);
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
