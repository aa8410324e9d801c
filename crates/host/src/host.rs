//! [`Host`]: this host's blockvault, opened from its state directory.

use std::pin::Pin;
use std::sync::Arc;

use blockvault_core::{ErrorKind, VmName};
use blockvault_jobs::{Catalog, Engine, JobVault, Recovered, Tier, VaultUnavailable, Vaults};
use blockvault_store::{Store, VaultLocation};
use blockvault_vault::{TransferOptions, Vault};

use crate::{Result, StateDir, describe, vaults};

/// This host: its state directory, and from it the engine and the vaults by location (S3
/// settings from `STATE/s3.toml` and the environment).
///
/// Opening a host does no I/O: each request opens what it needs, so a `vault show` never
/// touches the catalog and a mistake in `s3.toml` matters only to an S3 vault.
#[derive(Clone, Debug)]
pub struct Host {
    state: StateDir,
}

impl Host {
    pub fn open(state: StateDir) -> Host {
        Host { state }
    }

    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// The job engine. Opening it marks jobs that a crash interrupted as Failed; what it
    /// repaired comes back as warnings.
    pub async fn engine(&self) -> Result<(Engine, Vec<String>)> {
        let (engine, recovered) =
            Engine::open(self.state.root(), Some(self.state.snapshots())).await?;
        Ok((engine, recovery_warnings(recovered)))
    }

    /// The catalog alone, for what needs no engine (a vault's protected items).
    pub async fn catalog(&self) -> Result<Catalog> {
        Ok(Catalog::open_async(self.state.catalog()).await?)
    }

    /// The vault at `location`, with its secondary when it is replicated (see
    /// [`secondary_warning`](crate::secondary_warning) when that cannot be opened).
    pub async fn vault(&self, location: &VaultLocation) -> Result<Vault> {
        vaults::vault(location, &self.state).await
    }

    /// The vault a backup job transfers to, opened by the job alongside its Snapshot: only
    /// what needs no network is checked now (see the jobs crate's `JobVault`).
    pub async fn backup_vault(&self, location: &VaultLocation) -> Result<JobVault<'static>> {
        vaults::backup_vault(location, &self.state).await
    }

    /// The vault a job other than a backup works with (protect, stop protection, undelete). A
    /// vault that does not answer leaves a migration's backup its snapshot: the job runs, its
    /// Transfer fails, and the next backup's transfer catches up. A vault that is missing or
    /// misconfigured is an error before anything runs.
    pub async fn job_vault(
        &self,
        location: &VaultLocation,
    ) -> Result<std::result::Result<Vault, VaultUnavailable>> {
        match self.vault(location).await {
            Ok(vault) => Ok(Ok(vault)),
            Err(e) if e.kind() == ErrorKind::Failure => Ok(Err(VaultUnavailable {
                location: location.to_string(),
                reason: describe(&e),
            })),
            Err(e) => Err(e),
        }
    }

    /// The vault at `location`; or, when it cannot be opened but the snapshot tier can answer
    /// (`snapshots_can_answer`), none, with a warning: reading snapshots needs no vault.
    pub async fn vault_or_snapshots(
        &self,
        location: &VaultLocation,
        snapshots_can_answer: bool,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Vault>> {
        match self.vault(location).await {
            Ok(vault) => Ok(Some(vault)),
            Err(e) if snapshots_can_answer => {
                warnings.push(format!(
                    "the vault cannot be opened ({}); using the snapshot tier only",
                    describe(&e)
                ));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The vault a restore of `vm` reads from, with the warnings it comes with (a secondary
    /// that cannot be opened). The snapshot tier restores without the vault: when the VM has
    /// snapshots and the vault is not the tier asked for (`from`), a vault that cannot be
    /// opened is none, with a warning, and only fatal when the point lives nowhere else (the
    /// engine says so).
    pub async fn restore_vault(
        &self,
        engine: &Engine,
        location: &VaultLocation,
        vm: &VmName,
        from: Option<Tier>,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Vault>> {
        let snapshots_can_answer =
            from != Some(Tier::Vault) && engine.snapshots().open(vm).await?.is_some();
        let vault = self
            .vault_or_snapshots(location, snapshots_can_answer, warnings)
            .await?;
        warnings.extend(vault.as_ref().and_then(crate::secondary_warning));
        Ok(vault)
    }

    /// A new vault at `location`, replicated to `secondary` when given (a directory is created
    /// if missing; it must be empty, like the primary).
    pub async fn init_vault(
        &self,
        location: &VaultLocation,
        secondary: Option<&VaultLocation>,
    ) -> Result<Vault> {
        vaults::init_vault(location, secondary, &self.state).await
    }

    /// The store at `location` for a new vault or replica: a directory is created if missing
    /// and named by its canonical path.
    pub async fn new_store(&self, location: &VaultLocation) -> Result<Store> {
        vaults::new_store(location, &self.state).await
    }

    /// The store at an existing `location` (nothing is created), its S3 settings checked.
    pub async fn existing_store(&self, location: &VaultLocation) -> Result<Store> {
        vaults::existing_store(location, &self.state).await
    }

    /// How the daemon opens protected VMs' vaults: as every other request does.
    pub fn daemon_vaults(&self) -> Arc<dyn Vaults> {
        Arc::new(HostVaults {
            state: self.state.clone(),
        })
    }
}

/// What opening the engine repaired, as warnings.
fn recovery_warnings(recovered: Recovered) -> Vec<String> {
    let mut warnings = recovered.warnings;
    if !recovered.failed_jobs.is_empty() {
        let ids: Vec<String> = recovered
            .failed_jobs
            .iter()
            .map(|j| j.to_string())
            .collect();
        warnings.push(format!(
            "marked interrupted job(s) {} as Failed (their process stopped before they \
             finished); freed {} of leftovers",
            ids.join(", "),
            crate::bytes(recovered.bytes_freed)
        ));
    }
    warnings
}

/// Opens protected VMs' vaults the way the other requests do (S3 settings from the state
/// directory and the environment).
#[derive(Debug)]
struct HostVaults {
    state: StateDir,
}

impl Vaults for HostVaults {
    fn open<'a>(
        &'a self,
        location: &'a str,
    ) -> Pin<Box<dyn Future<Output = std::result::Result<Vault, VaultUnavailable>> + Send + 'a>>
    {
        Box::pin(async move {
            let opened = match location.parse::<VaultLocation>() {
                Ok(parsed) => vaults::vault(&parsed, &self.state).await,
                Err(e) => Err(e.into()),
            };
            opened.map_err(|e| VaultUnavailable {
                location: location.to_owned(),
                reason: describe(&e),
            })
        })
    }

    fn transfer_options(&self, location: &str) -> TransferOptions {
        location
            .parse::<VaultLocation>()
            .map(|l| crate::write_options(&l, None))
            .unwrap_or_default()
    }
}
