//! One conformance suite for every backend a vault can live on.
//!
//! [`run`] takes a [`Store`] over an empty location and checks what every other crate relies
//! on: the config marks a vault, chunks/maps/points round-trip, and missing or corrupt objects
//! are reported as such, by name. The store's own tests run it against every backend
//! (`backend.rs`): `InMemory`, a local directory, replicated stores (directory + directory,
//! memory + memory, S3 + directory), and S3 on the Garage server `scripts/test.sh` starts.
//!
//! On a replicated store the suite spoils every copy alike (it writes bad objects to the
//! secondary too), so a read fails everywhere: the error is then
//! [`Error::ReplicaAlsoBad`], whose two problems must both be what a single store reports.

use blockvault_core::{
    BlockMap, BlockSize, ChunkId, Consistency, DiskName, DiskRecord, PointId, PointStats,
    RecoveryPoint, VaultConfig, VmName,
};
use futures::TryStreamExt;
use jiff::Timestamp;
use object_store::{ObjectStoreExt, PutPayload};

use crate::maps::{MAP_PART_SIZE, large_map};
use crate::{Error, Store, layout};

/// Runs the whole suite; panics (as a test failure) on the first broken promise.
pub async fn run(store: &Store) {
    config_marks_a_vault(store).await;
    chunks_round_trip_and_fail_by_name(store).await;
    maps_round_trip_and_are_checked(store).await;
    large_objects_go_up_in_parts(store).await;
    points_commit_list_and_fail_by_name(store).await;
    deletes_remove_points_maps_and_chunks(store).await;
    soft_delete_markers_round_trip_and_fail_by_name(store).await;
    point_delete_markers_live_beside_a_vms_marker(store).await;
    protection_records_round_trip_list_and_fail_by_key(store).await;
}

fn vm() -> VmName {
    VmName::new("conformance-vm").expect("name")
}

async fn config_marks_a_vault(store: &Store) {
    let err = store
        .config()
        .await
        .expect_err("empty location is no vault");
    assert!(matches!(err, Error::NotAVault { .. }), "{err}");
    let config = VaultConfig {
        id: "conformance".into(),
        created: Timestamp::UNIX_EPOCH,
        default_block_size: BlockSize::DEFAULT,
        redundancy: Default::default(),
        replica_of: None,
        encryption: None,
    };
    store.init(&config).await.expect("init");
    assert_eq!(store.config().await.expect("config"), config);
    let err = store.init(&config).await.expect_err("second init");
    assert!(matches!(err, Error::AlreadyAVault { .. }), "{err}");
}

async fn chunks_round_trip_and_fail_by_name(store: &Store) {
    let block: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (id, encoded) = store.codec().encode_one(&block).expect("encode");
    assert!(!store.has_chunk(&id).await.expect("head"));
    let err = store.read_chunk(&id).await.expect_err("missing");
    assert!(
        matches!(everywhere(&err), Error::ChunkMissing { .. }) && err.is_missing(),
        "{err}"
    );

    store
        .put_chunk(&id, encoded.clone().into())
        .await
        .expect("put");
    store
        .put_chunk(&id, encoded.clone().into())
        .await
        .expect("duplicate put is harmless");
    assert!(store.has_chunk(&id).await.expect("head"));
    assert_eq!(store.read_chunk(&id).await.expect("read"), block);

    // Another block's bytes stored under this id: decodes fine, fails the re-hash.
    let (_, other) = store.codec().encode_one(b"not the block").expect("encode");
    let liar = ChunkId::of(b"the id this object claims");
    store.put_chunk(&liar, other.into()).await.expect("put");
    let err = store.read_chunk(&liar).await.expect_err("mismatch");
    assert!(
        matches!(everywhere(&err), Error::ChunkCorrupt { id, .. } if *id == liar)
            && err.is_corrupt(),
        "{err}"
    );

    // A truncated object.
    let cut = ChunkId::of(b"cut");
    store
        .put_chunk(&cut, encoded[..encoded.len() / 2].to_vec().into())
        .await
        .expect("put");
    let err = store.read_chunk(&cut).await.expect_err("truncated");
    assert!(
        matches!(everywhere(&err), Error::ChunkCorrupt { id, .. } if *id == cut),
        "{err}"
    );

    let mut listed: Vec<ChunkId> = store.list_chunks().try_collect().await.expect("list");
    listed.sort();
    let mut expected = vec![id, liar, cut];
    expected.sort();
    assert_eq!(listed, expected);
}

