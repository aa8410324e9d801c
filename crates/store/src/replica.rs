//! Replicated stores: a primary plus a secondary that receives every write, and serves reads
//! the primary cannot (see "Replication" in the crate docs).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use blockvault_core::{BlockMap, ChunkId, DiskName, PointId, RecoveryPoint, VaultConfig, VmName};
use bytes::Bytes;
use object_store::path::Path;
use serde::Serialize;

use crate::store::decode_chunk;
use crate::{Error, Result, Store, layout};

/// The secondary of a replicated store, and what reads took from it.
#[derive(Debug)]
pub(crate) struct Replica {
    /// The secondary (never itself replicated), or why it could not be opened: reads then use
    /// the primary alone and every write fails, naming the secondary.
    secondary: std::result::Result<Store, Unavailable>,
    chunks: AtomicU64,
    maps: AtomicU64,
    records: AtomicU64,
    unhealed: AtomicU64,
}

#[derive(Debug)]
struct Unavailable {
    location: String,
    reason: String,
    /// The primary's location, for the error's hint.
    primary: String,
}

/// Objects a replicated store read from its secondary because the primary's copy was missing
/// or failed its integrity check, each then put back on the primary (healed). Counted over
/// the life of the store (all its clones); diff two readings to count one operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Repairs {
    pub chunks: u64,
    pub maps: u64,
    pub records: u64,
    /// Of those, how many could not be put back on the primary (the read still succeeded).
    pub unhealed: u64,
}

impl Repairs {
    /// Objects read from the secondary.
    pub fn total(&self) -> u64 {
        self.chunks + self.maps + self.records
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Repairs) -> Repairs {
        Repairs {
            chunks: self.chunks - before.chunks,
            maps: self.maps - before.maps,
            records: self.records - before.records,
            unhealed: self.unhealed - before.unhealed,
        }
    }
}

impl std::fmt::Display for Repairs {
    /// "2 chunks and 1 block map were read from the replica and repaired on the primary".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (n, one, many) in [
            (self.chunks, "chunk", "chunks"),
            (self.maps, "block map", "block maps"),
            (self.records, "point record", "point records"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {}", if n == 1 { one } else { many }));
            }
        }
        let verb = if self.total() == 1 { "was" } else { "were" };
        write!(f, "{} {verb} read from the replica", parts.join(" and "))?;
        match self.unhealed {
            0 => write!(f, " and repaired on the primary"),
            n if n == self.total() => write!(f, "; the primary could not be repaired"),
            n => write!(
                f,
                " and repaired on the primary, except {n} the primary refused"
            ),
        }
    }
}

impl Store {
    /// This store as the primary of a replicated vault: every put and delete also goes to
    /// `secondary` (a put that fails on either store fails, naming the store), and reads fall
    /// back to `secondary` when the primary's copy is missing or corrupt.
    pub fn replicated(self, secondary: Store) -> Store {
        self.with_replica(Ok(secondary.primary()))
    }

    /// This store as the primary of a replicated vault whose secondary at `location` cannot be
    /// opened (`reason`): reads use the primary alone, every write fails naming the secondary.
    pub fn with_secondary_unavailable(
        self,
        location: impl Into<String>,
        reason: impl Into<String>,
    ) -> Store {
        let primary = self.location().to_owned();
        self.with_replica(Err(Unavailable {
            location: location.into(),
            reason: reason.into(),
            primary,
        }))
    }

    fn with_replica(mut self, secondary: std::result::Result<Store, Unavailable>) -> Store {
        self.replica = Some(Arc::new(Replica {
            secondary,
            chunks: AtomicU64::new(0),
            maps: AtomicU64::new(0),
            records: AtomicU64::new(0),
            unhealed: AtomicU64::new(0),
        }));
        self
    }

    /// Whether writes go to a secondary store too.
    pub fn is_replicated(&self) -> bool {
        self.replica.is_some()
    }

