//! Jobs and their subtasks in the catalog.

use blockvault_core::{PointId, VmName};
use jiff::Timestamp;
use rusqlite::{OptionalExtension, Transaction, params};

use super::history::subtasks;
use super::{Failure, count_to_sql, micros, parse};
use crate::{
    Catalog, Error, JobId, JobStatus, Operation, Result, SubtaskKind, SubtaskOutcome,
    SubtaskStatus, job_status,
};

impl Catalog {
    /// Records a new job of `operation` on `vm`, In progress since `now`, run by this process,
    /// with `subtasks` (in the order they will run) all Pending. Nothing holds its lock: an
    /// engine that opens takes it for a job whose process died (the engine's own jobs are
    /// created with [`Catalog::create_job_with`], their lock held first).
    pub fn create_job(
        &self,
        vm: &VmName,
        operation: Operation,
        subtasks: &[SubtaskKind],
        now: Timestamp,
    ) -> Result<JobId> {
        let (id, ()) = self.create_job_with(vm, operation, subtasks, now, |_| Ok(()))?;
        Ok(id)
    }

    /// [`Catalog::create_job`] that runs `before_commit` with the new job's id once its row is
    /// written and before it is committed: what it returns exists before anyone can see the
    /// job (the engine takes the job's lock there, so that a job in the catalog always has a
    /// lock, held while its process lives). When it fails, the job is not created.
    pub fn create_job_with<T>(
        &self,
        vm: &VmName,
        operation: Operation,
        subtasks: &[SubtaskKind],
        now: Timestamp,
        before_commit: impl FnOnce(JobId) -> Result<T>,
    ) -> Result<(JobId, T)> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO jobs (vm, operation, status, started, pid) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    vm.as_str(),
                    operation.key(),
                    JobStatus::InProgress.key(),
                    micros(now),
                    std::process::id()
                ],
            )?;
            let id = JobId(tx.last_insert_rowid());
            for kind in subtasks {
                tx.execute(
                    "INSERT INTO subtasks (job, kind, status) VALUES (?1, ?2, ?3)",
                    params![id.0, kind.key(), SubtaskStatus::Pending.key()],
                )?;
            }
            let value = before_commit(id)?;
            Ok((id, value))
        })
    }

    /// Marks a Pending subtask of an in-progress job In progress since `now`.
    pub fn start_subtask(&self, job: JobId, kind: SubtaskKind, now: Timestamp) -> Result<()> {
        self.write(|tx| {
            running(tx, job)?;
            let from = subtask_status(tx, job, kind)?;
            if from != SubtaskStatus::Pending {
                return Err(Error::InvalidTransition {
                    job,
                    kind,
                    from,
                    to: SubtaskStatus::InProgress,
                }
                .into());
            }
            tx.execute(
                "UPDATE subtasks SET status = ?3, started = ?4 WHERE job = ?1 AND kind = ?2",
                params![
                    job.0,
                    kind.key(),
                    SubtaskStatus::InProgress.key(),
                    micros(now)
                ],
            )?;
            Ok(())
        })
    }

    /// Ends a Pending or In-progress subtask of an in-progress job with `outcome` (Completed,
    /// Skipped or Failed) at `now`. A subtask that never started gets `started = ended = now`.
    pub fn finish_subtask(
        &self,
        job: JobId,
        kind: SubtaskKind,
        outcome: &SubtaskOutcome,
        now: Timestamp,
    ) -> Result<()> {
        self.write(|tx| {
            running(tx, job)?;
            let from = subtask_status(tx, job, kind)?;
            if from.is_done() || !outcome.status.is_done() {
                return Err(Error::InvalidTransition {
                    job,
                    kind,
                    from,
                    to: outcome.status,
                }
                .into());
            }
            tx.execute(
                "UPDATE subtasks SET status = ?3, started = COALESCE(started, ?4), ended = ?4,
                     bytes_scanned = ?5, bytes_changed = ?6, bytes_uploaded = ?7, error = ?8
                 WHERE job = ?1 AND kind = ?2",
                params![
                    job.0,
                    kind.key(),
                    outcome.status.key(),
                    micros(now),
                    count_to_sql(outcome.bytes_scanned),
                    count_to_sql(outcome.bytes_changed),
                    count_to_sql(outcome.bytes_uploaded),
                    outcome.error
                ],
            )?;
            Ok(())
        })
    }

    /// Ends an in-progress job at `now` once all its subtasks have ended, and returns its
    /// status: [`job_status`] of its Snapshot and Transfer subtasks for a backup; for any other
    /// job, Failed if a subtask failed, else Completed. The job's error is the first failed
    /// subtask's error (for a backup Completed with warning: the transfer's), or, when none
    /// failed but the job completed with a warning, the first skipped subtask's reason.
    pub fn finish_job(
        &self,
        job: JobId,
        point: Option<&PointId>,
        now: Timestamp,
    ) -> Result<JobStatus> {
        self.write(|tx| finish(tx, job, point, now))
    }

    /// Ends an in-progress job whose process is giving up on it (shutting down): every subtask
    /// still Pending or In progress fails with `error`, and the job's status follows from its
    /// subtasks as in [`Catalog::finish_job`], so a backup whose Snapshot completed ends
    /// Completed with warning (its point is in the snapshot tier), not Failed.
    pub fn interrupt_job(&self, job: JobId, error: &str, now: Timestamp) -> Result<JobStatus> {
        self.write(|tx| {
            running(tx, job)?;
            fail_unfinished_subtasks(tx, job, error, now)?;
            finish(tx, job, None, now)
        })
    }

    /// Ends an in-progress job as Failed with `error` at `now`; every subtask that is Pending or
    /// In progress fails with the same error. [`Error::JobEnded`] if the job already ended
    /// (another process may have finished or failed it first).
    pub fn fail_job(&self, job: JobId, error: &str, now: Timestamp) -> Result<()> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE jobs SET status = ?2, ended = ?3, error = ?4 WHERE id = ?1 AND status = ?5",
                params![
                    job.0,
                    JobStatus::Failed.key(),
                    micros(now),
                    error,
                    JobStatus::InProgress.key()
                ],
            )?;
            if changed == 0 {
                running(tx, job)?;
            }
            fail_unfinished_subtasks(tx, job, error, now)
        })
    }
}

