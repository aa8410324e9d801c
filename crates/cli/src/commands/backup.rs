use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use blockvault_jobs::{BackupSpec, Hooks, JobStatus, Operation, SubtaskKind, VaultUnavailable};
use serde_json::json;

use super::Report;
use crate::args::BackupArgs;
use crate::exit::{ExitCode, JobFailed};
use crate::format;
use crate::open::Host;
use crate::progress::Bar;

pub async fn run(args: BackupArgs, host: &Host, bar: Arc<Bar>) -> Result<Report> {
    let (engine, mut warnings) = host.engine().await?;
    // A vault that does not answer must not cost the snapshot (the instant-restore copy):
    // the job runs, its Transfer fails, and the next backup's transfer catches up. A vault
    // that is missing or misconfigured is an error before anything runs.
    let location = args.vault.vault.clone();
    let vault = match host.vault(&location).await {
        Ok(vault) => Ok(vault),
        Err(e) if crate::exit::classify(&e) == ExitCode::Failure => Err(VaultUnavailable {
            location: location.to_string(),
            reason: format!("{e:#}"),
        }),
        Err(e) => return Err(e),
    };
    let spec = BackupSpec {
        vm: args.vm,
        disks: args.disks,
        block_size: args.block_size,
        instant_restore_days: args.instant_restore_days,
        hooks: Hooks {
            pre: args.pre_hook,
            post: args.post_hook,
            timeout: Some(Duration::from_secs(args.hook_timeout)),
        },
        operation: Operation::Backup,
        options: crate::open::transfer(&args.vault.vault, args.transfer.concurrency),
    };
    let outcome = engine.backup(vault.as_ref(), &spec, bar.clone()).await;
    bar.finish();
    let outcome = outcome?;
    warnings.extend(outcome.warnings.iter().cloned());
    let job = &outcome.job;
    let subtask_line = |kind: SubtaskKind| {
        let Some(task) = job.subtask(kind) else {
            return String::new();
        };
        let took = task.duration().map(format::duration).unwrap_or_default();
        match kind {
            SubtaskKind::Snapshot => format!(
                "snapshot {} ({} scanned, {} changed, {} written locally{})",
                task.status,
                format::bytes(task.bytes_scanned),
                format::bytes(task.bytes_changed),
                format::bytes(task.bytes_uploaded),
                if took.is_empty() {
                    took
                } else {
                    format!(", {took}")
                }
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
        JobStatus::Failed => Err(JobFailed {
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
