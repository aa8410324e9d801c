//! One conformance suite for every backend a vault can live on.
//!
//! [`run`] takes a [`Store`] over an empty location and checks what every other crate relies
//! on: the config marks a vault, chunks/maps/points round-trip, and missing or corrupt objects
//! are reported as such, by name. The store's own tests run it against every backend
//! (`backend.rs`): `InMemory`, a local directory, replicated stores (directory + directory,
//! memory + memory, S3 + directory), and S3 on the Garage server `scripts/test.sh` starts;
//! and [`run_encrypted`] runs it again on stores with a keyed codec (`tests.rs`), whose
//! objects but chunks and the config are sealed: the damage the suite plants is then damage
//! to the sealed bytes (`stored`), and a plain object planted in an encrypted store (or a
//! sealed one in a plain store) is refused as corrupt. The markers and records beside the
//! points are `markers.rs`'s.
//!
//! On a replicated store the suite spoils every copy alike (it writes bad objects to the
//! secondary too), so a read fails everywhere: the error is then
//! [`Error::ReplicaAlsoBad`], whose two problems must both be what a single store reports.

use blockvault_core::{
    BlockMap, BlockSize, ChunkCodec, ChunkId, Consistency, DiskName, DiskRecord, Encryption, Kdf,
    KeyHome, MasterKey, PointId, PointStats, RecoveryPoint, VaultConfig, VmName,
};
use futures::TryStreamExt;
use jiff::Timestamp;
use object_store::{ObjectStoreExt, PutPayload};

use crate::maps::{MAP_PART_SIZE, large_map};
use crate::{Error, Store, layout};

mod markers;

/// Runs the whole suite on a plain store; panics (as a test failure) on the first broken
/// promise.
pub async fn run(store: &Store) {
    run_with(store, None).await;
}

/// Runs the whole suite on `store`, whose codec is keyed under `master`
/// ([`Store::with_codec`]); the vault config it writes says so (a passphrase slot, a quick
/// KDF).
pub async fn run_encrypted(store: &Store, master: &MasterKey) {
    assert!(store.codec().is_encrypted(), "a keyed codec");
    let kdf = Kdf::argon2id(8 * 1024, 1).expect("kdf");
    let encryption = Encryption::new(master, b"pw", kdf, KeyHome::Vault, Timestamp::UNIX_EPOCH)
        .expect("encryption");
    run_with(store, Some(encryption)).await;
}

async fn run_with(store: &Store, encryption: Option<Encryption>) {
    config_marks_a_vault(store, encryption).await;
    chunks_round_trip_and_fail_by_name(store).await;
    maps_round_trip_and_are_checked(store).await;
    large_objects_go_up_in_parts(store).await;
    points_commit_list_and_fail_by_name(store).await;
    deletes_remove_points_maps_and_chunks(store).await;
    markers::soft_delete_markers_round_trip_and_fail_by_name(store).await;
    markers::point_delete_markers_live_beside_a_vms_marker(store).await;
    markers::protection_records_round_trip_list_and_fail_by_key(store).await;
}

fn vm() -> VmName {
    VmName::new("conformance-vm").expect("name")
}

async fn config_marks_a_vault(store: &Store, encryption: Option<Encryption>) {
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
        encryption,
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
    let key = layout::map(&vm(), &point, &disk);
    let mut bytes = stored(store, &key, map.encode());
    bytes.truncate(bytes.len() - 1);
    raw_put(store, &key, bytes).await;
    let err = store
        .get_map(&vm(), &point, &disk, None)
        .await
        .expect_err("truncated");
    // A sealed map cut short fails its last segment's authentication.
    let said = match store.codec().is_encrypted() {
        true => "failed authentication",
        false => "truncated",
    };
    assert!(
        matches!(everywhere(&err), Error::MapCorrupt { .. }) && err.to_string().contains(said),
        "{err}"
    );
    // A map sealed as the vault does not (planted: in the clear in an encrypted vault, sealed
    // under some key in a plain one) is refused.
    let (planted, said) = match store.codec().is_encrypted() {
        true => (map.encode(), "is not encrypted"),
        false => (
            ChunkCodec::keyed(&MasterKey::generate()).seal_object(key.as_ref(), map.encode()),
            "is encrypted",
        ),
    };
    raw_put(store, &key, planted).await;
    let err = store
        .get_map(&vm(), &point, &disk, None)
        .await
        .expect_err("planted");
    assert!(
        matches!(everywhere(&err), Error::MapCorrupt { .. }) && err.to_string().contains(said),
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
    let key = layout::map(&vm(), &point, &disk);
    let held = store.get(&key).await.expect("get").expect("there");
    assert_eq!(
        digest,
        blake3::hash(&held).to_hex().as_str(),
        "the digest is the stored object's"
    );
    if !store.codec().is_encrypted() {
        assert!(held == whole, "a plain vault stores the encoding as it is");
    }
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

    let good = stored(store, &layout::point(&vm(), &a.id), a.encode());
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
    let moved = stored(store, &layout::point(&vm(), &b.id), b.encode());
    raw_put(store, &layout::point(&vm(), &a.id), moved).await;
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

/// The object a store holds at `key` for the encoding `plain`: sealed when its codec is keyed.
fn stored(store: &Store, key: &object_store::path::Path, plain: Vec<u8>) -> Vec<u8> {
    store.codec().seal_object(key.as_ref(), plain)
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
mod tests;
