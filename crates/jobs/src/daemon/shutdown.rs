//! Stopping the daemon: running jobs get a grace period to finish their step, the rest are
//! ended in the catalog as they stand.

use std::collections::HashMap;

use blockvault_core::VmName;
use tokio::task::JoinSet;

use super::{Daemon, Finished, Level};
use crate::{DaemonReport, Result, SubtaskKind};

impl Daemon {
    /// A job task the daemon started is over (how its job ended is logged by `JobLog`).
    pub(super) fn finished(
        &self,
        done: std::result::Result<Finished, tokio::task::JoinError>,
        busy: &mut HashMap<VmName, usize>,
    ) {
        match done {
            Ok(done) => {
                if let Some(n) = busy.get_mut(&done.vm) {
                    *n = n.saturating_sub(1);
                }
                if let Some(error) = done.not_run {
                    self.log.log(
                        Level::Error,
                        &format!("{}: the backup could not run: {error}", done.vm),
                    );
                }
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {}
        }
    }

    /// Lets running jobs finish their step for up to the grace period, then ends the rest in
    /// the catalog as they stand.
    pub(super) async fn shut_down(
        &self,
        mut running: JoinSet<Finished>,
        busy: &mut HashMap<VmName, usize>,
        report: &mut DaemonReport,
    ) -> Result<()> {
        if running.is_empty() {
            return Ok(());
        }
        self.log.log(
            Level::Info,
            &format!(
                "stopping: waiting up to {} s for {} running job(s) to finish their step",
                self.options.grace.as_secs(),
                running.len()
            ),
        );
        let drained = tokio::time::timeout(self.options.grace, async {
            while let Some(done) = running.join_next().await {
                self.finished(done, busy);
            }
        })
        .await;
        if drained.is_ok() {
            return Ok(());
        }
        running.abort_all();
        while running.join_next().await.is_some() {}
        // What the aborted jobs were writing to the catalog still commits (or fails) whole:
        // wait for it, so that the jobs are ended below as they really stand.
        self.engine.catalog().settled().await;
        let pid = std::process::id();
        let reason = "blockvault stopped before the job finished (the daemon was shut down)";
        let unfinished = self.engine.catalog().call(|c| c.unfinished_jobs()).await?;
        for job in unfinished {
            if job.pid != pid {
                continue;
            }
            let snapshot_cut = job
                .subtask(SubtaskKind::Snapshot)
                .is_some_and(|s| !s.status.is_done());
            let ended = self.engine.interrupt_job(&job, reason).await;
            let status = match ended {
                Ok(status) => status,
                // Another process's recovery ended it first: it is not In progress.
                Err(crate::Error::JobEnded { .. }) => continue,
                Err(e) => {
                    self.log.log(
                        Level::Error,
                        &format!("{}: could not end job {}: {e}", job.vm, job.id),
                    );
                    continue;
                }
            };
            report.jobs_interrupted += 1;
            if snapshot_cut {
                // What the cut snapshot wrote is swept (committed points are untouched); if
                // another process holds the VM's lock, its own end or the next start does it.
                if let Err(e) = self.engine.sweep_snapshots_if_idle(&job.vm).await {
                    self.log.log(
                        Level::Warning,
                        &format!("{}: could not clean after job {}: {e}", job.vm, job.id),
                    );
                }
            }
            self.log.log(
                Level::Warning,
                &format!("{}: job {} ended {status}: {reason}", job.vm, job.id),
            );
        }
        Ok(())
    }
}
