//! How the engine records its jobs: each step goes to the catalog on the blocking pool (never
//! on a runtime worker), then out on the event stream (see `events`), so that a subscriber
//! never hears of a step the catalog does not show.

use std::sync::Arc;

use blockvault_core::{PointId, VmName};
use blockvault_vault::Progress;

use super::Engine;
use super::job_lock::JobLock;
use crate::events::{JobEventKind, JobProgress, JobRef, Warnings};
use crate::{Catalog, Job, JobStatus, Operation, Result, SubtaskKind, SubtaskOutcome};

impl Engine {
    /// Runs `f` with the catalog on the blocking pool ([`Catalog::call`]).
    pub(super) async fn db<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Catalog) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.catalog.call(f).await
    }

    /// Creates a job in the catalog, its lock held before the row is committed; the lock is
    /// released and its file removed when the returned [`JobLock`] is dropped, which must
    /// happen only once the job has ended. Publishes `Started`.
    pub(super) async fn begin_job(
        &self,
        vm: &VmName,
        operation: Operation,
        subtasks: &[SubtaskKind],
    ) -> Result<(JobRef, JobLock)> {
        let (state, now) = (self.state.clone(), self.now());
        let (owned_vm, subtasks) = (vm.clone(), subtasks.to_vec());
        let (id, lock) = self
            .db(move |c| {
                c.create_job_with(&owned_vm, operation, &subtasks, now, |id| {
                    JobLock::take(&state, id)
                })
            })
            .await?;
        let job = JobRef {
            id,
            vm: vm.clone(),
            operation,
        };
        self.events.publish(&job, JobEventKind::Started);
        Ok((job, lock))
    }

    pub(super) async fn start_subtask(&self, job: &JobRef, kind: SubtaskKind) -> Result<()> {
        let (id, now) = (job.id, self.now());
        self.db(move |c| c.start_subtask(id, kind, now)).await?;
        self.events
            .publish(job, JobEventKind::PhaseStarted { phase: kind });
        Ok(())
    }

    pub(super) async fn finish_subtask(
        &self,
        job: &JobRef,
        kind: SubtaskKind,
        outcome: SubtaskOutcome,
    ) -> Result<()> {
        let (id, now) = (job.id, self.now());
        let (status, error) = (outcome.status, outcome.error.clone());
        self.db(move |c| c.finish_subtask(id, kind, &outcome, now))
            .await?;
        self.events.publish(
            job,
            JobEventKind::PhaseEnded {
                phase: kind,
                status,
                error,
            },
        );
        Ok(())
    }

    /// Ends the job once its subtasks have ended ([`Catalog::finish_job`]) and returns it as
    /// recorded.
    pub(super) async fn finish_job(&self, job: &JobRef, point: Option<&PointId>) -> Result<Job> {
        let (id, now, point) = (job.id, self.now(), point.cloned());
        let ended = self
            .db(move |c| {
                c.finish_job(id, point.as_ref(), now)?;
                c.job(id)
            })
            .await?;
        self.ended(job, None, &ended, false);
        Ok(ended)
    }

    /// Fails the job and its unfinished subtasks with `error` ([`Catalog::fail_job`]).
    pub(super) async fn fail_job(&self, job: &JobRef, error: &str) -> Result<()> {
        let (id, now, error) = (job.id, self.now(), error.to_owned());
        let (before, ended) = self
            .db(move |c| {
                let before = c.job(id)?;
                c.fail_job(id, &error, now)?;
                Ok((before, c.job(id)?))
            })
            .await?;
        self.ended(job, Some(&before), &ended, false);
        Ok(())
    }

    /// Ends this process's job `job` as it stands, because the process gives up on it (a
    /// shutdown past its grace period): [`Catalog::interrupt_job`].
    pub(crate) async fn interrupt_job(&self, job: &Job, reason: &str) -> Result<JobStatus> {
        let (id, now, reason) = (job.id, self.now(), reason.to_owned());
        let (before, ended) = self
            .db(move |c| {
                let before = c.job(id)?;
                c.interrupt_job(id, &reason, now)?;
                Ok((before, c.job(id)?))
            })
            .await?;
        let job = JobRef {
            id,
            vm: job.vm.clone(),
            operation: job.operation,
        };
        self.ended(&job, Some(&before), &ended, true);
        Ok(ended.status)
    }

    /// Publishes the end of a job: the subtasks its end ended (unfinished in `before`), then
    /// `Finished`.
    fn ended(&self, job: &JobRef, before: Option<&Job>, ended: &Job, interrupted: bool) {
        for subtask in &ended.subtasks {
            let was_open = before
                .and_then(|b| b.subtask(subtask.kind))
                .is_some_and(|s| !s.status.is_done());
            if was_open && subtask.status.is_done() {
                self.events.publish(
                    job,
                    JobEventKind::PhaseEnded {
                        phase: subtask.kind,
                        status: subtask.status,
                        error: subtask.error.clone(),
                    },
                );
            }
        }
        self.events.publish(
            job,
            JobEventKind::Finished {
                status: ended.status,
                point: ended.point.clone(),
                error: ended.error.clone(),
                interrupted,
            },
        );
    }

    /// The warnings of `job`, each published as it is added.
    pub(super) fn warnings(&self, job: &JobRef) -> Warnings {
        Warnings::new(&self.events, job)
    }

    /// The progress hook of a run working for `jobs`: their `Progress` events, and `hook`.
    pub(super) fn progress(&self, jobs: Vec<JobRef>, hook: Arc<dyn Progress>) -> Arc<dyn Progress> {
        Arc::new(JobProgress::new(&self.events, jobs, hook))
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use blockvault_vault::{NoProgress, Vault};
    use tokio::sync::broadcast::{Receiver, error::TryRecvError};

    use super::*;
    use crate::events::Events;
    use crate::{BackupSpec, JobEvent, SubtaskStatus};

    async fn world(dir: &Path) -> (Engine, Vault, PathBuf) {
        let (engine, _) = Engine::open(dir.join("state"), None).await.expect("engine");
        let vault = Vault::init_local(dir.join("vault")).await.expect("vault");
        let disk = dir.join("disk.img");
        let data: Vec<u8> = (0..4u32 << 20).map(|i| (i * 7 / 4096) as u8).collect();
        std::fs::write(&disk, data).expect("disk");
        (engine, vault, disk)
    }

    fn spec(disk: PathBuf) -> BackupSpec {
        BackupSpec::new("web01".parse().expect("vm"), vec![disk])
    }

    fn received(events: &mut Receiver<JobEvent>) -> Vec<JobEvent> {
        let mut all = Vec::new();
        loop {
            match events.try_recv() {
                Ok(event) => all.push(event),
                Err(TryRecvError::Empty) => return all,
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// The events as one line each, consecutive progress of a step as one.
    fn story(events: &[JobEvent]) -> Vec<String> {
        let mut lines: Vec<String> = Vec::new();
        for event in events {
            let line = match &event.kind {
                JobEventKind::Started => "started".to_owned(),
                JobEventKind::PhaseStarted { phase } => format!("{} started", phase.key()),
                JobEventKind::PhaseEnded { phase, status, .. } => {
                    format!("{} ended {}", phase.key(), status.key())
                }
                JobEventKind::Progress { step, .. } => format!("progress {step}"),
                JobEventKind::Warning { message } => format!("warning {message}"),
                JobEventKind::Captured { record } => format!("captured {}", record.capture),
                JobEventKind::Finished { status, .. } => format!("finished {}", status.key()),
            };
            if lines.last() != Some(&line) {
                lines.push(line);
            }
        }
        lines
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_subscriber_sees_the_steps_of_a_backup_job_in_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let (engine, vault, disk) = world(dir.path()).await;
        let mut events = engine.subscribe();
        let outcome = engine
            .backup(Ok(&vault), &spec(disk), Arc::new(NoProgress))
            .await
            .expect("backup");
        assert_eq!(outcome.job.status, JobStatus::Completed, "{outcome:?}");
        let events = received(&mut events);
        assert_eq!(
            story(&events),
            [
                "started",
                "snapshot started",
                "progress snapshot",
                "captured read-live",
                "snapshot ended completed",
                "transfer started",
                "progress transfer",
                "transfer ended completed",
                "finished completed",
            ],
            "{events:#?}"
        );
        assert!(events.iter().all(|e| e.job == outcome.job.id
            && e.vm.as_str() == "web01"
            && e.operation == Operation::Backup));
        let point = outcome.point.as_ref().map(|p| p.id.clone());
        assert!(matches!(
            events.last().map(|e| &e.kind),
            Some(JobEventKind::Finished { status: JobStatus::Completed, point: p, error: None, interrupted: false })
                if *p == point
        ));
        // Each step's progress ends where it said it would.
        for step in ["snapshot", "transfer"] {
            let last = events.iter().rev().find_map(|e| match &e.kind {
                JobEventKind::Progress {
                    step: s,
                    done,
                    total,
                } if &**s == step => Some((*done, *total)),
                _ => None,
            });
            assert!(
                matches!(last, Some((done, total)) if done == total),
                "{step}: {last:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_job_finishes_failed_and_ends_its_subtasks() {
        let dir = tempfile::tempdir().expect("tmp");
        let (engine, vault, _) = world(dir.path()).await;
        let mut events = engine.subscribe();
        let outcome = engine
            .backup(
                Ok(&vault),
                &spec(dir.path().join("no-such-disk.img")),
                Arc::new(NoProgress),
            )
            .await
            .expect("the job ran");
        assert_eq!(outcome.job.status, JobStatus::Failed);
        let events = received(&mut events);
        assert_eq!(
            story(&events),
            [
                "started",
                "snapshot started",
                "snapshot ended failed",
                "transfer ended failed",
                "finished failed",
            ],
            "{events:#?}"
        );
        assert!(matches!(
            events.last().map(|e| &e.kind),
            Some(JobEventKind::Finished { status: JobStatus::Failed, error: Some(error), .. })
                if Some(error) == outcome.job.error.as_ref()
        ));
        assert!(events.iter().any(|e| matches!(
            &e.kind,
            JobEventKind::PhaseEnded {
                phase: SubtaskKind::Snapshot,
                status: SubtaskStatus::Failed,
                error: Some(_),
            }
        )));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_subscriber_that_never_reads_does_not_block_a_job() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut engine, vault, disk) = world(dir.path()).await;
        // Room for one event: the idle subscriber is full after the first.
        engine.events = Events::new(1, Arc::clone(&engine.clock));
        let mut idle = engine.subscribe();
        for _ in 0..2 {
            let ran = tokio::time::timeout(
                Duration::from_secs(120),
                engine.backup(Ok(&vault), &spec(disk.clone()), Arc::new(NoProgress)),
            )
            .await
            .expect("the job did not wait for the subscriber")
            .expect("backup");
            assert_eq!(ran.job.status, JobStatus::Completed);
        }
        assert!(matches!(idle.try_recv(), Err(TryRecvError::Lagged(n)) if n > 1));
        // What it can still read is the newest: the end of the last job.
        assert!(matches!(
            idle.try_recv().map(|e| e.kind),
            Ok(JobEventKind::Finished {
                status: JobStatus::Completed,
                ..
            })
        ));
    }
}
