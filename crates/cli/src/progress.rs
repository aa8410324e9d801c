//! The progress bar: indicatif on stderr, drawn only when stderr is a terminal. For the jobs
//! of the engine it is a subscriber of the job events ([`Bar::follow`]); for what runs on a
//! vault directly (gc, replica resync) it is the vault's progress hook.
//!
//! A step's numbers are bytes, but for the steps that count things ([`unit_of`]: a verify's
//! chunks, a collection's block maps), shown as counts. A wait with nothing to count (a
//! collection waiting for a backup's lease) shows a spinner that says what it waits for and
//! until when, instead of a bar that stands still.

use std::sync::Arc;
use std::time::Duration;

use blockvault_jobs::{JobEvent, JobEventKind};
use blockvault_vault::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jiff::Timestamp;
use tokio::sync::broadcast::{Receiver, error::RecvError};
use tokio::task::JoinHandle;

/// What a step's numbers count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Bytes,
    /// Things, named in the plural ("chunks").
    Count(&'static str),
}

/// The unit of a step's progress, as the vault and the engine report them (see
/// `JobEventKind::Progress`): "verify" counts chunks, a collection's "mark" and `vault
/// stats`'s "stats" block maps, every other step bytes.
fn unit_of(step: &str) -> Unit {
    match step {
        "verify" => Unit::Count("chunks"),
        "mark" | "stats" => Unit::Count("maps"),
        _ => Unit::Bytes,
    }
}

/// The bar's look for a step counting `unit`.
fn style(unit: Unit) -> ProgressStyle {
    let template = match unit {
        Unit::Bytes => "{msg:>8} [{bar:32.cyan/blue}] {binary_bytes:>10}/{binary_total_bytes:<10} \
                        {binary_bytes_per_sec:>12}  eta {eta}"
            .to_owned(),
        Unit::Count(what) => format!(
            "{{msg:>8}} [{{bar:32.cyan/blue}}] {{human_pos:>10}}/{{human_len:<10}} {what}  eta {{eta}}"
        ),
    };
    ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// What a wait for the vault's writers says: who, until when their leases run out if they
/// died, and when the wait gives up (times in UTC, to the second).
fn waiting_message(holders: &str, expires: Timestamp, gives_up: Timestamp) -> String {
    let at = |t: Timestamp| t.strftime("%H:%M:%S UTC").to_string();
    format!(
        "waiting for {holders} to end, or its lease to expire at {} if it died (giving up at {})",
        at(expires),
        at(gives_up)
    )
}

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
        Bar::with_target(target)
    }

    fn with_target(target: ProgressDrawTarget) -> Bar {
        let bar = ProgressBar::with_draw_target(Some(0), target);
        bar.set_style(style(Unit::Bytes));
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
    fn begin(&self, phase: &str, total: u64) {
        self.0.disable_steady_tick();
        self.0.set_style(style(unit_of(phase)));
        self.0.set_message(phase.to_owned());
        self.0.set_length(total);
        self.0.set_position(0);
        self.0.reset_eta();
    }

    fn advance(&self, done: u64) {
        self.0.inc(done);
    }

    fn waiting(&self, holders: &str, expires: Timestamp, gives_up: Timestamp) {
        let style = ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        self.0.set_style(style);
        self.0
            .set_message(waiting_message(holders, expires, gives_up));
        self.0.enable_steady_tick(Duration::from_millis(250));
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
            at: Timestamp::UNIX_EPOCH,
            kind: JobEventKind::Progress {
                step: Arc::from(step),
                done,
                total,
            },
        }
    }

    /// A terminal that keeps the last line the bar drew.
    #[derive(Debug, Default, Clone)]
    struct Screen(Arc<std::sync::Mutex<String>>);

    impl Screen {
        fn line(&self) -> String {
            self.0.lock().expect("screen").clone()
        }
    }

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            200
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(s)
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            if !s.trim().is_empty() {
                *self.0.lock().expect("screen") = s.to_owned();
            }
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What a bar on `screen` shows after `phase` got to `done` of `total`.
    fn drawn(phase: &str, done: u64, total: u64) -> String {
        let screen = Screen::default();
        let bar = Bar::with_target(ProgressDrawTarget::term_like(Box::new(screen.clone())));
        bar.begin(phase, total);
        bar.advance(done);
        bar.0.force_draw();
        screen.line()
    }

    #[test]
    fn counted_steps_show_counts_and_the_others_bytes() {
        let verify = drawn("verify", 1234, 5000);
        assert!(
            verify.contains("1,234/5,000") && verify.contains("chunks"),
            "{verify}"
        );
        assert!(
            !verify.contains("KiB") && !verify.contains("B/s"),
            "{verify}"
        );
        let mark = drawn("mark", 7, 12);
        assert!(mark.contains("7/12") && mark.contains("maps"), "{mark}");
        assert!(!mark.contains("B "), "{mark}");
        let transfer = drawn("transfer", 3 * 1024 * 1024, 8 * 1024 * 1024);
        assert!(transfer.contains("3.00 MiB/8.00 MiB"), "{transfer}");
        // A collection's sweep frees bytes.
        assert_eq!(unit_of("sweep"), Unit::Bytes);
    }

    #[test]
    fn a_wait_for_a_lease_says_for_whom_and_until_when_and_the_next_step_is_a_bar_again() {
        let screen = Screen::default();
        let bar = Bar::with_target(ProgressDrawTarget::term_like(Box::new(screen.clone())));
        bar.begin("mark", 3);
        bar.advance(3);
        let expires: Timestamp = "2026-12-07T18:42:10Z".parse().expect("time");
        let gives_up: Timestamp = "2026-12-07T18:45:00Z".parse().expect("time");
        bar.waiting("backup of web01 by host a (pid 4242)", expires, gives_up);
        bar.0.force_draw();
        let line = screen.line();
        assert!(
            line.contains(
                "waiting for backup of web01 by host a (pid 4242) to end, or its lease to \
                 expire at 18:42:10 UTC if it died (giving up at 18:45:00 UTC)"
            ),
            "{line}"
        );
        assert!(!line.contains("3/3"), "no frozen bar: {line}");
        bar.begin("sweep", 2048);
        bar.advance(1024);
        bar.0.force_draw();
        let line = screen.line();
        assert!(
            line.contains("1.00 KiB/2.00 KiB") && !line.contains("waiting"),
            "{line}"
        );
        bar.finish();
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
