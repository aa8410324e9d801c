//! What Snapshot subtasks recorded of their captures (see [`CaptureRecord`]).

use blockvault_core::VmName;
use jiff::Timestamp;
use rusqlite::params;

use super::jobs::running;
use super::{Failure, timestamp};
use crate::{CaptureRecord, Catalog, ChangesFrom, JobId, Result, SubtaskKind, SubtaskStatus};

/// Snapshots looked at to find the last full read of a VM's disks.
const LOOK_BACK: i64 = 1000;

impl Catalog {
    /// Records how the Snapshot subtask of in-progress job `job` captured the disks; recorded
    /// again, the later record wins.
    pub fn record_capture(&self, job: JobId, record: &CaptureRecord) -> Result<()> {
        self.write(|tx| {
            let json = serde_json::to_string(record)
                .map_err(|e| Failure::Corrupt(format!("job {job} capture: {e}")))?;
            running(tx, job)?;
            tx.execute(
                "UPDATE subtasks SET capture = ?3 WHERE job = ?1 AND kind = ?2",
                params![job.0, SubtaskKind::Snapshot.key(), json],
            )?;
            Ok(())
        })
    }

    /// When the newest completed Snapshot of `vm` that read every disk in full started (a full
    /// scan, or a changed-extents hint checked by one): what the periodic check of change
    /// tracking counts from. `None` when no recorded Snapshot did (among the last thousand).
    pub fn last_full_read(&self, vm: &VmName) -> Result<Option<Timestamp>> {
        self.read(|tx| {
            let mut stmt = tx.prepare(
                "SELECT j.started, s.capture FROM subtasks s JOIN jobs j ON s.job = j.id
                 WHERE j.vm = ?1 AND s.kind = ?2 AND s.status = ?3 AND s.capture IS NOT NULL
                 ORDER BY j.started DESC LIMIT ?4",
            )?;
            let rows = stmt
                .query_map(
                    params![
                        vm.as_str(),
                        SubtaskKind::Snapshot.key(),
                        SubtaskStatus::Completed.key(),
                        LOOK_BACK
                    ],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            for (started, json) in rows {
                // A record this build cannot read proves nothing: look further back.
                let Ok(record) = serde_json::from_str::<CaptureRecord>(&json) else {
                    continue;
                };
                let full = record
                    .disks
                    .iter()
                    .all(|d| d.changes == ChangesFrom::FullScan || d.hint_missed.is_some());
                if full {
                    return Ok(Some(timestamp(
                        format_args!("vm {vm} snapshot start"),
                        started,
                    )?));
                }
            }
            Ok(None)
        })
    }
}
