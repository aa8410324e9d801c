//! The daemon's rolling verify on a simulated clock: one share of the vault's chunks a UTC day,
//! recorded as Verify jobs, the N shares of N days covering every chunk exactly once; a chunk
//! corrupted on disk found within N days, logged as an error and marked damaged; none with
//! `verify_every_days = 0`.

use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blockvault_core::ChunkId;
use blockvault_jobs::{
    DEFAULT_POLICY, Daemon, DaemonOptions, Engine, Hooks, Job, JobFilter, JobStatus, Level,
    Operation, ProtectRequest, SimulatedClock,
};
use blockvault_vault::{ChunkShare, NoProgress, TransferOptions, Vault};
use jiff::{SignedDuration, Timestamp};

use crate::daemon::{Lines, OneVault};
use crate::support::{Image, Write, backup, block_size, chunk_files, new_vault};

/// Days in a round: each vault is read whole every `EVERY` days.
const EVERY: u32 = 4;
const DAY: i64 = 24 * 3600;

struct World {
    _dir: tempfile::TempDir,
    vault_dir: PathBuf,
    vault: Vault,
    state: PathBuf,
}

/// A vault holding one point of `web01` (16 distinct 1 MiB blocks, the engine's default block
/// size, so the daemon's own daily backups of the unchanged disk add no chunk), and `web01`
/// protected with the default policy (daily at 23:00 UTC) on a fresh state directory.
async fn world(start: Timestamp) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(dir.path()).await;
    let vault_dir = dir.path().join("vault");
    let mut image = Image::create(dir.path().join("web01.raw"), 16 << 20);
    image.apply(Write {
        offset: 0,
        len: 16 << 20,
        kind: 2,
    });
    backup(&vault, "web01", &[&image], block_size(1 << 20))
        .await
        .expect("first backup");
    let state = dir.path().join("state");
    let (clock, _) = SimulatedClock::new(start, start + SignedDuration::from_hours(1), |_| {});
    let (engine, _) = Engine::open(&state, None).await.expect("engine");
    let engine = engine.with_clock(Arc::new(clock));
    let request = ProtectRequest {
        vm: "web01".parse().expect("vm"),
        vault: vault.store().location().to_owned(),
        disks: vec![image.path.clone()],
        policy: DEFAULT_POLICY.parse().expect("policy"),
        hooks: Hooks::default(),
        capture: Default::default(),
        disk_format: None,
        qmp: None,
        take_over: false,
    };
    engine
        .protect(
            Ok(&vault),
            &request,
            TransferOptions::default(),
            Arc::new(NoProgress),
        )
        .await
        .expect("protect");
    World {
        _dir: dir,
        vault_dir,
        vault,
        state,
    }
}

/// Runs the daemon from `start` to `end` with a round of `every` days; returns its log.
async fn run(world: &World, every: u32, start: Timestamp, end: Timestamp) -> Vec<(Level, String)> {
    let (clock, stop) = SimulatedClock::new(start, end, |_| {});
    let (engine, _) = Engine::open(&world.state, None).await.expect("engine");
    let engine = Arc::new(engine.with_clock(Arc::new(clock)));
    let lines = Arc::new(Lines::default());
    let daemon = Daemon::new(
        engine,
        Arc::new(OneVault(world.vault.clone())),
        lines.clone(),
        DaemonOptions {
            poll: std::time::Duration::from_secs(3600),
            verify_every_days: every,
            ..DaemonOptions::default()
        },
    );
    daemon.run(stop).await.expect("daemon");
    lines.0.lock().expect("log").clone()
}

fn verify_jobs(world: &World) -> Vec<Job> {
    blockvault_jobs::Catalog::open(world.state.join("catalog.sqlite"))
        .expect("catalog")
        .jobs(&JobFilter {
            operation: Some(Operation::Verify),
            ..JobFilter::default()
        })
        .expect("jobs")
}

/// `(slice, chunks)` of each rolling verify's end line, in order.
fn shares_read(lines: &[(Level, String)]) -> Vec<(String, u64)> {
    lines
        .iter()
        .filter(|(_, l)| l.starts_with("rolling verify of ") && l.contains(" chunk(s), "))
        .map(|(_, l)| {
            let slice = l
                .split_once("(slice ")
                .and_then(|(_, rest)| rest.split_once(')'))
                .map(|(s, _)| s.to_owned())
                .unwrap_or_else(|| panic!("no slice in {l:?}"));
            let chunks = l
                .split_once(" point(s), ")
                .and_then(|(_, rest)| rest.split_once(" chunk(s)"))
                .and_then(|(n, _)| n.parse().ok())
                .unwrap_or_else(|| panic!("no chunk count in {l:?}"));
            (slice, chunks)
        })
        .collect()
}

fn day_of(t: Timestamp) -> i64 {
    t.as_second().div_euclid(DAY)
}

