//! Replicated stores: a primary plus a secondary that receives every write, and serves reads
//! the primary cannot (see "Replication" in the crate docs). How a store becomes one, and what
//! it says about its secondary; the wrapper that does the work is `replicated.rs`.

use std::sync::Arc;

use blockvault_core::VaultConfig;
use futures::TryStreamExt;
use object_store::path::Path;

use crate::replicated::Replicated;
use crate::store::Replica;
use crate::{Error, Repairs, Result, Store, layout};

impl Store {
    /// This store as the primary of a replicated vault: every put and delete also goes to
    /// `secondary` (a put that fails on either store fails, naming the store), and reads fall
    /// back to `secondary` when the primary's copy is missing or corrupt.
    /// The secondary takes this store's codec: it holds the same vault.
    pub fn replicated(self, secondary: Store) -> Store {
        let secondary = secondary.primary().with_codec(self.codec.clone());
        let wrapper = Replicated::new(Arc::clone(&self.here), Arc::clone(&secondary.here));
        Store {
            replica: Some(Replica {
                wrapper: Arc::new(wrapper),
                secondary: Some(Box::new(secondary)),
            }),
            ..self
        }
    }

    /// This store as the primary of a replicated vault whose secondary at `location` cannot be
    /// opened (`reason`): reads use the primary alone, every write fails naming the secondary.
    pub fn with_secondary_unavailable(
        self,
        location: impl Into<String>,
        reason: impl Into<String>,
    ) -> Store {
        let wrapper =
            Replicated::unavailable(Arc::clone(&self.here), location.into(), reason.into());
        Store {
            replica: Some(Replica {
                wrapper: Arc::new(wrapper),
                secondary: None,
            }),
            ..self
        }
    }

    /// Whether writes go to a secondary store too.
    pub fn is_replicated(&self) -> bool {
        self.replica.is_some()
    }

    /// The secondary store, when replicated and available.
    pub fn secondary(&self) -> Option<&Store> {
        self.replica.as_ref().and_then(|r| r.secondary.as_deref())
    }

    /// When replicated but the secondary could not be opened: its location and why.
    pub fn secondary_unavailable(&self) -> Option<(&str, &str)> {
        self.replica
            .as_ref()
            .and_then(|r| r.wrapper.secondary_unavailable())
    }

    /// This store alone, without its secondary: reads and writes touch the primary only.
    pub fn primary(&self) -> Store {
        Store {
            here: Arc::clone(&self.here),
            replica: None,
            codec: self.codec.clone(),
        }
    }

    /// What reads took from the secondary so far (zero on a single store).
    pub fn repairs(&self) -> Repairs {
        self.replica
            .as_ref()
            .map(|r| r.wrapper.repairs())
            .unwrap_or_default()
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
        let config = layout::config();
        let keys: Vec<Path> = self
            .here
            .list(None)
            .map_ok(|meta| meta.location)
            .try_filter(|key| std::future::ready(*key != config))
            .try_collect()
            .await?;
        for key in &keys {
            if let Some(bytes) = self.get(key).await? {
                to.put_here(key, bytes).await.map_err(|e| Error::InStore {
                    role: "secondary",
                    location: to.location().to_owned(),
                    source: Box::new(e),
                })?;
            }
        }
        Ok(keys.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use blockvault_core::{
        BlockMap, BlockSize, ChunkCodec, ChunkId, DiskName, PointId, RecoveryPoint, Redundancy,
        VmName,
    };
    use bytes::Bytes;
    use jiff::Timestamp;

    use super::*;

    fn chunk(seed: u8) -> (ChunkId, Bytes) {
        let block: Vec<u8> = (0..4096u32).map(|i| (i as u8) ^ seed).collect();
        let (id, encoded) = ChunkCodec::plain().encode_one(&block).expect("encode");
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
            encryption: None,
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

    /// The staging files a killed writer left (see `leftovers.rs`), in both stores of a
    /// replicated vault.
    mod leftovers {
        use std::fs;
        use std::path::{Path, PathBuf};
        use std::time::{Duration, SystemTime};

        use crate::{Leftovers, Store};

        const HOUR: Duration = Duration::from_secs(3600);

        /// Writes a file at `root`/`rel` (parents made) last written `age` ago, or `ahead` of now.
        fn file(root: &Path, rel: &str, age: Duration, ahead: bool) -> PathBuf {
            let path = root.join(rel);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(&path, b"half").expect("write");
            let now = SystemTime::now();
            let when = if ahead { now + age } else { now - age };
            let handle = fs::File::options().write(true).open(&path).expect("open");
            handle.set_modified(when).expect("mtime");
            path
        }

        #[tokio::test]
        async fn old_leftovers_go_from_both_stores_of_a_replicated_vault_and_nothing_else() {
            let (a, b) = (
                tempfile::tempdir().expect("a"),
                tempfile::tempdir().expect("b"),
            );
            let store = Store::local(a.path())
                .expect("a")
                .replicated(Store::local(b.path()).expect("b"));
            let point_dir = "maps/vm/20260101-000000-0000";
            let dead_map = file(a.path(), &format!("{point_dir}/d.map#1"), 2 * HOUR, false);
            let config = file(a.path(), "vault.config#3", 2 * HOUR, false);
            let record = file(
                b.path(),
                "points/vm/20260101-000000-0000#5",
                2 * HOUR,
                false,
            );
            // Kept: young; not a staging name; outside the vault's directories.
            let young = file(
                a.path(),
                &format!("chunks/ab/{}#2", "ab".repeat(32)),
                HOUR / 60,
                false,
            );
            let named = file(
                a.path(),
                "maps/vm/20260101-000000-0001/d.map",
                2 * HOUR,
                false,
            );
            let foreign = file(a.path(), "lost+found/#1234#1", 2 * HOUR, false);

            let counted = store.remove_staging_leftovers(HOUR, true).await;
            assert_eq!((counted.files, counted.bytes, counted.skipped), (3, 12, 0));
            assert!(
                dead_map.exists() && config.exists() && record.exists(),
                "counted only"
            );

            let removed = store.remove_staging_leftovers(HOUR, false).await;
            assert_eq!(removed, counted);
            for gone in [&dead_map, &config, &record] {
                assert!(!gone.exists(), "{}", gone.display());
            }
            assert!(
                !a.path().join(point_dir).exists(),
                "its point's directory went"
            );
            assert!(
                a.path().join("maps/vm").exists(),
                "the VM's directory stays"
            );
            for kept in [&young, &named, &foreign] {
                assert!(kept.exists(), "{}", kept.display());
            }

            // Without an age (the snapshot tier, under its lock), even one dated ahead goes.
            let ahead = file(a.path(), "points/vm/x#1", HOUR, true);
            let all = store.remove_staging_leftovers(Duration::ZERO, false).await;
            assert_eq!(all.files, 2, "{all:?}");
            assert!(!young.exists() && !ahead.exists());
            assert!(
                a.path().join("chunks/ab").exists(),
                "fan-out directories stay"
            );
        }

        #[tokio::test]
        async fn stores_that_are_not_directories_have_no_leftovers() {
            let found = Store::in_memory()
                .remove_staging_leftovers(Duration::ZERO, false)
                .await;
            assert_eq!(found, Leftovers::default());
        }
    }
}