async fn maps_round_trip_and_are_checked(store: &Store) {
    let point = PointId::generate(Timestamp::UNIX_EPOCH, b"maps");
    let disk = DiskName::new("disk0.img").expect("name");
    let bs = BlockSize::new(64 << 10).expect("bs");
    let mut map = BlockMap::zeroed(10 * bs.bytes() + 5, bs, Timestamp::UNIX_EPOCH);
    map.set(3, ChunkId::of(b"three"));
    let err = store
        .get_map(&vm(), &point, &disk, None)
        .await
        .expect_err("missing");
    assert!(
        matches!(everywhere(&err), Error::MapMissing { .. }),
        "{err}"
    );
    let digest = store
        .put_map(&vm(), &point, &disk, &map)
        .await
        .expect("put");
    assert_eq!(
        store
            .get_map(&vm(), &point, &disk, Some(&digest))
            .await
            .expect("get"),
        map
    );
    let err = store
        .get_map(&vm(), &point, &disk, Some(&"0".repeat(64)))
        .await
        .expect_err("digest");
    assert!(
        matches!(everywhere(&err), Error::MapCorrupt { .. }),
        "{err}"
    );
    let mut bytes = map.encode();
    bytes.truncate(bytes.len() - 1);
    raw_put(store, &layout::map(&vm(), &point, &disk), bytes).await;
    let err = store
        .get_map(&vm(), &point, &disk, None)
        .await
        .expect_err("truncated");
    assert!(
        matches!(everywhere(&err), Error::MapCorrupt { .. })
            && err.to_string().contains("truncated"),
        "{err}"
    );
}

/// Large objects go up in parts. A block map bigger than a part is sent in parts as it is
/// encoded ([`large_map`], three parts). Any other object over the multipart threshold (lowered
/// here to 1 MiB) is sent in parts whole.
async fn large_objects_go_up_in_parts(store: &Store) {
    let point = PointId::generate(Timestamp::UNIX_EPOCH, b"multipart");
    let disk = DiskName::new("huge.img").expect("name");
    let map = large_map();
    let whole = map.encode();
    assert!(whole.len() > 2 * MAP_PART_SIZE, "three parts");
    let digest = store
        .put_map(&vm(), &point, &disk, &map)
        .await
        .expect("map put in parts");
    assert_eq!(
        digest,
        blake3::hash(&whole).to_hex().as_str(),
        "the digest is the whole encoding's"
    );
    let back = store
        .get_map(&vm(), &point, &disk, Some(&digest))
        .await
        .expect("get");
    assert!(back == map, "the map put in parts reads back whole");
    assert!(
        store
            .map_matches(&vm(), &point, &disk, &digest)
            .await
            .expect("matches"),
        "and hashes to its digest as stored"
    );

    let lowered = store.clone().with_multipart_threshold(1 << 20);
    let key = object_store::path::Path::from("conformance/large-object");
    let bytes = bytes::Bytes::from(whole[..3 << 20].to_vec());
    lowered
        .put(&key, bytes.clone())
        .await
        .expect("put in parts");
    assert!(lowered.get(&key).await.expect("get") == Some(bytes));
    lowered.delete(&key).await.expect("delete");
}

