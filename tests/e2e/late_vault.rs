//! A backup job whose vault opens late, or never (issue 21): the Snapshot does not wait for
//! it, and its point still names the vault it was taken for: the id last seen at the vault's
//! location while the vault is opening, the vault's own once it has opened.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blockvault_jobs::{
    BackupSpec, Engine, JobStatus, JobVault, SubtaskKind, SubtaskStatus, VaultUnavailable,
};
use blockvault_vault::{NoProgress, Vault};
use jiff::Timestamp;

use crate::support::{Image, Write, block_size, vm};

const VM: &str = "late";
const LOCATION: &str = "s3://late/site-a";
/// How long the vault takes to open: far longer than the Snapshot of a small disk.
const OPENING: Duration = Duration::from_secs(2);

struct World {
    dir: tempfile::TempDir,
    engine: Engine,
    vault: Vault,
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().expect("tmp");
        let state = dir.path().join("state");
        let (engine, _) = Engine::open(&state, None).await.expect("engine");
        let vault = Vault::init_local(dir.path().join("vault"))
            .await
            .expect("vault")
            .with_state_dir(&state);
        let mut disk = Image::create(disk_path(dir.path()), 2 << 20);
        disk.apply(Write {
            offset: 64 << 10,
            len: 64 << 10,
            kind: 3,
        });
        World { dir, engine, vault }
    }

    fn spec(&self) -> BackupSpec {
        BackupSpec {
            block_size: Some(block_size(64 << 10)),
            ..BackupSpec::new(vm(VM), vec![disk_path(self.dir.path())])
        }
    }

    /// The snapshot tier's record of the VM's one point: the vault it names.
    async fn snapshot_names(&self) -> Option<String> {
        let points = self.engine.snapshots().points(&vm(VM)).await.expect("tier");
        assert_eq!(points.len(), 1, "{points:?}");
        points[0].vault.clone()
    }
}

fn disk_path(dir: &Path) -> std::path::PathBuf {
    dir.join("disk.img")
}

#[tokio::test]
async fn a_vault_that_opens_after_the_snapshot_gets_the_point_and_the_point_names_it() {
    let world = World::new().await;
    let id = world.vault.config().id.clone();
    // This location held another vault when this host last looked.
    world
        .engine
        .catalog()
        .remember_vault(LOCATION, "an-older-vault", Timestamp::now())
        .expect("remember");
    let opened_at = Arc::new(Mutex::new(None));
    let late = {
        let (vault, opened_at) = (world.vault.clone(), Arc::clone(&opened_at));
        JobVault::opening(LOCATION, async move {
            tokio::time::sleep(OPENING).await;
            *opened_at.lock().expect("lock") = Some(Timestamp::now());
            Ok(vault)
        })
    };
    let outcome = world
        .engine
        .backup(late, &world.spec(), Arc::new(NoProgress))
        .await
        .expect("backup");
    let job = &outcome.job;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let snapshot = job.subtask(SubtaskKind::Snapshot).expect("snapshot");
    let opened_at = opened_at.lock().expect("lock").expect("the vault opened");
    assert!(
        snapshot.ended.is_some_and(|ended| ended < opened_at),
        "the snapshot waited for the vault: {snapshot:?}, vault open at {opened_at}"
    );
    let transfer = job.subtask(SubtaskKind::Transfer).expect("transfer");
    assert_eq!(transfer.status, SubtaskStatus::Completed, "{transfer:?}");
    let point = outcome.point.expect("point");
    assert_eq!(
        point.vault.as_ref(),
        Some(&id),
        "the job's view of its point"
    );

    // The snapshot tier's record was corrected once the vault opened, and the host now knows
    // which vault is at the location.
    assert_eq!(world.snapshot_names().await, Some(id.clone()));
    assert_eq!(
        world.engine.catalog().vault_id(LOCATION).expect("read"),
        Some(id)
    );
    let in_vault = world
        .vault
        .store()
        .get_point(&vm(VM), &point.id)
        .await
        .expect("the vault holds the point");
    assert_eq!(in_vault.vault, None, "a vault's own record names no vault");
}

#[tokio::test]
async fn a_vault_that_never_opens_leaves_the_point_named_after_the_vault_last_seen_there() {
    let world = World::new().await;
    let id = world.vault.config().id.clone();
    world
        .engine
        .catalog()
        .remember_vault(LOCATION, &id, Timestamp::now())
        .expect("remember");
    let down = JobVault::opening(LOCATION, async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Err(VaultUnavailable {
            location: LOCATION.to_owned(),
            reason: "the request timed out".to_owned(),
        })
    });
    let outcome = world
        .engine
        .backup(down, &world.spec(), Arc::new(NoProgress))
        .await
        .expect("backup");
    let job = &outcome.job;
    assert_eq!(job.status, JobStatus::CompletedWithWarning, "{job:?}");
    let transfer = job.subtask(SubtaskKind::Transfer).expect("transfer");
    assert_eq!(transfer.status, SubtaskStatus::Failed);
    assert_eq!(
        transfer.error.as_deref(),
        Some("the vault s3://late/site-a is unavailable: the request timed out")
    );
    // So listings against that vault show the point (in the snapshot tier only).
    assert_eq!(world.snapshot_names().await, Some(id));
}
