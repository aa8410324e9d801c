//! verify beside prune: a point deleted (by retention on this or another host) while a
//! verification reads it is no damage, whether its maps or, after a collection, its chunks
//! went first.

use std::sync::Arc;
use std::time::Duration;

use blockvault_core::RecoveryPoint;
use blockvault_vault::{GcOptions, NoProgress, TransferOptions, Vault};

use crate::support::{Image, Write, backup, block_size, new_vault, vm};

const BS: u64 = 64 << 10;

/// A vault with two points of `web`; the second rewrote half of the first's blocks.
async fn two_points(dir: &std::path::Path) -> (Vault, Vec<RecoveryPoint>) {
    let vault = new_vault(dir).await;
    let mut disk = Image::create(dir.join("disk.img"), 32 * BS);
    disk.apply(Write {
        offset: 0,
        len: (32 * BS) as usize,
        kind: 2,
    });
    backup(&vault, "web", &[&disk], block_size(BS))
        .await
        .expect("first");
    disk.apply(Write {
        offset: 0,
        len: (16 * BS) as usize,
        kind: 4,
    });
    backup(&vault, "web", &[&disk], block_size(BS))
        .await
        .expect("second");
    let listed = vault.points(&vm("web")).await.expect("points").points;
    assert_eq!(listed.len(), 2);
    (vault, listed)
}

/// Deletes the first of `listed`, as retention would.
async fn prune_first(vault: &Vault, listed: &[RecoveryPoint]) {
    vault
        .store()
        .delete_point(&vm("web"), &listed[0].id)
        .await
        .expect("prune");
}

async fn verify(vault: &Vault, points: &[RecoveryPoint]) -> blockvault_vault::VerifyReport {
    vault
        .verify(points, TransferOptions::default(), Arc::new(NoProgress))
        .await
        .expect("verify runs")
}

#[tokio::test]
async fn a_point_pruned_during_verify_is_not_reported_as_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (vault, listed) = two_points(dir.path()).await;
    // Listed by the verification, then pruned before its maps were read.
    prune_first(&vault, &listed).await;
    let report = verify(&vault, &listed).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.points_gone, 1, "{report:?}");
}

#[tokio::test]
async fn a_point_pruned_and_collected_during_verify_is_not_reported_as_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (vault, listed) = two_points(dir.path()).await;
    prune_first(&vault, &listed).await;
    let gc = GcOptions {
        grace: Duration::ZERO,
        poll: Duration::from_millis(50),
        ..GcOptions::default()
    };
    let collected = vault
        .collect_garbage(gc, Arc::new(NoProgress))
        .await
        .expect("gc");
    assert_eq!(collected.chunks_deleted, 16, "{collected:?}");
    let report = verify(&vault, &listed).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.points_gone, 1, "{report:?}");
}

#[tokio::test]
async fn damage_of_a_point_that_still_exists_is_still_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (vault, listed) = two_points(dir.path()).await;
    // The first point's maps go, its record stays: that is damage.
    vault
        .store()
        .delete_maps(&vm("web"), &listed[0].id)
        .await
        .expect("delete maps");
    let report = verify(&vault, &listed).await;
    assert_eq!(report.bad_maps.len(), 1, "{report:?}");
    assert_eq!(report.points_gone, 0, "{report:?}");
}