async fn points_commit_list_and_fail_by_name(store: &Store) {
    let early: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
    let late: Timestamp = "2026-06-01T00:00:00Z".parse().expect("ts");
    let make = |time: Timestamp| RecoveryPoint {
        vm: vm(),
        id: PointId::generate(time, b"p"),
        time,
        consistency: Consistency::CrashConsistent,
        parent: None,
        disks: vec![DiskRecord {
            name: DiskName::new("disk0.img").expect("name"),
            source: "/dev/null".into(),
            size: 0,
            block_size: BlockSize::DEFAULT,
            map_digest: String::new(),
            blocks: 0,
            data_blocks: 0,
            format: Default::default(),
        }],
        stats: PointStats::default(),
        retain_until: None,
        vault: None,
    };
    let (a, b) = (make(early), make(late));
    let err = store.get_point(&vm(), &a.id).await.expect_err("missing");
    assert!(matches!(err, Error::PointMissing { .. }), "{err}");
    store.put_point(&b).await.expect("put");
    store.put_point(&a).await.expect("put");
    assert_eq!(store.list_vms().await.expect("vms"), vec![vm()]);
    assert_eq!(
        store.list_point_ids(&vm()).await.expect("ids"),
        vec![a.id.clone(), b.id.clone()]
    );
    let listing = store.list_points(&vm()).await.expect("points");
    assert_eq!(listing.points, vec![a.clone(), b.clone()]);
    assert!(listing.damaged.is_empty());
    let other = VmName::new("nobody").expect("name");
    assert!(store.list_points(&other).await.expect("points").is_empty());

    let good = a.encode();
    let mut bytes = good.clone();
    let at = bytes.len() - 3;
    bytes[at] ^= 0x20;
    raw_put(store, &layout::point(&vm(), &a.id), bytes).await;
    let err = store.get_point(&vm(), &a.id).await.expect_err("corrupt");
    assert!(
        matches!(everywhere(&err), Error::PointCorrupt { .. }) && err.is_corrupt(),
        "{err}"
    );
    // A damaged record hides only itself.
    let listing = store.list_points(&vm()).await.expect("points");
    assert_eq!(listing.points, vec![b.clone()]);
    assert_eq!(
        listing.damaged.iter().map(|d| &d.id).collect::<Vec<_>>(),
        vec![&a.id]
    );
    // A healthy record is never set aside; a damaged one is, bytes kept.
    let err = store
        .quarantine_point(&vm(), &b.id)
        .await
        .expect_err("healthy");
    assert!(matches!(err, Error::PointNotDamaged { .. }), "{err}");
    store
        .quarantine_point(&vm(), &a.id)
        .await
        .expect("set aside");
    let listing = store.list_points(&vm()).await.expect("points");
    assert_eq!((listing.points, listing.damaged), (vec![b.clone()], vec![]));
    let aside = store
        .get(&layout::quarantined_point(&vm(), &a.id))
        .await
        .expect("get")
        .expect("kept");
    assert_ne!(&aside[..], &good[..]);
    assert_eq!(aside.len(), good.len());
    // A record under another point's key is not that point.
    raw_put(store, &layout::point(&vm(), &a.id), b.encode()).await;
    let err = store.get_point(&vm(), &a.id).await.expect_err("misplaced");
    assert!(
        matches!(everywhere(&err), Error::PointCorrupt { .. }) && err.is_corrupt(),
        "{err}"
    );
    store.delete_point(&vm(), &a.id).await.expect("delete");
}

