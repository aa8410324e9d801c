//! Stop protection, soft delete, undelete and purge on a simulated clock (SPEC "Protection
//! lifecycle"): the 14 days are simulated, the vault, the catalog, the snapshot tier and the
//! disk images are real.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use blockvault_core::PointId;
use blockvault_jobs::{
    Clock, Daemon, DaemonOptions, Engine, Error, Hooks, JobFilter, JobStatus, Level, Operation,
    ProtectRequest, ProtectionState, SimulatedClock, StopMode, Tier,
};
use blockvault_vault::{NoProgress, PointSelector, RestoreRequest, TransferOptions, Vault};
use jiff::{SignedDuration, Timestamp};

use crate::daemon::{Lines, OneVault};
use crate::support::{Image, Write, new_vault, vm};

const VAULT: &str = "vault-a";
const OTHER_VAULT: &str = "vault-b";

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

fn start() -> Timestamp {
    "2026-11-23T10:00:00Z".parse().expect("time")
}

/// A test's world: a vault, a state directory, a disk, and an engine on a simulated clock
/// that the test moves.
struct World {
    dir: tempfile::TempDir,
    vault: Vault,
    state: PathBuf,
    image: Image,
    clock: Arc<SimulatedClock>,
    engine: Engine,
}

impl World {
    /// web01 protected by [`VAULT`] (DefaultPolicy: daily 23:00 UTC), with no point yet.
    async fn protected() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let vault = new_vault(dir.path()).await;
        let state = dir.path().join("state");
        let image = Image::create(dir.path().join("web01.raw"), 8 << 20);
        let (clock, _stop) = SimulatedClock::new(start(), start() + days(365), |_| {});
        let clock = Arc::new(clock);
        let (engine, _) = Engine::open(&state, None).await.expect("engine");
        let engine = engine.with_clock(clock.clone());
        let world = World {
            dir,
            vault,
            state,
            image,
            clock,
            engine,
        };
        let protected = world
            .engine
            .protect(
                Ok(&world.vault),
                &world.request(VAULT),
                TransferOptions::default(),
                Arc::new(NoProgress),
            )
            .await
            .expect("protect");
        assert_eq!(protected.job.status, JobStatus::Completed);
        world
    }

    fn request(&self, vault: &str) -> ProtectRequest {
        ProtectRequest {
            vm: vm("web01"),
            vault: vault.to_owned(),
            disks: vec![self.image.path.clone()],
            policy: blockvault_jobs::DEFAULT_POLICY.parse().expect("policy"),
            hooks: Hooks::default(),
            capture: Default::default(),
            disk_format: None,
            qmp: None,
            take_over: false,
        }
    }

    /// Changes the disk (`kind` picks the bytes), backs it up on demand, and returns the point
    /// and what the disk held.
    async fn backup(&mut self, kind: u8) -> (PointId, Vec<u8>) {
        self.image.apply(Write {
            offset: u64::from(kind) << 20,
            len: 1 << 20,
            kind,
        });
        let outcome = self
            .engine
            .backup_now(
                Ok(&self.vault),
                &vm("web01"),
                self.engine.now() + days(365),
                TransferOptions::default(),
                Arc::new(NoProgress),
            )
            .await
            .expect("backup now");
        assert_eq!(
            outcome.job.status,
            JobStatus::Completed,
            "{:?}",
            outcome.job
        );
        let point = outcome.point.expect("point").id;
        self.advance(SignedDuration::from_hours(1)).await;
        (point, self.image.content.clone())
    }

    async fn advance(&self, by: SignedDuration) {
        self.clock.sleep_until(self.clock.now() + by, false).await;
    }

    async fn advance_to(&self, at: Timestamp) {
        self.clock.sleep_until(at, false).await;
    }

    async fn restore(&self, engine: &Engine, point: &PointId) -> Result<PathBuf, Error> {
        let target = self.dir.path().join(format!("restored-{point}"));
        let request = RestoreRequest {
            vm: vm("web01"),
            point: PointSelector::Id(point.to_string()),
            target: target.clone(),
            overwrite: false,
            in_place: false,
            known_content: Default::default(),
            options: TransferOptions::default(),
        };
        engine
            .restore(Some(&self.vault), &request, None, Arc::new(NoProgress))
            .await?;
        Ok(target.join("web01.raw"))
    }

    async fn vault_points(&self) -> Vec<PointId> {
        let store = self.vault.store();
        store
            .list_point_ids(&vm("web01"))
            .await
            .expect("vault points")
    }

    async fn snapshot_points(&self) -> Vec<PointId> {
        let points = self
            .engine
            .snapshots()
            .points(&vm("web01"))
            .await
            .expect("snapshot points");
        points.into_iter().map(|p| p.id).collect()
    }

    fn jobs(&self, engine: &Engine, operation: Operation) -> Vec<blockvault_jobs::Job> {
        engine
            .catalog()
            .jobs(&JobFilter {
                operation: Some(operation),
                ..JobFilter::default()
            })
            .expect("jobs")
    }

    fn state(&self) -> Option<ProtectionState> {
        let item = self.engine.catalog().protected_item(&vm("web01"));
        item.expect("catalog").map(|i| i.state)
    }

    fn vault_dir(&self) -> PathBuf {
        self.dir.path().join("vault")
    }

    async fn delete_data(&self) -> Timestamp {
        let deleted = self.engine.now();
        let outcome = self
            .engine
            .stop_protection(Ok(&self.vault), &vm("web01"), StopMode::DeleteData)
            .await
            .expect("stop protection");
        let job = outcome.job.expect("a Delete backup data job");
        assert_eq!(job.operation, Operation::DeleteBackupData);
        assert_eq!(job.status, JobStatus::Completed, "{job:?}");
        assert!(outcome.failure.is_none());
        deleted
    }

    /// A daemon on this world's state from `from` to `end`, on a clock of its own: the
    /// engine it ran on (to read what it did with) and its log.
    async fn run_daemon(&self, from: Timestamp, end: Timestamp) -> (Engine, Vec<(Level, String)>) {
        let (clock, stop) = SimulatedClock::new(from, end, |_| {});
        let (engine, _) = Engine::open(&self.state, None).await.expect("engine");
        let engine = Arc::new(engine.with_clock(Arc::new(clock)));
        let lines = Arc::new(Lines::default());
        let daemon = Daemon::new(
            Arc::clone(&engine),
            Arc::new(OneVault(self.vault.clone())),
            lines.clone(),
            DaemonOptions {
                poll: std::time::Duration::from_secs(24 * 3600),
                ..DaemonOptions::default()
            },
        );
        daemon.run(stop).await.expect("daemon");
        drop(daemon);
        let engine = Arc::into_inner(engine).expect("the daemon let go of its engine");
        let lines = lines.0.lock().expect("log").clone();
        (engine, lines)
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("restored image")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelete_after_13_days_brings_every_point_back_restorable_with_protection_stopped() {
    let mut world = World::protected().await;
    let (first, first_content) = world.backup(2).await;
    let (second, second_content) = world.backup(4).await;
    let both = vec![first.clone(), second.clone()];
    assert_eq!(world.snapshot_points().await, both);

    let deleted = world.delete_data().await;
    let purge_after = deleted + days(14);
    assert!(
        matches!(world.state(), Some(ProtectionState::SoftDeleted { deleted: d, purge_after: p, .. })
            if d == deleted && p == purge_after),
        "{:?}",
        world.state()
    );
    // The vault says so too, for any host; the snapshot tier's copies are gone; the vault's
    // points are still there.
    let marker = world
        .vault
        .store()
        .soft_delete(&vm("web01"))
        .await
        .expect("marker")
        .expect("the vault marks web01 soft-deleted");
    assert_eq!((marker.deleted, marker.purge_after), (deleted, purge_after));
    assert!(world.vault_dir().join("deleted/web01").is_file());
    assert_eq!(world.snapshot_points().await, Vec::<PointId>::new());
    assert_eq!(world.vault_points().await, both);
    let listed = world
        .engine
        .list_points(Some(&world.vault), &vm("web01"))
        .await
        .expect("still listed")
        .points;
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|p| p.tiers.has(Tier::Vault) && !p.tiers.has(Tier::Snapshot))
    );

    // Restore is refused, before any job; so is a backup now.
    let err = world
        .restore(&world.engine, &first)
        .await
        .expect_err("soft-deleted");
    assert!(matches!(err, Error::SoftDeleted { .. }), "{err}");
    assert!(err.to_string().contains("undelete"), "{err}");
    assert_eq!(world.jobs(&world.engine, Operation::Restore).len(), 0);
    let err = world
        .engine
        .backup_now(
            Ok(&world.vault),
            &vm("web01"),
            world.engine.now() + days(30),
            TransferOptions::default(),
            Arc::new(NoProgress),
        )
        .await
        .expect_err("no backup of soft-deleted data");
    assert!(matches!(err, Error::SoftDeleted { .. }), "{err}");

    // Another host, with a catalog that knows nothing: the vault's marker refuses the restore
    // and the protection there too.
    let (other, _) = Engine::open(world.dir.path().join("other-host"), None)
        .await
        .expect("other engine");
    let err = world
        .restore(&other, &first)
        .await
        .expect_err("soft-deleted for every host");
    assert!(matches!(err, Error::SoftDeleted { .. }), "{err}");
    let err = other
        .protect(
            Ok(&world.vault),
            &world.request(VAULT),
            TransferOptions::default(),
            Arc::new(NoProgress),
        )
        .await
        .expect_err("soft-deleted in this vault");
    assert!(matches!(err, Error::SoftDeleted { .. }), "{err}");

    // Day 13: not purged yet, and undelete brings everything back.
    world.advance_to(deleted + days(13)).await;
    let err = world
        .engine
        .purge(&world.vault, &vm("web01"))
        .await
        .expect_err("not due");
    assert!(matches!(err, Error::PurgeNotDue { .. }), "{err}");
    let item = world
        .engine
        .undelete(Ok(&world.vault), &vm("web01"))
        .await
        .expect("undelete on day 13");
    assert!(
        matches!(item.state, ProtectionState::Stopped { .. }),
        "{:?}",
        item.state
    );
    assert!(!item.is_protected());
    assert_eq!(
        world
            .vault
            .store()
            .soft_delete(&vm("web01"))
            .await
            .expect("read"),
        None
    );
    assert_eq!(world.vault_points().await, both);
    for (point, content) in [(&first, &first_content), (&second, &second_content)] {
        let restored = world.restore(&world.engine, point).await.expect("restore");
        assert!(
            read(&restored) == *content,
            "point {point} restores byte for byte"
        );
    }
    // Undeleted, the VM is stopped with data retained: it may be protected elsewhere.
    assert_eq!(
        world
            .engine
            .catalog()
            .protection_in(&vm("web01"), OTHER_VAULT)
            .expect("no longer blocked"),
        None
    );
    let err = world
        .engine
        .undelete(Ok(&world.vault), &vm("web01"))
        .await
        .expect_err("nothing soft-deleted any more");
    assert!(matches!(err, Error::NotSoftDeleted { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_14_days_the_daemon_purges_the_vault_points_and_undelete_is_refused() {
    let mut world = World::protected().await;
    let (first, _) = world.backup(2).await;
    let (second, _) = world.backup(4).await;
    let chunks = crate::support::chunk_files(&world.vault_dir()).len();
    assert!(chunks > 0);
    let deleted = world.delete_data().await;
    let purge_after = deleted + days(14);

    // Protecting it in another vault is refused, naming this vault and the purge date.
    let err = world
        .engine
        .protect(
            Ok(&world.vault),
            &world.request(OTHER_VAULT),
            TransferOptions::default(),
            Arc::new(NoProgress),
        )
        .await
        .expect_err("soft-deleted elsewhere");
    assert!(matches!(err, Error::SoftDeletedElsewhere { .. }), "{err}");
    let message = err.to_string();
    let purge_text = purge_after.strftime("%Y-%m-%d %H:%M UTC").to_string();
    assert!(
        message.contains(VAULT) && message.contains(&purge_text),
        "names the vault and the purge date: {message}"
    );

    // The very end of the period: too late to undelete, not purged yet.
    world.advance_to(purge_after).await;
    let err = world
        .engine
        .undelete(Ok(&world.vault), &vm("web01"))
        .await
        .expect_err("period over");
    assert!(matches!(err, Error::SoftDeletePeriodOver { .. }), "{err}");
    assert!(err.to_string().contains(&purge_text), "{err}");
    assert_eq!(world.vault_points().await, [first.clone(), second.clone()]);

    // A daemon started on day 13 wakes at the end of the period and purges.
    let (engine, lines) = world
        .run_daemon(deleted + days(13), purge_after + days(2))
        .await;
    assert_eq!(world.vault_points().await, Vec::<PointId>::new());
    for gone in ["points/web01", "maps/web01", "deleted/web01"] {
        assert!(!world.vault_dir().join(gone).exists(), "{gone} is purged");
    }
    // Chunks are garbage for the collector, not deleted here.
    assert_eq!(
        crate::support::chunk_files(&world.vault_dir()).len(),
        chunks
    );
    assert_eq!(world.state(), None, "the item is gone");
    assert!(
        engine
            .catalog()
            .points(&vm("web01"))
            .expect("points")
            .is_empty()
    );
    let deletes = world.jobs(&engine, Operation::DeleteBackupData);
    assert_eq!(deletes.len(), 2, "the delete and the purge: {deletes:?}");
    let purge = &deletes[0];
    assert_eq!(purge.status, JobStatus::Completed, "{purge:?}");
    assert_eq!(purge.started, purge_after, "purged when the period ended");
    let purged: Vec<&String> = lines
        .iter()
        .filter(|(level, line)| *level == Level::Info && line.contains("purged"))
        .map(|(_, line)| line)
        .collect();
    assert_eq!(purged.len(), 1, "{lines:?}");
    for needle in [
        format!("job {}", purge.id),
        "2 vault point(s)".to_owned(),
        first.to_string(),
        second.to_string(),
    ] {
        assert!(purged[0].contains(&needle), "{needle:?} in {}", purged[0]);
    }
    // A soft-deleted item got no backup from the daemon over these three days.
    assert_eq!(world.jobs(&engine, Operation::Backup).len(), 0, "{lines:?}");

    // Undelete is refused clearly; the VM may now be protected anywhere.
    let err = engine
        .undelete(Ok(&world.vault), &vm("web01"))
        .await
        .expect_err("purged");
    assert!(matches!(err, Error::NotSoftDeleted { .. }), "{err}");
    assert!(err.to_string().contains("purged"), "{err}");
    let moved = engine
        .protect(
            Ok(&world.vault),
            &world.request(OTHER_VAULT),
            TransferOptions::default(),
            Arc::new(NoProgress),
        )
        .await
        .expect("protect after the purge");
    assert_eq!(moved.job.status, JobStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_data_keeps_every_point_and_the_daemon_backs_up_only_once_protection_resumes() {
    let mut world = World::protected().await;
    let (point, content) = world.backup(2).await;
    let outcome = world
        .engine
        .stop_protection(Ok(&world.vault), &vm("web01"), StopMode::RetainData)
        .await
        .expect("stop");
    assert!(outcome.job.is_none());
    assert!(
        matches!(outcome.item.state, ProtectionState::Stopped { .. }),
        "{:?}",
        outcome.item.state
    );

    // Five days stopped: DefaultPolicy would have run five backups and expired the snapshot
    // point (2 days of instant restore). Nothing runs, nothing goes.
    let now = world.engine.now();
    let (engine, lines) = world.run_daemon(now, now + days(5)).await;
    assert_eq!(world.jobs(&engine, Operation::Backup).len(), 0, "{lines:?}");
    assert_eq!(world.vault_points().await, std::slice::from_ref(&point));
    assert_eq!(world.snapshot_points().await, std::slice::from_ref(&point));
    let restored = world.restore(&engine, &point).await.expect("restore");
    assert!(read(&restored) == content, "the retained point restores");
    let err = engine
        .backup_now(
            Ok(&world.vault),
            &vm("web01"),
            engine.now() + days(30),
            TransferOptions::default(),
            Arc::new(NoProgress),
        )
        .await
        .expect_err("stopped");
    assert!(matches!(err, Error::ProtectionStopped { .. }), "{err}");

    // Protect again (same vault): resumed, its schedule starts now, no catch-up.
    world.advance_to(engine.now()).await;
    drop(engine);
    let resumed = world
        .engine
        .protect(
            Ok(&world.vault),
            &world.request(VAULT),
            TransferOptions::default(),
            Arc::new(NoProgress),
        )
        .await
        .expect("resume");
    assert_eq!(resumed.job.operation, Operation::ConfigureBackup);
    assert_eq!(world.state(), Some(ProtectionState::Protected));
    let now = world.engine.now();
    let (engine, lines) = world.run_daemon(now, now + days(1)).await;
    let backups = world.jobs(&engine, Operation::Backup);
    assert_eq!(backups.len(), 1, "one daily slot in a day: {lines:?}");
    assert!(
        !lines
            .iter()
            .any(|(level, line)| *level == Level::Warning && line.contains("missed")),
        "no catch-up of the stopped days: {lines:?}"
    );
}