    /// The secondary store, when replicated and available.
    pub fn secondary(&self) -> Option<&Store> {
        self.replica
            .as_ref()
            .and_then(|r| r.secondary.as_ref().ok())
    }

    /// When replicated but the secondary could not be opened: its location and why.
    pub fn secondary_unavailable(&self) -> Option<(&str, &str)> {
        match self.replica.as_deref().map(|r| &r.secondary) {
            Some(Err(u)) => Some((&u.location, &u.reason)),
            _ => None,
        }
    }

    /// This store alone, without its secondary: reads and writes touch the primary only.
    pub fn primary(&self) -> Store {
        let mut primary = self.clone();
        primary.replica = None;
        primary
    }

    /// What reads took from the secondary so far (zero on a single store).
    pub fn repairs(&self) -> Repairs {
        let Some(r) = &self.replica else {
            return Repairs::default();
        };
        Repairs {
            chunks: r.chunks.load(Ordering::Relaxed),
            maps: r.maps.load(Ordering::Relaxed),
            records: r.records.load(Ordering::Relaxed),
            unhealed: r.unhealed.load(Ordering::Relaxed),
        }
    }

    /// Makes `self` (primary) and `secondary` one replicated vault: both must be empty; the
    /// secondary gets a config of its own that names this vault
    /// ([`VaultConfig::for_replica`]), written first, then the primary gets `config`. Returns
    /// the replicated store.
    pub async fn init_replicated(&self, secondary: Store, config: &VaultConfig) -> Result<Store> {
        self.check_empty().await?;
        secondary.check_empty().await?;
        secondary
            .write_config(&config.for_replica(self.location()))
            .await?;
        self.write_config(config).await?;
        Ok(self.primary().replicated(secondary))
    }

    /// Copies every object of this store but its config to `to` (this store only, not its
    /// secondary); returns how many. For turning an empty vault, which may still hold chunks
    /// and maps of backups that never committed, into a replicated one: the chunk index of
    /// this host says the vault holds those chunks, so the secondary must hold them too.
    pub async fn copy_objects_to(&self, to: &Store) -> Result<u64> {
        use futures::TryStreamExt;
        let config = layout::config();
        let keys: Vec<Path> = self
            .objects()
            .list(None)
            .map_ok(|meta| meta.location)
            .try_filter(|key| std::future::ready(*key != config))
            .try_collect()
            .await
            .map_err(|source| Error::Backend {
                op: "list",
                key: String::new(),
                source,
            })?;
        for key in &keys {
            if let Some(bytes) = self.get(key).await? {
                to.put_here(key, bytes)
                    .await
                    .map_err(|e| in_store("secondary", to, e))?;
            }
        }
        Ok(keys.len() as u64)
    }

    /// Chunk `id` from the secondary, for a caller that found the primary's copy bad
    /// (`problem`): read, verified against its id, put back on the primary, counted. Without
    /// an available secondary, or when its copy is bad too, fails with `problem` (and what is
    /// wrong with the secondary's copy).
    pub async fn chunk_from_replica(&self, id: &ChunkId, problem: Error) -> Result<Bytes> {
        let Some(replica) = &self.replica else {
            return Err(problem);
        };
        let Ok(secondary) = &replica.secondary else {
            return Err(problem);
        };
        let fetched = match secondary.get(&layout::chunk(id)).await {
            Ok(Some(bytes)) => decode_chunk(bytes.clone(), *id).await.map(|_| bytes),
            Ok(None) => Err(Error::ChunkMissing { id: *id }),
            Err(e) => Err(e),
        };
        let good = fetched.map_err(|e| also_bad(problem, secondary, e))?;
        replica
            .heal(self, &layout::chunk(id), good.clone(), &replica.chunks)
            .await;
        Ok(good)
    }
}

