//! The scheduler daemon on a simulated clock: 30 days of an Enhanced 4-hourly policy across a
//! daylight-saving change, a failed backup, and a restart after downtime, in seconds; then the
//! exact set of snapshot points and vault points is checked against the rules, computed here
//! independently of the scheduler.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use blockvault_jobs::{
    Daemon, DaemonOptions, Engine, Hooks, JobFilter, JobStatus, Level, Log, Operation, Policy,
    ProtectRequest, SimulatedClock, SubtaskKind, SubtaskStatus, VaultUnavailable, Vaults,
};
use blockvault_vault::{NoProgress, TransferOptions, Vault};
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};

use crate::support::{Image, new_vault, vm};

const ZONE: &str = "America/New_York";
const POLICY: &str = "
    name = 'every-4h'
    type = 'enhanced'
    timezone = 'America/New_York'
    instant-restore-days = 7
    [schedule]
    frequency = 'hourly'
    every-hours = 4
    start = '01:00'
    window-hours = 24
";

/// The one vault of a test, whatever location an item names (shared with `soft_delete`).
#[derive(Debug)]
pub(crate) struct OneVault(pub(crate) Vault);

impl Vaults for OneVault {
    fn open<'a>(
        &'a self,
        _location: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Vault, VaultUnavailable>> + Send + 'a>> {
        Box::pin(async { Ok(self.0.clone()) })
    }
}

/// The daemon's log lines, kept for the test to read (shared with `soft_delete`).
#[derive(Default)]
pub(crate) struct Lines(pub(crate) Mutex<Vec<(Level, String)>>);

impl Log for Lines {
    fn log(&self, level: Level, message: &str) {
        self.0
            .lock()
            .expect("log")
            .push((level, message.to_owned()));
    }
}

fn local(date: Date, hour: i8) -> DateTime {
    date.at(hour, 0, 0, 0)
}

/// A local time as an instant: the first occurrence when the hour repeats.
fn instant(tz: &TimeZone, dt: DateTime) -> Timestamp {
    tz.to_ambiguous_timestamp(dt)
        .earlier()
        .expect("no gap in this test's range")
}

/// Every slot of the policy in (from, to): 01, 05, 09, 13, 17, 21 local each day, the
/// repeated 01:00 of 2026-11-01 once.
fn slots(tz: &TimeZone, from: Timestamp, to: Timestamp) -> Vec<(DateTime, Timestamp)> {
    let mut out = Vec::new();
    let mut date = from.to_zoned(tz.clone()).date() - 1.day();
    while date <= to.to_zoned(tz.clone()).date() {
        for hour in [1, 5, 9, 13, 17, 21] {
            let dt = local(date, hour);
            let at = instant(tz, dt);
            if at > from && at < to {
                out.push((dt, at));
            }
        }
        date = date.tomorrow().expect("date");
    }
    out
}

