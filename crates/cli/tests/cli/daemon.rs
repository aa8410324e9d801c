//! `blockvault daemon` as a process: it catches up a slot missed while it was down, stops on
//! SIGTERM leaving every job's record true (a finished Snapshot does not start its Transfer; a
//! job past the grace period is ended as it stands), and a restart never re-runs a slot.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blockvault_jobs::{Catalog, Job, JobFilter, JobStatus, Operation, SubtaskKind, SubtaskStatus};

use crate::jobs::fixture::{PATIENCE, on_host, state_of};
use crate::support::{Sandbox, arg, blockvault, standard_disk};

/// Protects `vm` with the default policy (daily 23:00 UTC) and a pre-hook of `hook_secs`
/// seconds, then moves its protection two days into the past: two daily slots are due.
fn protected_two_days_ago(
    sandbox: &Sandbox,
    vault: &Path,
    vm: &str,
    hook_secs: u32,
    post_hook: &str,
) {
    let disk = sandbox.path(&format!("{vm}.raw"));
    standard_disk(&disk);
    blockvault([
        "protect",
        "--vault",
        arg(vault),
        "--vm",
        vm,
        "--disk",
        arg(&disk),
        "--pre-hook",
        &format!("sleep {hook_secs}"),
        "--post-hook",
        post_hook,
    ])
    .success();
    let conn = rusqlite::Connection::open(state_of(vault).join("catalog.sqlite")).expect("open");
    let two_days = 2 * 24 * 3600 * 1_000_000_i64;
    let changed = conn
        .execute(
            "UPDATE protected SET since = since - ?1 WHERE vm = ?2",
            rusqlite::params![two_days, vm],
        )
        .expect("backdate");
    assert_eq!(changed, 1);
}

fn start_daemon(vault: &Path, grace: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_blockvault"))
        .args([
            "daemon",
            "--state-dir",
            arg(&state_of(vault)),
            "--poll",
            "1",
            "--grace",
            grace,
        ])
        .env("TZ", "UTC")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the daemon")
}

fn catalog(vault: &Path) -> Catalog {
    Catalog::open(state_of(vault).join("catalog.sqlite")).expect("catalog")
}

fn backups(vault: &Path) -> Vec<Job> {
    catalog(vault)
        .jobs(&JobFilter {
            operation: Some(Operation::Backup),
            ..JobFilter::default()
        })
        .expect("jobs")
}

/// Waits until `ready` holds for the backup jobs.
fn wait_for(vault: &Path, what: &str, ready: impl Fn(&[Job]) -> bool) -> Vec<Job> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let jobs = backups(vault);
        if ready(&jobs) {
            return jobs;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {jobs:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn terminate(daemon: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = daemon.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status_of(job: &Job, kind: SubtaskKind) -> Option<SubtaskStatus> {
    job.subtask(kind).map(|s| s.status)
}

#[test]
fn sigterm_lets_the_snapshot_finish_and_fails_the_transfer_truthfully() {
    let sandbox = Sandbox::new();
    let vault = sandbox.init_vault();
    protected_two_days_ago(&sandbox, &vault, "web01", 2, "true");

    let mut daemon = start_daemon(&vault, "60");
    // The two missed slots are caught up by one backup, at once.
    wait_for(&vault, "the catch-up backup's snapshot", |jobs| {
        jobs.len() == 1
            && status_of(&jobs[0], SubtaskKind::Snapshot) == Some(SubtaskStatus::InProgress)
    });
    let status = terminate(&mut daemon);
    assert!(status.success(), "{status:?}");

    let jobs = backups(&vault);
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    let job = &jobs[0];
    assert_eq!(
        status_of(job, SubtaskKind::Snapshot),
        Some(SubtaskStatus::Completed)
    );
    assert_eq!(
        status_of(job, SubtaskKind::Transfer),
        Some(SubtaskStatus::Failed)
    );
    assert_eq!(job.status, JobStatus::CompletedWithWarning);
    let why = job.error.clone().unwrap_or_default();
    assert!(why.contains("stopping"), "{why}");

    let log = std::fs::read_to_string(state_of(&vault).join("daemon.log")).expect("log");
    assert!(log.contains("were missed"), "{log}");
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(log.contains("daemon stopped"), "{log}");

    // A restart runs nothing again: the caught-up slots are handled, the next is tonight.
    let mut again = start_daemon(&vault, "60");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(terminate(&mut again).success());
    assert_eq!(backups(&vault).len(), 1);
    // The point the interrupted job made restores from the snapshot tier.
    let points = on_host(&vault, &["points", "--vault", arg(&vault), "--json"]).success();
    assert_eq!(
        points.json()["points"].as_array().map(Vec::len),
        Some(1),
        "{points}"
    );
}

#[test]
fn a_job_still_running_after_the_grace_period_is_ended_as_it_stands() {
    let sandbox = Sandbox::new();
    let vault = sandbox.init_vault();
    let thawed = sandbox.path("thawed");
    protected_two_days_ago(
        &sandbox,
        &vault,
        "db01",
        30,
        &format!("echo \"$BLOCKVAULT_HOOK\" > '{}'", thawed.display()),
    );

    let mut daemon = start_daemon(&vault, "0");
    wait_for(&vault, "the backup's snapshot", |jobs| {
        jobs.len() == 1
            && status_of(&jobs[0], SubtaskKind::Snapshot) == Some(SubtaskStatus::InProgress)
    });
    let started = Instant::now();
    assert!(terminate(&mut daemon).success());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the 30 s hook was not waited for"
    );

    let jobs = backups(&vault);
    let job = &jobs[0];
    assert_eq!(job.status, JobStatus::Failed, "{job:#?}");
    assert_eq!(
        status_of(job, SubtaskKind::Snapshot),
        Some(SubtaskStatus::Failed)
    );
    assert_eq!(
        status_of(job, SubtaskKind::Transfer),
        Some(SubtaskStatus::Failed)
    );
    assert!(
        job.error.clone().unwrap_or_default().contains("shut down"),
        "{job:#?}"
    );
    // Nothing is left In progress, and the next start does not mark anything either.
    let listed = on_host(&vault, &["jobs", "--status", "in-progress", "--json"]).success();
    assert_eq!(
        listed.json()["jobs"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );
}

/// `--verify-every-days` takes a day count, 0 to turn the rolling verify off; anything else is
/// a usage error before the daemon starts.
#[test]
fn a_bad_verify_every_days_is_a_usage_error() {
    let sandbox = Sandbox::new();
    let state = sandbox.path("state");
    for bad in ["-1", "thirty", "99999", ""] {
        let run = blockvault([
            "daemon",
            "--state-dir",
            arg(&state),
            &format!("--verify-every-days={bad}"),
        ]);
        let line = run.parse_failure();
        assert!(line.contains("--verify-every-days"), "{run}");
    }
    // Nothing was started: no state directory, no log.
    assert!(!state.exists());
    let help = blockvault(["daemon", "--help"]).success();
    assert!(
        help.stdout.contains("--verify-every-days") && help.stdout.contains("0 = off"),
        "{help}"
    );
}
