//! Job records as the catalog returns them, and what callers pass in to change them.

use std::time::Duration;

use blockvault_core::{PointId, VmName};
use jiff::Timestamp;
use serde::Serialize;

use crate::{CaptureRecord, JobId, JobStatus, Operation, SubtaskKind, SubtaskStatus};

/// One job: an operation on one VM, with its subtasks (Snapshot then Transfer for a backup;
/// none for the operations that are a single step).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Job {
    pub id: JobId,
    pub vm: VmName,
    pub operation: Operation,
    pub status: JobStatus,
    pub started: Timestamp,
    /// When the job ended; `None` while it is in progress.
    pub ended: Option<Timestamp>,
    /// The recovery point the job made (or restored, or verified).
    pub point: Option<PointId>,
    /// Why the job failed, or the warning of a job that completed with one.
    pub error: Option<String>,
    /// The process that ran the job (to tell a running job from an interrupted one).
    pub pid: u32,
    /// In the order they run.
    pub subtasks: Vec<Subtask>,
}

impl Job {
    /// How long the job ran; `None` while it is in progress.
    pub fn duration(&self) -> Option<Duration> {
        span(Some(self.started), self.ended)
    }

    /// The subtask of that kind, if the job has one.
    pub fn subtask(&self, kind: SubtaskKind) -> Option<&Subtask> {
        self.subtasks.iter().find(|s| s.kind == kind)
    }

    /// Whether the job is a backup: it has both a Snapshot and a Transfer subtask, and its
    /// status follows [`job_status`](crate::job_status).
    pub fn is_backup(&self) -> bool {
        self.subtask(SubtaskKind::Snapshot).is_some()
            && self.subtask(SubtaskKind::Transfer).is_some()
    }
}

/// One phase of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Subtask {
    pub kind: SubtaskKind,
    pub status: SubtaskStatus,
    /// `None` until the subtask starts (a subtask that failed before it started keeps `None`).
    pub started: Option<Timestamp>,
    pub ended: Option<Timestamp>,
    /// Bytes of allocated data read from the disks.
    pub bytes_scanned: u64,
    /// Bytes of blocks that differ from the previous point.
    pub bytes_changed: u64,
    /// Bytes written: to the snapshot tier by a Snapshot, to the vault by a Transfer.
    pub bytes_uploaded: u64,
    /// Why it failed, or why it was skipped.
    pub error: Option<String>,
    /// A Snapshot's capture: how the instant was fixed, the freeze window, and how each
    /// disk's changes were found. `None` for a Transfer, and for Snapshots recorded before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureRecord>,
}

impl Subtask {
    /// How long the subtask ran; `None` unless it both started and ended.
    pub fn duration(&self) -> Option<Duration> {
        span(self.started, self.ended)
    }

    /// Bytes per second of what bounds the subtask: disk data read for a Snapshot, bytes
    /// uploaded for a Transfer. `None` unless the subtask ran for a measurable time.
    pub fn throughput(&self) -> Option<f64> {
        let secs = self.duration()?.as_secs_f64();
        let bytes = match self.kind {
            SubtaskKind::Snapshot => self.bytes_scanned,
            SubtaskKind::Transfer => self.bytes_uploaded,
        };
        (secs > 0.0).then(|| bytes as f64 / secs)
    }
}

/// How a subtask ended, for [`Catalog::finish_subtask`](crate::Catalog::finish_subtask).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubtaskOutcome {
    /// Completed, Skipped or Failed.
    pub status: SubtaskStatus,
    pub bytes_scanned: u64,
    pub bytes_changed: u64,
    pub bytes_uploaded: u64,
    /// Why it failed or was skipped.
    pub error: Option<String>,
}

impl SubtaskOutcome {
    /// Completed, having moved these bytes.
    pub fn completed(bytes_scanned: u64, bytes_changed: u64, bytes_uploaded: u64) -> Self {
        SubtaskOutcome {
            status: SubtaskStatus::Completed,
            bytes_scanned,
            bytes_changed,
            bytes_uploaded,
            error: None,
        }
    }

