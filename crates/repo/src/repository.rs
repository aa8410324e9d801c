//! A repository: a store that holds a vault config, with this host's knowledge of it (the chunk
//! index under the state directory) and the guard its writers hold. Both tiers are
//! repositories: the vault adds leases, GC and damage handling around one; the snapshot tier
//! keeps one per VM.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use blockvault_core::{
    BlockSize, ChunkCodec, ChunkId, PointId, RecoveryPoint, Redundancy, StateDir, VaultConfig,
    VmName,
};
use blockvault_store::{PointListing, Store};
use jiff::Timestamp;

use crate::{ChunkIndex, Error, Keyring, NoGuard, PointSelector, Result, WriteGuard};

/// A store that holds a vault config, and the operations on its points (see the module docs).
#[derive(Clone, Debug)]
pub struct Repository {
    store: Store,
    config: VaultConfig,
    /// This host's state directory, for the chunk index; none for a stateless caller.
    state_dir: Option<StateDir>,
    /// What writers hold while they write (see [`WriteGuard`]).
    guard: Arc<dyn WriteGuard>,
}

impl Repository {
    /// Creates a repository in directory `dir` (created if missing; must be empty if present).
    pub async fn init_local(dir: impl AsRef<Path>) -> Result<Repository> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Repository::init(Store::local(dir)?).await
    }

    /// Makes `store` a repository with a new config.
    pub async fn init(store: Store) -> Result<Repository> {
        let config = Repository::new_config(&store, Redundancy::Single);
        store.init(&config).await?;
        Ok(Repository::from_config(store, config))
    }

    /// A repository over `store` whose config the caller has just read from it or written to
    /// it. Its writers hold no guard until [`Repository::with_guard`].
    pub fn from_config(store: Store, config: VaultConfig) -> Repository {
        Repository {
            store,
            config,
            state_dir: None,
            guard: Arc::new(NoGuard),
        }
    }

    /// A new config for `store`: a fresh id, now, the default block size.
    pub fn new_config(store: &Store, redundancy: Redundancy) -> VaultConfig {
        let created = Timestamp::now();
        let id = blake3::hash(
            format!(
                "{}:{}:{}",
                store.location(),
                created.as_nanosecond(),
                std::process::id()
            )
            .as_bytes(),
        )
        .to_hex()[..16]
            .to_owned();
        VaultConfig {
            id,
            created,
            default_block_size: BlockSize::DEFAULT,
            redundancy,
            replica_of: None,
            encryption: None,
        }
    }

    /// Opens the repository in directory `dir`.
    pub async fn open_local(dir: impl AsRef<Path>) -> Result<Repository> {
        Repository::open(Store::local(dir)?).await
    }

    /// Opens the repository in `store`; fails with a "not a vault" error when it holds none.
    pub async fn open(store: Store) -> Result<Repository> {
        let config = store.config().await?;
        Ok(Repository::from_config(store, config))
    }

    /// Opens the repository in `store`, encrypted or not: its codec comes from `keyring`
    /// (unlocking the vault's key when the keyring does not hold it yet).
    pub async fn open_with(store: Store, keyring: &Keyring) -> Result<Repository> {
        let config = store.config().await?;
        let codec = keyring.codec(&config, store.location())?;
        Ok(Repository::from_config(store.with_codec(codec), config))
    }

    /// Writers into this repository hold `guard` while they write.
    pub fn with_guard(mut self, guard: Arc<dyn WriteGuard>) -> Repository {
        self.guard = guard;
        self
    }

    pub(crate) fn guard(&self) -> &dyn WriteGuard {
        self.guard.as_ref()
    }

    /// This repository over another store and config (the same vault after its config
    /// changed), with its host state and guard.
    pub fn with_store(&self, store: Store, config: VaultConfig) -> Repository {
        Repository {
            store,
            config,
            state_dir: self.state_dir.clone(),
            guard: Arc::clone(&self.guard),
        }
    }

    /// Keeps this host's knowledge of the vault (its [`ChunkIndex`]) under `dir`, in
    /// `vaults/<vault id>/`.
    pub fn with_state_dir(mut self, dir: impl Into<PathBuf>) -> Repository {
        self.state_dir = Some(StateDir::new(dir));
        self
    }

    /// The vault's chunk index, loaded or rebuilt, when there is a state directory.
    pub async fn chunk_index(&self) -> Result<Option<ChunkIndex>> {
        let Some(dir) = &self.state_dir else {
            return Ok(None);
        };
        let epoch = self.store.gc_epoch().await?.map(|e| e.id);
        Ok(Some(
            ChunkIndex::load_or_rebuild(
                &self.store,
                &dir.chunk_index(&self.config.id),
                epoch.as_deref(),
            )
            .await?,
        ))
    }

    /// This host's state directory, when the repository keeps knowledge there (the vault's
    /// paths in it are [`StateDir::chunk_index`] and [`StateDir::gc_marks`]).
    pub fn host_state(&self) -> Option<&StateDir> {
        self.state_dir.as_ref()
    }

    /// Drops `ids` from this host's chunk index when it has one consistent with the vault's
    /// GC epoch (never rebuilding it: a rebuild lists the store, and only a writer holding a
    /// lease may trust a listing). The damage marks in the vault are what makes every host
    /// send these chunks again; this only spares this host a wasted lookup.
    pub async fn drop_from_index(&self, ids: impl IntoIterator<Item = ChunkId>) -> Result<()> {
        let epoch = self.store.gc_epoch().await?.map(|e| e.id);
        if let Some(mut index) = self.saved_chunk_index(epoch.as_deref()) {
            index.remove(ids)?;
        }
        Ok(())
    }

    /// This host's chunk index if it is on file and consistent with GC epoch `epoch`, without
    /// rebuilding it (the collector updates it after a sweep; otherwise the next backup
    /// rebuilds it).
    pub fn saved_chunk_index(&self, epoch: Option<&str>) -> Option<ChunkIndex> {
        let dir = self.state_dir.as_ref()?;
        ChunkIndex::load_current(&dir.chunk_index(&self.config.id), epoch)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &VaultConfig {
        &self.config
    }

    /// How this repository's chunks are identified, encoded and decoded: its store's codec,
    /// handed to every writer and reader of the data path (the scan, the encode, copy, the
    /// point reader and the restores, verify).
    pub fn codec(&self) -> &ChunkCodec {
        self.store.codec()
    }

    /// The VMs with at least one point.
    pub async fn vms(&self) -> Result<Vec<VmName>> {
        Ok(self.store.list_vms().await?)
    }

    /// The points of `vm` (oldest first) and its damaged records; [`Error::UnknownVm`] when it
    /// has no record at all. A damaged record damages only itself: the other points list.
    pub async fn points(&self, vm: &VmName) -> Result<PointListing> {
        let listing = self.store.list_points(vm).await?;
        if listing.is_empty() {
            return Err(Error::UnknownVm { vm: vm.clone() });
        }
        Ok(listing)
    }

    /// The newest point of `vm` whose record reads, if it has any: the parent of the next
    /// backup or transfer. A newer damaged record is passed over (the next point is then
    /// incremental from an older one, which costs uploads, never correctness).
    pub async fn latest_point(&self, vm: &VmName) -> Result<Option<RecoveryPoint>> {
        let ids = self.store.list_point_ids(vm).await?;
        for id in ids.iter().rev() {
            match self.store.get_point(vm, id).await {
                Ok(point) => return Ok(Some(point)),
                Err(blockvault_store::Error::PointMissing { .. }) => {}
                Err(e) if e.is_corrupt() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    /// The point of `vm` that `selector` names.
    pub async fn resolve(&self, vm: &VmName, selector: &PointSelector) -> Result<RecoveryPoint> {
        match selector {
            PointSelector::Latest => match self.latest_point(vm).await? {
                Some(point) => Ok(point),
                // Only damaged records (or none): name the newest, as the integrity failure
                // it is.
                None => match self.points(vm).await?.damaged.pop() {
                    Some(damaged) => Err(self
                        .store
                        .get_point(vm, &damaged.id)
                        .await
                        .map_or_else(Error::from, |_| Error::UnknownVm { vm: vm.clone() })),
                    None => Err(Error::UnknownVm { vm: vm.clone() }),
                },
            },
            PointSelector::Id(text) => {
                if let Ok(id) = text.parse::<PointId>() {
                    return self.store.get_point(vm, &id).await.map_err(|e| match e {
                        blockvault_store::Error::PointMissing { .. } => Error::UnknownPoint {
                            vm: vm.clone(),
                            point: text.clone(),
                        },
                        other => other.into(),
                    });
                }
                let ids = self.store.list_point_ids(vm).await?;
                let id = selector.select_id(vm, &ids)?.clone();
                Ok(self.store.get_point(vm, &id).await?)
            }
            PointSelector::At(_) => {
                let listing = self.points(vm).await?;
                Ok(selector.select(vm, &listing.points)?.clone())
            }
        }
    }
}
