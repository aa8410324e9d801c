//! An encrypted store's objects, as stored: none holds the VM's content or names in the clear,
//! a sealed object altered, moved to another key or planted in the clear reads as corrupt,
//! naming it, and a plain store's objects stay byte for byte what they always were.

use std::sync::Arc;

use blockvault_core::{
    BlockMap, BlockSize, ChunkCodec, ChunkId, Consistency, DiskName, DiskRecord, Encryption,
    ErrorKind, ForgottenChunks, GcEpoch, HeldState, HostIdentity, Kdf, KeyHome, LeaseKind,
    LeaseRecord, MasterKey, PointDeleteMarker, PointId, ProtectionRecord, RecoveryPoint,
    SealedObject, SoftDeleteMarker, VaultConfig, VmName,
};
use futures::TryStreamExt;
use jiff::Timestamp;
use object_store::path::Path;

use crate::maps::{MAP_PART_SIZE, large_map};
use crate::testing::ProbedStore;
use crate::{Error, Store, layout};

/// Written into everything the guest or its user could name: the chunk data, the disk's
/// source path, the policy, the host, the lease's holder.
const MARKER: &str = "MARKER-4f1c-guest-secret";

fn vm() -> VmName {
    VmName::new("web01").expect("vm")
}

fn disk() -> DiskName {
    DiskName::new("root.img").expect("disk")
}

fn keyed() -> (ChunkCodec, MasterKey) {
    let master = MasterKey::generate();
    (ChunkCodec::keyed(&master), master)
}

fn record(id: PointId, digest: String, big_digest: String) -> RecoveryPoint {
    let disk = |name: &str, digest: String| DiskRecord {
        name: DiskName::new(name).expect("disk"),
        source: format!("/srv/{MARKER}/{name}"),
        size: 8 << 20,
        block_size: BlockSize::DEFAULT,
        map_digest: digest,
        blocks: 2,
        data_blocks: 1,
        format: Default::default(),
    };
    RecoveryPoint {
        vm: vm(),
        time: Timestamp::UNIX_EPOCH,
        id,
        consistency: Consistency::CrashConsistent,
        parent: None,
        disks: vec![disk("root.img", digest), disk("huge.img", big_digest)],
        stats: Default::default(),
        retain_until: None,
        vault: None,
    }
}

fn lease() -> LeaseRecord {
    LeaseRecord {
        id: "0011".into(),
        kind: LeaseKind::Writer,
        holder: format!("backup of web01 by {MARKER}"),
        started: Timestamp::UNIX_EPOCH,
        refreshed: Timestamp::UNIX_EPOCH,
    }
}

fn protection() -> ProtectionRecord {
    ProtectionRecord {
        vm: vm(),
        host: HostIdentity {
            id: "00112233aabbccdd".into(),
            name: format!("{MARKER}-host"),
            state_dir: "/var/lib/blockvault".into(),
        },
        policy: format!("{MARKER}-policy"),
        policy_settings: format!("name = \"{MARKER}-policy\"\n"),
        since: Timestamp::UNIX_EPOCH,
        updated: Timestamp::UNIX_EPOCH,
        state: HeldState::Protected,
    }
}

/// What a backup, a forget, a protection and a collector write: a chunk of the marker, a small
/// map and one larger than a part, the point record, both soft-delete markers, a protection
/// record, a lease, the GC epoch and its candidates. Returns the point.
async fn write_everything(store: &Store, encryption: Option<Encryption>) -> RecoveryPoint {
    store
        .init(&VaultConfig {
            id: "0123456789abcdef".into(),
            created: Timestamp::UNIX_EPOCH,
            default_block_size: BlockSize::DEFAULT,
            redundancy: Default::default(),
            replica_of: None,
            encryption,
        })
        .await
        .expect("init");
    let block = MARKER.repeat(4096 / MARKER.len() + 1).into_bytes();
    let (chunk, encoded) = store.codec().encode_one(&block[..4096]).expect("encode");
    store
        .put_chunk(&chunk, encoded.into())
        .await
        .expect("chunk");
    let id = PointId::generate(Timestamp::UNIX_EPOCH, b"sealed");
    let mut map = BlockMap::zeroed(8 << 20, BlockSize::DEFAULT, Timestamp::UNIX_EPOCH);
    map.set(0, chunk);
    let digest = store.put_map(&vm(), &id, &disk(), &map).await.expect("map");
    let huge = DiskName::new("huge.img").expect("disk");
    let big = store
        .put_map(&vm(), &id, &huge, &large_map())
        .await
        .expect("large map");
    let point = record(id.clone(), digest, big);
    store.put_point(&point).await.expect("commit");
    store
        .put_soft_delete(&SoftDeleteMarker::new(vm(), Timestamp::UNIX_EPOCH))
        .await
        .expect("marker");
    store
        .put_point_delete(&PointDeleteMarker::new(vm(), id, Timestamp::UNIX_EPOCH))
        .await
        .expect("point marker");
    store
        .put_protection(&protection())
        .await
        .expect("protection");
    store.put_lease(&lease()).await.expect("lease");
    let epoch = GcEpoch {
        id: "e1".into(),
        time: Timestamp::UNIX_EPOCH,
    };
    let forgotten = ForgottenChunks {
        previous: Some("e0".into()),
        ids: [chunk].into_iter().collect(),
    };
    store
        .put_forgotten("e1", forgotten.encode())
        .await
        .expect("forgotten");
    store.put_gc_epoch(&epoch).await.expect("epoch");
    store
        .mark_damaged(&ChunkId::of(b"bad"))
        .await
        .expect("damaged");
    point
}

