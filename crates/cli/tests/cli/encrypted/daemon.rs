//! The daemon on encrypted vaults: its passphrase from `BLOCKVAULT_PASSWORD_FILE` (it never
//! prompts); a vault it cannot unlock fails that vault's jobs with the locked error, in the
//! job and the log, and the others run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blockvault_jobs::{Catalog, Job, JobFilter, JobStatus, Operation};

use crate::crypt_support::*;
use crate::support::*;

const PATIENCE: Duration = Duration::from_secs(60);

/// The daemon, killed when the test ends however it ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn protect(state: &Path, vault: &Path, vm: &str, disk: &Path, pass: &Path) {
    with_passphrase(
        pass,
        [
            "protect",
            "--vault",
            arg(vault),
            "--vm",
            vm,
            "--disk",
            arg(disk),
            "--state-dir",
            arg(state),
        ],
    )
    .success();
    // Two days ago: the daily slots since are due, caught up at once.
    let conn = rusqlite::Connection::open(state.join("catalog.sqlite")).expect("open");
    let two_days = 2 * 24 * 3600 * 1_000_000_i64;
    let changed = conn
        .execute(
            "UPDATE protected SET since = since - ?1 WHERE vm = ?2",
            rusqlite::params![two_days, vm],
        )
        .expect("backdate");
    assert_eq!(changed, 1);
}

fn backups(state: &Path) -> Vec<Job> {
    Catalog::open(state.join("catalog.sqlite"))
        .expect("catalog")
        .jobs(&JobFilter {
            operation: Some(Operation::Backup),
            ..JobFilter::default()
        })
        .expect("jobs")
}

#[test]
fn the_daemon_backs_up_with_a_passphrase_file_and_fails_only_the_vault_it_cannot_unlock() {
    let sb = Sandbox::new();
    let state = sb.path("state");
    let open = init_encrypted(&sb.path("open-vault"));
    let other = sb.path("other-vault");
    let other_passphrase = "another vault's own passphrase 77d0";
    init_encrypted_at(arg(&other), other_passphrase, &[]);
    let pass = passphrase_file(&sb.path(""), "passphrase", PASSPHRASE);
    let other_pass = passphrase_file(&sb.path(""), "other-passphrase", other_passphrase);
    let disk_a = small_disk(&sb.path("a.img"), 1).path;
    let disk_b = small_disk(&sb.path("b.img"), 2).path;
    protect(&state, &open, "vm-a", &disk_a, &pass);
    protect(&state, &other, "vm-b", &disk_b, &other_pass);

    let log = sb.path("daemon.log");
    let daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_blockvault"))
            .args([
                "daemon",
                "--state-dir",
                arg(&state),
                "--poll",
                "1",
                "--log",
                arg(&log),
            ])
            .env("TZ", "UTC")
            .env("BLOCKVAULT_PASSWORD_FILE", &pass)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the daemon"),
    );
    let deadline = Instant::now() + PATIENCE;
    let jobs = loop {
        let jobs = backups(&state);
        let ended = |vm: &str| {
            jobs.iter()
                .any(|j| j.vm.as_str() == vm && j.status != JobStatus::InProgress)
        };
        if ended("vm-a") && ended("vm-b") {
            break jobs;
        }
        assert!(Instant::now() < deadline, "the jobs did not end: {jobs:#?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(daemon);
    let of = |vm: &str| -> &Job {
        jobs.iter()
            .find(|j| j.vm.as_str() == vm)
            .unwrap_or_else(|| panic!("no job of {vm}"))
    };
    assert_eq!(of("vm-a").status, JobStatus::Completed, "{:#?}", of("vm-a"));
    let locked = of("vm-b");
    assert_eq!(locked.status, JobStatus::Failed, "{locked:#?}");
    let why = locked.error.clone().unwrap_or_default();
    assert!(why.contains("passphrase"), "{why}");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("passphrase"),
        "the locked error in the log: {text}"
    );

    // The point of the unlocked vault restores; nothing holds either passphrase in clear.
    let out = sb.path("out");
    with_passphrase(
        &pass,
        [
            "restore",
            "--vault",
            arg(&open),
            "--vm",
            "vm-a",
            "--from",
            "vault",
            "--to",
            arg(&out),
            "--state-dir",
            arg(&state),
        ],
    )
    .success();
    assert_eq!(
        std::fs::read(out.join("a.img")).expect("restored"),
        std::fs::read(&disk_a).expect("disk")
    );
    let dirs: [PathBuf; 4] = [state.clone(), open.clone(), other.clone(), log.clone()];
    for secret in [PASSPHRASE, other_passphrase] {
        for dir in &dirs {
            let found = if dir.is_file() {
                let bytes = std::fs::read(dir).expect("read");
                if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                    vec![dir.clone()]
                } else {
                    Vec::new()
                }
            } else {
                files_containing(dir, secret.as_bytes())
            };
            assert!(found.is_empty(), "a passphrase in {found:?}");
        }
    }
}