/// Ends a job at `now` once all its subtasks have ended (see [`Catalog::finish_job`]).
fn finish(
    tx: &Transaction<'_>,
    job: JobId,
    point: Option<&PointId>,
    now: Timestamp,
) -> Result<JobStatus, Failure> {
    running(tx, job)?;
    let subtasks = subtasks(tx, job)?;
    if let Some(s) = subtasks.iter().find(|s| !s.status.is_done()) {
        return Err(Error::SubtaskNotDone {
            job,
            kind: s.kind,
            status: s.status,
        }
        .into());
    }
    let status_of = |kind| subtasks.iter().find(|s| s.kind == kind).map(|s| s.status);
    let status = match (
        status_of(SubtaskKind::Snapshot),
        status_of(SubtaskKind::Transfer),
    ) {
        (Some(snapshot), Some(transfer)) => job_status(snapshot, transfer),
        _ if subtasks.iter().any(|s| s.status == SubtaskStatus::Failed) => JobStatus::Failed,
        _ => JobStatus::Completed,
    };
    let first_with = |status| {
        subtasks
            .iter()
            .find(|s| s.status == status)
            .and_then(|s| s.error.clone())
    };
    let error = first_with(SubtaskStatus::Failed).or_else(|| {
        (status == JobStatus::CompletedWithWarning)
            .then(|| first_with(SubtaskStatus::Skipped))
            .flatten()
    });
    tx.execute(
        "UPDATE jobs SET status = ?2, ended = ?3, point = ?4, error = ?5 WHERE id = ?1",
        params![
            job.0,
            status.key(),
            micros(now),
            point.map(PointId::as_str),
            error
        ],
    )?;
    Ok(status)
}