/// Every object of `store` with its bytes, by key.
async fn objects(store: &Store) -> Vec<(Path, Vec<u8>)> {
    let keys: Vec<Path> = store
        .here
        .list(None)
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .expect("list");
    let mut out = Vec::new();
    for key in keys {
        let bytes = store.get(&key).await.expect("get").expect("there");
        out.push((key, bytes.to_vec()));
    }
    out
}

fn holds_marker(bytes: &[u8]) -> bool {
    bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes())
}

#[tokio::test]
async fn an_encrypted_store_holds_no_plaintext_of_the_vm() {
    let (codec, master) = keyed();
    let probe = Arc::new(ProbedStore::counting("maps/"));
    let store = Store::new(probe.clone(), "probed").with_codec(codec);
    let kdf = Kdf::argon2id(8 * 1024, 1).expect("kdf");
    let encryption = Encryption::new(&master, b"pw", kdf, KeyHome::Vault, Timestamp::UNIX_EPOCH)
        .expect("encryption");
    let point = write_everything(&store, Some(encryption)).await;
    // The large map went up in parts, sealed as it was encoded.
    assert!(probe.part_sizes().len() >= 3, "{:?}", probe.part_sizes());
    assert!(probe.part_sizes().contains(&MAP_PART_SIZE));

    let all = objects(&store).await;
    assert!(all.len() >= 11, "{}", all.len());
    for (key, bytes) in &all {
        assert!(!holds_marker(bytes), "{key} holds the marker in the clear");
        let top = key.parts().next().expect("segment");
        match top.as_ref() {
            "vault.config" | "chunks" | "damaged" => {}
            _ => assert!(SealedObject::is_sealed(bytes), "{key} is not sealed"),
        }
    }

    // And everything reads back through the store.
    assert_eq!(
        store.get_point(&vm(), &point.id).await.expect("point"),
        point
    );
    for d in &point.disks {
        let map = store
            .get_map(&vm(), &point.id, &d.name, Some(&d.map_digest))
            .await
            .expect("map");
        let expected = match d.name.as_str() {
            "huge.img" => large_map().len(),
            _ => 8,
        };
        assert_eq!(map.len(), expected, "{}", d.name);
        assert!(
            store
                .map_matches(&vm(), &point.id, &d.name, &d.map_digest)
                .await
                .expect("matches")
        );
    }
    assert!(store.soft_delete(&vm()).await.expect("marker").is_some());
    assert_eq!(store.point_deletes(&vm()).await.expect("markers").len(), 1);
    assert_eq!(
        store.protection(&vm()).await.expect("protection"),
        Some(protection())
    );
    let leases = store.list_leases().await.expect("leases");
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].record, Some(lease()));
    assert_eq!(
        store.gc_epoch().await.expect("epoch").map(|e| e.id),
        Some("e1".to_owned())
    );
    assert!(store.forgotten("e1").await.expect("forgotten").is_some());
    let data = store
        .read_chunk(&store.codec().id(&MARKER.repeat(200).into_bytes()[..4096]))
        .await
        .expect("chunk");
    assert!(holds_marker(&data));
}

