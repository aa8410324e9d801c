//! Telling the truth after a crash.
//!
//! Every job holds its lock `STATE/locks/job-<id>` from before its row is committed until it
//! has ended (see `job_lock`), and the kernel drops the lock when the process dies, however it
//! dies. So when an engine opens, a job In progress whose lock it can take, or whose lock file
//! is gone, has no live process behind it, whenever the kill came: it is marked Failed at once.
//! Its end time is the last time its process was known alive: the lock file's modification
//! time, which the running job sets every 5 s (so at most 5 s before it died), and never
//! earlier than the last start or end the job recorded. What it left in the snapshot tier
//! (chunks and maps of a snapshot that never committed) is swept. Chunks it uploaded to the
//! vault stay: the chunk journal lists them, so the next transfer does not send them again, and
//! vault garbage collection owns everything else there.
//!
//! Lock files do not pile up: a job removes its own when it ends; recovery removes those of the
//! jobs it fails, and any other job lock file no process holds whose job is not In progress.

use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::Engine;
use super::job_lock::job_of;
use super::lock::{Lock, Probe};
use crate::{Catalog, Job, JobId, Result, SubtaskKind};

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

/// Temporary lock files of older versions (`job-new-<pid>-<n>`, taken before the job row and
/// renamed after it) younger than this may still be between their creation and their lock.
const LEGACY_GRACE: SignedDuration = SignedDuration::from_secs(60);

impl Engine {
    pub(super) async fn recover(&self) -> Result<Recovered> {
        let mut recovered = Recovered::default();
        let now = Timestamp::now();
        for job in self.db(|c| c.unfinished_jobs()).await? {
            let held = match Lock::try_existing(&self.state.job_lock(job.id))? {
                Probe::Held => continue, // its process is alive
                Probe::Free(held) => Some(held),
                // Only a holder removes the file: its process gave the job up, or died and
                // another recovery found it first (then failing it again is refused below).
                Probe::Missing => None,
            };
            let died = last_alive(&job, held.as_ref().map(Lock::file), now);
            let id = job.id;
            match self.db(move |c| c.fail_job(id, INTERRUPTED, died)).await {
                Ok(()) => recovered.failed_jobs.push(job.id),
                // Its process finished it between the listing and the lock: not ours to fail.
                Err(crate::Error::JobEnded { .. }) => {
                    if let Some(held) = held {
                        held.remove();
                    }
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
            if let Some(held) = held {
                held.remove();
            }
        }
        let dir = self.state.locks();
        self.db(move |c| sweep_job_locks(c, &dir)).await?;
        Ok(recovered)
    }
}

/// Removes the lock files no process holds whose job is not In progress (a job that ended
/// without removing its file, or one that was never committed), and older versions'
/// temporary ones. A dead job still In progress keeps its file for the next recovery.
fn sweep_job_locks(catalog: &Catalog, dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if let Some(id) = job_of(&name) {
            let Probe::Free(held) = Lock::try_existing(&path)? else {
                continue;
            };
            let ended = match catalog.job(id) {
                Ok(job) => job.status.is_done(),
                Err(crate::Error::UnknownJob { .. }) => true,
                Err(e) => return Err(e),
            };
            if ended {
                held.remove();
            }
        } else if name.starts_with("job-new-") {
            let old = entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| {
                t.elapsed()
                    .is_ok_and(|age| age > LEGACY_GRACE.unsigned_abs())
            });
            if old && let Probe::Free(held) = Lock::try_existing(&path)? {
                held.remove();
            }
        }
    }
    Ok(())
}

