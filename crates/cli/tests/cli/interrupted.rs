//! A backup killed in the middle of its transfer to the vault: the next command marks the job
//! Failed and says so, no vault point appears, the earlier state stays usable, and the next
//! backup sends only the chunks that had not landed. And a `gc` stopped by SIGINT while it
//! holds new backups back: it removes its hold before it exits.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Image, Run, Sandbox, arg, blockvault, chunk_files, noise, tree, u64_of};

const VM: &str = "killed";
const BLOCKS: u64 = 96;
/// Chunks that must have landed in the vault before the kill: the transfer is under way.
const LANDED_BEFORE_KILL: usize = 8;

/// Chunk objects in the vault (not staging files of a write in progress).
fn landed(vault: &std::path::Path) -> usize {
    chunk_files(vault)
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n.len() == 64))
        .count()
}

/// `blockvault ARGS --state-dir STATE`: every run of the test on one host.
fn on_host(state: &std::path::Path, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend(["--state-dir", arg(state)]);
    blockvault(&all)
}

#[test]
fn a_backup_killed_mid_transfer_commits_nothing_and_the_next_sends_only_the_rest() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let state = sb.path("state");
    // 96 incompressible 1 MiB blocks: 96 chunks, snapshotted, then sent one at a time, each
    // fsynced.
    let mut disk = Image::create(&sb.path("disk.img"), BLOCKS << 20);
    for i in 0..BLOCKS {
        disk.write(i << 20, &noise(1 << 20, i + 1));
    }
    let backup_args = [
        "--vault",
        arg(&vault),
        "--vm",
        VM,
        "--disk",
        arg(&disk.path),
        "--block-size",
        "1MiB",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_blockvault"))
        .args(["backup", "-q"])
        .args(backup_args)
        // Without the early send, chunks reach the vault only in the Transfer.
        .args([
            "--concurrency",
            "1",
            "--no-early-send",
            "--state-dir",
            arg(&state),
        ])
        .env("TZ", "UTC")
        .env_remove("BLOCKVAULT_VAULT")
        .env_remove("BLOCKVAULT_SNAPSHOT_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the backup");
    // Chunks reach the vault only in the Transfer subtask, after the Snapshot completed. The
    // deadline is generous for a loaded machine; the poll is tight so the kill lands early.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut exited = None;
    while landed(&vault) < LANDED_BEFORE_KILL && Instant::now() < deadline {
        exited = child.try_wait().expect("poll the backup");
        if exited.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().expect("SIGKILL the backup");
    child.wait().expect("reap");
    assert!(exited.is_none(), "the backup exited by itself: {exited:?}");
    let before = landed(&vault);
    assert!(
        before >= LANDED_BEFORE_KILL,
        "the transfer never got going within the deadline"
    );
    assert!(
        (before as u64) < BLOCKS,
        "the backup finished before it could be killed; the test needs a bigger disk"
    );
    assert!(
        tree(&vault.join("points")).is_empty() && tree(&vault.join("maps")).is_empty(),
        "a killed transfer must not leave a point or a map in the vault: {:?}",
        tree(&vault)
    );

    // The next command to open the engine finds the job's process gone: it marks the job
    // Failed and says so, once.
    let run = on_host(&state, &["jobs", "--vm", VM]);
    let warning = run.success_with_warning().to_owned();
    let run = on_host(&state, &["jobs", "--json", "--vm", VM]).success();
    let doc = run.json();
    assert_eq!(doc["warnings"], json!([]), "recovery happens once\n{run}");
    let jobs = doc["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 1, "{run}");
    let job = &jobs[0];
    let id = u64_of(job, "/id");
    assert!(
        warning.starts_with(&format!("marked interrupted job(s) {id} as Failed")),
        "{warning}"
    );
    assert_eq!(job["operation"], json!("backup"), "{run}");
    assert_eq!(job["status"], json!("failed"), "{run}");
    assert_eq!(job["point"], Value::Null, "{run}");
    assert!(job["ended"].is_string(), "{run}");
    let interrupted = |v: &Value| v.as_str().is_some_and(|e| e.starts_with("interrupted: "));
    assert!(interrupted(&job["error"]), "{run}");
    let subtasks = job["subtasks"].as_array().expect("subtasks");
    assert_eq!(subtasks.len(), 2, "{run}");
    assert_eq!(subtasks[0]["kind"], json!("snapshot"), "{run}");
    assert_eq!(subtasks[0]["status"], json!("completed"), "{run}");
    assert_eq!(subtasks[1]["kind"], json!("transfer"), "{run}");
    assert_eq!(subtasks[1]["status"], json!("failed"), "{run}");
    assert!(interrupted(&subtasks[1]["error"]), "{run}");

    // No vault point: the killed job's snapshot, committed before its transfer began, is the
    // only point, and only in the snapshot tier.
    let run = on_host(&state, &["points", "--json", "--vault", arg(&vault)]).success();
    let doc = run.json();
    assert_eq!(doc["warnings"], json!([]), "{run}");
    let listed = doc["points"].as_array().expect("points");
    assert_eq!(listed.len(), 1, "{run}");
    assert_eq!(listed[0]["tiers"], json!(["snapshot"]), "{run}");
    let run = on_host(
        &state,
        &[
            "restore",
            "--vault",
            arg(&vault),
            "--vm",
            VM,
            "--to",
            arg(&sb.path("none")),
            "--from",
            "vault",
        ],
    );
    assert!(run.failure(3).contains("vault"), "{run}");

    // The next backup: its Snapshot finds nothing changed since the killed job's snapshot, its
    // Transfer sends only what had not landed.
    let mut args = vec!["backup", "--json"];
    args.extend(backup_args);
    let run = on_host(&state, &args).success();
    let doc = run.json();
    assert_eq!(doc["warnings"], json!([]), "{run}");
    assert_eq!(doc["job"]["status"], json!("completed"), "{run}");
    let snapshot = &doc["job"]["subtasks"][0];
    assert_eq!(u64_of(snapshot, "/bytes_changed"), 0, "{run}");
    assert_eq!(u64_of(snapshot, "/bytes_uploaded"), 0, "{run}");
    let id = doc["point"]["id"].clone();
    let run = on_host(&state, &["points", "--json", "--vault", arg(&vault)]).success();
    let listed = run.json()["points"].clone();
    let vaulted = listed
        .as_array()
        .and_then(|all| all.iter().find(|p| p["id"] == id))
        .unwrap_or_else(|| panic!("{id} is not listed\n{run}"));
    assert_eq!(vaulted["tiers"], json!(["snapshot", "vault"]), "{run}");
    assert_eq!(
        vaulted["parent"],
        Value::Null,
        "the first vault point\n{run}"
    );
    let stored = u64_of(vaulted, "/stats/chunks_stored");
    // One upload was in flight at the kill: it may have landed after its journal entry was
    // due, so at most one chunk is sent twice.
    let missing = BLOCKS - before as u64;
    assert!(
        stored == missing || stored == missing + 1,
        "{before} chunks had landed, yet the retry stored {stored} of {BLOCKS}"
    );
    assert_eq!(
        u64_of(&doc, "/job/subtasks/1/bytes_uploaded"),
        u64_of(vaulted, "/stats/bytes_stored"),
        "the transfer uploaded what the vault stored"
    );
    assert_eq!(landed(&vault) as u64, BLOCKS);

    // The vault copy restores byte for byte.
    let out = sb.path("out");
    let run = on_host(
        &state,
        &[
            "restore",
            "--json",
            "--vault",
            arg(&vault),
            "--vm",
            VM,
            "--to",
            arg(&out),
            "--from",
            "vault",
        ],
    )
    .success();
    assert_eq!(run.json()["point"], id, "{run}");
    assert!(std::fs::read(out.join("disk.img")).expect("read") == disk.content());
}

/// The lease files of kind `kind` in a directory vault.
fn leases_of(vault: &std::path::Path, kind: &str) -> Vec<String> {
    tree(&vault.join("leases"))
        .into_iter()
        .filter(|name| name.starts_with(&format!("{kind}-")))
        .collect()
}

#[test]
fn a_gc_interrupted_while_it_holds_new_backups_back_removes_its_hold() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    // Garbage to sweep: the chunks of a point whose record is gone.
    let mut disk = Image::create(&sb.path("disk.img"), 4 << 20);
    disk.write(0, &noise(4 << 20, 7));
    crate::support::backup(&vault, VM, &[&disk.path], Some("1MiB"));
    std::fs::remove_dir_all(vault.join("points")).expect("drop the point");
    // A backup that runs (its lease is fresh): the sweep waits for it and, at once
    // (--hold-after 0s), holds new backups back.
    let now = jiff::Timestamp::now();
    let running = blockvault_core::LeaseRecord {
        id: "running".into(),
        kind: blockvault_core::LeaseKind::Writer,
        holder: "a backup on another host".into(),
        started: now,
        refreshed: now,
    };
    std::fs::create_dir_all(vault.join("leases")).expect("leases dir");
    std::fs::write(vault.join("leases/writer-running"), running.encode()).expect("lease");

    let mut child = Command::new(env!("CARGO_BIN_EXE_blockvault"))
        .args(["gc", "-q", "--vault", arg(&vault)])
        .args(["--grace", "0s", "--hold-after", "0s", "--wait", "10m"])
        .args(["--state-dir", arg(&sb.path("state"))])
        .env_remove("BLOCKVAULT_VAULT")
        .env_remove("BLOCKVAULT_SNAPSHOT_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gc");
    let deadline = Instant::now() + Duration::from_secs(60);
    while leases_of(&vault, "sweep-pending").is_empty() {
        if let Some(status) = child.try_wait().expect("poll gc") {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            panic!("gc exited ({status}) before it held backups back: {stderr}");
        }
        assert!(Instant::now() < deadline, "gc never held backups back");
        std::thread::sleep(Duration::from_millis(10));
    }

    let interrupt = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(interrupt.success());
    let out = child.wait_with_output().expect("gc exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("gc interrupted by SIGINT") && stderr.contains("its leases are removed"),
        "{stderr}"
    );
    assert!(
        leases_of(&vault, "sweep-pending").is_empty(),
        "the hold is gone: {:?}",
        tree(&vault.join("leases"))
    );
    assert_eq!(
        leases_of(&vault, "writer").len(),
        1,
        "the running backup's lease is untouched"
    );
}
