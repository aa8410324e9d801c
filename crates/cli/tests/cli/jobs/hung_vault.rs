//! A vault that does not answer never holds up the Snapshot (issue 21, defect 6): the backup
//! opened its vault first, and an S3 endpoint that accepts connections and never replies cost
//! its request timeouts (2 x 60 s by default) before the pre-hook froze anything.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use blockvault_jobs::{Catalog, JobFilter, JobStatus, SubtaskKind, SubtaskStatus};

use crate::support::*;

/// S3 request timeout in the test: the old order waited two of these before the Snapshot.
const TIMEOUT_SECS: u64 = 5;
/// How soon after the command starts its pre-hook must run.
const FREEZE_WITHIN: Duration = Duration::from_secs(3);

/// A TCP server on 127.0.0.1 that accepts every connection and never answers, for at most a
/// minute; dropping it closes everything (later connections are refused).
struct Silent {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("address");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut held: Vec<TcpStream> = Vec::new();
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => held.push(stream),
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Silent {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `blockvault ARGS --state-dir STATE` with the S3 settings of `endpoint` (taking precedence
/// over any of the caller's environment).
fn run_with_s3(args: &[&str], state: &Path, endpoint: &str) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_blockvault"))
        .args(args)
        .args(["--state-dir", arg(state)])
        .env("TZ", "UTC")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "GKtest")
        .env("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
        .env("AWS_ALLOW_HTTP", "true")
        .env_remove("BLOCKVAULT_VAULT")
        .env_remove("BLOCKVAULT_SNAPSHOT_DIR")
        .env_remove("BLOCKVAULT_STATE_DIR")
        .output()
        .expect("run blockvault");
    Run {
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn a_hung_s3_endpoint_does_not_delay_the_snapshot() {
    let sb = Sandbox::new();
    let state = sb.path("state");
    fs::create_dir_all(&state).expect("state dir");
    let settings = state.join("s3.toml");
    fs::write(
        &settings,
        format!(
            "request-timeout-secs = {TIMEOUT_SECS}\nconnect-timeout-secs = {TIMEOUT_SECS}\n\
             max-retries = 0\n"
        ),
    )
    .expect("s3.toml");
    fs::set_permissions(&settings, fs::Permissions::from_mode(0o600)).expect("chmod");
    let silent = Silent::start();
    let endpoint = format!("http://{}", silent.addr);
    let location = "s3://hung/site-a";
    let disk = small_disk(&sb.path("disk.img"), 21);
    let frozen = sb.path("frozen-at");
    let hook = format!("date +%s.%N > {}", arg(&frozen));

    let asked = SystemTime::now();
    let run = run_with_s3(
        &[
            "backup",
            "--json",
            "--vault",
            location,
            "--vm",
            "hung",
            "--disk",
            arg(&disk.path),
            "--pre-hook",
            &hook,
        ],
        &state,
        &endpoint,
    );

    // The freeze came at once, not after the vault's timeouts.
    let frozen_at: f64 = fs::read_to_string(&frozen)
        .unwrap_or_else(|e| panic!("the pre-hook did not run ({e})\n{run}"))
        .trim()
        .parse()
        .expect("pre-hook time");
    let asked_at = asked
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("time")
        .as_secs_f64();
    let waited = Duration::from_secs_f64((frozen_at - asked_at).max(0.0));
    assert!(
        waited < FREEZE_WITHIN,
        "the pre-hook ran {waited:?} after the backup was asked for\n{run}"
    );

    // The job: snapshot completed at once; the transfer waited for the vault and failed.
    assert_eq!(run.code, 5, "completed with warning\n{run}");
    let doc = run.json();
    assert_eq!(doc["job"]["status"], "completed-with-warning", "{run}");
    let job = Catalog::open(state.join("catalog.sqlite"))
        .and_then(|c| c.jobs(&JobFilter::default()))
        .expect("the jobs")
        .remove(0);
    assert_eq!(job.status, JobStatus::CompletedWithWarning);
    let snapshot = job.subtask(SubtaskKind::Snapshot).expect("snapshot");
    assert_eq!(snapshot.status, SubtaskStatus::Completed);
    let started = snapshot.started.expect("snapshot started");
    let began = started.duration_since(job.started);
    assert!(
        began < jiff::SignedDuration::try_from(FREEZE_WITHIN).expect("duration"),
        "the snapshot began {began} after the job\n{run}"
    );
    let point_time: jiff::Timestamp = str_of(&doc, "/point/time").parse().expect("time");
    let point_lag = point_time.duration_since(job.started);
    assert!(
        point_lag < jiff::SignedDuration::try_from(FREEZE_WITHIN).expect("duration"),
        "the point is {point_lag} later than the job\n{run}"
    );
    let transfer = job.subtask(SubtaskKind::Transfer).expect("transfer");
    assert_eq!(transfer.status, SubtaskStatus::Failed);
    let error = transfer.error.as_deref().unwrap_or_default();
    assert!(
        error.contains(&format!("the vault {location} is unavailable")),
        "{error}"
    );
    assert!(error.to_lowercase().contains("timed out"), "{error}");
    assert!(!error.contains("not-a-real-secret"), "{error}");
    assert!(
        transfer.duration().expect("transfer duration") >= Duration::from_secs(TIMEOUT_SECS - 1),
        "the transfer is what waited for the vault: {transfer:?}"
    );
    // Nothing of the vault decided the block size of this first backup.
    assert_eq!(u64_of(&doc, "/point/disks/0/block_size"), MIB, "{run}");

    // The point restores from the snapshot tier (the endpoint now refuses at once).
    drop(silent);
    let out = sb.path("out");
    let restored = run_with_s3(
        &[
            "restore",
            "--json",
            "--vault",
            location,
            "--vm",
            "hung",
            "--to",
            arg(&out),
        ],
        &state,
        &endpoint,
    );
    assert_eq!(restored.code, 0, "{restored}");
    let report = restored.json();
    assert_eq!(report["tier"], "snapshot", "{restored}");
    assert_eq!(report["point"], doc["point"]["id"], "{restored}");
    assert_image(&out.join("disk.img"), disk.content());
}
