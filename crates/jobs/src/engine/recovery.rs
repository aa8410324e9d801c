//! Telling the truth after a crash.
//!
//! Every running job holds a lock on `STATE/locks/job-<id>` for as long as it runs (taken
//! under a temporary name before the job row exists, then renamed: the lock belongs to the
//! file, not its name). The kernel drops the lock when the process dies, however it dies. So
//! when an engine opens, an "In progress" job whose lock it can take has no live process
//! behind it: it is marked Failed, and what it left in the snapshot tier (chunks and maps of a
//! snapshot that never committed) is swept. Chunks it uploaded to the vault stay: the chunk
//! journal lists them, so the next transfer does not send them again, and vault garbage
//! collection owns everything else there.

use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::Engine;
use super::lock::Lock;
use crate::{JobId, Result, SubtaskKind};

/// What opening the engine repaired.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Recovered {
    /// Jobs found in progress with no process behind them, now marked Failed.
    pub failed_jobs: Vec<JobId>,
    /// Bytes of snapshot leftovers deleted.
    pub bytes_freed: u64,
    /// Problems met while cleaning (the jobs are marked Failed regardless).
    pub warnings: Vec<String>,
}

/// The message an interrupted job is failed with.
pub(crate) const INTERRUPTED: &str = "interrupted: the blockvault process running this job \
     stopped before it finished (killed, crashed, or the host went down)";

/// A job younger than this whose lock file does not exist yet may be between its row and its
/// lock; it is left alone.
const GRACE: SignedDuration = SignedDuration::from_secs(60);

pub(crate) fn job_lock(state: &Path, job: JobId) -> PathBuf {
    state.join("locks").join(format!("job-{job}"))
}

/// A lock for a job about to be created, under a name no other job can have.
fn new_job_lock(state: &Path) -> Result<Lock> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = state
        .join("locks")
        .join(format!("job-new-{}-{n}", std::process::id()));
    Lock::acquire(&path)
}

impl Engine {
    /// Creates a job in the catalog and holds its lock until the returned [`Lock`] is
    /// dropped (release it with [`Lock::remove`] when the job has ended).
    pub(super) fn begin_job(
        &self,
        vm: &blockvault_core::VmName,
        operation: crate::Operation,
        subtasks: &[SubtaskKind],
    ) -> Result<(JobId, Lock)> {
        let mut lock = new_job_lock(&self.state_dir)?;
        let job = self
            .catalog
            .create_job(vm, operation, subtasks, self.now())?;
        lock.rename(&job_lock(&self.state_dir, job))?;
        Ok((job, lock))
    }

    pub(super) async fn recover(&self) -> Result<Recovered> {
        let mut recovered = Recovered::default();
        let now = Timestamp::now();
        for job in self.catalog.unfinished_jobs()? {
            let path = job_lock(&self.state_dir, job.id);
            if !path.exists() && now.duration_since(job.started) < GRACE {
                continue;
            }
            let Some(held) = Lock::try_acquire(&path)? else {
                continue; // its process is alive
            };
            match self.catalog.fail_job(job.id, INTERRUPTED, now) {
                Ok(()) => recovered.failed_jobs.push(job.id),
                // Its process finished it between the listing and the lock: not ours to fail.
                Err(crate::Error::JobEnded { .. }) => {
                    held.remove();
                    continue;
                }
                Err(e) => return Err(e),
            }
            if job.subtask(SubtaskKind::Snapshot).is_some() {
                let snapshot = self.vm_lock(&job.vm, SubtaskKind::Snapshot);
                // A snapshot of the VM running now will sweep after itself; skip if busy.
                if let Some(_vm) = Lock::try_acquire(&snapshot)? {
                    match self.snapshots.sweep(&job.vm).await {
                        Ok(report) => recovered.bytes_freed += report.bytes_freed,
                        Err(e) => recovered
                            .warnings
                            .push(format!("could not clean after job {}: {e}", job.id)),
                    }
                }
            }
            held.remove();
        }
        // Temporary lock files of processes that died between taking them and creating a job.
        if let Ok(entries) = std::fs::read_dir(self.state_dir.join("locks")) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                // Old enough that its creator is not between creating and locking it.
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > GRACE.unsigned_abs()));
                if name.starts_with("job-new-")
                    && old
                    && let Ok(Some(held)) = Lock::try_acquire(&entry.path())
                {
                    held.remove();
                }
            }
        }
        Ok(recovered)
    }
}
