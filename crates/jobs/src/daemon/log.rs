//! The daemon's log: a string sink for what the scheduler decides, and a subscriber of the
//! engine's job events that logs how each scheduled backup ended.

use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{JobEvent, JobEventKind, JobStatus, Operation};

/// How bad a log line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
}

/// Where the daemon reports what it does.
pub trait Log: Send + Sync {
    fn log(&self, level: Level, message: &str);
}

/// The subscriber that writes the end of every scheduled backup to the log ("web01: job 12
/// Completed, point ..."), from the `Finished` events of the engine's `Backup` jobs (the only
/// backups a daemon starts; a job it interrupts at shutdown is logged by the shutdown). It
/// runs as a task of its own, so it reads the stream while the scheduler waits on other
/// things, and falls behind only if it gets no turn for a very long time: it then logs how
/// many events it missed.
pub(super) struct JobLog {
    task: JoinHandle<()>,
    stop: oneshot::Sender<()>,
}

impl JobLog {
    pub(super) fn follow(mut events: broadcast::Receiver<JobEvent>, log: Arc<dyn Log>) -> JobLog {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    received = events.recv() => match received {
                        Ok(event) => write(log.as_ref(), &event),
                        Err(RecvError::Lagged(missed)) => missed_events(log.as_ref(), missed),
                        Err(RecvError::Closed) => return,
                    },
                    _ = &mut stopped => break,
                }
            }
            loop {
                match events.try_recv() {
                    Ok(event) => write(log.as_ref(), &event),
                    Err(TryRecvError::Lagged(missed)) => missed_events(log.as_ref(), missed),
                    Err(TryRecvError::Empty | TryRecvError::Closed) => return,
                }
            }
        });
        JobLog { task, stop }
    }

    /// Logs what was published until now, then stops.
    pub(super) async fn close(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

fn write(log: &dyn Log, event: &JobEvent) {
    if let JobEventKind::Captured { record } = &event.kind {
        log.log(
            Level::Info,
            &format!(
                "{}: job {} snapshot captured: {}",
                event.vm,
                event.job,
                record.summary()
            ),
        );
        return;
    }
    let JobEventKind::Finished {
        status,
        point,
        error,
        interrupted: false,
    } = &event.kind
    else {
        return;
    };
    if event.operation != Operation::Backup {
        return;
    }
    let level = match status {
        JobStatus::Failed => Level::Error,
        JobStatus::CompletedWithWarning => Level::Warning,
        _ => Level::Info,
    };
    let point = point
        .as_ref()
        .map(|p| format!(", point {p}"))
        .unwrap_or_default();
    let error = error.as_ref().map(|e| format!(": {e}")).unwrap_or_default();
    log.log(
        level,
        &format!("{}: job {} {status}{point}{error}", event.vm, event.job),
    );
}

fn missed_events(log: &dyn Log, missed: u64) {
    log.log(
        Level::Warning,
        &format!("the log fell behind the jobs and missed {missed} of their events"),
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::JobId;

    #[derive(Default)]
    struct Lines(Mutex<Vec<(Level, String)>>);

    impl Log for Lines {
        fn log(&self, level: Level, message: &str) {
            self.0
                .lock()
                .expect("lines")
                .push((level, message.to_owned()));
        }
    }

    fn event(operation: Operation, kind: JobEventKind) -> JobEvent {
        JobEvent {
            job: JobId(7),
            vm: "web01".parse().expect("vm"),
            operation,
            at: jiff::Timestamp::UNIX_EPOCH,
            kind,
        }
    }

    fn finished(status: JobStatus, interrupted: bool) -> JobEventKind {
        JobEventKind::Finished {
            status,
            point: None,
            error: Some("the vault is unavailable".to_owned()),
            interrupted,
        }
    }

    #[tokio::test]
    async fn the_end_of_each_scheduled_backup_is_one_line_and_close_logs_what_was_published() {
        let (sender, events) = broadcast::channel(16);
        let lines = Arc::new(Lines::default());
        let job_log = JobLog::follow(events, lines.clone());
        let backup = Operation::Backup;
        for e in [
            event(backup, JobEventKind::Started),
            event(backup, finished(JobStatus::CompletedWithWarning, false)),
            // Interrupted ones are the shutdown's to log; other jobs are not backups.
            event(backup, finished(JobStatus::Failed, true)),
            event(
                Operation::DeleteBackupData,
                finished(JobStatus::Failed, false),
            ),
        ] {
            sender.send(e).expect("send");
        }
        job_log.close().await;
        let lines = lines.0.lock().expect("lines").clone();
        assert_eq!(
            lines,
            vec![(
                Level::Warning,
                "web01: job 7 Completed with warning: the vault is unavailable".to_owned()
            )]
        );
    }

    #[tokio::test]
    async fn a_snapshot_capture_is_one_line_with_its_freeze_window() {
        let (sender, events) = broadcast::channel(16);
        let lines = Arc::new(Lines::default());
        let job_log = JobLog::follow(events, lines.clone());
        let record = crate::CaptureRecord {
            capture: blockvault_core::Capture::Reflink,
            freeze_us: Some(2_310),
            clone_us: Some(840),
            disks: vec![crate::DiskCapture {
                disk: "root.img".to_owned(),
                extents: Some(812),
                changes: crate::ChangesFrom::FileSystem,
                full_scan_reason: None,
                bytes_read: 12 << 20,
                bytes_allocated: 1400 << 20,
                read_us: None,
                hint_missed: None,
                resized: None,
            }],
        };
        let captured = JobEventKind::Captured {
            record: Box::new(record),
        };
        sender
            .send(event(Operation::Backup, captured))
            .expect("send");
        job_log.close().await;
        let lines = lines.0.lock().expect("lines").clone();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let (level, line) = &lines[0];
        assert_eq!(*level, Level::Info);
        assert!(
            line.starts_with("web01: job 7 snapshot captured: reflink"),
            "{line}"
        );
        assert!(line.contains("frozen 2.31 ms"), "{line}");
        assert!(line.contains("changes from the file system"), "{line}");
        assert!(line.contains("12.00 MiB read of 1.37 GiB"), "{line}");
    }
}
