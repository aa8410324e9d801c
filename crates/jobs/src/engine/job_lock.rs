//! The lock a running job holds, `STATE/locks/job-<id>`: how other processes tell a running
//! job from one whose process died.
//!
//! The lock is taken before the job's row is committed ([`Catalog::create_job_with`]), and
//! held by the process until the job has ended; then its file is removed. So whenever the
//! catalog shows a job In progress, either its process holds the lock or that process is gone
//! (a missing file means the same: only a holder removes it). There is no moment, however
//! short, at which a live job looks dead or a dead one alive.
//!
//! While the job runs, a heartbeat sets the file's modification time every [`HEARTBEAT`]: the
//! last one is when the process was last known alive, the end time recovery gives the job.
//!
//! [`Catalog::create_job_with`]: crate::Catalog::create_job_with

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use blockvault_core::StateDir;

use super::lock::Lock;
use crate::{Error, JobId, Result};

/// How often a running job's lock file is touched.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(5);

/// The job id a lock file is named after, if it is a job's lock.
pub(crate) fn job_of(file_name: &str) -> Option<JobId> {
    let digits = file_name.strip_prefix("job-")?;
    digits
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| digits.parse().ok().map(JobId))
        .flatten()
}

/// The held lock of a running job, with its heartbeat. Dropping it removes the file and
/// releases the lock: drop it only once the job has ended (or its process gives up on it,
/// which recovery then marks Failed).
#[derive(Debug)]
pub(crate) struct JobLock {
    lock: Option<Lock>,
    heartbeat: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl JobLock {
    /// Takes the lock of job `id` (creating its file) and starts its heartbeat.
    pub(crate) fn take(state: &StateDir, id: JobId) -> Result<JobLock> {
        let lock = Lock::acquire(&state.job_lock(id))?;
        let file = lock
            .file()
            .try_clone()
            .map_err(|e| Error::lock(lock.path(), e))?;
        let (stop, stopped) = mpsc::channel::<()>();
        let beat = std::thread::Builder::new()
            .name(format!("job-{id}-heartbeat"))
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(HEARTBEAT) {
                    // A missed beat only makes a death look earlier, never a live job dead.
                    let _ = file.set_modified(SystemTime::now());
                }
            })
            .map_err(|e| Error::lock(lock.path(), e))?;
        Ok(JobLock {
            lock: Some(lock),
            heartbeat: Some((stop, beat)),
        })
    }

    /// Releases the lock and removes its file (what dropping it does, said out loud).
    pub(crate) fn remove(self) {
        drop(self);
    }
}

impl Drop for JobLock {
    fn drop(&mut self) {
        if let Some((stop, beat)) = self.heartbeat.take() {
            drop(stop);
            let _ = beat.join();
        }
        if let Some(lock) = self.lock.take() {
            lock.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::lock::Probe;
    use super::*;

    #[test]
    fn a_job_lock_is_held_while_it_lives_and_its_file_goes_with_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let held = JobLock::take(&StateDir::new(dir.path()), JobId(12)).expect("take");
        let path = StateDir::new(dir.path()).job_lock(JobId(12));
        assert!(matches!(Lock::try_existing(&path), Ok(Probe::Held)));
        held.remove();
        assert!(!path.exists(), "the file of an ended job is removed");
    }

    #[test]
    fn only_job_lock_names_are_jobs() {
        assert_eq!(job_of("job-42"), Some(JobId(42)));
        for name in [
            "job-",
            "job-new-123-0",
            "job-4x",
            "web01.snapshot",
            "job-+1",
        ] {
            assert_eq!(job_of(name), None, "{name}");
        }
    }
}
