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
        let (state, now) = (self.state_dir.clone(), self.now());
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