/// The same writes to a plain store leave the marker in the clear (the test above can fail),
/// and every object as its encoding, byte for byte: plain vaults are what they were.
#[tokio::test]
async fn a_plain_store_keeps_its_objects_byte_for_byte() {
    let store = Store::in_memory();
    let point = write_everything(&store, None).await;
    let all = objects(&store).await;
    assert!(all.iter().any(|(_, bytes)| holds_marker(bytes)));
    assert!(all.iter().all(|(_, b)| !SealedObject::is_sealed(b)));
    let get = |key: Path| {
        let store = store.clone();
        async move { store.get(&key).await.expect("get").expect("there").to_vec() }
    };
    assert_eq!(get(layout::point(&vm(), &point.id)).await, point.encode());
    assert_eq!(get(layout::protection(&vm())).await, protection().encode());
    assert_eq!(
        get(layout::lease(LeaseKind::Writer, "0011")).await,
        lease().encode()
    );
    let huge = DiskName::new("huge.img").expect("disk");
    let held = get(layout::map(&vm(), &point.id, &huge)).await;
    assert!(held == large_map().encode());
    assert_eq!(
        point.disks[1].map_digest,
        blake3::hash(&held).to_hex().as_str()
    );
}

/// Flips one bit of the object at `key`.
async fn flip(store: &Store, key: &Path, at: impl Fn(usize) -> usize) {
    let mut bytes = store.get(key).await.expect("get").expect("there").to_vec();
    let i = at(bytes.len());
    bytes[i] ^= 0x04;
    store.put_here(key, bytes.into()).await.expect("put");
}

#[tokio::test]
async fn a_flipped_bit_in_a_sealed_object_is_corruption_naming_it() {
    let (codec, _) = keyed();
    let store = Store::in_memory().with_codec(codec);
    let point = write_everything(&store, None).await;
    let id = &point.id;
    let auth = "failed authentication";

    // A map, in its middle (the large one) and at its end (the small one).
    let huge = DiskName::new("huge.img").expect("disk");
    flip(&store, &layout::map(&vm(), id, &huge), |n| n / 2).await;
    flip(&store, &layout::map(&vm(), id, &disk()), |n| n - 1).await;
    for d in [&huge, &disk()] {
        let err = store
            .get_map(&vm(), id, d, None)
            .await
            .expect_err("flipped map");
        assert!(
            matches!(&err, Error::MapCorrupt { disk, .. } if disk == d)
                && err.to_string().contains(auth)
                && err.kind() == ErrorKind::Integrity,
            "{err}"
        );
        let digest = &point
            .disks
            .iter()
            .find(|x| &x.name == d)
            .expect("disk")
            .map_digest;
        let err = store
            .get_map(&vm(), id, d, Some(digest))
            .await
            .expect_err("flipped map");
        assert!(matches!(err, Error::MapCorrupt { .. }), "{err}");
    }

    // The record, in its sealed header's salt.
    flip(&store, &layout::point(&vm(), id), |_| 20).await;
    let err = store
        .get_point(&vm(), id)
        .await
        .expect_err("flipped record");
    assert!(
        matches!(&err, Error::PointCorrupt { point, .. } if point == id)
            && err.to_string().contains(auth),
        "{err}"
    );
    let listing = store.list_points(&vm()).await.expect("listing");
    assert!(listing.is_damaged(id), "a damaged record is listed as such");

    flip(&store, &layout::soft_delete(&vm()), |n| n - 1).await;
    let err = store.soft_delete(&vm()).await.expect_err("flipped marker");
    assert!(
        matches!(&err, Error::SoftDeleteCorrupt { .. }) && err.is_corrupt(),
        "{err}"
    );
    flip(&store, &layout::point_delete(&vm(), id), |n| n - 1).await;
    let err = store.point_delete(&vm(), id).await.expect_err("flipped");
    assert!(
        matches!(&err, Error::PointDeleteCorrupt { point, .. } if point == id),
        "{err}"
    );
    flip(&store, &layout::protection(&vm()), |n| n - 1).await;
    let err = store.protection(&vm()).await.expect_err("flipped");
    assert!(
        matches!(&err, Error::ObjectCorrupt { key, .. } if key == "protection/web01"),
        "{err}"
    );
    flip(&store, &layout::gc_epoch(), |n| n - 1).await;
    let err = store.gc_epoch().await.expect_err("flipped");
    assert!(
        matches!(&err, Error::ObjectCorrupt { key, .. } if key == "gc/epoch"),
        "{err}"
    );
    // A lease that does not open is listed without its record (alive until it is old), and
    // candidates that do not open are none (the cache is rebuilt from a listing).
    flip(&store, &layout::lease(LeaseKind::Writer, "0011"), |n| n - 1).await;
    let leases = store.list_leases().await.expect("leases");
    assert_eq!((leases.len(), leases[0].record.is_none()), (1, true));
    flip(&store, &layout::forgotten("e1"), |n| n - 1).await;
    assert!(store.forgotten("e1").await.expect("forgotten").is_none());
}

