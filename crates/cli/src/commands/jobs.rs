//! `blockvault jobs` and `blockvault jobs show`: jobs from the catalog, as a table or one in
//! detail.

use std::time::Duration;

use anyhow::Result;
use blockvault_host::Host;
use blockvault_jobs::{Job, JobFilter, Subtask, SubtaskKind, SubtaskStatus};
use jiff::Timestamp;
use serde_json::json;

use super::Report;
use crate::args::{JobsArgs, JobsCommand};
use crate::format;

pub async fn run(args: JobsArgs, host: &Host) -> Result<Report> {
    let since = args
        .since
        .as_deref()
        .map(|t| crate::when::parse_time("--since", t))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|t| crate::when::parse_time("--until", t))
        .transpose()?;
    // Opening the engine marks jobs whose process died as Failed before they are listed.
    let (engine, warnings) = host.engine().await?;
    let catalog = engine.catalog();
    let mut report = match args.show {
        Some(JobsCommand::Show { id }) => show(&catalog.call(move |c| c.job(id)).await?),
        None => {
            let filter = JobFilter {
                status: args.status,
                vm: args.vm,
                operation: args.operation,
                since,
                until,
                limit: Some(args.limit),
            };
            list(&catalog.call(move |c| c.jobs(&filter)).await?)
        }
    };
    // Both documents are objects (`{"jobs": [...]}`, a job): the warnings join them.
    report.json["warnings"] = json!(warnings);
    report.warnings = warnings;
    Ok(report)
}

/// A table of jobs, in the order given (the catalog lists newest first).
pub fn list(jobs: &[Job]) -> Report {
    Report {
        text: table(jobs, Timestamp::now()),
        json: json!({ "jobs": jobs }),
        warnings: Vec::new(),
        exit_code: None,
    }
}

/// One job in detail: the job, then each subtask with its timings, bytes and error.
pub fn show(job: &Job) -> Report {
    Report {
        text: detail(job, Timestamp::now()),
        json: json!(job),
        warnings: Vec::new(),
        exit_code: None,
    }
}

fn table(jobs: &[Job], now: Timestamp) -> String {
    if jobs.is_empty() {
        return "no jobs".to_owned();
    }
    let header = [
        "ID",
        "VM",
        "OPERATION",
        "STATUS",
        "STARTED",
        "DURATION",
        "SNAPSHOT/TRANSFER",
    ];
    let rows: Vec<[String; 7]> = jobs
        .iter()
        .map(|job| {
            [
                job.id.to_string(),
                job.vm.to_string(),
                job.operation.to_string(),
                job.status.to_string(),
                format::time(job.started),
                job_duration(job, now),
                phases(job),
            ]
        })
        .collect();
    format::table(&header, &rows)
}

fn detail(job: &Job, now: Timestamp) -> String {
    let mut out = vec![format!("job {}: {} of {}", job.id, job.operation, job.vm)];
    let mut field = |label: &str, value: String| out.push(format!("{label:<12}{value}"));
    field("status", job.status.to_string());
    field("started", format::time(job.started));
    if let Some(ended) = job.ended {
        field("ended", format::time(ended));
    }
    field("duration", job_duration(job, now));
    if let Some(point) = &job.point {
        field("point", point.to_string());
    }
    if job.ended.is_none() {
        field("pid", job.pid.to_string());
    }
    if let Some(error) = &job.error {
        field("error", error.clone());
    }
    for subtask in &job.subtasks {
        out.push(String::new());
        out.extend(subtask_lines(subtask, now));
    }
    out.join("\n")
}

fn subtask_lines(s: &Subtask, now: Timestamp) -> Vec<String> {
    let mut out = vec![format!("{}: {}", s.kind, s.status)];
    let mut field = |label: &str, value: String| out.push(format!("  {label:<12}{value}"));
    if let Some(started) = s.started {
        field("started", format::time(started));
    }
    if let Some(ended) = s.ended {
        field("ended", format::time(ended));
    }
    match (s.duration(), s.started) {
        (Some(d), _) => field("duration", format::duration(d)),
        (None, Some(started)) => field("duration", so_far(started, now)),
        (None, None) => {}
    }
    if s.status != SubtaskStatus::Pending && s.status != SubtaskStatus::Skipped {
        match s.kind {
            SubtaskKind::Snapshot => {
                field("scanned", format::bytes(s.bytes_scanned));
                field("changed", format::bytes(s.bytes_changed));
                field(
                    "written",
                    format!("{} (snapshot tier)", format::bytes(s.bytes_uploaded)),
                );
                if let Some(capture) = &s.capture {
                    field("capture", capture.summary());
                    for disk in &capture.disks {
                        field("disk", disk.summary());
                    }
                }
            }
            SubtaskKind::Transfer => {
                field(
                    "changed",
                    format!(
                        "{} (since the newest vault point)",
                        format::bytes(s.bytes_changed)
                    ),
                );
                field("uploaded", format::bytes(s.bytes_uploaded));
            }
        }
    }
    if let Some(rate) = s.throughput() {
        let what = match s.kind {
            SubtaskKind::Snapshot => "read",
            SubtaskKind::Transfer => "uploaded",
        };
        field(
            "throughput",
            format!("{}/s {what}", format::bytes(rate as u64)),
        );
    }
    if let Some(error) = &s.error {
        let label = if s.status == SubtaskStatus::Skipped {
            "reason"
        } else {
            "error"
        };
        field(label, error.clone());
    }
    out
}

