//! `blockvault forget` (soft-delete chosen points) and `undelete --point` (bring them back).

use anyhow::Result;
use blockvault_core::PointDeleteMarker;
use blockvault_host::Host;
use blockvault_jobs::{ForgetRequest, ForgetTarget, KeepRules};
use blockvault_vault::PointSelector;
use serde_json::json;

use super::Report;
use crate::args::{ForgetArgs, UndeleteArgs};
use crate::exit::UsageError;
use crate::format;

pub async fn run(args: ForgetArgs, host: &Host) -> Result<Report> {
    let rules = KeepRules {
        last: args.keep_last,
        daily: args.keep_daily,
        weekly: args.keep_weekly,
        monthly: args.keep_monthly,
        yearly: args.keep_yearly,
    };
    let target = match (&args.point, &args.at) {
        (Some(id), _) => ForgetTarget::Point(PointSelector::Id(id.clone())),
        (None, Some(at)) => {
            ForgetTarget::Point(PointSelector::At(crate::when::parse_time("--at", at)?))
        }
        (None, None) => {
            rules
                .check()
                .map_err(|e| UsageError(format!("{e}; or name one point with --point or --at")))?;
            ForgetTarget::Keep {
                rules,
                timezone: jiff::tz::TimeZone::system(),
            }
        }
    };
    let (engine, warnings) = host.engine().await?;
    let vault = host.vault(&args.vault.vault).await?;
    let location = blockvault_host::canonical(&args.vault.vault).to_string();
    let request = ForgetRequest {
        vm: args.vm.clone(),
        target,
        dry_run: args.dry_run,
        force: args.force,
    };
    let outcome = engine.forget(&vault, &location, &request).await?;
    let vm = &outcome.vm;
    let mut text = String::new();
    let verb = if outcome.dry_run {
        "would forget"
    } else {
        "forgot"
    };
    for marker in &outcome.forgotten {
        text.push_str(&format!(
            "  {verb} {}  {}\n",
            marker.point,
            point_time(marker)
        ));
    }
    for kept in &outcome.kept {
        let rules: Vec<&str> = kept.kept_by.iter().map(|r| r.as_str()).collect();
        text.push_str(&format!(
            "  keep {}  {}  ({})\n",
            kept.id,
            format::time(kept.time),
            rules.join(", ")
        ));
    }
    let summary = match (&outcome.job, outcome.forgotten.first()) {
        (_, None) => format!("{vm}: nothing to forget"),
        (None, Some(_)) => format!(
            "dry run: {} point(s) of {vm} would be forgotten, {} kept; nothing was changed",
            outcome.forgotten.len(),
            outcome.kept.len()
        ),
        (Some(job), Some(first)) => format!(
            "job {} {}: {} point(s) of {vm} forgotten, soft-deleted until {} (then purged; \
             `blockvault undelete --vault VAULT --vm {vm} --point ID` brings one back until \
             then); snapshot-tier copies removed: {}",
            job.id,
            job.status,
            outcome.forgotten.len(),
            format::time(first.purge_after),
            outcome.snapshot_points_removed.len()
        ),
    };
    text.push_str(&summary);
    Ok(Report {
        text,
        json: json!({
            "vm": vm,
            "dry_run": outcome.dry_run,
            "job": outcome.job,
            "forgotten": outcome.forgotten,
            "kept": outcome.kept,
            "already_forgotten": outcome.already_forgotten,
            "snapshot_points_removed": outcome.snapshot_points_removed,
            "warnings": warnings,
        }),
        warnings,
        exit_code: None,
    })
}

/// `undelete` of forgotten points: of `--vault`, else of the vault protecting the VM.
pub async fn undelete(args: UndeleteArgs, host: &Host) -> Result<Report> {
    let (engine, warnings) = host.engine().await?;
    let location = match &args.vault {
        Some(location) => location.clone(),
        None => {
            let vm = args.vm.clone();
            let item = engine
                .catalog()
                .call(move |c| c.protected_item(&vm))
                .await?;
            match item {
                Some(item) => item.vault.parse()?,
                None => {
                    return Err(UsageError(format!(
                        "VM {} is not protected here: name the vault of its forgotten points \
                         with --vault",
                        args.vm
                    ))
                    .into());
                }
            }
        }
    };
    let vault = host.vault(&location).await?;
    let back = engine
        .undelete_points(&vault, &args.vm, args.point.as_deref())
        .await?;
    let ids: Vec<String> = back.iter().map(|m| m.point.to_string()).collect();
    let text = format!(
        "undeleted {} forgotten point(s) of {}: {} (restorable again from the vault)",
        back.len(),
        args.vm,
        ids.join(", ")
    );
    Ok(Report {
        text,
        json: json!({ "vm": args.vm, "undeleted": back, "warnings": warnings }),
        warnings,
        exit_code: None,
    })
}

/// The time of a forgotten point, from its id (`20261123-081500-…`).
fn point_time(marker: &PointDeleteMarker) -> String {
    marker
        .point
        .time()
        .map(format::time)
        .unwrap_or_else(|| "-".to_owned())
}
