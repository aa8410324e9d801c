//! The job event stream: what the engine's jobs do, as it happens, for whoever listens (the
//! CLI's progress bar, the daemon's log; metrics and a web page later).
//!
//! The engine publishes a [`JobEvent`] at every step of a job it runs, right after the catalog
//! has recorded that step: [`Started`](JobEventKind::Started), then per subtask
//! [`PhaseStarted`](JobEventKind::PhaseStarted) and [`PhaseEnded`](JobEventKind::PhaseEnded)
//! (a subtask that never started, a Skipped Transfer, has only its end),
//! [`Progress`](JobEventKind::Progress) while data moves, a
//! [`Warning`](JobEventKind::Warning) for each thing the user should know,
//! [`Captured`](JobEventKind::Captured) once a Snapshot has read its disks, and
//! [`Finished`](JobEventKind::Finished) with the job's status last. The events of one job come
//! in that order; the events of jobs running side by side interleave. (A warning found once
//! the job has ended, such as the early send of a failed backup being abandoned, is in the
//! job's outcome only.)
//!
//! The stream is a tokio broadcast channel of [`EVENT_CAPACITY`] events
//! ([`Engine::subscribe`](crate::Engine::subscribe)): publishing never waits and never fails,
//! with or without subscribers. A subscriber that falls more than the capacity behind loses
//! the oldest events it has not read (its next `recv` says how many:
//! [`RecvError::Lagged`](tokio::sync::broadcast::error::RecvError::Lagged)); the job does not
//! notice. Progress is published at most [`PROGRESS_EVERY`] per job (and whenever a step
//! starts or completes), so a subscriber that keeps reading does not fall behind.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use blockvault_core::{PointId, VmName};

use crate::CaptureRecord;
use blockvault_vault::Progress as ProgressHook;
use jiff::Timestamp;
use tokio::sync::broadcast;

use crate::{Clock, JobId, JobStatus, Operation, SubtaskKind, SubtaskStatus};

/// How many events a subscriber may fall behind before it loses the oldest.
pub const EVENT_CAPACITY: usize = 1024;

/// The shortest time between two progress events of a job (outside the start and the end of
/// a step).
pub const PROGRESS_EVERY: Duration = Duration::from_millis(50);

/// One step of one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobEvent {
    pub job: JobId,
    pub vm: VmName,
    pub operation: Operation,
    /// When it happened, on the engine's clock.
    pub at: Timestamp,
    pub kind: JobEventKind,
}

/// What happened to the job.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobEventKind {
    /// The job is in the catalog, In progress.
    Started,
    /// A subtask (phase) started.
    PhaseStarted { phase: SubtaskKind },
    /// A subtask ended: Completed, Skipped (with the reason) or Failed (with the error).
    PhaseEnded {
        phase: SubtaskKind,
        status: SubtaskStatus,
        error: Option<String>,
    },
    /// `done` of `total` units of the current step (bytes; chunks for "verify", maps for a
    /// collection's "mark"). A step is named as the progress bar shows it ("snapshot",
    /// "transfer", "restore", "scan", "verify"); `done` starts at 0 with each step.
    Progress {
        step: Arc<str>,
        done: u64,
        total: u64,
    },
    /// Something the user should know that does not fail the job.
    Warning { message: String },
    /// A Snapshot's disks are read and its capture recorded: how the instant was fixed, the
    /// freeze window, how each disk's changes were found (before the Snapshot's end).
    Captured { record: Box<CaptureRecord> },
    /// The job ended with `status` (its `error` is the catalog's: why it failed, or the
    /// warning it completed with). `interrupted`: its process gave up on it before it ended by
    /// itself (a daemon shutting down past its grace period).
    Finished {
        status: JobStatus,
        point: Option<PointId>,
        error: Option<String>,
        interrupted: bool,
    },
}

/// A job as its events name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JobRef {
    pub(crate) id: JobId,
    pub(crate) vm: VmName,
    pub(crate) operation: Operation,
}

/// The sending side of the stream, with the clock that stamps events.
#[derive(Clone)]
pub(crate) struct Events {
    sender: broadcast::Sender<JobEvent>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("subscribers", &self.sender.receiver_count())
            .finish_non_exhaustive()
    }
}

impl Events {
    pub(crate) fn new(capacity: usize, clock: Arc<dyn Clock>) -> Events {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Events { sender, clock }
    }

    /// The same stream stamped by another clock.
    pub(crate) fn with_clock(self, clock: Arc<dyn Clock>) -> Events {
        Events { clock, ..self }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.sender.subscribe()
    }

    /// Publishes one event of `job`; never waits, and nobody listening is fine.
    pub(crate) fn publish(&self, job: &JobRef, kind: JobEventKind) {
        let _ = self.sender.send(JobEvent {
            job: job.id,
            vm: job.vm.clone(),
            operation: job.operation,
            at: self.clock.now(),
            kind,
        });
    }
}

/// A job's warnings: kept for its outcome, and each published as it is added.
#[derive(Debug)]
pub(crate) struct Warnings {
    events: Events,
    job: JobRef,
    list: Vec<String>,
}

