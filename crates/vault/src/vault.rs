//! The vault: a [`Repository`] whose writers hold leases, plus what only a vault has (garbage
//! collection, damage handling, replication). Its data-path methods delegate to the repository.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blockvault_core::{ChunkId, DiskName, RecoveryPoint, Redundancy, VaultConfig, VmName};
use blockvault_repo::{
    BackupReport, BackupRequest, ChunkIndex, ChunkShare, EarlySend, PointReader, PointSelector,
    Progress, Repository, RestoreReport, RestoreRequest, Sent, TransferOptions, TransferReport,
    TransferRequest, VerifyReport,
};
use blockvault_store::{PointListing, Store};

use crate::guard::Leases;
use crate::{Error, Result};

/// A vault: a repository in a store that any number of hosts write, under leases, and that
/// garbage collection cleans.
#[derive(Clone, Debug)]
pub struct Vault {
    repo: Repository,
}

impl From<Vault> for Repository {
    fn from(vault: Vault) -> Repository {
        vault.repo
    }
}

impl Vault {
    /// The vault over `repo`: its writers hold leases.
    fn over(repo: Repository) -> Vault {
        Vault {
            repo: repo.with_guard(Arc::new(Leases)),
        }
    }

    /// Creates a vault in directory `dir` (created if missing; must be empty if present).
    pub async fn init_local(dir: impl AsRef<Path>) -> Result<Vault> {
        Ok(Vault::over(Repository::init_local(dir).await?))
    }

    /// Makes `store` a vault with a new config.
    pub async fn init(store: Store) -> Result<Vault> {
        Ok(Vault::over(Repository::init(store).await?))
    }

    /// Makes `store` a replicated vault whose secondary is `secondary` (both must be empty):
    /// the secondary gets its own config naming this vault, then `store` gets the config. The
    /// config records the secondary as `secondary.location()`: open the secondary there.
    pub async fn init_replicated(store: Store, secondary: Store) -> Result<Vault> {
        let redundancy = Redundancy::Replicated {
            secondary: secondary.location().to_owned(),
        };
        let config = Repository::new_config(&store, redundancy);
        let store = store.init_replicated(secondary, &config).await?;
        Ok(Vault::from_config(store, config))
    }

    /// A vault over `store` whose config the caller has just read from it (to build the
    /// secondary it names, for example).
    pub fn from_config(store: Store, config: VaultConfig) -> Vault {
        Vault::over(Repository::from_config(store, config))
    }

    /// Opens the vault in directory `dir`.
    pub async fn open_local(dir: impl AsRef<Path>) -> Result<Vault> {
        Ok(Vault::over(Repository::open_local(dir).await?))
    }

    /// Opens the vault in `store`; fails with a "not a vault" error when it holds none.
    pub async fn open(store: Store) -> Result<Vault> {
        Ok(Vault::over(Repository::open(store).await?))
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
                location: self.store().location().to_owned(),
                redundancy: self.config().redundancy.clone(),
                vms,
            });
        }
        let primary = self.store().primary();
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
            ..self.config().clone()
        };
        if let Some(secondary) = store.secondary() {
            secondary
                .write_config(&config.for_replica(primary.location()))
                .await?;
        }
        primary.write_config(&config).await?;
        Ok(self.carried_over(store, config))
    }

    /// This vault over another store and config (the same vault after its config changed),
    /// with its host state.
    pub(crate) fn carried_over(&self, store: Store, config: VaultConfig) -> Vault {
        Vault {
            repo: self.repo.with_store(store, config),
        }
    }

    /// Keeps this host's knowledge of the vault (its [`ChunkIndex`]) under `dir`, in
    /// `vaults/<vault id>/`.
    pub fn with_state_dir(self, dir: impl Into<PathBuf>) -> Vault {
        Vault {
            repo: self.repo.with_state_dir(dir),
        }
    }

    /// The repository under this vault: the data path, for what the vault does not wrap.
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    pub fn store(&self) -> &Store {
        self.repo.store()
    }

    pub fn config(&self) -> &VaultConfig {
        self.repo.config()
    }

    /// This host's cache of what GC marked in this vault, when there is a state directory.
    pub(crate) fn gc_marks_path(&self) -> Option<PathBuf> {
        let state = self.repo.host_state()?;
        Some(state.gc_marks(&self.config().id))
    }

    /// This host's chunk index if it is on file and consistent with GC epoch `epoch`, without
    /// rebuilding it.
    pub(crate) fn saved_chunk_index(&self, epoch: Option<&str>) -> Option<ChunkIndex> {
        self.repo.saved_chunk_index(epoch)
    }
}

