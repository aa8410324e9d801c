//! Reading the job history: one job, or the jobs a filter selects.

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Transaction};

use super::{Failure, count, micros, optional_timestamp, parse, timestamp};
use crate::{Catalog, Error, Job, JobFilter, JobId, JobStatus, Result, Subtask, SubtaskKind};

const JOB_COLUMNS: &str = "id, vm, operation, status, started, ended, point, error, pid";

impl Catalog {
    /// The job with this id ([`Error::UnknownJob`] if there is none).
    pub fn job(&self, id: JobId) -> Result<Job> {
        self.read(|tx| {
            let row = tx
                .query_row(
                    &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                    [id.0],
                    JobRow::read,
                )
                .optional()?
                .ok_or(Error::UnknownJob { id })?;
            row.into_job(tx)
        })
    }

    /// The jobs that `filter` selects, newest first.
    pub fn jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let mut conditions = Vec::new();
        let mut values = Vec::new();
        let mut condition = |sql: &str, value: Value| {
            values.push(value);
            conditions.push(format!("{sql} ?{}", values.len()));
        };
        if let Some(status) = filter.status {
            condition("status =", Value::Text(status.key().to_owned()));
        }
        if let Some(vm) = &filter.vm {
            condition("vm =", Value::Text(vm.as_str().to_owned()));
        }
        if let Some(operation) = filter.operation {
            condition("operation =", Value::Text(operation.key().to_owned()));
        }
        if let Some(since) = filter.since {
            condition("started >=", Value::Integer(micros(since)));
        }
        if let Some(until) = filter.until {
            condition("started <", Value::Integer(micros(until)));
        }
        let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs");
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(" ORDER BY started DESC, id DESC");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(
                " LIMIT {}",
                i64::try_from(limit).unwrap_or(i64::MAX)
            ));
        }
        self.read(|tx| {
            let rows = tx
                .prepare(&sql)?
                .query_map(rusqlite::params_from_iter(values), JobRow::read)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(|row| row.into_job(tx)).collect()
        })
    }

    /// The jobs still In progress, newest first: running now, or interrupted (their process
    /// is gone) and waiting for [`Catalog::fail_job`].
    pub fn unfinished_jobs(&self) -> Result<Vec<Job>> {
        self.jobs(&JobFilter {
            status: Some(JobStatus::InProgress),
            ..JobFilter::default()
        })
    }
}