async fn deletes_remove_points_maps_and_chunks(store: &Store) {
    let time: Timestamp = "2026-03-01T00:00:00Z".parse().expect("ts");
    let vm = VmName::new("deleted-vm").expect("name");
    let disk = DiskName::new("d.img").expect("name");
    let block = vec![9u8; 4096];
    let (id, encoded) = store.codec().encode_one(&block).expect("encode");
    store
        .put_chunk(&id, encoded.into())
        .await
        .expect("put chunk");
    let bs = BlockSize::new(64 << 10).expect("bs");
    let mut map = BlockMap::zeroed(4096, bs, time);
    map.set(0, id);
    let point = PointId::generate(time, b"deleted");
    let orphan = PointId::generate(time, b"orphan");
    let digest = store.put_map(&vm, &point, &disk, &map).await.expect("map");
    store.put_map(&vm, &orphan, &disk, &map).await.expect("map");
    store
        .put_point(&RecoveryPoint {
            vm: vm.clone(),
            id: point.clone(),
            time,
            consistency: Consistency::CrashConsistent,
            parent: None,
            disks: vec![DiskRecord {
                name: disk.clone(),
                source: "/dev/null".into(),
                size: 4096,
                block_size: bs,
                map_digest: digest,
                blocks: 1,
                data_blocks: 1,
                format: Default::default(),
            }],
            stats: PointStats::default(),
            retain_until: None,
            vault: None,
        })
        .await
        .expect("put point");
    let mut both = vec![point.clone(), orphan.clone()];
    both.sort();
    assert_eq!(store.list_map_point_ids(&vm).await.expect("maps"), both);

    store.delete_point(&vm, &point).await.expect("delete point");
    assert!(store.list_point_ids(&vm).await.expect("ids").is_empty());
    assert_eq!(
        store.list_map_point_ids(&vm).await.expect("maps"),
        vec![orphan.clone()]
    );
    store.delete_maps(&vm, &orphan).await.expect("delete maps");
    assert!(
        store
            .list_map_point_ids(&vm)
            .await
            .expect("maps")
            .is_empty()
    );
    // Deleting what is already gone is not an error.
    store.delete_point(&vm, &point).await.expect("delete again");

    store.delete_chunk(&id).await.expect("delete chunk");
    assert!(!store.has_chunk(&id).await.expect("head"));
    store.delete_chunk(&id).await.expect("delete again");
}

async fn soft_delete_markers_round_trip_and_fail_by_name(store: &Store) {
    let vm = VmName::new("soft-deleted-vm").expect("name");
    assert_eq!(store.soft_delete(&vm).await.expect("none yet"), None);
    let deleted: Timestamp = "2026-11-23T10:00:00Z".parse().expect("ts");
    let marker = blockvault_core::SoftDeleteMarker::new(vm.clone(), deleted);
    store.put_soft_delete(&marker).await.expect("put marker");
    assert_eq!(
        store.soft_delete(&vm).await.expect("read"),
        Some(marker.clone())
    );
    // The marker is not a VM with points.
    assert!(!store.list_vms().await.expect("vms").contains(&vm));
    store.remove_soft_delete(&vm).await.expect("remove");
    assert_eq!(store.soft_delete(&vm).await.expect("gone"), None);
    store.remove_soft_delete(&vm).await.expect("remove again");

    let mut bytes = marker.encode();
    let last = bytes.len() - 2;
    bytes[last] ^= 1;
    raw_put(store, &layout::soft_delete(&vm), bytes).await;
    let err = store.soft_delete(&vm).await.expect_err("corrupt");
    assert!(
        matches!(&err, Error::SoftDeleteCorrupt { vm: v, .. } if *v == vm) && err.is_corrupt(),
        "{err}"
    );
    assert!(err.to_string().contains("soft-deleted-vm"), "{err}");
    store.remove_soft_delete(&vm).await.expect("clean up");
}