/// The data path, delegated to the repository (see `blockvault-repo` for what each does).
impl Vault {
    /// See [`Repository::chunk_index`].
    pub async fn chunk_index(&self) -> Result<Option<ChunkIndex>> {
        Ok(self.repo.chunk_index().await?)
    }

    /// See [`Repository::drop_from_index`].
    pub async fn drop_from_index(&self, ids: impl IntoIterator<Item = ChunkId>) -> Result<()> {
        Ok(self.repo.drop_from_index(ids).await?)
    }

    /// See [`Repository::vms`].
    pub async fn vms(&self) -> Result<Vec<VmName>> {
        Ok(self.repo.vms().await?)
    }

    /// See [`Repository::points`].
    pub async fn points(&self, vm: &VmName) -> Result<PointListing> {
        Ok(self.repo.points(vm).await?)
    }

    /// See [`Repository::latest_point`].
    pub async fn latest_point(&self, vm: &VmName) -> Result<Option<RecoveryPoint>> {
        Ok(self.repo.latest_point(vm).await?)
    }

    /// See [`Repository::resolve`].
    pub async fn resolve(&self, vm: &VmName, selector: &PointSelector) -> Result<RecoveryPoint> {
        Ok(self.repo.resolve(vm, selector).await?)
    }

    /// See [`Repository::backup`].
    pub async fn backup(
        &self,
        request: &BackupRequest,
        progress: Arc<dyn Progress>,
    ) -> Result<BackupReport> {
        Ok(self.repo.backup(request, progress).await?)
    }

    /// See [`Repository::backup_teeing`].
    pub async fn backup_teeing(
        &self,
        request: &BackupRequest,
        progress: Arc<dyn Progress>,
        tee: Option<&EarlySend>,
    ) -> Result<BackupReport> {
        Ok(self.repo.backup_teeing(request, progress, tee).await?)
    }

    /// See [`Repository::restore`].
    pub async fn restore(
        &self,
        request: &RestoreRequest,
        progress: Arc<dyn Progress>,
    ) -> Result<RestoreReport> {
        Ok(self.repo.restore(request, progress).await?)
    }

    /// See [`Repository::reader`].
    pub async fn reader(&self, point: RecoveryPoint) -> Result<PointReader> {
        Ok(self.repo.reader(point).await?)
    }

    /// See [`Repository::transfer`].
    pub async fn transfer(&self, request: &TransferRequest<'_>) -> Result<TransferReport> {
        Ok(self.repo.transfer(request).await?)
    }

    /// See [`Repository::transfer_early`].
    pub async fn transfer_early(
        &self,
        request: &TransferRequest<'_>,
        sent: Sent,
    ) -> Result<TransferReport> {
        Ok(self.repo.transfer_early(request, sent).await?)
    }

    /// See [`Repository::early_send`].
    pub fn early_send(
        &self,
        vm: &VmName,
        disks: HashSet<DiskName>,
        options: TransferOptions,
    ) -> EarlySend {
        self.repo.early_send(vm, disks, options)
    }

    /// See [`Repository::early_send_holding`].
    pub fn early_send_holding(
        &self,
        vm: &VmName,
        disks: HashSet<DiskName>,
        options: TransferOptions,
        held: usize,
    ) -> EarlySend {
        self.repo.early_send_holding(vm, disks, options, held)
    }

    /// See [`Repository::verify`].
    pub async fn verify(
        &self,
        points: &[RecoveryPoint],
        options: TransferOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<VerifyReport> {
        Ok(self.repo.verify(points, options, progress).await?)
    }

    /// See [`Repository::verify_share`]: like [`Vault::verify`], reading only the chunks in
    /// `share` (the rolling verification the daemon schedules).
    pub async fn verify_share(
        &self,
        points: &[RecoveryPoint],
        share: ChunkShare,
        options: TransferOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<VerifyReport> {
        Ok(self
            .repo
            .verify_share(points, share, options, progress)
            .await?)
    }
}