/// The subtasks of `job`, in the order they were created (the order they run).
pub(super) fn subtasks(tx: &Transaction<'_>, job: JobId) -> Result<Vec<Subtask>, Failure> {
    let mut stmt = tx.prepare(
        "SELECT kind, status, started, ended, bytes_scanned, bytes_changed, bytes_uploaded, error,
                capture
         FROM subtasks WHERE job = ?1 ORDER BY rowid",
    )?;
    let rows = stmt
        .query_map([job.0], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<i64>>(3)?,
                [
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                ],
                r.get::<_, Option<String>>(7)?,
                r.get::<_, Option<String>>(8)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(
            |(kind, status, started, ended, [scanned, changed, uploaded], error, capture)| {
                let kind: SubtaskKind = parse(format_args!("job {job} subtask kind"), &kind)?;
                let what = |column: &str| format!("job {job} {} {column}", kind.key());
                Ok(Subtask {
                    kind,
                    status: parse(what("status"), &status)?,
                    started: optional_timestamp(what("started"), started)?,
                    ended: optional_timestamp(what("ended"), ended)?,
                    bytes_scanned: count(what("bytes_scanned"), scanned)?,
                    bytes_changed: count(what("bytes_changed"), changed)?,
                    bytes_uploaded: count(what("bytes_uploaded"), uploaded)?,
                    error,
                    capture: capture
                        .map(|json| {
                            serde_json::from_str(&json)
                                .map_err(|e| Failure::Corrupt(format!("{}: {e}", what("capture"))))
                        })
                        .transpose()?,
                })
            },
        )
        .collect()
}

/// A `jobs` row as stored, before its values are parsed.
struct JobRow {
    id: i64,
    vm: String,
    operation: String,
    status: String,
    started: i64,
    ended: Option<i64>,
    point: Option<String>,
    error: Option<String>,
    pid: i64,
}

impl JobRow {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
        Ok(JobRow {
            id: r.get(0)?,
            vm: r.get(1)?,
            operation: r.get(2)?,
            status: r.get(3)?,
            started: r.get(4)?,
            ended: r.get(5)?,
            point: r.get(6)?,
            error: r.get(7)?,
            pid: r.get(8)?,
        })
    }

    fn into_job(self, tx: &Transaction<'_>) -> Result<Job, Failure> {
        let id = JobId(self.id);
        let what = |column: &str| format!("job {id} {column}");
        Ok(Job {
            id,
            vm: parse(what("vm"), &self.vm)?,
            operation: parse(what("operation"), &self.operation)?,
            status: parse(what("status"), &self.status)?,
            started: timestamp(what("started"), self.started)?,
            ended: optional_timestamp(what("ended"), self.ended)?,
            point: self.point.map(|p| parse(what("point"), &p)).transpose()?,
            error: self.error,
            pid: u32::try_from(self.pid).map_err(|_| {
                Failure::Corrupt(format!("job {id} pid: {} is not a pid", self.pid))
            })?,
            subtasks: subtasks(tx, id)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Operation;

    const BACKUP: [SubtaskKind; 2] = [SubtaskKind::Snapshot, SubtaskKind::Transfer];

    use super::super::fixtures::{catalog, ts, vm};

    #[test]
    fn filters_select_by_status_vm_operation_time_and_limit() {
        let (_dir, catalog) = catalog();
        let at = |minute: u32| ts(&format!("2026-11-23T10:{minute:02}:00Z"));
        let a = catalog
            .create_job(&vm("web01"), Operation::Backup, &BACKUP, at(0))
            .expect("a");
        let b = catalog
            .create_job(&vm("db01"), Operation::BackupOnDemand, &BACKUP, at(10))
            .expect("b");
        let c = catalog
            .create_job(&vm("web01"), Operation::Restore, &[], at(20))
            .expect("c");
        let d = catalog
            .create_job(&vm("db01"), Operation::Backup, &BACKUP, at(30))
            .expect("d");
        catalog.fail_job(b, "disk missing", at(11)).expect("fail b");
        catalog.finish_job(c, None, at(21)).expect("finish c");
        let ids = |filter: JobFilter| -> Vec<JobId> {
            catalog
                .jobs(&filter)
                .expect("jobs")
                .into_iter()
                .map(|j| j.id)
                .collect()
        };
        assert_eq!(ids(JobFilter::default()), [d, c, b, a], "newest first");
        assert_eq!(
            ids(JobFilter {
                status: Some(JobStatus::Failed),
                ..Default::default()
            }),
            [b]
        );
        assert_eq!(
            ids(JobFilter {
                status: Some(JobStatus::InProgress),
                ..Default::default()
            }),
            [d, a]
        );
        let unfinished: Vec<_> = catalog
            .unfinished_jobs()
            .expect("unfinished")
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(unfinished, [d, a]);
        assert_eq!(
            ids(JobFilter {
                vm: Some(vm("web01")),
                ..Default::default()
            }),
            [c, a]
        );
        assert_eq!(
            ids(JobFilter {
                operation: Some(Operation::Backup),
                ..Default::default()
            }),
            [d, a]
        );
        assert_eq!(
            ids(JobFilter {
                since: Some(at(10)),
                until: Some(at(30)),
                ..Default::default()
            }),
            [c, b],
            "since inclusive, until exclusive"
        );
        assert_eq!(
            ids(JobFilter {
                vm: Some(vm("db01")),
                operation: Some(Operation::Backup),
                since: Some(at(0)),
                ..Default::default()
            }),
            [d]
        );
        assert_eq!(
            ids(JobFilter {
                limit: Some(2),
                ..Default::default()
            }),
            [d, c]
        );
        assert_eq!(
            ids(JobFilter {
                limit: Some(0),
                ..Default::default()
            }),
            []
        );
        let listed = catalog.jobs(&JobFilter::default()).expect("jobs");
        assert_eq!(
            listed[3].subtasks.len(),
            2,
            "listed jobs carry their subtasks"
        );
    }
}
