//! What the job tests share: the host state a vault's commands run with, backups started as
//! child processes a test can kill or race, and the catalog and snapshot tier seen from outside.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blockvault_jobs::{Catalog, Job, JobFilter};
use serde_json::Value;

use crate::support::{Image, MIB, Run, arg, block_hash, blockvault, chunk_files, noise};

/// How long any wait of these tests may take before it fails the test.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The host state directory that `blockvault(["...", "--vault", VAULT])` runs with.
pub fn state_of(vault: &Path) -> PathBuf {
    crate::support::state_dir_for(
        &[OsString::from("--vault"), vault.as_os_str().to_owned()],
        &[],
    )
}

/// The snapshot tier of `vm` on the host of `vault` (the default `STATE/snapshots/VM`).
pub fn tier_of(vault: &Path, vm: &str) -> PathBuf {
    state_of(vault).join("snapshots").join(vm)
}

/// `backup --vault VAULT --vm VM --disk ... EXTRA` as arguments.
pub fn backup_args(vault: &Path, vm: &str, disks: &[&Path], extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["backup", "--vault", arg(vault), "--vm", vm]
        .map(str::to_owned)
        .to_vec();
    for disk in disks {
        args.extend(["--disk".to_owned(), arg(disk).to_owned()]);
    }
    args.extend(extra.iter().map(|&a| a.to_owned()));
    args
}

/// `blockvault backup --json ...`, checked to exit 0 with a Completed job; returns the document.
pub fn backup_job(vault: &Path, vm: &str, disks: &[&Path], extra: &[&str]) -> Value {
    let mut args = backup_args(vault, vm, disks, extra);
    args.push("--json".to_owned());
    let run = blockvault(&args).success();
    let doc = run.json();
    assert_eq!(doc["job"]["status"], "completed", "{run}");
    doc
}

/// `blockvault ARGS --state-dir STATE` for the commands that take no vault (`jobs`).
pub fn on_host(vault: &Path, args: &[&str]) -> Run {
    let state = state_of(vault);
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--state-dir", arg(&state)]);
    blockvault(&all)
}

/// `jobs show ID --json`, checked.
pub fn show_job(vault: &Path, id: u64) -> Value {
    let id = id.to_string();
    on_host(vault, &["jobs", "show", &id, "--json"])
        .success()
        .json()
}

/// The ids of the jobs `jobs --json FILTERS` lists, in its order.
pub fn job_ids(vault: &Path, filters: &[&str]) -> Vec<u64> {
    let mut args = vec!["jobs", "--json"];
    args.extend_from_slice(filters);
    let run = on_host(vault, &args).success();
    run.json()["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("no jobs array\n{run}"))
        .iter()
        .map(|j| j["id"].as_u64().expect("job id"))
        .collect()
}

/// The subtask `kind` (`snapshot` or `transfer`) of a job document.
pub fn subtask<'a>(job: &'a Value, kind: &str) -> &'a Value {
    job["subtasks"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["kind"] == kind))
        .unwrap_or_else(|| panic!("no {kind} subtask in {job}"))
}

/// The catalog of `vault`'s host, opened beside the processes that use it.
pub fn catalog(vault: &Path) -> Catalog {
    Catalog::open(state_of(vault).join("catalog.sqlite")).expect("open the catalog")
}

/// Every job of `vault`'s host, newest first, straight from the catalog (no recovery runs).
pub fn catalog_jobs(vault: &Path) -> Vec<Job> {
    catalog(vault)
        .jobs(&JobFilter::default())
        .expect("list jobs")
}

/// A `blockvault` process started the way `blockvault()` runs one, for a test to kill or race.
pub fn spawn(vault: &Path, args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_blockvault"))
        .args(args)
        .env("TZ", "UTC")
        .env("BLOCKVAULT_STATE_DIR", state_of(vault))
        .env_remove("BLOCKVAULT_VAULT")
        .env_remove("BLOCKVAULT_SNAPSHOT_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start blockvault")
}