impl Replica {
    fn secondary(&self) -> Result<&Store> {
        self.secondary
            .as_ref()
            .map_err(|u| Error::SecondaryUnavailable {
                location: u.location.clone(),
                reason: u.reason.clone(),
                primary: u.primary.clone(),
            })
    }

    /// Puts into both stores at once; both finish before this returns. The primary's error
    /// first when both fail.
    pub(crate) async fn put(&self, primary: &Store, key: &Path, bytes: Bytes) -> Result<()> {
        let secondary = self.secondary()?;
        let (p, s) = futures::join!(
            primary.put_here(key, bytes.clone()),
            secondary.put_here(key, bytes)
        );
        p.map_err(|e| in_store("primary", primary, e))?;
        s.map_err(|e| in_store("secondary", secondary, e))
    }

    /// Puts a commit record: secondary first, then primary; a primary failure takes the
    /// secondary's copy back (best effort: a leftover record on the secondary names only
    /// objects the secondary holds, so it is a complete point there).
    pub(crate) async fn put_commit(&self, primary: &Store, key: &Path, bytes: Bytes) -> Result<()> {
        let secondary = self.secondary()?;
        secondary
            .put_here(key, bytes.clone())
            .await
            .map_err(|e| in_store("secondary", secondary, e))?;
        if let Err(e) = primary.put_here(key, bytes).await {
            let _ = secondary.delete_here(key).await;
            return Err(in_store("primary", primary, e));
        }
        Ok(())
    }

    pub(crate) async fn delete(&self, primary: &Store, key: &Path) -> Result<()> {
        let secondary = self.secondary()?;
        let (p, s) = futures::join!(primary.delete_here(key), secondary.delete_here(key));
        p.map_err(|e| in_store("primary", primary, e))?;
        s.map_err(|e| in_store("secondary", secondary, e))
    }

    pub(crate) async fn has_chunk(&self, primary: &Store, id: &ChunkId) -> Result<bool> {
        let Ok(secondary) = &self.secondary else {
            // The upload that follows fails, naming the secondary.
            return Ok(false);
        };
        let (p, s) = futures::join!(primary.has_chunk_here(id), secondary.has_chunk_here(id));
        Ok(p.map_err(|e| in_store("primary", primary, e))?
            && s.map_err(|e| in_store("secondary", secondary, e))?)
    }