/// Fails every subtask of `job` that is Pending or In progress, with `error`.
fn fail_unfinished_subtasks(
    tx: &Transaction<'_>,
    job: JobId,
    error: &str,
    now: Timestamp,
) -> Result<(), Failure> {
    tx.execute(
        "UPDATE subtasks SET status = ?2, ended = ?3, error = ?4
         WHERE job = ?1 AND status IN (?5, ?6)",
        params![
            job.0,
            SubtaskStatus::Failed.key(),
            micros(now),
            error,
            SubtaskStatus::Pending.key(),
            SubtaskStatus::InProgress.key()
        ],
    )?;
    Ok(())
}

/// Fails unless `job` exists and is in progress.
pub(super) fn running(tx: &Transaction<'_>, job: JobId) -> Result<(), Failure> {
    let status: Option<String> = tx
        .query_row("SELECT status FROM jobs WHERE id = ?1", [job.0], |r| {
            r.get(0)
        })
        .optional()?;
    let status: JobStatus = match status {
        None => return Err(Error::UnknownJob { id: job }.into()),
        Some(s) => parse(format_args!("job {job} status"), &s)?,
    };
    if status.is_done() {
        return Err(Error::JobEnded { id: job, status }.into());
    }
    Ok(())
}

fn subtask_status(
    tx: &Transaction<'_>,
    job: JobId,
    kind: SubtaskKind,
) -> Result<SubtaskStatus, Failure> {
    let status: Option<String> = tx
        .query_row(
            "SELECT status FROM subtasks WHERE job = ?1 AND kind = ?2",
            params![job.0, kind.key()],
            |r| r.get(0),
        )
        .optional()?;
    match status {
        None => Err(Error::UnknownSubtask { job, kind }.into()),
        Some(s) => parse(format_args!("job {job} {} status", kind.key()), &s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JobFilter, SubtaskStatus as S};

    use super::super::fixtures::{catalog, ts, vm};

    const BACKUP: [SubtaskKind; 2] = [SubtaskKind::Snapshot, SubtaskKind::Transfer];

    fn outcome(status: SubtaskStatus) -> SubtaskOutcome {
        match status {
            S::Completed => SubtaskOutcome::completed(1000, 100, 40),
            S::Skipped => SubtaskOutcome::skipped("an earlier transfer of web01 is running"),
            S::Failed => SubtaskOutcome::failed("vault unreachable"),
            _ => unreachable!("not an outcome"),
        }
    }

    #[test]
    fn a_new_job_is_in_progress_with_pending_subtasks() {
        let (_dir, catalog) = catalog();
        let t0 = ts("2026-11-23T10:00:00Z");
        let id = catalog
            .create_job(&vm("web01"), Operation::Backup, &BACKUP, t0)
            .expect("create");
        let job = catalog.job(id).expect("job");
        assert_eq!(job.id, id);
        assert_eq!(job.vm, vm("web01"));
        assert_eq!(job.operation, Operation::Backup);
        assert_eq!(job.status, JobStatus::InProgress);
        assert_eq!(job.started, t0);
        assert_eq!(job.ended, None);
        assert_eq!(job.pid, std::process::id());
        assert!(job.is_backup());
        let kinds: Vec<_> = job.subtasks.iter().map(|s| (s.kind, s.status)).collect();
        assert_eq!(
            kinds,
            [
                (SubtaskKind::Snapshot, S::Pending),
                (SubtaskKind::Transfer, S::Pending)
            ]
        );
        assert_eq!(job.subtasks[0].started, None);
    }

    /// Every row of the SPEC table, run through the catalog: snapshot then transfer.
    #[test]
    fn backup_lifecycle_follows_the_status_table() {
        let (_dir, catalog) = catalog();
        let cases = [
            (S::Completed, S::Skipped, JobStatus::Completed, None),
            (S::Completed, S::Completed, JobStatus::Completed, None),
            (
                S::Completed,
                S::Failed,
                JobStatus::CompletedWithWarning,
                Some("vault unreachable"),
            ),
            (
                S::Failed,
                S::Skipped,
                JobStatus::Failed,
                Some("vault unreachable"),
            ),
        ];
        let point: PointId = "20261123-100000-0001".parse().expect("point");
        for (snapshot, transfer, expected, error) in cases {
            let t0 = ts("2026-11-23T10:00:00Z");
            let t1 = ts("2026-11-23T10:00:05Z");
            let t2 = ts("2026-11-23T10:01:00Z");
            let id = catalog
                .create_job(&vm("web01"), Operation::Backup, &BACKUP, t0)
                .expect("create");
            catalog
                .start_subtask(id, SubtaskKind::Snapshot, t0)
                .expect("start snapshot");
            catalog
                .finish_subtask(id, SubtaskKind::Snapshot, &outcome(snapshot), t1)
                .expect("finish snapshot");
            if snapshot == S::Completed {
                catalog
                    .start_subtask(id, SubtaskKind::Transfer, t1)
                    .expect("start transfer");
                let mid = catalog.job(id).expect("job");
                assert_eq!(mid.status, JobStatus::InProgress, "Completed + In progress");
                assert_eq!(
                    job_status(mid.subtasks[0].status, mid.subtasks[1].status),
                    JobStatus::InProgress
                );
            }
            catalog
                .finish_subtask(id, SubtaskKind::Transfer, &outcome(transfer), t2)
                .expect("finish transfer");
            let status = catalog.finish_job(id, Some(&point), t2).expect("finish");
            assert_eq!(status, expected, "{snapshot} + {transfer}");
            let job = catalog.job(id).expect("job");
            assert_eq!(job.status, expected);
            assert_eq!(job.ended, Some(t2));
            assert_eq!(job.point.as_ref(), Some(&point));
            assert_eq!(job.error.as_deref(), error, "{snapshot} + {transfer}");
            assert_eq!(job.duration(), Some(std::time::Duration::from_secs(60)));
            let snap = &job.subtasks[0];
            assert_eq!(
                (snap.status, snap.started, snap.ended),
                (snapshot, Some(t0), Some(t1))
            );
            let tr = &job.subtasks[1];
            assert_eq!(tr.status, transfer);
            assert_eq!(tr.ended, Some(t2));
            if snapshot == S::Completed {
                assert_eq!(tr.started, Some(t1));
            } else {
                assert_eq!(tr.started, Some(t2), "never started: started = ended");
            }
            if transfer == S::Completed {
                assert_eq!(
                    (tr.bytes_scanned, tr.bytes_changed, tr.bytes_uploaded),
                    (1000, 100, 40)
                );
            }
            if transfer == S::Skipped {
                assert!(tr.error.as_deref().is_some_and(|e| e.contains("earlier")));
            }
        }
    }

    #[test]
    fn finish_job_refuses_unfinished_subtasks_and_ended_jobs() {
        let (_dir, catalog) = catalog();
        let t0 = ts("2026-11-23T10:00:00Z");
        let id = catalog
            .create_job(&vm("web01"), Operation::Backup, &BACKUP, t0)
            .expect("create");
        catalog
            .start_subtask(id, SubtaskKind::Snapshot, t0)
            .expect("start");
        let err = catalog.finish_job(id, None, t0).expect_err("unfinished");
        assert!(
            matches!(
                err,
                Error::SubtaskNotDone {
                    kind: SubtaskKind::Snapshot,
                    status: S::InProgress,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = catalog
            .start_subtask(id, SubtaskKind::Snapshot, t0)
            .expect_err("started twice");
        assert!(matches!(err, Error::InvalidTransition { .. }), "{err:?}");
        let err = catalog
            .finish_subtask(
                id,
                SubtaskKind::Snapshot,
                &SubtaskOutcome {
                    status: S::InProgress,
                    ..outcome(S::Completed)
                },
                t0,
            )
            .expect_err("not an end state");
        assert!(
            matches!(
                err,
                Error::InvalidTransition {
                    to: S::InProgress,
                    ..
                }
            ),
            "{err:?}"
        );
        catalog.fail_job(id, "killed", t0).expect("fail");
        let err = catalog.finish_job(id, None, t0).expect_err("ended");
        assert!(
            matches!(
                err,
                Error::JobEnded {
                    status: JobStatus::Failed,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = catalog.fail_job(id, "again", t0).expect_err("ended");
        assert!(matches!(err, Error::JobEnded { .. }), "{err:?}");
        let err = catalog.job(JobId(999)).expect_err("unknown");
        assert!(
            matches!(err, Error::UnknownJob { id: JobId(999) }),
            "{err:?}"
        );
        let err = catalog
            .start_subtask(JobId(999), SubtaskKind::Snapshot, t0)
            .expect_err("unknown");
        assert!(matches!(err, Error::UnknownJob { .. }), "{err:?}");
    }

    #[test]
    fn fail_job_fails_every_unfinished_subtask() {
        let (_dir, catalog) = catalog();
        let t0 = ts("2026-11-23T10:00:00Z");
        let t1 = ts("2026-11-23T10:00:07Z");
        let id = catalog
            .create_job(&vm("web01"), Operation::Backup, &BACKUP, t0)
            .expect("create");
        catalog
            .start_subtask(id, SubtaskKind::Snapshot, t0)
            .expect("start");
        catalog
            .fail_job(id, "interrupted: process 4242 is gone", t1)
            .expect("fail");
        let job = catalog.job(id).expect("job");
        assert_eq!(job.status, JobStatus::Failed);
        assert_eq!(job.ended, Some(t1));
        assert_eq!(
            job.error.as_deref(),
            Some("interrupted: process 4242 is gone")
        );
        for s in &job.subtasks {
            assert_eq!(s.status, S::Failed, "{:?}", s.kind);
            assert_eq!(s.ended, Some(t1));
            assert_eq!(s.error, job.error);
        }
        assert_eq!(job.subtasks[0].started, Some(t0));
        assert_eq!(job.subtasks[1].started, None, "the transfer never started");
        assert!(catalog.unfinished_jobs().expect("unfinished").is_empty());
    }

    #[test]
    fn single_step_jobs_complete_or_fail_by_their_subtasks() {
        let (_dir, catalog) = catalog();
        let t0 = ts("2026-11-23T10:00:00Z");
        let restore = catalog
            .create_job(&vm("web01"), Operation::Restore, &[], t0)
            .expect("create");
        assert_eq!(
            catalog.finish_job(restore, None, t0).expect("finish"),
            JobStatus::Completed
        );
        let verify = catalog
            .create_job(
                &vm("web01"),
                Operation::Verify,
                &[SubtaskKind::Transfer],
                t0,
            )
            .expect("create");
        catalog
            .finish_subtask(verify, SubtaskKind::Transfer, &outcome(S::Failed), t0)
            .expect("finish subtask");
        assert_eq!(
            catalog.finish_job(verify, None, t0).expect("finish"),
            JobStatus::Failed
        );
        assert_eq!(
            catalog.job(verify).expect("job").error.as_deref(),
            Some("vault unreachable")
        );
    }

    /// Two `blockvault backup` processes started together: two handles on one file, creating
    /// and finishing jobs from two threads at once.
    #[test]
    fn two_handles_on_one_file_create_jobs_concurrently() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("catalog.sqlite");
        const PER_THREAD: usize = 50;
        let created: Vec<Vec<JobId>> = std::thread::scope(|scope| {
            let workers: Vec<_> = ["web01", "db01"]
                .into_iter()
                .map(|name| {
                    let path = &path;
                    scope.spawn(move || {
                        let catalog = Catalog::open(path).expect("open");
                        let t0 = ts("2026-11-23T10:00:00Z");
                        (0..PER_THREAD)
                            .map(|_| {
                                let id = catalog
                                    .create_job(&vm(name), Operation::Backup, &BACKUP, t0)
                                    .expect("create");
                                catalog
                                    .start_subtask(id, SubtaskKind::Snapshot, t0)
                                    .expect("start");
                                id
                            })
                            .collect()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("worker"))
                .collect()
        });
        let mut all: Vec<JobId> = created.concat();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 2 * PER_THREAD, "ids are unique");
        let catalog = Catalog::open(&path).expect("open");
        let jobs = catalog.jobs(&JobFilter::default()).expect("jobs");
        assert_eq!(jobs.len(), 2 * PER_THREAD, "nothing lost");
        for name in ["web01", "db01"] {
            let n = jobs.iter().filter(|j| j.vm == vm(name)).count();
            assert_eq!(n, PER_THREAD, "{name}");
        }
        assert!(jobs.iter().all(|j| j.subtasks[0].status == S::InProgress));
    }
}
