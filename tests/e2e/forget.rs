//! Forgotten points on a simulated clock: soft-deleted for 14 days (their chunks stay), then
//! purged by the daemon's maintenance, and only then freed by the garbage collector. The vault,
//! the catalog, the snapshot tier and the disk image are real.

use std::sync::Arc;
use std::time::Duration;

use blockvault_core::PointId;
use blockvault_jobs::{
    BackupSpec, Clock, Daemon, DaemonOptions, Engine, Error, ForgetRequest, ForgetTarget,
    JobFilter, JobStatus, Operation, SimulatedClock,
};
use blockvault_vault::{GcOptions, NoProgress, PointSelector, RestoreRequest, TransferOptions};
use jiff::{SignedDuration, Timestamp};

use crate::daemon::{Lines, OneVault};
use crate::support::{Image, Write, new_vault, vm};

const VAULT: &str = "vault-a";

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

fn gc_options() -> GcOptions {
    GcOptions {
        grace: Duration::ZERO,
        wait: Duration::from_secs(60),
        poll: Duration::from_millis(50),
        ..GcOptions::default()
    }
}

async fn backup(engine: &Engine, vault: &blockvault_vault::Vault, image: &Image) -> PointId {
    let spec = BackupSpec::new(vm("web01"), vec![image.path.clone()]);
    let outcome = engine
        .backup(Ok(vault), &spec, Arc::new(NoProgress))
        .await
        .expect("backup");
    assert_eq!(
        outcome.job.status,
        JobStatus::Completed,
        "{:?}",
        outcome.job
    );
    outcome.point.expect("point").id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_point_is_purged_after_14_days_and_only_then_gc_frees_its_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(dir.path()).await;
    let state = dir.path().join("state");
    let mut image = Image::create(dir.path().join("web01.raw"), 4 << 20);
    let start: Timestamp = "2026-11-23T10:00:00Z".parse().expect("time");
    let (clock, _stop) = SimulatedClock::new(start, start + days(365), |_| {});
    let clock = Arc::new(clock);
    let (engine, _) = Engine::open(&state, None).await.expect("engine");
    let engine = engine.with_clock(clock.clone());

    // The same MiB written twice: the first point's chunks are its own.
    image.apply(Write {
        offset: 1 << 20,
        len: 1 << 20,
        kind: 2,
    });
    let first = backup(&engine, &vault, &image).await;
    clock.sleep_until(start + days(1), false).await;
    image.apply(Write {
        offset: 1 << 20,
        len: 1 << 20,
        kind: 4,
    });
    let second = backup(&engine, &vault, &image).await;
    let second_content = image.content.clone();

    let request = ForgetRequest {
        vm: vm("web01"),
        target: ForgetTarget::Point(PointSelector::Id(first.to_string())),
        dry_run: false,
        force: false,
    };
    let forgot = engine
        .forget(&vault, VAULT, &request)
        .await
        .expect("forget");
    let forgotten_at = engine.now();
    assert_eq!(forgot.forgotten[0].purge_after, forgotten_at + days(14));
    assert_eq!(forgot.snapshot_points_removed, std::slice::from_ref(&first));

    // Soft-deleted: the point and its chunks stay; gc frees nothing of it.
    let report = vault
        .collect_garbage(gc_options(), Arc::new(NoProgress))
        .await
        .expect("gc");
    assert_eq!(report.chunks_deleted, 0, "{report:?}");
    let store = vault.store();
    assert_eq!(
        store.list_point_ids(&vm("web01")).await.expect("points"),
        [first.clone(), second.clone()]
    );

    // Day 13: nothing is due; the restore of it is refused.
    clock.sleep_until(forgotten_at + days(13), false).await;
    assert!(
        engine
            .purge_forgotten(&vault)
            .await
            .expect("purge")
            .is_empty()
    );
    let target = dir.path().join("restored");
    let restore = |point: &PointId| RestoreRequest {
        vm: vm("web01"),
        point: PointSelector::Id(point.to_string()),
        target: target.clone(),
        overwrite: true,
        in_place: false,
        known_content: Default::default(),
        options: TransferOptions::default(),
    };
    let refused = engine
        .restore(Some(&vault), &restore(&first), None, Arc::new(NoProgress))
        .await
        .expect_err("forgotten");
    assert!(
        matches!(refused, Error::PointSoftDeleted { .. }),
        "{refused}"
    );

    // A daemon started at the end of the period purges it at its first maintenance.
    let purge_after = forgotten_at + days(14);
    drop(engine);
    let (daemon_clock, stop) = SimulatedClock::new(purge_after, purge_after + days(1), |_| {});
    let (engine, _) = Engine::open(&state, None).await.expect("engine");
    let engine = Arc::new(engine.with_clock(Arc::new(daemon_clock)));
    let lines = Arc::new(Lines::default());
    let daemon = Daemon::new(
        Arc::clone(&engine),
        Arc::new(OneVault(vault.clone())),
        lines.clone(),
        DaemonOptions {
            poll: Duration::from_secs(3600),
            ..DaemonOptions::default()
        },
    );
    daemon.run(stop).await.expect("daemon");
    drop(daemon);
    let engine = Arc::into_inner(engine).expect("the daemon let go of its engine");
    let log = lines.0.lock().expect("log").clone();
    assert!(
        log.iter()
            .any(|(_, line)| line.contains("purged 1 forgotten point(s)")
                && line.contains(first.as_str())),
        "{log:?}"
    );
    assert_eq!(
        store.list_point_ids(&vm("web01")).await.expect("points"),
        std::slice::from_ref(&second)
    );
    assert!(
        store
            .point_deletes(&vm("web01"))
            .await
            .expect("markers")
            .is_empty()
    );
    let purges = engine
        .catalog()
        .jobs(&JobFilter {
            operation: Some(Operation::DeleteBackupData),
            ..JobFilter::default()
        })
        .expect("jobs");
    assert_eq!(purges.len(), 1, "{purges:?}");
    assert_eq!(purges[0].status, JobStatus::Completed);

    // Now the collector frees the first point's own chunks; the second restores as ever.
    let report = vault
        .collect_garbage(gc_options(), Arc::new(NoProgress))
        .await
        .expect("gc");
    assert!(report.chunks_deleted >= 1, "{report:?}");
    engine
        .restore(Some(&vault), &restore(&second), None, Arc::new(NoProgress))
        .await
        .expect("restore");
    assert_eq!(
        std::fs::read(target.join("web01.raw")).expect("restored"),
        second_content
    );
}