    /// Puts a good copy read from the secondary back on the primary and counts it in `kind`.
    /// A failed put is counted, not returned: the read itself succeeded.
    async fn heal(&self, primary: &Store, key: &Path, good: Bytes, kind: &AtomicU64) {
        kind.fetch_add(1, Ordering::Relaxed);
        if primary.put_here(key, good).await.is_err() {
            self.unhealed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A block map from the secondary of `store`, whose primary copy is bad (`problem`): checked
/// as [`Store::get_map`] checks, healed on the primary.
pub(crate) async fn map_from_replica(
    store: &Store,
    vm: &VmName,
    point: &PointId,
    disk: &DiskName,
    digest: Option<&str>,
    problem: Error,
) -> Result<BlockMap> {
    let Some(replica) = &store.replica else {
        return Err(problem);
    };
    let Ok(secondary) = &replica.secondary else {
        return Err(problem);
    };
    let (map, bytes) = secondary
        .get_map_bytes_here(vm, point, disk, digest)
        .await
        .map_err(|e| also_bad(problem, secondary, e))?;
    replica
        .heal(store, &layout::map(vm, point, disk), bytes, &replica.maps)
        .await;
    Ok(map)
}

/// A point record from the secondary of `store`, whose primary copy is bad (`problem`).
pub(crate) async fn point_from_replica(
    store: &Store,
    vm: &VmName,
    id: &PointId,
    problem: Error,
) -> Result<RecoveryPoint> {
    let Some(replica) = &store.replica else {
        return Err(problem);
    };
    let Ok(secondary) = &replica.secondary else {
        return Err(problem);
    };
    let (point, bytes) = secondary
        .get_point_here(vm, id)
        .await
        .map_err(|e| also_bad(problem, secondary, e))?;
    replica
        .heal(store, &layout::point(vm, id), bytes, &replica.records)
        .await;
    Ok(point)
}

fn in_store(role: &'static str, store: &Store, source: Error) -> Error {
    Error::InStore {
        role,
        location: store.location().to_owned(),
        source: Box::new(source),
    }
}

fn also_bad(primary: Error, secondary: &Store, error: Error) -> Error {
    Error::ReplicaAlsoBad {
        primary: Box::new(primary),
        location: secondary.location().to_owned(),
        secondary: Box::new(error),
    }
}

#[cfg(test)]
mod tests {
    use blockvault_core::{BlockSize, ChunkEncoder, Redundancy};
    use jiff::Timestamp;

    use super::*;

    fn chunk(seed: u8) -> (ChunkId, Bytes) {
        let block: Vec<u8> = (0..4096u32).map(|i| (i as u8) ^ seed).collect();
        let id = ChunkId::of(&block);
        let encoded = ChunkEncoder::new().expect("encoder").encode(&block);
        (id, Bytes::from(encoded))
    }

    fn config() -> VaultConfig {
        VaultConfig {
            id: "0123456789abcdef".into(),
            created: Timestamp::UNIX_EPOCH,
            default_block_size: BlockSize::DEFAULT,
            redundancy: Redundancy::Replicated {
                secondary: "memory".into(),
            },
            replica_of: None,
        }
    }

    async fn pair() -> (Store, Store, Store) {
        let (primary, secondary) = (Store::in_memory(), Store::in_memory());
        let store = primary
            .init_replicated(secondary.clone(), &config())
            .await
            .expect("init");
        (store, primary, secondary)
    }

    #[tokio::test]
    async fn writes_reach_both_stores_and_configs_differ() {
        let (store, primary, secondary) = pair().await;
        let (id, encoded) = chunk(1);
        store.put_chunk(&id, encoded).await.expect("put");
        assert!(primary.has_chunk(&id).await.expect("head"));
        assert!(secondary.has_chunk(&id).await.expect("head"));
        assert!(store.has_chunk(&id).await.expect("head"));
        assert_eq!(primary.config().await.expect("config"), config());
        let replica = secondary.config().await.expect("config");
        assert_eq!(
            replica.replica_of.map(|r| r.vault),
            Some(config().id),
            "the secondary says whose replica it is"
        );
        store.delete_chunk(&id).await.expect("delete");
        assert!(!primary.has_chunk(&id).await.expect("head"));
        assert!(!secondary.has_chunk(&id).await.expect("head"));
    }

    #[tokio::test]
    async fn a_chunk_missing_or_corrupt_on_the_primary_is_read_from_the_secondary_and_healed() {
        let (store, primary, _secondary) = pair().await;
        let (id, encoded) = chunk(2);
        store.put_chunk(&id, encoded.clone()).await.expect("put");

        primary.delete_chunk(&id).await.expect("drop on primary");
        assert_eq!(store.get_chunk(&id).await.expect("fallback"), encoded);
        assert!(primary.has_chunk(&id).await.expect("head"), "healed");
        assert_eq!(store.repairs().chunks, 1);

        let mut bad = encoded.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        primary.put_chunk(&id, bad.into()).await.expect("corrupt");
        let block = store.read_chunk(&id).await.expect("read from replica");
        assert_eq!(ChunkId::of(&block), id);
        assert_eq!(primary.get_chunk(&id).await.expect("healed"), encoded);
        let repairs = store.repairs();
        assert_eq!((repairs.chunks, repairs.unhealed), (2, 0));
        assert_eq!(
            repairs.to_string(),
            "2 chunks were read from the replica and repaired on the primary"
        );
    }

    #[tokio::test]
    async fn bad_on_both_stores_names_both_problems() {
        let (store, primary, secondary) = pair().await;
        let (id, encoded) = chunk(3);
        store.put_chunk(&id, encoded).await.expect("put");
        primary.delete_chunk(&id).await.expect("drop");
        secondary.delete_chunk(&id).await.expect("drop");
        let err = store.read_chunk(&id).await.expect_err("both gone");
        assert!(err.is_missing(), "{err}");
        assert!(err.to_string().contains("secondary store memory"), "{err}");
        assert_eq!(store.repairs(), Repairs::default());
    }

    #[tokio::test]
    async fn maps_and_records_fall_back_and_heal() {
        let (store, primary, _secondary) = pair().await;
        let vm = VmName::new("web01").expect("vm");
        let time: Timestamp = "2026-11-23T10:00:00Z".parse().expect("time");
        let point = PointId::generate(time, b"x");
        let disk = DiskName::new("root.img").expect("disk");
        let map = BlockMap::zeroed(8 << 20, BlockSize::DEFAULT, time);
        let digest = store.put_map(&vm, &point, &disk, &map).await.expect("put");
        primary
            .delete_maps(&vm, &point)
            .await
            .expect("drop on primary");
        let (read, from_replica) = store
            .get_map_reporting(&vm, &point, &disk, Some(&digest))
            .await
            .expect("fallback");
        assert!(from_replica);
        assert_eq!(read, map);
        assert!(
            !primary
                .get_map_reporting(&vm, &point, &disk, Some(&digest))
                .await
                .expect("healed")
                .1
        );
        assert_eq!(store.repairs().maps, 1);
    }

    #[tokio::test]
    async fn an_unavailable_secondary_fails_every_write_by_name_and_reads_go_on() {
        let primary = Store::in_memory();
        primary.init(&config()).await.expect("init");
        let (id, encoded) = chunk(4);
        primary.put_chunk(&id, encoded.clone()).await.expect("put");
        let store = primary
            .clone()
            .with_secondary_unavailable("/srv/replica", "the directory does not exist");
        let err = store
            .put_chunk(&id, encoded.clone())
            .await
            .expect_err("put");
        assert!(
            err.to_string().contains("secondary store /srv/replica"),
            "{err}"
        );
        assert_eq!(store.get_chunk(&id).await.expect("read"), encoded);
        assert!(!store.has_chunk(&id).await.expect("head"));
    }

    #[tokio::test]
    async fn a_commit_the_primary_refuses_is_taken_back_from_the_secondary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let primary = Store::local(dir.path()).expect("local");
        let secondary = Store::in_memory();
        let store = primary
            .init_replicated(secondary.clone(), &config())
            .await
            .expect("init");
        let vm = VmName::new("web01").expect("vm");
        let time: Timestamp = "2026-11-23T10:00:00Z".parse().expect("time");
        let point = RecoveryPoint {
            vm: vm.clone(),
            id: PointId::generate(time, b"c"),
            time,
            consistency: blockvault_core::Consistency::CrashConsistent,
            parent: None,
            disks: Vec::new(),
            stats: Default::default(),
            retain_until: None,
            vault: None,
        };
        // The primary cannot create points/: its commit fails.
        std::fs::write(dir.path().join("points"), b"in the way").expect("block points/");
        let err = store.put_point(&point).await.expect_err("primary refuses");
        assert!(err.to_string().starts_with("primary store "), "{err}");
        assert_eq!(secondary.list_point_ids(&vm).await.expect("list"), []);
        std::fs::remove_file(dir.path().join("points")).expect("unblock");
        store.put_point(&point).await.expect("commit");
        assert_eq!(primary.list_point_ids(&vm).await.expect("list").len(), 1);
        assert_eq!(secondary.list_point_ids(&vm).await.expect("list").len(), 1);
        assert_eq!(store.get_point(&vm, &point.id).await.expect("get"), point);
    }
}