/// A run of the daemon from `start` to `end` on a fresh engine (a restart), changing the disk
/// at every tick and failing the backup whose slot is `fail_at`.
async fn session(
    state: &Path,
    vault: &Vault,
    disk: &Path,
    marker: &Path,
    fail_at: Timestamp,
    (start, end): (Timestamp, Timestamp),
    lines: &Arc<Lines>,
) -> blockvault_jobs::DaemonReport {
    let (disk, marker) = (disk.to_owned(), marker.to_owned());
    let (clock, stop) = SimulatedClock::new(start, end, move |now| {
        // Some churn between backups: 4 KiB somewhere in the first 4 MiB.
        let offset = (now.as_second().unsigned_abs() * 4096) % (4 << 20);
        let file = OpenOptions::new().write(true).open(&disk).expect("disk");
        let stamp = now.to_string().into_bytes();
        file.write_all_at(&stamp, offset).expect("churn");
        if now == fail_at {
            std::fs::write(&marker, b"fail").expect("marker");
        } else {
            let _ = std::fs::remove_file(&marker);
        }
    });
    let (engine, _) = Engine::open(state, None).await.expect("engine");
    let engine = Arc::new(engine.with_clock(Arc::new(clock)));
    let daemon = Daemon::new(
        engine,
        Arc::new(OneVault(vault.clone())),
        lines.clone(),
        DaemonOptions {
            poll: std::time::Duration::from_secs(3600),
            ..DaemonOptions::default()
        },
    );
    daemon.run(stop).await.expect("daemon")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_days_of_an_enhanced_four_hourly_policy_leave_exactly_the_promised_points() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(&dir.path().join("vault")).await;
    let state = dir.path().join("state");
    let mut image = Image::create(dir.path().join("web01.raw"), 16 << 20);
    image.apply(crate::support::Write {
        offset: 0,
        len: 6 << 20,
        kind: 2,
    });
    let marker = dir.path().join("fail-next-backup");
    let tz = TimeZone::get(ZONE).expect("zone");
    let web01 = vm("web01");

    // Day 0, noon in New York (EDT); the fall-back night of 2026-11-01 is on day 17.
    let start = instant(&tz, "2026-10-15T12:00".parse().expect("dt"));
    let end = start + SignedDuration::from_hours(24 * 30);
    let stopped_at = instant(&tz, "2026-10-30T10:00".parse().expect("dt"));
    let restarted_at = instant(&tz, "2026-10-30T22:30".parse().expect("dt"));
    let fail_at = instant(&tz, "2026-10-25T21:00".parse().expect("dt"));

    {
        let (clock, _) = SimulatedClock::new(start, end, |_| {});
        let (engine, _) = Engine::open(&state, None).await.expect("engine");
        let engine = engine.with_clock(Arc::new(clock));
        let policy = Policy::from_toml(POLICY).expect("policy");
        engine
            .catalog()
            .create_policy(&policy, start)
            .expect("create policy");
        let request = ProtectRequest {
            vm: web01.clone(),
            vault: "test-vault".into(),
            disks: vec![image.path.clone()],
            policy: policy.name.clone(),
            hooks: Hooks {
                pre: Some(format!("test ! -e '{}'", marker.display())),
                post: None,
                timeout: None,
            },
            capture: Default::default(),
            disk_format: None,
            qmp: None,
            take_over: false,
        };
        let protected = engine
            .protect(
                Ok(&vault),
                &request,
                TransferOptions::default(),
                Arc::new(NoProgress),
            )
            .await
            .expect("protect");
        assert_eq!(protected.job.status, JobStatus::Completed);
        assert_eq!(protected.job.operation, Operation::ConfigureBackup);
    }

    let lines = Arc::new(Lines::default());
    let run = std::time::Instant::now();
    let first = session(
        &state,
        &vault,
        &image.path,
        &marker,
        fail_at,
        (start, stopped_at),
        &lines,
    )
    .await;
    let second = session(
        &state,
        &vault,
        &image.path,
        &marker,
        fail_at,
        (restarted_at, end),
        &lines,
    )
    .await;
    eprintln!("30 simulated days in {:?}", run.elapsed());

    // What should exist, from the rules.
    let ran_before: Vec<_> = slots(&tz, start, stopped_at);
    let missed: Vec<_> = slots(&tz, stopped_at, restarted_at);
    let ran_after: Vec<_> = slots(&tz, restarted_at, end);
    assert_eq!(
        missed.iter().map(|(dt, _)| dt.hour()).collect::<Vec<_>>(),
        [13, 17, 21],
        "the downtime covers three slots"
    );
    assert_eq!(first.jobs_started as usize, ran_before.len());
    assert_eq!(first.slots_missed, 0);
    // One catch-up backup for the three missed slots, then the schedule.
    assert_eq!(second.jobs_started as usize, 1 + ran_after.len());
    assert_eq!(second.slots_missed, 2);
    let repeated_hour: Vec<_> = ran_before
        .iter()
        .chain(&ran_after)
        .filter(|(dt, _)| *dt == local("2026-11-01".parse().expect("date"), 1))
        .collect();
    assert_eq!(
        repeated_hour.len(),
        1,
        "01:00 on the fall-back night runs once"
    );

    // Backups: every slot that ran, the catch-up at the restart; the failed one made none.
    let mut backups: Vec<(DateTime, Timestamp)> = ran_before.clone();
    backups.push((restarted_at.to_zoned(tz.clone()).datetime(), restarted_at));
    backups.extend(ran_after.iter().copied());
    let made: Vec<_> = backups.iter().filter(|(_, at)| *at != fail_at).collect();

    // The vault gets the last backup of each local day (21:00); the failed 21:00 of 10-25 is
    // replaced by the 01:00 of 10-26; on 10-30 the catch-up (standing for the missed 21:00)
    // goes instead.
    let mut expected_transfers: BTreeSet<Timestamp> = made
        .iter()
        .filter(|(dt, _)| dt.hour() == 21)
        .map(|(_, at)| *at)
        .collect();
    let stand_in = instant(&tz, "2026-10-26T01:00".parse().expect("dt"));
    expected_transfers.insert(stand_in);
    expected_transfers.insert(restarted_at);
    // The daemon's daily retention keeps the last vault point of each local day: the 01:00
    // stand-in of 10-26 goes once that day's 21:00 is in the vault.
    let mut expected_vault = expected_transfers.clone();
    expected_vault.remove(&stand_in);
    let vault_points: BTreeSet<Timestamp> = vault
        .points(&web01)
        .await
        .expect("vault points")
        .points
        .iter()
        .map(|p| p.time)
        .collect();
    assert_eq!(vault_points, expected_vault);

    // The snapshot tier keeps every point younger than the 7 instant-restore days.
    let (engine, _) = Engine::open(&state, None).await.expect("engine");
    engine.expire(&web01, end).await.expect("expire");
    let expected_snapshots: BTreeSet<Timestamp> = made
        .iter()
        .map(|(_, at)| *at)
        .filter(|at| *at + SignedDuration::from_hours(24 * 7) > end)
        .collect();
    let snapshot_points: BTreeSet<Timestamp> = engine
        .snapshots()
        .points(&web01)
        .await
        .expect("snapshot points")
        .iter()
        .map(|p| p.time)
        .collect();
    assert_eq!(snapshot_points, expected_snapshots);

    // The job list tells the same story: one failed backup, the rest completed; transfers
    // skipped exactly where the point stayed in the snapshot tier.
    let jobs = engine
        .catalog()
        .jobs(&JobFilter {
            operation: Some(Operation::Backup),
            ..JobFilter::default()
        })
        .expect("jobs");
    assert_eq!(jobs.len(), backups.len());
    let failed: Vec<_> = jobs
        .iter()
        .filter(|j| j.status == JobStatus::Failed)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].started, fail_at);
    let transferred: BTreeSet<Timestamp> = jobs
        .iter()
        .filter(|j| {
            j.subtask(SubtaskKind::Transfer)
                .is_some_and(|t| t.status == SubtaskStatus::Completed)
        })
        .map(|j| j.started)
        .collect();
    assert_eq!(transferred, expected_transfers);
    assert!(
        jobs.iter()
            .all(|j| j.status != JobStatus::InProgress
                && j.status != JobStatus::CompletedWithWarning)
    );

    // The restart said what it caught up.
    let log = lines.0.lock().expect("log");
    let warned = log
        .iter()
        .filter(|(level, line)| *level == Level::Warning && line.contains("were missed"))
        .collect::<Vec<_>>();
    assert_eq!(warned.len(), 1, "{log:#?}");
    assert!(warned[0].1.contains("2026-10-30 13:00"), "{}", warned[0].1);
    assert!(warned[0].1.contains("2026-10-30 17:00"), "{}", warned[0].1);
}
