//! [`Host`]: this host's blockvault, opened from its state directory.

use std::pin::Pin;
use std::sync::Arc;

use blockvault_core::{ErrorKind, VmName};
use blockvault_jobs::{Catalog, Engine, JobVault, Recovered, Tier, VaultUnavailable, Vaults};
use blockvault_repo::Keyring;
use blockvault_store::{Store, VaultLocation};
use blockvault_vault::{TransferOptions, Vault};

use crate::{HostUnlock, ReadVault, Result, StateDir, describe, vaults};

/// This host: its state directory, and from it the engine and the vaults by location (S3
/// settings from `STATE/s3.toml` and the environment).
///
/// Opening a host does no I/O: each request opens what it needs, so a `vault show` never
/// touches the catalog and a mistake in `s3.toml` matters only to an S3 vault.
#[derive(Clone, Debug)]
pub struct Host {
    state: StateDir,
    /// The keys of the encrypted vaults this process opened: each unlocked once, shared by
    /// everything the host opens (a vault, its replica, the snapshot tier under its key, the
    /// daemon's jobs).
    keyring: Keyring,
}

impl Host {
    pub fn open(state: StateDir) -> Host {
        let keyring = Keyring::new(Arc::new(HostUnlock::new(state.clone())));
        Host { state, keyring }
    }

    /// This host with another keyring (the daemon's never prompts).
    pub fn with_keyring(&self, keyring: Keyring) -> Host {
        Host {
            state: self.state.clone(),
            keyring,
        }
    }

    /// The keys this host unlocked (and how it unlocks the others: [`HostUnlock`]).
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// The job engine. Opening it marks jobs that a crash interrupted as Failed; what it
    /// repaired comes back as warnings.
    pub async fn engine(&self) -> Result<(Engine, Vec<String>)> {
        let (engine, recovered) = Engine::open_with_keyring(
            self.state.root(),
            Some(self.state.snapshots()),
            self.keyring.clone(),
        )
        .await?;
        Ok((engine, recovery_warnings(recovered)))
    }

    /// The catalog alone, for what needs no engine (a vault's protected items).
    pub async fn catalog(&self) -> Result<Catalog> {
        Ok(Catalog::open_async(self.state.catalog()).await?)
    }

    /// The vault at `location`, with its secondary when it is replicated (see
    /// [`secondary_warning`](crate::secondary_warning) when that cannot be opened).
    pub async fn vault(&self, location: &VaultLocation) -> Result<Vault> {
        vaults::vault(location, &self.state, &self.keyring).await
    }

    /// The vault at `location`, its key not unlocked: its config and VM list read, sealed
    /// objects do not. For what needs no passphrase (`vault show`).
    pub async fn vault_without_key(&self, location: &VaultLocation) -> Result<Vault> {
        vaults::vault_without_key(location, &self.state).await
    }

    /// The vault a backup job transfers to, opened by the job alongside its Snapshot: only
    /// what needs no network is checked now (see the jobs crate's `JobVault`).
    pub async fn backup_vault(&self, location: &VaultLocation) -> Result<JobVault<'static>> {
        vaults::backup_vault(location, &self.state, &self.keyring).await
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

    /// What a read (`points`, `restore`) of the vault at `location` answers from: the vault;
    /// or, when it cannot be opened and `tier_may_answer`, this host's snapshot tier copies of
    /// its points, if this host knows the location (a backup to it recorded the vault's id
    /// there, or the VMs it backed up to it), with a warning. A location this host does not know answers nothing: its
    /// error stands (a mistyped path must not list the points of other vaults).
    pub async fn read_vault(
        &self,
        engine: &Engine,
        location: &VaultLocation,
        tier_may_answer: bool,
        warnings: &mut Vec<String>,
    ) -> Result<ReadVault> {
        let error = match self.vault(location).await {
            Ok(vault) => return Ok(ReadVault::Open(vault)),
            // A key that does not unlock the vault does not unlock its tier copies either.
            Err(e) if tier_may_answer && e.kind() != ErrorKind::Locked => e,
            Err(e) => return Err(e),
        };
        let named = vaults::canonical(location).to_string();
        let (id, vms) = engine
            .catalog()
            .call(move |c| {
                let vms: Vec<VmName> = c
                    .vms()?
                    .into_iter()
                    .filter(|v| v.vault == named)
                    .map(|v| v.name)
                    .collect();
                Ok((c.vault_id(&named)?, vms))
            })
            .await?;
        if id.is_none() && vms.is_empty() {
            return Err(error);
        }
        let of = match &id {
            Some(id) => format!("vault {id}"),
            None => "the points this host took for it (it never opened)".to_owned(),
        };
        warnings.push(format!(
            "vault {location} cannot be opened: {}; showing this host's snapshot tier copies \
             of {of}",
            describe(&error)
        ));
        Ok(ReadVault::TierOf { id, vms, error })
    }

    /// The vault a restore of `vm` reads from ([`Host::read_vault`]): the snapshot tier
    /// restores without the vault (instant restore), so unless the vault's copy is asked for
    /// (`from`), a vault this host knows that cannot be opened leaves the tier's copies of its
    /// points to restore from. A replicated vault whose secondary cannot be opened comes with
    /// a warning.
    pub async fn restore_vault(
        &self,
        engine: &Engine,
        location: &VaultLocation,
        from: Option<Tier>,
        warnings: &mut Vec<String>,
    ) -> Result<ReadVault> {
        let read = self
            .read_vault(engine, location, from != Some(Tier::Vault), warnings)
            .await?;
        warnings.extend(read.vault().and_then(crate::secondary_warning));
        Ok(read)
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
            keyring: self.keyring.clone(),
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
    keyring: Keyring,
}

impl Vaults for HostVaults {
    fn open<'a>(
        &'a self,
        location: &'a str,
    ) -> Pin<Box<dyn Future<Output = std::result::Result<Vault, VaultUnavailable>> + Send + 'a>>
    {
        Box::pin(async move {
            let opened = match location.parse::<VaultLocation>() {
                Ok(parsed) => vaults::vault(&parsed, &self.state, &self.keyring).await,
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