    /// Skipped, for this reason.
    pub fn skipped(reason: impl Into<String>) -> Self {
        SubtaskOutcome {
            status: SubtaskStatus::Skipped,
            bytes_scanned: 0,
            bytes_changed: 0,
            bytes_uploaded: 0,
            error: Some(reason.into()),
        }
    }

    /// Failed with this error (set the byte counts by hand for what was done before).
    pub fn failed(error: impl Into<String>) -> Self {
        SubtaskOutcome {
            status: SubtaskStatus::Failed,
            bytes_scanned: 0,
            bytes_changed: 0,
            bytes_uploaded: 0,
            error: Some(error.into()),
        }
    }
}

/// Which jobs [`Catalog::jobs`](crate::Catalog::jobs) lists; the default lists every job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub vm: Option<VmName>,
    pub operation: Option<Operation>,
    /// Jobs started at or after this time.
    pub since: Option<Timestamp>,
    /// Jobs started before this time.
    pub until: Option<Timestamp>,
    /// At most this many jobs (the newest).
    pub limit: Option<usize>,
}

/// The time from `start` to `end`, or `None` if either is missing. A clock that went backwards
/// gives zero, not an error.
fn span(start: Option<Timestamp>, end: Option<Timestamp>) -> Option<Duration> {
    let elapsed = end?.duration_since(start?);
    Some(Duration::try_from(elapsed).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn subtask(
        kind: SubtaskKind,
        started: Option<&str>,
        ended: Option<&str>,
        scanned: u64,
        uploaded: u64,
    ) -> Subtask {
        Subtask {
            kind,
            status: SubtaskStatus::Completed,
            started: started.map(ts),
            ended: ended.map(ts),
            bytes_scanned: scanned,
            bytes_changed: 0,
            bytes_uploaded: uploaded,
            error: None,
            capture: None,
        }
    }

    #[test]
    fn throughput_is_what_bounds_each_subtask_and_needs_a_duration() {
        use SubtaskKind::{Snapshot, Transfer};
        let t0 = Some("2026-11-23T10:00:00Z");
        let t2 = Some("2026-11-23T10:00:02Z");
        assert_eq!(
            subtask(Transfer, t0, t2, 1000, 400).throughput(),
            Some(200.0)
        );
        assert_eq!(
            subtask(Snapshot, t0, t2, 1000, 400).throughput(),
            Some(500.0)
        );
        assert_eq!(subtask(Transfer, t0, t2, 0, 0).throughput(), Some(0.0));
        assert_eq!(subtask(Snapshot, t0, t0, 1000, 0).throughput(), None);
        assert_eq!(subtask(Snapshot, None, t2, 1000, 0).throughput(), None);
        assert_eq!(subtask(Snapshot, t0, None, 1000, 0).duration(), None);
        assert_eq!(
            subtask(Snapshot, t2, t0, 1, 1).duration(),
            Some(Duration::ZERO),
            "a clock that went back"
        );
    }

    #[test]
    fn jobs_serialize_with_keys_and_rfc3339_times() {
        let job = Job {
            id: JobId(3),
            vm: "web01".parse().expect("vm"),
            operation: Operation::BackupOnDemand,
            status: JobStatus::CompletedWithWarning,
            started: ts("2026-11-23T10:00:00Z"),
            ended: Some(ts("2026-11-23T10:01:30Z")),
            point: None,
            error: Some("vault unreachable".to_owned()),
            pid: 77,
            subtasks: vec![subtask(
                SubtaskKind::Transfer,
                Some("2026-11-23T10:00:00Z"),
                None,
                5,
                0,
            )],
        };
        let json = serde_json::to_value(&job).expect("json");
        assert_eq!(json["id"], 3);
        assert_eq!(json["operation"], "backup-on-demand");
        assert_eq!(json["status"], "completed-with-warning");
        assert_eq!(json["started"], "2026-11-23T10:00:00Z");
        assert_eq!(json["subtasks"][0]["kind"], "transfer");
        assert_eq!(json["subtasks"][0]["ended"], serde_json::Value::Null);
        assert_eq!(job.duration(), Some(Duration::from_secs(90)));
        assert!(!job.is_backup());
    }
}
