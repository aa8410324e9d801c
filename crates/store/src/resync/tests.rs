use std::sync::Arc;

use blockvault_core::{BlockMap, BlockSize, Consistency, DiskName, DiskRecord, VaultConfig};
use jiff::Timestamp;

use super::*;
use crate::testing::ProbedStore;

fn vm() -> VmName {
    VmName::new("web01").expect("vm")
}

/// A point of `vm` naming one map; its chunks are put separately.
async fn point(store: &Store, seed: u8) -> RecoveryPoint {
    let time = Timestamp::from_second(1_800_000_000 + i64::from(seed)).expect("time");
    let id = PointId::generate(time, &[seed]);
    let disk = DiskName::new("root.img").expect("disk");
    let map = BlockMap::zeroed(8 << 20, BlockSize::DEFAULT, time);
    let digest = store.put_map(&vm(), &id, &disk, &map).await.expect("map");
    let record = RecoveryPoint {
        vm: vm(),
        id,
        time,
        consistency: Consistency::CrashConsistent,
        parent: None,
        disks: vec![DiskRecord {
            name: disk,
            source: "/vms/root.img".into(),
            size: 8 << 20,
            block_size: BlockSize::DEFAULT,
            map_digest: digest,
            blocks: map.len() as u64,
            data_blocks: 0,
            format: Default::default(),
        }],
        stats: Default::default(),
        retain_until: None,
        vault: None,
    };
    store.put_point(&record).await.expect("commit");
    record
}

async fn chunk(store: &Store, seed: u8) -> ChunkId {
    let block: Vec<u8> = (0..4096u32).map(|i| (i as u8) ^ seed).collect();
    let (id, encoded) = store.codec().encode_one(&block).expect("encode");
    store.put_chunk(&id, encoded.into()).await.expect("chunk");
    id
}

/// A primary with 4 chunks, 2 points (2 maps) and a soft-delete marker.
async fn primary() -> Store {
    let store = Store::in_memory();
    store
        .init(&VaultConfig {
            id: "0123456789abcdef".into(),
            created: Timestamp::UNIX_EPOCH,
            default_block_size: BlockSize::DEFAULT,
            redundancy: Default::default(),
            replica_of: None,
            encryption: None,
        })
        .await
        .expect("init");
    for seed in 1..=4 {
        chunk(&store, seed).await;
    }
    point(&store, 1).await;
    let forgotten = point(&store, 2).await;
    store
        .put_soft_delete(&SoftDeleteMarker {
            vm: VmName::new("old01").expect("vm"),
            deleted: Timestamp::UNIX_EPOCH,
            purge_after: Timestamp::UNIX_EPOCH,
        })
        .await
        .expect("marker");
    // A forgotten point's marker travels too: a replica promoted without it would bring the
    // point back.
    store
        .put_point_delete(&PointDeleteMarker::new(
            vm(),
            forgotten.id.clone(),
            Timestamp::UNIX_EPOCH,
        ))
        .await
        .expect("point marker");
    store.mark_damaged(&ChunkId::of(b"x")).await.expect("mark");
    store
}

async fn replicated_keys(store: &Store) -> Vec<(String, u64)> {
    list_replicated(store)
        .await
        .expect("list")
        .into_iter()
        .map(|(k, s)| (k.to_string(), s))
        .collect()
}

#[tokio::test]
async fn a_new_secondary_gets_every_replicated_object_and_a_second_run_copies_nothing() {
    let primary = primary().await;
    let target = Store::in_memory();
    let report = primary
        .resync_to(&target, ResyncOptions::default(), &NoResyncProgress)
        .await
        .expect("resync");
    let expected = ObjectCounts {
        chunks: 4,
        maps: 2,
        records: 2,
        markers: 2,
    };
    assert_eq!(report.on_primary, expected);
    assert_eq!(report.copied, expected);
    assert!(
        report.bad.is_empty() && report.removed.is_empty(),
        "{report:?}"
    );
    assert_eq!(
        replicated_keys(&target).await,
        replicated_keys(&primary).await
    );
    // Coordination objects and the config stay the primary's own.
    assert!(matches!(
        target.config().await,
        Err(Error::NotAVault { .. })
    ));
    assert_eq!(target.damaged_chunks().await.expect("list"), []);
    assert_eq!(
        target
            .list_points(&vm())
            .await
            .expect("points")
            .points
            .len(),
        2
    );

    let again = primary
        .resync_to(&target, ResyncOptions::default(), &NoResyncProgress)
        .await
        .expect("resync");
    assert_eq!(again.copied, ObjectCounts::default());
    assert_eq!(again.already, expected);
}

