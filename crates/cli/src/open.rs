//! Opening a vault from what the user gave: a location, the state directory, the environment.

use std::path::{Path, PathBuf};

use blockvault_core::VaultConfig;
use blockvault_jobs::{Engine, JobVault, VaultUnavailable};
use blockvault_store::{S3Options, Store, VaultLocation};
use blockvault_vault::{TransferOptions, Vault};

/// The state directory: `--state-dir`, else `$XDG_STATE_HOME/blockvault`, else
/// `~/.local/state/blockvault`.
pub fn state_dir(given: Option<PathBuf>) -> PathBuf {
    given
        .or_else(|| std::env::var_os("XDG_STATE_HOME").map(|d| PathBuf::from(d).join("blockvault")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/blockvault"))
        })
        .unwrap_or_else(|| PathBuf::from("/var/lib/blockvault"))
}

/// This host's state: where it lives, and the engine and vaults opened from it.
#[derive(Debug)]
pub struct Host {
    pub state: PathBuf,
    pub snapshot_dir: Option<PathBuf>,
}

impl Host {
    /// The job engine. Opening it marks jobs that a crash interrupted as Failed; what it
    /// repaired comes back as warnings.
    pub async fn engine(&self) -> anyhow::Result<(Engine, Vec<String>)> {
        let (engine, recovered) = Engine::open(&self.state, self.snapshot_dir.clone()).await?;
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
                crate::format::bytes(recovered.bytes_freed)
            ));
        }
        Ok((engine, warnings))
    }

    pub async fn vault(&self, location: &VaultLocation) -> anyhow::Result<Vault> {
        vault(location, &self.state).await
    }

    /// The vault a backup job transfers to, opened alongside the job's Snapshot, which must
    /// never wait for it (an S3 endpoint that does not answer costs minutes of timeouts). What
    /// needs no network is checked now, and a mistake there is an error before anything runs:
    /// a directory that is not a vault, S3 settings that are wrong. The rest (an S3 store's
    /// requests, a replicated vault's secondary) is opened by the job; when it fails, the
    /// job's Transfer fails with the error (the point stays in the snapshot tier).
    pub async fn backup_vault(
        &self,
        location: &VaultLocation,
    ) -> anyhow::Result<JobVault<'static>> {
        let state = self.state.clone();
        let named = canonical(location).to_string();
        match location {
            VaultLocation::Local(_) => {
                // A directory's config is read now; a secondary behind a network is not.
                let primary = store(location, &state)?;
                let config = primary.config().await?;
                if config.redundancy.secondary().is_none() {
                    let vault = with_secondary(primary, config, &state).await;
                    return Ok(JobVault::open(named, vault));
                }
                Ok(JobVault::opening(named, async move {
                    Ok(with_secondary(primary, config, &state).await)
                }))
            }
            VaultLocation::S3 { .. } => {
                store(location, &state)?;
                let location = location.clone();
                Ok(JobVault::opening(named.clone(), async move {
                    vault(&location, &state)
                        .await
                        .map_err(|e| VaultUnavailable {
                            location: named,
                            reason: format!("{e:#}"),
                        })
                }))
            }
        }
    }

    /// The vault at `location`; or, when it cannot be opened but the snapshot tier can answer
    /// (`snapshots_can_answer`), none, with a warning: reading snapshots needs no vault.
    pub async fn vault_or_snapshots(
        &self,
        location: &VaultLocation,
        snapshots_can_answer: bool,
        warnings: &mut Vec<String>,
    ) -> anyhow::Result<Option<Vault>> {
        match self.vault(location).await {
            Ok(vault) => Ok(Some(vault)),
            Err(e) if snapshots_can_answer => {
                warnings.push(format!(
                    "the vault cannot be opened ({e:#}); using the snapshot tier only"
                ));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// `location` spelled one way, so records compare equal however the user wrote it: a
/// directory absolute, without `.`, `..` or a trailing slash, and with symlinks resolved when
/// it exists; an S3 location as parsed.
pub fn canonical(location: &VaultLocation) -> VaultLocation {
    match location {
        VaultLocation::Local(dir) => {
            let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
            let clean = std::fs::canonicalize(&absolute)
                .unwrap_or_else(|_| absolute.components().collect());
            VaultLocation::Local(clean)
        }
        s3 => s3.clone(),
    }
}

/// The vault at `location`, keeping this host's knowledge of it (the chunk index) in `state`.
/// A replicated vault comes with its secondary store (S3 settings as for the primary); when
/// the secondary cannot be opened, reads use the primary alone and every write fails naming
/// the secondary ([`secondary_warning`] says so).
pub async fn vault(location: &VaultLocation, state: &Path) -> anyhow::Result<Vault> {
    probe(location, state).await?;
    let primary = store(location, state)?;
    let config = primary.config().await?;
    Ok(with_secondary(primary, config, state).await)
}

/// The vault whose primary store is `primary`, holding `config`: with its secondary store
/// when it is replicated (see [`vault`]).
async fn with_secondary(primary: Store, config: VaultConfig, state: &Path) -> Vault {
    let store = match config.redundancy.secondary() {
        None => primary,
        Some(secondary) => match open_secondary(secondary, &config, state).await {
            Ok(store) => primary.replicated(store),
            Err(e) => primary.with_secondary_unavailable(secondary, format!("{e:#}")),
        },
    };
    Vault::from_config(store, config).with_state_dir(state)
}

/// The secondary store of the vault `config` describes, checked: it must hold the config of
/// this vault's replica.
async fn open_secondary(
    secondary: &str,
    config: &VaultConfig,
    state: &Path,
) -> anyhow::Result<Store> {
    // Said without `NotAVault`'s hint to create a vault there: that would make an unrelated
    // vault, not this one's replica (the unavailable error says what to do instead).
    let unhinted = |e: anyhow::Error| match e.downcast::<blockvault_store::Error>() {
        Ok(blockvault_store::Error::NotAVault { location, reason }) => {
            anyhow::anyhow!("{location}: {reason}")
        }
        Ok(other) => other.into(),
        Err(other) => other,
    };
    let location: VaultLocation = secondary.parse()?;
    probe(&location, state).await?;
    let store = store(&location, state).map_err(unhinted)?;
    let replica = store.config().await.map_err(|e| unhinted(e.into()))?;
    match replica.replica_of {
        Some(of) if of.vault == config.id => Ok(store),
        Some(of) => anyhow::bail!("it holds the replica of another vault ({})", of.vault),
        None if replica.id == config.id => anyhow::bail!(
            "it was promoted to be vault {} itself (`blockvault vault promote`), so this \
             location is an old primary whose points stopped when it was lost: use the vault \
             at {secondary}",
            config.id
        ),
        None => anyhow::bail!(
            "it holds vault {} of its own, not the replica of vault {}",
            replica.id,
            config.id
        ),
    }
}

/// A warning for a replicated vault whose secondary could not be opened.
pub fn secondary_warning(vault: &Vault) -> Option<String> {
    vault
        .store()
        .secondary_unavailable()
        .map(|(location, reason)| {
            format!(
                "the secondary store {location} of this replicated vault cannot be opened \
                 ({reason}); reading from the primary only, and nothing can be written to the \
                 vault until the secondary is back"
            )
        })
}

/// A new vault at `location`, replicated to `secondary` when given (a directory is created if
/// missing; it must be empty, like the primary).
pub async fn init_vault(
    location: &VaultLocation,
    secondary: Option<&VaultLocation>,
    state: &Path,
) -> anyhow::Result<Vault> {
    let Some(secondary) = secondary else {
        return Ok(match location {
            VaultLocation::Local(dir) => Vault::init_local(dir).await?,
            VaultLocation::S3 { .. } => {
                probe(location, state).await?;
                Vault::init(store(location, state)?).await?
            }
        });
    };
    let primary = new_store(location, state).await?;
    let secondary = new_store(secondary, state).await?;
    Ok(Vault::init_replicated(primary, secondary).await?)
}

/// The store at `location` for a new vault or replica: a directory is created if missing and
/// named by its canonical path (so the config that records it works from any directory).
pub async fn new_store(location: &VaultLocation, state: &Path) -> anyhow::Result<Store> {
    if let VaultLocation::Local(dir) = location {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    let location = canonical(location);
    probe(&location, state).await?;
    store(&location, state)
}

/// The store at an existing `location` (nothing is created), its S3 settings checked.
pub async fn existing_store(location: &VaultLocation, state: &Path) -> anyhow::Result<Store> {
    probe(location, state).await?;
    store(location, state)
}

/// The store at `location`. S3 settings come from `STATE/s3.toml`, overridden by `AWS_*`.
fn store(location: &VaultLocation, state: &Path) -> anyhow::Result<Store> {
    Ok(match location {
        VaultLocation::Local(dir) => Store::local(dir)?,
        VaultLocation::S3 { bucket, prefix } => Store::s3(bucket, prefix, &s3_options(state)?)?,
    })
}

fn s3_options(state: &Path) -> anyhow::Result<S3Options> {
    Ok(S3Options::load(&state.join("s3.toml"))?.overridden_by(S3Options::from_env()?))
}

/// Fails fast when an S3 location is misconfigured (wrong endpoint, credentials, bucket): one
/// request retried for at most [`PROBE_BUDGET_SECS`], before the store with the patient retry
/// policy takes over. A transfer rides out a server restart, and the probe a blip of a second
/// or two (a single retry made a 0.2 s outage fail `gc` and `prune`); a typo should not take
/// minutes to report.
async fn probe(location: &VaultLocation, state: &Path) -> anyhow::Result<()> {
    if let VaultLocation::S3 { bucket, prefix } = location {
        let options = s3_options(state)?;
        let quick = S3Options {
            retry_budget_secs: Some(
                options
                    .retry_budget_secs
                    .map_or(PROBE_BUDGET_SECS, |b| b.min(PROBE_BUDGET_SECS)),
            ),
            max_retries: None,
            ..options
        };
        match Store::s3(bucket, prefix, &quick)?.config().await {
            Ok(_) | Err(blockvault_store::Error::NotAVault { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// How long the probe of an S3 location retries.
const PROBE_BUDGET_SECS: u64 = 5;

/// Transfer settings for writes (backups, transfers): `--concurrency`, else 8 for a directory
/// and 16 for S3 (round trips to an object store hide behind more requests in flight).
pub fn transfer(location: &VaultLocation, concurrency: Option<u16>) -> TransferOptions {
    let default = match location {
        VaultLocation::Local(_) => 8,
        VaultLocation::S3 { .. } => 16,
    };
    TransferOptions {
        concurrency: concurrency.map_or(default, usize::from),
    }
}

/// Transfer settings for reads (restore, verify): as [`transfer`], but 32 in flight on S3.
/// A restore from Garage on the benchmark machine took 7% less time with 32 than with 16
/// (faster in 8 interleaved pairs of 8; BENCHMARKS.md), for 10-15 MiB more memory at 1 MiB
/// blocks (each read in flight holds one compressed block: more at larger block sizes). A
/// full backup to S3 already runs at its floor with 16. A restore from the snapshot tier of
/// a VM whose vault is on S3 gets 32 too; local reads do not mind.
pub fn reads(location: &VaultLocation, concurrency: Option<u16>) -> TransferOptions {
    match location {
        VaultLocation::S3 { .. } => TransferOptions {
            concurrency: concurrency.map_or(32, usize::from),
        },
        VaultLocation::Local(_) => transfer(location, concurrency),
    }
}
