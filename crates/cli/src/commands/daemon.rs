//! `blockvault daemon`: runs the protected VMs' schedules until SIGTERM or SIGINT.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result};
use blockvault_host::Host;
use blockvault_jobs::{Daemon, DaemonOptions, Level, Log};
use jiff::Timestamp;
use serde_json::json;
use tokio::sync::watch;

use super::Report;
use crate::args::DaemonArgs;
use crate::stop::StopSignals;

pub async fn run(args: DaemonArgs, host: &Host) -> Result<Report> {
    // Passphrases from a file or a command only: a daemon never prompts.
    let host = &host.for_daemon();
    let path = args.log.unwrap_or_else(|| host.state().daemon_log());
    let log = Arc::new(DaemonLog::open(path)?);
    let (engine, warnings) = host.engine().await?;
    for warning in &warnings {
        log.log(Level::Warning, warning);
    }
    let (stop_tx, stop) = watch::channel(false);
    let mut signals = StopSignals::listen()?;
    let signal_log = Arc::clone(&log);
    tokio::spawn(async move {
        let name = signals.recv().await;
        signal_log.log(Level::Info, &format!("{name}: stopping"));
        stop_tx.send_replace(true);
    });
    let daemon = Daemon::new(
        Arc::new(engine),
        host.daemon_vaults(),
        log.clone(),
        DaemonOptions {
            poll: Duration::from_secs(args.poll),
            grace: Duration::from_secs(args.grace),
            verify_every_days: args.verify_every_days,
            ..DaemonOptions::default()
        },
    );
    let report = daemon.run(stop).await?;
    // Work cancelled by the stop (a collection, jobs past the grace) dropped its leases:
    // remove them before exiting rather than leave them to expire.
    blockvault_vault::Lease::dropped_removed(Duration::from_secs(5)).await;
    Ok(Report {
        text: format!(
            "daemon stopped: {} job(s) started, {} missed slot(s) caught up, {} job(s) \
             interrupted",
            report.jobs_started, report.slots_missed, report.jobs_interrupted
        ),
        json: json!({
            "jobs_started": report.jobs_started,
            "slots_missed": report.slots_missed,
            "jobs_interrupted": report.jobs_interrupted,
        }),
        warnings: Vec::new(),
        exit_code: None,
    })
}

/// The daemon's log: one line per event to the log file (with the time) and to stderr (with a
/// journald priority prefix when stderr goes to the journal, which adds the time itself).
struct DaemonLog {
    file: Mutex<File>,
    journal: bool,
}

impl DaemonLog {
    fn open(path: PathBuf) -> Result<DaemonLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create log directory {}", dir.display()))?;
        }
        let file = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open log file {}", path.display()))?;
        Ok(DaemonLog {
            file: Mutex::new(file),
            journal: std::env::var_os("JOURNAL_STREAM").is_some(),
        })
    }
}

impl Log for DaemonLog {
    fn log(&self, level: Level, message: &str) {
        let (priority, name) = match level {
            Level::Info => (6, "info"),
            Level::Warning => (4, "warning"),
            Level::Error => (3, "error"),
        };
        let now = Timestamp::now()
            .round(jiff::Unit::Millisecond)
            .unwrap_or_default();
        if self.journal {
            eprintln!("<{priority}>{message}");
        } else {
            eprintln!("{now} {name}: {message}");
        }
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        // A log line that cannot be written must not stop the backups.
        let _ = writeln!(file, "{now} {name}: {message}");
    }
}