impl Warnings {
    pub(crate) fn new(events: &Events, job: &JobRef) -> Warnings {
        Warnings {
            events: events.clone(),
            job: job.clone(),
            list: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, message: String) {
        self.events.publish(
            &self.job,
            JobEventKind::Warning {
                message: message.clone(),
            },
        );
        self.list.push(message);
    }

    /// Warnings found after the job ended: kept for its outcome, not published (`Finished`
    /// is a job's last event).
    pub(crate) fn keep(&mut self, messages: impl IntoIterator<Item = String>) {
        self.list.extend(messages);
    }

    pub(crate) fn into_vec(self) -> Vec<String> {
        self.list
    }
}

impl Extend<String> for Warnings {
    fn extend<I: IntoIterator<Item = String>>(&mut self, iter: I) {
        for message in iter {
            self.push(message);
        }
    }
}

/// The vault's progress hook of one run, turned into `Progress` events of the jobs it works
/// for (a verification works for one job per VM), and passed on to the caller's hook.
pub(crate) struct JobProgress {
    events: Events,
    jobs: Vec<JobRef>,
    hook: Arc<dyn ProgressHook>,
    meter: Mutex<Meter>,
}

struct Meter {
    step: Arc<str>,
    done: u64,
    total: u64,
    published: Option<Instant>,
}

impl JobProgress {
    pub(crate) fn new(events: &Events, jobs: Vec<JobRef>, hook: Arc<dyn ProgressHook>) -> Self {
        JobProgress {
            events: events.clone(),
            jobs,
            hook,
            meter: Mutex::new(Meter {
                step: Arc::from(""),
                done: 0,
                total: 0,
                published: None,
            }),
        }
    }

    fn publish(&self, meter: &mut Meter, now: Instant) {
        meter.published = Some(now);
        for job in &self.jobs {
            self.events.publish(
                job,
                JobEventKind::Progress {
                    step: Arc::clone(&meter.step),
                    done: meter.done,
                    total: meter.total,
                },
            );
        }
    }
}

impl ProgressHook for JobProgress {
    fn begin(&self, phase: &str, total_bytes: u64) {
        self.hook.begin(phase, total_bytes);
        let mut meter = self.meter.lock().unwrap_or_else(PoisonError::into_inner);
        meter.step = Arc::from(phase);
        meter.done = 0;
        meter.total = total_bytes;
        self.publish(&mut meter, Instant::now());
    }

    fn advance(&self, bytes: u64) {
        self.hook.advance(bytes);
        let mut meter = self.meter.lock().unwrap_or_else(PoisonError::into_inner);
        meter.done = meter.done.saturating_add(bytes);
        let now = Instant::now();
        let due = meter
            .published
            .is_none_or(|last| now.duration_since(last) >= PROGRESS_EVERY);
        if due || meter.done == meter.total {
            self.publish(&mut meter, now);
        }
    }

    fn waiting(&self, holders: &str, expires: Timestamp, gives_up: Timestamp) {
        self.hook.waiting(holders, expires, gives_up);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SystemClock;
    use tokio::sync::broadcast::error::TryRecvError;

    fn job(id: i64) -> JobRef {
        JobRef {
            id: JobId(id),
            vm: "web01".parse().expect("vm"),
            operation: Operation::Backup,
        }
    }

    #[test]
    fn publishing_without_subscribers_or_past_a_full_subscriber_never_fails() {
        let events = Events::new(2, Arc::new(SystemClock));
        events.publish(&job(1), JobEventKind::Started);
        let mut idle = events.subscribe();
        for _ in 0..10 {
            events.publish(&job(1), JobEventKind::Started);
        }
        assert!(matches!(idle.try_recv(), Err(TryRecvError::Lagged(8))));
        assert!(matches!(
            idle.try_recv(),
            Ok(JobEvent { job: JobId(1), .. })
        ));
    }

    #[test]
    fn progress_passes_the_hook_on_and_publishes_each_step_and_its_end() {
        #[derive(Default)]
        struct Count(Mutex<u64>);
        impl ProgressHook for Count {
            fn advance(&self, bytes: u64) {
                *self.0.lock().expect("count") += bytes;
            }
        }
        let events = Events::new(64, Arc::new(SystemClock));
        let mut seen = events.subscribe();
        let hook = Arc::new(Count::default());
        let progress = JobProgress::new(&events, vec![job(1), job(2)], hook.clone());
        progress.begin("scan", 300);
        for _ in 0..3 {
            progress.advance(100);
        }
        assert_eq!(*hook.0.lock().expect("count"), 300);
        let mut got = Vec::new();
        while let Ok(event) = seen.try_recv() {
            if let JobEventKind::Progress { step, done, total } = event.kind {
                got.push((event.job.0, step.to_string(), done, total));
            }
        }
        // The start and the end of the step, for both jobs; in between, at most one per
        // PROGRESS_EVERY.
        assert_eq!(got.first(), Some(&(1, "scan".to_owned(), 0, 300)));
        assert_eq!(got.get(1), Some(&(2, "scan".to_owned(), 0, 300)));
        assert_eq!(got.last(), Some(&(2, "scan".to_owned(), 300, 300)));
        assert!(got.len() <= 8, "{got:?}");
    }
}