#[tokio::test]
async fn a_sealed_object_moved_to_another_key_or_planted_in_the_clear_is_refused() {
    let (codec, _) = keyed();
    let store = Store::in_memory().with_codec(codec);
    let point = write_everything(&store, None).await;
    // Another point, whose sealed record is then put under the first one's key.
    let other = RecoveryPoint {
        id: PointId::generate(Timestamp::UNIX_EPOCH, b"other"),
        ..point.clone()
    };
    store.put_point(&other).await.expect("commit");
    let moved = store
        .get(&layout::point(&vm(), &other.id))
        .await
        .expect("get")
        .expect("there");
    store
        .put_here(&layout::point(&vm(), &point.id), moved)
        .await
        .expect("put");
    let err = store.get_point(&vm(), &point.id).await.expect_err("moved");
    assert!(
        matches!(&err, Error::PointCorrupt { point: p, .. } if *p == point.id)
            && err.to_string().contains("failed authentication"),
        "{err}"
    );
    // A map moved to another disk's key.
    let huge = DiskName::new("huge.img").expect("disk");
    let small = store
        .get(&layout::map(&vm(), &point.id, &disk()))
        .await
        .expect("get")
        .expect("there");
    store
        .put_here(&layout::map(&vm(), &point.id, &huge), small)
        .await
        .expect("put");
    let err = store
        .get_map(&vm(), &point.id, &huge, None)
        .await
        .expect_err("moved map");
    assert!(matches!(err, Error::MapCorrupt { .. }), "{err}");

    // Records and markers in the clear, as a plain vault writes them.
    store
        .put_here(&layout::point(&vm(), &other.id), other.encode().into())
        .await
        .expect("plant");
    let err = store.get_point(&vm(), &other.id).await.expect_err("plain");
    assert!(
        matches!(err, Error::PointCorrupt { .. }) && err.to_string().contains("not encrypted"),
        "{err}"
    );
    let marker = SoftDeleteMarker::new(vm(), Timestamp::UNIX_EPOCH);
    store
        .put_here(&layout::soft_delete(&vm()), marker.encode().into())
        .await
        .expect("plant");
    let err = store.soft_delete(&vm()).await.expect_err("plain marker");
    assert!(matches!(err, Error::SoftDeleteCorrupt { .. }), "{err}");
    store
        .put_here(&layout::protection(&vm()), protection().encode().into())
        .await
        .expect("plant");
    let err = store.protection(&vm()).await.expect_err("plain record");
    assert!(matches!(err, Error::ObjectCorrupt { .. }), "{err}");
}

/// A replicated encrypted store heals a primary copy that does not open from the
/// secondary's; a resync copies the sealed bytes, which open on the target (same keys).
#[tokio::test]
async fn an_encrypted_replica_heals_and_resyncs_sealed_objects() {
    let (codec, _) = keyed();
    let store = Store::in_memory()
        .replicated(Store::in_memory())
        .with_codec(codec.clone());
    let point = write_everything(&store, None).await;
    let primary = store.primary();
    flip(&primary, &layout::point(&vm(), &point.id), |n| n - 1).await;
    flip(&primary, &layout::map(&vm(), &point.id, &disk()), |n| n - 1).await;
    assert_eq!(
        store.get_point(&vm(), &point.id).await.expect("healed"),
        point
    );
    store
        .get_map(&vm(), &point.id, &disk(), Some(&point.disks[0].map_digest))
        .await
        .expect("healed map");
    let repairs = store.repairs();
    assert_eq!((repairs.records, repairs.maps), (1, 1));

    let target = Store::in_memory().with_codec(codec);
    let report = store
        .resync_to(&target, Default::default(), &crate::NoResyncProgress)
        .await
        .expect("resync");
    assert!(report.bad.is_empty(), "{:?}", report.bad);
    assert_eq!(
        target.get_point(&vm(), &point.id).await.expect("copied"),
        point
    );
    assert_eq!(
        target.protection(&vm()).await.expect("copied"),
        Some(protection())
    );
}
