//! The progress bar: indicatif on stderr, drawn only when stderr is a terminal. For the jobs
//! of the engine it is a subscriber of the job events ([`Bar::follow`]); for what runs on a
//! vault directly (gc, replica resync) it is the vault's progress hook.

use std::sync::Arc;

use blockvault_jobs::{JobEvent, JobEventKind};
use blockvault_vault::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::broadcast::{Receiver, error::RecvError};
use tokio::task::JoinHandle;

#[derive(Debug)]
pub struct Bar(ProgressBar);

impl Bar {
    /// A bar on stderr; hidden when `quiet` or when stderr is not a terminal.
    pub fn new(quiet: bool) -> Bar {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        let style = ProgressStyle::with_template(
            "{msg:>8} [{bar:32.cyan/blue}] {binary_bytes:>10}/{binary_total_bytes:<10} \
             {binary_bytes_per_sec:>12}  eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        Bar(bar)
    }

    /// Removes the bar before the summary line is printed.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }

    /// Shows the progress of the engine's jobs from their events until [`Shown::finish`].
    pub fn follow(self: &Arc<Self>, mut events: Receiver<JobEvent>) -> Shown {
        let bar = Arc::clone(self);
        let task = tokio::spawn(async move {
            let mut step = Step::default();
            loop {
                match events.recv().await {
                    Ok(event) => step.show(&bar, &event),
                    // Progress events carry where they are: the next one puts the bar right.
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Shown {
            bar: Arc::clone(self),
            task,
        }
    }
}

/// The bar following job events.
#[derive(Debug)]
pub struct Shown {
    bar: Arc<Bar>,
    task: JoinHandle<()>,
}

impl Shown {
    /// Stops following and removes the bar before the summary line is printed.
    pub async fn finish(self) {
        self.task.abort();
        let _ = self.task.await;
        self.bar.finish();
    }
}

/// The step the bar shows: a `Progress` event of another step, another total, or that went
/// back starts the bar afresh, as `begin` does.
#[derive(Default)]
struct Step {
    shown: Option<(Arc<str>, u64, u64)>,
}

impl Step {
    fn show(&mut self, bar: &Bar, event: &JobEvent) {
        let JobEventKind::Progress { step, done, total } = &event.kind else {
            return;
        };
        let fresh = self
            .shown
            .as_ref()
            .is_none_or(|(s, t, d)| s != step || t != total || done < d);
        if fresh {
            bar.begin(step, *total);
        }
        bar.0.set_position(*done);
        self.shown = Some((Arc::clone(step), *total, *done));
    }
}

impl Progress for Bar {
    fn begin(&self, phase: &str, total_bytes: u64) {
        self.0.set_message(phase.to_owned());
        self.0.set_length(total_bytes);
        self.0.set_position(0);
        self.0.reset_eta();
    }

    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(step: &str, done: u64, total: u64) -> JobEvent {
        JobEvent {
            job: blockvault_jobs::JobId(1),
            vm: "web01".parse().expect("vm"),
            operation: blockvault_jobs::Operation::Backup,
            at: jiff::Timestamp::UNIX_EPOCH,
            kind: JobEventKind::Progress {
                step: Arc::from(step),
                done,
                total,
            },
        }
    }

    #[test]
    fn the_bar_shows_each_step_from_its_progress_events() {
        let bar = Bar::new(true);
        let mut step = Step::default();
        step.show(&bar, &progress("snapshot", 0, 100));
        step.show(&bar, &progress("snapshot", 60, 100));
        assert_eq!((bar.0.position(), bar.0.length()), (60, Some(100)));
        assert_eq!(bar.0.message(), "snapshot");
        // A new step starts the bar afresh.
        step.show(&bar, &progress("transfer", 10, 40));
        assert_eq!((bar.0.position(), bar.0.length()), (10, Some(40)));
        assert_eq!(bar.0.message(), "transfer");
    }
}
