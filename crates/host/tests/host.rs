//! The host facade end to end on directory vaults: what every front end gets from it.

use blockvault_host::{ErrorKind, Host, RedundancyKind, StateDir};
use blockvault_jobs::{DEFAULT_POLICY, Hooks, ProtectedItem, ProtectionState};
use blockvault_store::VaultLocation;

struct World {
    _dir: tempfile::TempDir,
    host: Host,
    vault: VaultLocation,
    root: std::path::PathBuf,
}

fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_owned();
    World {
        host: Host::open(StateDir::new(root.join("state"))),
        vault: VaultLocation::Local(root.join("vault")),
        root,
        _dir: dir,
    }
}

async fn protect(host: &Host, vm: &str, vault: &VaultLocation) {
    host.catalog()
        .await
        .expect("catalog")
        .protect(&ProtectedItem {
            vm: vm.parse().expect("vm"),
            vault: blockvault_host::canonical(vault).to_string(),
            disks: vec!["/dev/null".into()],
            policy: DEFAULT_POLICY.parse().expect("policy"),
            hooks: Hooks::default(),
            capture: Default::default(),
            disk_format: None,
            since: jiff::Timestamp::now(),
            handled: None,
            state: ProtectionState::Protected,
        })
        .expect("protect");
}

#[tokio::test]
async fn a_new_vault_opens_by_location_and_the_catalog_gets_the_default_policy() {
    let w = world();
    let created = w
        .host
        .create_vault(&w.vault, None, None)
        .await
        .expect("create");
    let opened = w.host.vault(&w.vault).await.expect("open");
    assert_eq!(opened.config().id, created.config().id);
    assert!(w.host.state().catalog().is_file());
    let policies = w
        .host
        .catalog()
        .await
        .expect("catalog")
        .policies()
        .expect("list");
    assert!(
        policies
            .iter()
            .any(|p| p.policy.name.as_str() == DEFAULT_POLICY)
    );
}

#[tokio::test]
async fn the_engine_keeps_its_files_where_the_state_dir_says() {
    let w = world();
    let (engine, warnings) = w.host.engine().await.expect("engine");
    assert!(warnings.is_empty(), "{warnings:?}");
    let state = w.host.state();
    assert_eq!(engine.state_dir(), state.root());
    assert!(state.catalog().is_file());
    assert_eq!(engine.snapshots().root(), state.snapshots());
    let elsewhere = Host::open(
        StateDir::new(w.root.join("state2")).with_snapshot_dir(Some(w.root.join("fast"))),
    );
    let (engine, _) = elsewhere.engine().await.expect("engine");
    assert_eq!(engine.snapshots().root(), w.root.join("fast"));
}

#[tokio::test]
async fn a_missing_vault_is_not_found_not_an_unavailable_one() {
    let w = world();
    let err = w
        .host
        .job_vault(&w.vault)
        .await
        .expect_err("no vault there");
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn redundancy_changes_until_the_host_protects_a_vm_with_the_vault() {
    let w = world();
    w.host
        .create_vault(&w.vault, None, None)
        .await
        .expect("create");
    let (_, changed) = w
        .host
        .set_redundancy(&w.vault, RedundancyKind::Single, None)
        .await
        .expect("already single");
    assert!(!changed);
    protect(&w.host, "web01", &w.vault).await;
    let secondary = VaultLocation::Local(w.root.join("replica"));
    let err = w
        .host
        .set_redundancy(&w.vault, RedundancyKind::Replicated, Some(secondary))
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Refused);
    assert!(err.to_string().contains("web01"), "{err}");
}

#[tokio::test]
async fn a_vault_without_a_secondary_has_nothing_to_resync_or_promote() {
    let w = world();
    w.host
        .create_vault(&w.vault, None, None)
        .await
        .expect("create");
    let resync = w
        .host
        .resync_secondary(&w.vault, None, &NoProgress)
        .await
        .expect_err("single");
    assert_eq!(resync.kind(), ErrorKind::Usage);
    let promote = w
        .host
        .promote(&w.vault, false)
        .await
        .expect_err("not a replica");
    assert_eq!(promote.kind(), ErrorKind::Refused);
}

#[tokio::test]
async fn a_replica_is_promoted_and_the_protected_items_move_to_it() {
    let w = world();
    let replica = VaultLocation::Local(w.root.join("replica"));
    w.host
        .create_vault(
            &w.vault,
            Some(RedundancyKind::Replicated),
            Some(replica.clone()),
        )
        .await
        .expect("create replicated");
    protect(&w.host, "web01", &w.vault).await;
    // The primary is lost for good.
    std::fs::remove_dir_all(w.root.join("vault")).expect("lose the primary");
    let promoted = w.host.promote(&replica, false).await.expect("promote");
    assert_eq!(promoted.moved, ["web01"]);
    let item = w
        .host
        .catalog()
        .await
        .expect("catalog")
        .protected_item(&"web01".parse().expect("vm"))
        .expect("read")
        .expect("still protected");
    assert_eq!(item.vault, promoted.location.to_string());
}

#[tokio::test]
async fn the_points_of_an_empty_vault_are_none_with_no_retention_to_show() {
    let w = world();
    w.host
        .create_vault(&w.vault, None, None)
        .await
        .expect("create");
    let view = w.host.points(&w.vault, None).await.expect("points");
    assert!(view.points.is_empty() && view.damaged.is_empty());
    assert!(!view.shows_retention());
}

struct NoProgress;

impl blockvault_vault::Progress for NoProgress {}