fn id_of(path: &Path) -> ChunkId {
    let name = path.file_name().and_then(|n| n.to_str()).expect("name");
    let hex = name.split('.').next().expect("hex");
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex chunk name");
    }
    ChunkId::from_bytes(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_days_of_rolling_verify_read_every_chunk_once_as_daily_verify_jobs() {
    let start: Timestamp = "2026-03-02T12:00:00Z".parse().expect("time");
    let world = world(start).await;
    let chunks = chunk_files(&world.vault_dir).len() as u64;
    assert!(chunks >= 16, "{chunks} chunks");
    // Days d0 (at start), d0+1, d0+2 and d0+3 (at midnight): one round of four.
    let end = start + SignedDuration::from_hours(3 * 24 + 6);
    let lines = run(&world, EVERY, start, end).await;

    let read = shares_read(&lines);
    assert_eq!(read.len(), EVERY as usize, "{lines:#?}");
    let slices: BTreeSet<&str> = read.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        slices,
        BTreeSet::from(["1 of 4", "2 of 4", "3 of 4", "4 of 4"]),
        "{read:?}"
    );
    // The four shares together read each chunk of the vault once (the daily backups of the
    // unchanged disk added none), each a share only.
    assert_eq!(chunks, chunk_files(&world.vault_dir).len() as u64);
    assert_eq!(read.iter().map(|(_, n)| n).sum::<u64>(), chunks, "{read:?}");
    assert!(read.iter().all(|(_, n)| *n < chunks), "{read:?}");
    assert!(
        lines.iter().all(|(level, _)| *level != Level::Error),
        "{lines:#?}"
    );

    // One Verify job of web01 a day, each Completed.
    let jobs = verify_jobs(&world);
    assert_eq!(jobs.len(), EVERY as usize, "{jobs:#?}");
    let days: BTreeSet<i64> = jobs.iter().map(|j| day_of(j.started)).collect();
    let d0 = day_of(start);
    assert_eq!(days, (d0..d0 + i64::from(EVERY)).collect(), "{jobs:#?}");
    assert!(
        jobs.iter()
            .all(|j| j.status == JobStatus::Completed && j.vm.as_str() == "web01"),
        "{jobs:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_corrupted_on_disk_is_found_within_the_round_and_marked_damaged() {
    let start: Timestamp = "2026-03-02T12:00:00Z".parse().expect("time");
    let world = world(start).await;
    let files = chunk_files(&world.vault_dir);
    let victim = &files[files.len() / 2];
    let id = id_of(victim);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(victim)
        .expect("chunk file");
    file.write_all_at(b"rot", 40).expect("corrupt");
    drop(file);

    // The day of its slice, within the round from d0; the run ends that morning, before the
    // day's backup sends the chunk again.
    let d0 = day_of(start);
    let found_on = (d0..d0 + i64::from(EVERY))
        .find(|&d| ChunkShare::of_day(d, EVERY).is_some_and(|s| s.contains(&id)))
        .expect("some day of the round reads it");
    let end = Timestamp::from_second(found_on * DAY + 6 * 3600)
        .expect("time")
        .max(start + SignedDuration::from_hours(1));
    let lines = run(&world, EVERY, start, end).await;

    let damaged = world
        .vault
        .store()
        .damaged_chunks()
        .await
        .expect("damaged marks");
    assert_eq!(damaged, vec![id], "{lines:#?}");
    let errors: Vec<&String> = lines
        .iter()
        .filter(|(level, _)| *level == Level::Error)
        .map(|(_, l)| l)
        .collect();
    assert_eq!(errors.len(), 1, "{lines:#?}");
    assert!(
        errors[0].contains("1 bad chunk(s)") && errors[0].contains(&id.to_string()),
        "{errors:?}"
    );
    let jobs = verify_jobs(&world);
    let failed: Vec<&Job> = jobs
        .iter()
        .filter(|j| j.status == JobStatus::Failed)
        .collect();
    assert_eq!(failed.len(), 1, "{jobs:#?}");
    assert_eq!(day_of(failed[0].started), found_on);
    let error = failed[0].error.as_deref().unwrap_or_default();
    assert!(
        error.contains("1 bad chunk(s)") && error.contains("slice"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_days_schedules_no_verify() {
    let start: Timestamp = "2026-03-02T12:00:00Z".parse().expect("time");
    let world = world(start).await;
    let lines = run(&world, 0, start, start + SignedDuration::from_hours(48)).await;
    assert!(verify_jobs(&world).is_empty());
    assert!(
        !lines.iter().any(|(_, l)| l.contains("rolling verify")),
        "{lines:#?}"
    );
    // The daemon did run: its backups did.
    assert!(
        lines.iter().any(|(_, l)| l.contains("starting the backup")),
        "{lines:#?}"
    );
}