/// When the process of `job` was last known alive: its lock file's last heartbeat (`lock`,
/// when the file is there), else `now`; never before the last time the job recorded, nor after
/// `now`.
fn last_alive(job: &Job, lock: Option<&std::fs::File>, now: Timestamp) -> Timestamp {
    let recorded = job
        .subtasks
        .iter()
        .flat_map(|s| [s.started, s.ended])
        .flatten()
        .fold(job.started, Timestamp::max);
    let beat = lock
        .and_then(|file| file.metadata().ok()?.modified().ok())
        .and_then(|t| Timestamp::try_from(t).ok())
        .unwrap_or(now);
    beat.min(now).max(recorded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Operation, SubtaskOutcome};

    /// Whatever moment another process looks (and so whatever moment a kill comes), a job In
    /// progress in the catalog has its lock held: recovery never needs to wait and see.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_in_progress_always_has_its_lock_held_from_its_first_moment() {
        let dir = tempfile::tempdir().expect("tmp");
        let (engine, _) = Engine::open(dir.path(), None).await.expect("engine");
        let vm: blockvault_core::VmName = "web01".parse().expect("vm");
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let (state, done) = (dir.path().to_owned(), std::sync::Arc::clone(&done));
            std::thread::spawn(move || {
                let catalog = Catalog::open(state.join("catalog.sqlite")).expect("open");
                let (mut looked, mut unheld) = (0, std::collections::BTreeSet::new());
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    for job in catalog.unfinished_jobs().expect("jobs") {
                        looked += 1;
                        let probe = Lock::try_existing(
                            &blockvault_core::StateDir::new(&state).job_lock(job.id),
                        )
                        .expect("probe");
                        if matches!(probe, Probe::Held) {
                            continue;
                        }
                        // A job removes its lock only once it has ended.
                        drop(probe);
                        if !catalog.job(job.id).expect("job").status.is_done() {
                            unheld.insert(job.id);
                        }
                    }
                }
                (looked, unheld)
            })
        };
        for _ in 0..300 {
            let (job, lock) = engine
                .begin_job(&vm, Operation::Restore, &[])
                .await
                .expect("begin");
            engine.finish_job(&job, None).await.expect("finish");
            lock.remove();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let (looked, unheld) = watcher.join().expect("watcher");
        assert!(looked > 0, "the watcher saw no job in progress");
        assert!(
            unheld.is_empty(),
            "jobs in progress without their lock: {unheld:?}"
        );
        let locks: Vec<_> = std::fs::read_dir(dir.path().join("locks"))
            .expect("locks")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(
            locks.is_empty(),
            "lock files of ended jobs remain: {locks:?}"
        );
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn a_dead_job_ends_at_its_last_heartbeat_never_before_what_it_recorded() {
        let dir = tempfile::tempdir().expect("tmp");
        let catalog = Catalog::open(dir.path().join("c.sqlite")).expect("catalog");
        let vm: blockvault_core::VmName = "web01".parse().expect("vm");
        let t0 = ts("2026-01-01T10:00:00Z");
        let id = catalog
            .create_job(
                &vm,
                Operation::Backup,
                &[SubtaskKind::Snapshot, SubtaskKind::Transfer],
                t0,
            )
            .expect("create");
        catalog
            .start_subtask(id, SubtaskKind::Snapshot, ts("2026-01-01T10:00:02Z"))
            .expect("start");
        catalog
            .finish_subtask(
                id,
                SubtaskKind::Snapshot,
                &SubtaskOutcome::completed(1, 1, 1),
                ts("2026-01-01T10:00:09Z"),
            )
            .expect("finish");
        let job = catalog.job(id).expect("job");
        let file = std::fs::File::create(dir.path().join("job-1")).expect("file");
        let now = ts("2026-01-03T00:00:00Z");
        let cases = [
            ("2026-01-01T10:05:00Z", "2026-01-01T10:05:00Z"),
            // Before what the job recorded: it was alive then.
            ("2026-01-01T10:00:05Z", "2026-01-01T10:00:09Z"),
            // A clock that ran ahead: never after now.
            ("2026-02-01T00:00:00Z", "2026-01-03T00:00:00Z"),
        ];
        for (beat, expected) in cases {
            file.set_modified(ts(beat).into()).expect("set mtime");
            assert_eq!(last_alive(&job, Some(&file), now), ts(expected), "{beat}");
        }
        assert_eq!(last_alive(&job, None, now), now, "no file: found dead now");
    }
}