/// `done/skipped` for a backup job (its Snapshot and Transfer statuses), `-` for other jobs.
fn phases(job: &Job) -> String {
    match (
        job.subtask(SubtaskKind::Snapshot),
        job.subtask(SubtaskKind::Transfer),
    ) {
        (Some(snapshot), Some(transfer)) => {
            format!("{}/{}", short(snapshot.status), short(transfer.status))
        }
        _ => "-".to_owned(),
    }
}

fn short(status: SubtaskStatus) -> &'static str {
    match status {
        SubtaskStatus::Pending => "pending",
        SubtaskStatus::InProgress => "running",
        SubtaskStatus::Completed => "done",
        SubtaskStatus::Skipped => "skipped",
        SubtaskStatus::Failed => "failed",
    }
}

fn job_duration(job: &Job, now: Timestamp) -> String {
    match job.duration() {
        Some(d) => format::duration(d),
        None => so_far(job.started, now),
    }
}

/// Time since `started` of something still running.
fn so_far(started: Timestamp, now: Timestamp) -> String {
    let elapsed = Duration::try_from(now.duration_since(started)).unwrap_or_default();
    format!("{} so far", format::duration(elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockvault_jobs::{JobId, JobStatus, Operation};

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn backup_job() -> Job {
        let subtask =
            |kind, status, start: &str, end: &str, uploaded, error: Option<&str>| Subtask {
                kind,
                status,
                started: Some(ts(start)),
                ended: Some(ts(end)),
                bytes_scanned: 4 << 30,
                bytes_changed: 300 << 20,
                bytes_uploaded: uploaded,
                error: error.map(str::to_owned),
                capture: None,
            };
        Job {
            id: JobId(12),
            vm: "web01".parse().expect("vm"),
            operation: Operation::Backup,
            status: JobStatus::CompletedWithWarning,
            started: ts("2026-11-23T10:00:00Z"),
            ended: Some(ts("2026-11-23T10:04:05Z")),
            point: Some("20261123-100000-0001".parse().expect("point")),
            error: Some("vault unreachable".to_owned()),
            pid: 4242,
            subtasks: vec![
                subtask(
                    SubtaskKind::Snapshot,
                    SubtaskStatus::Completed,
                    "2026-11-23T10:00:00Z",
                    "2026-11-23T10:00:04Z",
                    0,
                    None,
                ),
                subtask(
                    SubtaskKind::Transfer,
                    SubtaskStatus::Failed,
                    "2026-11-23T10:00:04Z",
                    "2026-11-23T10:04:05Z",
                    120 << 20,
                    Some("vault unreachable"),
                ),
            ],
        }
    }

    #[test]
    fn list_shows_one_row_per_job_with_the_phases_of_backups() {
        let now = ts("2026-11-23T11:00:00Z");
        assert_eq!(table(&[], now), "no jobs");
        let text = table(&[backup_job()], now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("ID  VM"), "{text}");
        assert!(lines[1].contains("Completed with warning"), "{text}");
        assert!(lines[1].contains("4m 05s"), "{text}");
        assert!(lines[1].ends_with("done/failed"), "{text}");
        let json = list(&[backup_job()]).json;
        assert_eq!(json["jobs"][0]["id"], 12);
        assert_eq!(json["jobs"][0]["subtasks"][1]["status"], "failed");
    }

    #[test]
    fn show_details_every_subtask() {
        let text = detail(&backup_job(), ts("2026-11-23T11:00:00Z"));
        assert!(text.starts_with("job 12: Backup of web01"), "{text}");
        assert!(text.contains("Snapshot: Completed"), "{text}");
        assert!(text.contains("Transfer data to vault: Failed"), "{text}");
        assert!(text.contains("4.00 GiB"), "{text}");
        // 4 GiB scanned in 4 s by the snapshot.
        assert!(text.contains("1.00 GiB/s"), "{text}");
        assert!(text.contains("error       vault unreachable"), "{text}");
        assert_eq!(show(&backup_job()).json["operation"], "backup");
    }
}
