use std::path::{Path, PathBuf};

use blockvault_core::{
    BlockSize, ChunkId, PointId, RecoveryPoint, Redundancy, VaultConfig, VmName,
};
use blockvault_store::{PointListing, Store};
use jiff::Timestamp;

use crate::{ChunkIndex, Error, Result};

/// Which point of a VM to restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PointSelector {
    /// The newest point.
    Latest,
    /// A point by id, or by a prefix of its id that only one point has.
    Id(String),
    /// The newest point taken at or before this time.
    At(Timestamp),
}

/// A vault: a store that holds a vault config, and the operations on its points.
#[derive(Clone, Debug)]
pub struct Vault {
    store: Store,
    config: VaultConfig,
    /// This host's state directory, for the chunk index; none for a stateless caller.
    state_dir: Option<PathBuf>,
    /// Whether writers coordinate with garbage collection through leases (see
    /// [`Vault::private`]).
    shared: bool,
}

impl Vault {
    /// Creates a vault in directory `dir` (created if missing; must be empty if present).
    pub async fn init_local(dir: impl AsRef<Path>) -> Result<Vault> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Vault::init(Store::local(dir)?).await
    }

    /// Makes `store` a vault with a new config.
    pub async fn init(store: Store) -> Result<Vault> {
        let config = new_config(&store, Redundancy::Single);
        store.init(&config).await?;
        Ok(Vault {
            store,
            config,
            state_dir: None,
            shared: true,
        })
    }

    /// Makes `store` a replicated vault whose secondary is `secondary` (both must be empty):
    /// the secondary gets its own config naming this vault, then `store` gets the config. The
    /// config records the secondary as `secondary.location()`: open the secondary there.
    pub async fn init_replicated(store: Store, secondary: Store) -> Result<Vault> {
        let redundancy = Redundancy::Replicated {
            secondary: secondary.location().to_owned(),
        };
        let config = new_config(&store, redundancy);
        let store = store.init_replicated(secondary, &config).await?;
        Ok(Vault {
            store,
            config,
            state_dir: None,
            shared: true,
        })
    }

    /// A vault over `store` whose config the caller has just read from it (to build the
    /// secondary it names, for example).
    pub fn from_config(store: Store, config: VaultConfig) -> Vault {
        Vault {
            store,
            config,
            state_dir: None,
            shared: true,
        }
    }

    /// Changes the redundancy of this vault, which is allowed only while it holds no backup
    /// items (no VM has a point in it): redundancy is chosen before the first backup. To
    /// replicate, `secondary` must be given and empty: every object already in the vault (left
    /// by backups that never committed) is copied to it, it gets its own config naming this
    /// vault, then this vault's config changes. To go single, the secondary is left as it is
    /// and no longer written. Returns the vault as it now is.
    pub async fn set_redundancy(&self, secondary: Option<Store>) -> Result<Vault> {
        let vms = self.vms().await?;
        if !vms.is_empty() {
            return Err(Error::RedundancyFixed {
                location: self.store.location().to_owned(),
                redundancy: self.config.redundancy.clone(),
                vms,
            });
        }
        let primary = self.store.primary();
        let (redundancy, store) = match secondary {
            None => (Redundancy::Single, primary.clone()),
            Some(secondary) => {
                secondary.check_empty().await?;
                primary.copy_objects_to(&secondary).await?;
                let redundancy = Redundancy::Replicated {
                    secondary: secondary.location().to_owned(),
                };
                (redundancy, primary.clone().replicated(secondary))
            }
        };
        let config = VaultConfig {
            redundancy,
            ..self.config.clone()
        };
        if let Some(secondary) = store.secondary() {
            secondary
                .write_config(&config.for_replica(primary.location()))
                .await?;
        }
        primary.write_config(&config).await?;
        Ok(Vault {
            store,
            config,
            state_dir: self.state_dir.clone(),
            shared: self.shared,
        })
    }
}

/// A new vault config for `store`: a fresh id, now, the default block size.
fn new_config(store: &Store, redundancy: Redundancy) -> VaultConfig {
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
    }
}

impl Vault {
    /// Opens the vault in directory `dir`.
    pub async fn open_local(dir: impl AsRef<Path>) -> Result<Vault> {
        Vault::open(Store::local(dir)?).await
    }

    /// Opens the vault in `store`; fails with a "not a vault" error when it holds none.
    pub async fn open(store: Store) -> Result<Vault> {
        let config = store.config().await?;
        Ok(Vault {
            store,
            config,
            state_dir: None,
            shared: true,
        })
    }