/// Waits, polling every millisecond, until `ready` holds while `child` still runs. Fails the
/// test if the child ends first (it was too quick to catch: the test needs more data) or after
/// [`PATIENCE`].
pub fn catch(child: &mut Child, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ready() {
        if let Some(status) = child.try_wait().expect("poll the child") {
            panic!("the backup ended ({status}) before {what}; the test needs a bigger disk");
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// SIGKILLs `child` and reaps it.
pub fn kill(mut child: Child) {
    child.kill().expect("SIGKILL blockvault");
    child.wait().expect("reap blockvault");
}

/// Waits for `child` to exit (at most [`PATIENCE`]) and returns what it did.
pub fn finish(mut child: Child, args: &[String]) -> Run {
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("blockvault {} did not finish in time", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stdout = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        pipe.read_to_string(&mut stdout).expect("read stdout");
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr).expect("read stderr");
    }
    Run {
        args: args.to_vec(),
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// Names of the chunk objects (64 hex digits) under `DIR/chunks`: not staging files.
pub fn chunk_names(dir: &Path) -> BTreeSet<String> {
    chunk_files(dir)
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| n.len() == 64)
        .collect()
}

/// Files under `DIR/chunks` that are not chunk objects (what a killed writer leaves).
pub fn staging_files(dir: &Path) -> Vec<PathBuf> {
    chunk_files(dir)
        .into_iter()
        .filter(|p| p.file_name().is_none_or(|n| n.len() != 64))
        .collect()
}

/// The chunk names of the non-zero blocks of `contents` at block size `bs`.
pub fn chunks_of(contents: &[&[u8]], bs: u64) -> BTreeSet<String> {
    contents
        .iter()
        .flat_map(|c| c.chunks(bs as usize))
        .filter(|b| b.iter().any(|&x| x != 0))
        .map(|b| block_hash(b).to_hex().to_string())
        .collect()
}

/// Fills MiB blocks `blocks` of `disk` with fresh noise (one seed per block, from `seed`).
pub fn fill(disk: &mut Image, blocks: std::ops::Range<u64>, seed: u64) {
    for i in blocks {
        disk.write(i * MIB, &noise(MIB, seed + i));
    }
}

/// The ids of `vm`'s committed points in a vault-format directory (the vault, or a VM's
/// snapshot tier): `DIR/points/VM/*`.
pub fn committed(dir: &Path, vm: &str) -> Vec<String> {
    crate::support::entries(&dir.join("points").join(vm))
}

/// `vm`'s points as `points --json --vault VAULT EXTRA` lists them: (id, tiers) pairs.
pub fn tiers(vault: &Path, vm: &str, extra: &[&str]) -> Vec<(String, Vec<String>)> {
    let mut args = vec!["points", "--json", "--vault", arg(vault), "--vm", vm];
    args.extend_from_slice(extra);
    let run = blockvault(&args).success();
    run.json()["points"]
        .as_array()
        .unwrap_or_else(|| panic!("no points array\n{run}"))
        .iter()
        .map(|p| {
            let tiers = p["tiers"]
                .as_array()
                .unwrap_or_else(|| panic!("no tiers in {p}"))
                .iter()
                .map(|t| t.as_str().expect("tier name").to_owned())
                .collect();
            (p["id"].as_str().expect("point id").to_owned(), tiers)
        })
        .collect()
}

/// `["snapshot", "vault"]` and friends, for comparing with [`tiers`].
pub fn names(tiers: &[&str]) -> Vec<String> {
    tiers.iter().map(|&t| t.to_owned()).collect()
}

/// Bytes of the files under `dir` (0 when it does not exist).
pub fn size_of_tree(dir: &Path) -> u64 {
    crate::support::tree(dir)
        .iter()
        .map(|rel| std::fs::metadata(dir.join(rel)).map_or(0, |m| m.len()))
        .sum()
}