/// The regression: a resync that dies midway must leave no point on the target whose data
/// is missing, and the next run copies only what is still missing.
#[tokio::test]
async fn a_resync_that_dies_midway_shows_no_point_and_the_next_run_copies_the_rest() {
    let primary = primary().await;
    let probe = Arc::new(ProbedStore::failing_puts_after(3));
    let target = Store::new(probe.clone(), "probed");
    let options = ResyncOptions { concurrency: 1 };
    let err = primary
        .resync_to(&target, options, &NoResyncProgress)
        .await
        .expect_err("the target dies after 3 puts");
    assert!(
        err.to_string().contains("target store probed") && err.to_string().contains("refused"),
        "{err}"
    );
    assert_eq!(target.list_vms().await.expect("vms"), Vec::<VmName>::new());
    let landed = replicated_keys(&target).await.len();
    assert_eq!(landed, 3, "chunks first, one at a time");

    probe.heal();
    let report = primary
        .resync_to(&target, options, &NoResyncProgress)
        .await
        .expect("resync");
    assert_eq!(report.already.total(), 3);
    assert_eq!(report.copied.total(), 10 - 3);
    assert_eq!(
        replicated_keys(&target).await,
        replicated_keys(&primary).await
    );
}

#[tokio::test]
async fn bad_objects_on_the_primary_are_not_copied_and_a_bad_map_keeps_its_record_off() {
    let primary = primary().await;
    let bad_chunk = chunk(&primary, 9).await;
    primary
        .put_here(
            &layout::chunk(&bad_chunk),
            Bytes::from_static(b"not a chunk"),
        )
        .await
        .expect("corrupt chunk");
    let record = point(&primary, 3).await;
    let disk = &record.disks[0].name;
    primary
        .put_here(
            &layout::map(&vm(), &record.id, disk),
            Bytes::from_static(b"not this map"),
        )
        .await
        .expect("corrupt map");
    let target = Store::in_memory();
    let report = primary
        .resync_to(&target, ResyncOptions::default(), &NoResyncProgress)
        .await
        .expect("resync");
    assert_eq!(report.bad.len(), 2, "{report:?}");
    assert!(report.bad.iter().any(|b| b.contains(&bad_chunk.to_hex())));
    assert!(report.bad.iter().any(|b| b.contains("does not match")));
    assert!(!target.has_chunk(&bad_chunk).await.expect("head"));
    let ids = target.list_point_ids(&vm()).await.expect("points");
    assert_eq!(ids.len(), 2, "the point with the bad map stays off");
    assert!(!ids.contains(&record.id));
}

#[tokio::test]
async fn points_and_markers_the_primary_no_longer_has_are_removed_from_the_target() {
    let primary = primary().await;
    let target = Store::in_memory();
    primary
        .resync_to(&target, ResyncOptions::default(), &NoResyncProgress)
        .await
        .expect("resync");
    let gone = primary.list_point_ids(&vm()).await.expect("ids")[0].clone();
    primary.delete_point(&vm(), &gone).await.expect("retention");
    primary
        .remove_soft_delete(&VmName::new("old01").expect("vm"))
        .await
        .expect("undelete");
    let report = primary
        .resync_to(&target, ResyncOptions::default(), &NoResyncProgress)
        .await
        .expect("resync");
    assert_eq!(report.removed.len(), 2, "{report:?}");
    assert_eq!(target.list_point_ids(&vm()).await.expect("ids").len(), 1);
    assert_eq!(
        target
            .soft_delete(&VmName::new("old01").expect("vm"))
            .await
            .expect("marker"),
        None
    );
    assert_eq!(
        target.list_map_point_ids(&vm()).await.expect("maps").len(),
        1
    );
}