/// A forgotten point's marker and its VM's marker at once (a directory store cannot hold a
/// file `deleted/<vm>` and a directory `deleted/<vm>/`), listed per VM, by name when corrupt.
async fn point_delete_markers_live_beside_a_vms_marker(store: &Store) {
    let vm = VmName::new("forgetful-vm").expect("name");
    let deleted: Timestamp = "2026-11-23T10:00:00Z".parse().expect("ts");
    let (first, second) = (
        PointId::generate(deleted, b"first"),
        PointId::generate(deleted + jiff::SignedDuration::from_secs(60), b"second"),
    );
    assert_eq!(store.point_delete(&vm, &first).await.expect("none"), None);
    assert!(store.point_deletes(&vm).await.expect("none").is_empty());
    let vm_marker = blockvault_core::SoftDeleteMarker::new(vm.clone(), deleted);
    store.put_soft_delete(&vm_marker).await.expect("vm marker");
    let markers: Vec<blockvault_core::PointDeleteMarker> = [&second, &first]
        .into_iter()
        .map(|p| blockvault_core::PointDeleteMarker::new(vm.clone(), p.clone(), deleted))
        .collect();
    for marker in &markers {
        store.put_point_delete(marker).await.expect("point marker");
    }
    assert_eq!(
        store.point_deletes(&vm).await.expect("list"),
        vec![markers[1].clone(), markers[0].clone()],
        "oldest point first"
    );
    assert_eq!(
        store.point_delete_vms().await.expect("vms"),
        vec![vm.clone()]
    );
    assert_eq!(
        store.soft_delete(&vm).await.expect("vm marker"),
        Some(vm_marker)
    );
    assert!(!store.list_vms().await.expect("vms").contains(&vm));
    store
        .remove_point_delete(&vm, &second)
        .await
        .expect("remove");
    store
        .remove_point_delete(&vm, &second)
        .await
        .expect("again");
    assert_eq!(
        store.point_deletes(&vm).await.expect("list"),
        vec![markers[1].clone()]
    );

    // A damaged marker, and one under another point's key, are errors naming the point.
    let mut bytes = markers[1].encode();
    let last = bytes.len() - 2;
    bytes[last] ^= 1;
    raw_put(store, &layout::point_delete(&vm, &first), bytes).await;
    let err = store.point_deletes(&vm).await.expect_err("corrupt");
    assert!(
        matches!(&err, Error::PointDeleteCorrupt { point, .. } if *point == first)
            && err.is_corrupt(),
        "{err}"
    );
    raw_put(
        store,
        &layout::point_delete(&vm, &first),
        markers[0].encode(),
    )
    .await;
    let err = store
        .point_delete(&vm, &first)
        .await
        .expect_err("misplaced");
    assert!(err.to_string().contains(first.as_str()), "{err}");

    store
        .remove_point_delete(&vm, &first)
        .await
        .expect("clean up");
    store.remove_soft_delete(&vm).await.expect("clean up");
    assert!(store.point_delete_vms().await.expect("vms").is_empty());
}

async fn protection_records_round_trip_list_and_fail_by_key(store: &Store) {
    use blockvault_core::{HeldState, HostIdentity, ProtectionRecord};
    let vm = VmName::new("held-vm").expect("name");
    assert_eq!(store.protection(&vm).await.expect("none yet"), None);
    let since: Timestamp = "2026-11-23T10:00:00Z".parse().expect("ts");
    let mut record = ProtectionRecord {
        vm: vm.clone(),
        host: HostIdentity {
            id: "00112233aabbccdd".into(),
            name: "hv1".into(),
            state_dir: "/var/lib/blockvault".into(),
        },
        policy: "DefaultPolicy".into(),
        policy_settings: "name = \"DefaultPolicy\"\n".into(),
        since,
        updated: since,
        state: HeldState::Protected,
    };
    store.put_protection(&record).await.expect("put record");
    assert_eq!(
        store.protection(&vm).await.expect("read"),
        Some(record.clone())
    );
    assert!(
        store
            .list_protected_vms()
            .await
            .expect("list")
            .contains(&vm)
    );
    // The record is not a VM with points.
    assert!(!store.list_vms().await.expect("vms").contains(&vm));
    record.state = HeldState::Stopped { stopped: since };
    store.put_protection(&record).await.expect("replace");
    assert_eq!(
        store.protection(&vm).await.expect("read"),
        Some(record.clone())
    );
    store.remove_protection(&vm).await.expect("remove");
    assert_eq!(store.protection(&vm).await.expect("gone"), None);
    assert!(
        !store
            .list_protected_vms()
            .await
            .expect("list")
            .contains(&vm)
    );
    store.remove_protection(&vm).await.expect("remove again");

    let mut bytes = record.encode();
    let last = bytes.len() - 2;
    bytes[last] ^= 1;
    raw_put(store, &layout::protection(&vm), bytes).await;
    let err = store.protection(&vm).await.expect_err("corrupt");
    assert!(
        matches!(&err, Error::ObjectCorrupt { key, .. } if key == "protection/held-vm"),
        "{err}"
    );
    store.remove_protection(&vm).await.expect("clean up");
}