    /// A vault that only this host's engine writes and cleans, under its own locks (the
    /// snapshot tier, swept under the VM's snapshot lock): its writers take no lease and look
    /// for no damage marks, which saves a few small writes per backup.
    pub fn private(mut self) -> Vault {
        self.shared = false;
        self
    }

    /// This vault's host state and lease behaviour, carried over from `from` (the same vault
    /// before its config changed).
    pub(crate) fn carried_over(mut self, from: &Vault) -> Vault {
        self.state_dir = from.state_dir.clone();
        self.shared = from.shared;
        self
    }

    pub(crate) fn is_shared(&self) -> bool {
        self.shared
    }

    /// Keeps this host's knowledge of the vault (its [`ChunkIndex`]) under `dir`, in
    /// `vaults/<vault id>/`.
    pub fn with_state_dir(mut self, dir: impl Into<PathBuf>) -> Vault {
        self.state_dir = Some(dir.into());
        self
    }

    /// The vault's chunk index, loaded or rebuilt, when there is a state directory.
    pub async fn chunk_index(&self) -> Result<Option<ChunkIndex>> {
        let Some(dir) = &self.state_dir else {
            return Ok(None);
        };
        let epoch = self.store.gc_epoch().await?.map(|e| e.id);
        Ok(Some(
            ChunkIndex::load_or_rebuild(&self.store, &self.index_path(dir), epoch.as_deref())
                .await?,
        ))
    }

    /// `name` in this host's state for this vault (`STATE/vaults/<vault id>/<name>`), when
    /// there is a state directory.
    pub(crate) fn state_path(&self, name: &str) -> Option<PathBuf> {
        let dir = self.state_dir.as_ref()?;
        Some(dir.join("vaults").join(&self.config.id).join(name))
    }

    fn index_path(&self, state_dir: &Path) -> PathBuf {
        state_dir
            .join("vaults")
            .join(&self.config.id)
            .join("chunks.idx")
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
    pub(crate) fn saved_chunk_index(&self, epoch: Option<&str>) -> Option<ChunkIndex> {
        let dir = self.state_dir.as_ref()?;
        ChunkIndex::load_current(&self.index_path(dir), epoch)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &VaultConfig {
        &self.config
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

impl PointSelector {
    /// The point of `vm` this selector names among `points` (sorted oldest first, as listings
    /// return them).
    pub fn select<'a>(
        &self,
        vm: &VmName,
        points: &'a [RecoveryPoint],
    ) -> Result<&'a RecoveryPoint> {
        let Some(first) = points.first() else {
            return Err(Error::UnknownVm { vm: vm.clone() });
        };
        match self {
            PointSelector::Latest => Ok(&points[points.len() - 1]),
            PointSelector::Id(_) => {
                let ids: Vec<PointId> = points.iter().map(|p| p.id.clone()).collect();
                let id = self.select_id(vm, &ids)?;
                points
                    .iter()
                    .find(|p| &p.id == id)
                    .ok_or_else(|| Error::UnknownVm { vm: vm.clone() })
            }
            PointSelector::At(at) => {
                points
                    .iter()
                    .rev()
                    .find(|p| p.time <= *at)
                    .ok_or(Error::NoPointAtOrBefore {
                        vm: vm.clone(),
                        at: *at,
                        first: first.time,
                    })
            }
        }
    }

    /// The id among `ids` this selector names: the newest for `Latest`, the one equal to or
    /// uniquely starting with the text for `Id`. `At` needs the points' times: use
    /// [`PointSelector::select`].
    fn select_id<'a>(&self, vm: &VmName, ids: &'a [PointId]) -> Result<&'a PointId> {
        if ids.is_empty() {
            return Err(Error::UnknownVm { vm: vm.clone() });
        }
        let text = match self {
            PointSelector::Id(text) => text,
            _ => return Ok(&ids[ids.len() - 1]),
        };
        if let Some(exact) = ids.iter().find(|id| id.as_str() == text) {
            return Ok(exact);
        }
        let matching: Vec<&PointId> = ids
            .iter()
            .filter(|id| !text.is_empty() && id.as_str().starts_with(text.as_str()))
            .collect();
        match matching.as_slice() {
            [one] => Ok(one),
            [] => Err(Error::UnknownPoint {
                vm: vm.clone(),
                point: text.clone(),
            }),
            many => Err(Error::AmbiguousPoint {
                vm: vm.clone(),
                prefix: text.clone(),
                count: many.len(),
            }),
        }
    }
}
