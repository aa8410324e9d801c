use std::sync::Arc;

use anyhow::Result;
use blockvault_host::Host;
use blockvault_jobs::{BackupOutcome, BackupSpec, CaptureOptions, JobStatus, SubtaskKind};
use blockvault_vault::NoProgress;
use serde_json::json;

use super::Report;
use crate::args::BackupArgs;
use crate::exit::ExitCode;
use crate::format;
use crate::progress::Bar;

pub async fn run(args: BackupArgs, host: &Host, bar: Arc<Bar>) -> Result<Report> {
    let (engine, warnings) = host.engine().await?;
    let location = args.vault.vault.clone();
    blockvault_host::check_backup(&engine, &args.vm, &location).await?;
    let retain_until = match args.retain_until.as_deref() {
        Some(text) => {
            let at = crate::when::parse_time("--retain-until", text)?;
            engine.check_retain_until(at)?;
            Some(at)
        }
        None => None,
    };
    // Opened by the job, alongside its Snapshot.
    let vault = host.backup_vault(&location).await?;
    let spec = BackupSpec {
        block_size: args.block_size,
        instant_restore_days: args.instant_restore_days,
        hooks: args.hooks.hooks(),
        options: blockvault_host::write_options(&location, args.transfer.concurrency),
        early_send: !args.no_early_send,
        capture: CaptureOptions {
            mode: args.hooks.capture().unwrap_or_default(),
            disk_format: args.hooks.disk_format().flatten(),
            check_changes_every: if args.check_changes {
                std::time::Duration::ZERO
            } else {
                CaptureOptions::default().check_changes_every
            },
            ..CaptureOptions::default()
        },
        qmp: args.hooks.qmp.clone(),
        retain_until,
        ..BackupSpec::new(args.vm, args.disks)
    };
    let shown = bar.follow(engine.subscribe());
    let outcome = engine.backup(vault, &spec, Arc::new(NoProgress)).await;
    shown.finish().await;
    let mut report = report(outcome?, warnings)?;
    if let Some(at) = retain_until {
        report.text = format!("{} (kept until at least {})", report.text, format::time(at));
        report.json["retain_until"] = json!(at);
    }
    Ok(report)
}

/// What a backup job did, as a report; a failed job is an error (exit code by its cause), one
/// completed with warning exits 5.
pub fn report(outcome: BackupOutcome, mut warnings: Vec<String>) -> Result<Report> {
    warnings.extend(outcome.warnings.iter().cloned());
    let job = &outcome.job;
    let subtask_line = |kind: SubtaskKind| {
        let Some(task) = job.subtask(kind) else {
            return String::new();
        };
        let took = task.duration().map(format::duration).unwrap_or_default();
        match kind {
            SubtaskKind::Snapshot => format!(
                "snapshot {} ({} scanned, {} changed, {} written locally{}{})",
                task.status,
                format::bytes(task.bytes_scanned),
                format::bytes(task.bytes_changed),
                format::bytes(task.bytes_uploaded),
                if took.is_empty() {
                    took
                } else {
                    format!(", {took}")
                },
                task.capture
                    .as_ref()
                    .map(|c| format!("; {}", c.summary()))
                    .unwrap_or_default()
            ),
            SubtaskKind::Transfer => format!(
                "transfer {} ({} uploaded{})",
                task.status,
                format::bytes(task.bytes_uploaded),
                if took.is_empty() {
                    took
                } else {
                    format!(", {took}")
                }
            ),
        }
    };
    let point = outcome
        .point
        .as_ref()
        .map(|p| format!("point {} of {}", p.id, p.vm))
        .unwrap_or_else(|| format!("no point of {}", job.vm));
    let text = format!(
        "job {} {}: {}; {}; {}",
        job.id,
        job.status,
        point,
        subtask_line(SubtaskKind::Snapshot),
        subtask_line(SubtaskKind::Transfer),
    );
    let json = json!({
        "job": job,
        "point": outcome.point,
        "warnings": warnings,
    });
    match job.status {
        JobStatus::Failed => Err(blockvault_host::Error::JobFailed {
            job: job.id,
            error: job
                .error
                .clone()
                .unwrap_or_else(|| "no error recorded".to_owned()),
            // The typed cause, so the exit code says what kind of failure it was.
            cause: outcome.failure,
        }
        .into()),
        status => {
            let mut exit_code = None;
            if status == JobStatus::CompletedWithWarning {
                let why = job
                    .subtask(SubtaskKind::Transfer)
                    .and_then(|t| t.error.clone())
                    .unwrap_or_default();
                warnings.push(format!(
                    "the transfer to the vault failed: {why}; the point is in the snapshot tier \
                     only, and the next backup's transfer will carry its changes"
                ));
                exit_code = Some(ExitCode::CompletedWithWarning);
            }
            let mut json = json;
            json["warnings"] = json!(warnings);
            Ok(Report {
                text,
                json,
                warnings,
                exit_code,
            })
        }
    }
}