/// Puts `bytes` under `key` behind the store's back, in every copy (the secondary's too).
async fn raw_put(store: &Store, key: &object_store::path::Path, bytes: Vec<u8>) {
    let payload = PutPayload::from(bytes);
    store
        .objects()
        .put(key, payload.clone())
        .await
        .expect("raw put");
    if let Some(secondary) = store.secondary() {
        secondary
            .objects()
            .put(key, payload)
            .await
            .expect("raw put on the secondary");
    }
}

/// The problem of a read that failed on every copy: the error itself on a single store; on a
/// replicated one, [`Error::ReplicaAlsoBad`] whose secondary problem is of the same kind as
/// its primary's, which is returned.
fn everywhere(err: &Error) -> &Error {
    match err {
        Error::ReplicaAlsoBad {
            primary, secondary, ..
        } => {
            assert_eq!(
                std::mem::discriminant(&**primary),
                std::mem::discriminant(&**secondary),
                "{err}"
            );
            primary
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn in_memory_store_conforms() {
        super::run(&crate::Store::in_memory()).await;
    }

    #[tokio::test]
    async fn local_directory_store_conforms() {
        let dir = tempfile::tempdir().expect("tempdir");
        super::run(&crate::Store::local(dir.path()).expect("store")).await;
    }

    #[tokio::test]
    async fn replicated_directory_store_conforms() {
        let (a, b) = (
            tempfile::tempdir().expect("a"),
            tempfile::tempdir().expect("b"),
        );
        let store = crate::Store::local(a.path())
            .expect("primary")
            .replicated(crate::Store::local(b.path()).expect("secondary"));
        super::run(&store).await;
        assert_eq!(
            store.repairs(),
            crate::Repairs::default(),
            "nothing to heal"
        );
    }

    #[tokio::test]
    async fn replicated_in_memory_store_conforms() {
        let store = crate::Store::in_memory().replicated(crate::Store::in_memory());
        super::run(&store).await;
    }

    /// The server `scripts/test.sh` starts (`scripts/garage.sh`), described in the
    /// environment; a prefix no other test (or earlier run) uses.
    fn garage(name: &str) -> crate::Store {
        let Ok(bucket) = std::env::var("BLOCKVAULT_TEST_S3_BUCKET") else {
            panic!(
                "this test needs the Garage server that scripts/test.sh starts \
                 (BLOCKVAULT_TEST_S3_BUCKET is not set): run scripts/test.sh"
            );
        };
        let options = crate::S3Options::from_env().expect("S3 settings in the environment");
        let prefix = format!(
            "test/store-{name}-{}",
            jiff::Timestamp::now().as_nanosecond()
        );
        crate::Store::s3(&bucket, &prefix, &options).expect("s3 store")
    }

    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "needs the S3 server that scripts/test.sh starts"]
    async fn s3_store_conforms_on_garage() {
        super::run(&garage("conformance")).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "needs the S3 server that scripts/test.sh starts"]
    async fn replicated_s3_and_directory_store_conforms_on_garage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = garage("replicated").replicated(crate::Store::local(dir.path()).expect("dir"));
        super::run(&store).await;
    }

    #[tokio::test]
    async fn local_store_refuses_missing_dirs_files_and_non_empty_dirs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = crate::Store::local(dir.path().join("nope")).expect_err("missing");
        assert!(matches!(err, crate::Error::NotAVault { .. }), "{err}");
        std::fs::write(dir.path().join("file"), b"x").expect("write");
        let err = crate::Store::local(dir.path().join("file")).expect_err("file");
        assert!(matches!(err, crate::Error::NotAVault { .. }), "{err}");
        let store = crate::Store::local(dir.path()).expect("store");
        let config = blockvault_core::VaultConfig {
            id: "x".into(),
            created: jiff::Timestamp::UNIX_EPOCH,
            default_block_size: blockvault_core::BlockSize::DEFAULT,
            redundancy: Default::default(),
            replica_of: None,
            encryption: None,
        };
        let err = store.init(&config).await.expect_err("not empty");
        assert!(matches!(err, crate::Error::NotEmpty { .. }), "{err}");
        assert!(!dir.path().join("vault.config").exists(), "nothing written");
    }
}
