//! Opening a vault from what the user gave: a location, the state directory, the environment.

use blockvault_core::VaultConfig;
use blockvault_jobs::{JobVault, VaultUnavailable};
use blockvault_repo::Keyring;
use blockvault_store::{S3Options, Store, VaultLocation};
use blockvault_vault::Vault;

use crate::{Error, Result, StateDir, describe};

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
/// the secondary ([`secondary_warning`] says so). An encrypted vault's codec comes from
/// `keyring` (its key unlocked now, once per process): a wrong passphrase or none is an
/// error of kind Locked, before anything is read or written.
pub(crate) async fn vault(
    location: &VaultLocation,
    state: &StateDir,
    keyring: &Keyring,
) -> Result<Vault> {
    probe(location, state).await?;
    let primary = store(location, state)?;
    let config = primary.config().await?;
    let primary = keyed(primary, &config, keyring)?;
    remember(state, location, &config);
    Ok(with_secondary(primary, config, state).await)
}

/// The vault at `location` without its key: what needs no decryption (its config, which VMs
/// it holds, how it is encrypted) reads; a sealed object does not (`vault show`).
pub(crate) async fn vault_without_key(location: &VaultLocation, state: &StateDir) -> Result<Vault> {
    probe(location, state).await?;
    let primary = store(location, state)?;
    let config = primary.config().await?;
    Ok(with_secondary(primary, config, state).await)
}

/// Tells this host's snapshot tier the key of the vault at `location`, so a Snapshot into it
/// knows it without waiting for the vault (see the snapshot crate's `keys.rs`).
pub(crate) fn remember(state: &StateDir, location: &VaultLocation, config: &VaultConfig) {
    blockvault_snapshot::SnapshotTier::new(state.snapshots())
        .remember(&canonical(location).to_string(), config);
}

/// `store`, holding `config`, with the codec of its vault from `keyring` (plain for a plain
/// vault; unlocked now for an encrypted one).
pub(crate) fn keyed(store: Store, config: &VaultConfig, keyring: &Keyring) -> Result<Store> {
    let codec = keyring
        .codec(config, store.location())
        .map_err(blockvault_vault::Error::from)?;
    Ok(store.with_codec(codec))
}

/// The vault a backup job transfers to, opened alongside the job's Snapshot, which must
/// never wait for it (an S3 endpoint that does not answer costs minutes of timeouts). What
/// needs no network is checked now, and a mistake there is an error before anything runs:
/// a directory that is not a vault, S3 settings that are wrong. The rest (an S3 store's
/// requests, a replicated vault's secondary) is opened by the job; when it fails, the
/// job's Transfer fails with the error (the point stays in the snapshot tier).
pub(crate) async fn backup_vault(
    location: &VaultLocation,
    state: &StateDir,
    keyring: &Keyring,
) -> Result<JobVault<'static>> {
    let (state, keyring) = (state.clone(), keyring.clone());
    let named = canonical(location).to_string();
    match location {
        VaultLocation::Local(_) => {
            // A directory's config is read now; a secondary behind a network is not.
            let primary = store(location, &state)?;
            let config = primary.config().await?;
            let primary = keyed(primary, &config, &keyring)?;
            remember(&state, location, &config);
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
                vault(&location, &state, &keyring)
                    .await
                    .map_err(|e| VaultUnavailable {
                        location: named,
                        reason: describe(&e),
                    })
            }))
        }
    }
}

/// The vault whose primary store is `primary`, holding `config`: with its secondary store
/// when it is replicated (see [`vault`]).
async fn with_secondary(primary: Store, config: VaultConfig, state: &StateDir) -> Vault {
    let store = match config.redundancy.secondary() {
        None => primary,
        Some(secondary) => match open_secondary(secondary, &config, state).await {
            Ok(store) => primary.replicated(store),
            Err(reason) => primary.with_secondary_unavailable(secondary, reason),
        },
    };
    Vault::from_config(store, config).with_state_dir(state.root())
}

/// The secondary store of the vault `config` describes, checked: it must hold the config of
/// this vault's replica. The error is why not, in words.
async fn open_secondary(
    secondary: &str,
    config: &VaultConfig,
    state: &StateDir,
) -> std::result::Result<Store, String> {
    // Said without `NotAVault`'s hint to create a vault there: that would make an unrelated
    // vault, not this one's replica (the unavailable error says what to do instead).
    let unhinted = |e: Error| match e {
        Error::Store(e) => match *e {
            blockvault_store::Error::NotAVault { location, reason } => {
                format!("{location}: {reason}")
            }
            other => describe(&other),
        },
        other => describe(&other),
    };
    let location: VaultLocation = secondary
        .parse()
        .map_err(|e: blockvault_store::Error| describe(&e))?;
    probe(&location, state).await.map_err(|e| describe(&e))?;
    let store = store(&location, state).map_err(unhinted)?;
    let replica = store.config().await.map_err(|e| unhinted(e.into()))?;
    match replica.replica_of {
        Some(of) if of.vault == config.id => Ok(store),
        Some(of) => Err(format!(
            "it holds the replica of another vault ({})",
            of.vault
        )),
        None if replica.id == config.id => Err(format!(
            "it was promoted to be vault {} itself (`blockvault vault promote`), so this \
             location is an old primary whose points stopped when it was lost: use the vault \
             at {secondary}",
            config.id
        )),
        None => Err(format!(
            "it holds vault {} of its own, not the replica of vault {}",
            replica.id, config.id
        )),
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
pub(crate) async fn init_vault(
    location: &VaultLocation,
    secondary: Option<&VaultLocation>,
    state: &StateDir,
) -> Result<Vault> {
    let vault = match secondary {
        None => match location {
            VaultLocation::Local(dir) => Vault::init_local(dir).await?,
            VaultLocation::S3 { .. } => {
                probe(location, state).await?;
                Vault::init(store(location, state)?).await?
            }
        },
        Some(secondary) => {
            let primary = new_store(location, state).await?;
            let secondary = new_store(secondary, state).await?;
            Vault::init_replicated(primary, secondary).await?
        }
    };
    remember(state, location, vault.config());
    Ok(vault)
}

/// The store at `location` for a new vault or replica: a directory is created if missing and
/// named by its canonical path (so the config that records it works from any directory).
pub(crate) async fn new_store(location: &VaultLocation, state: &StateDir) -> Result<Store> {
    if let VaultLocation::Local(dir) = location {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Other(format!("cannot create {}: {e}", dir.display())))?;
    }
    let location = canonical(location);
    probe(&location, state).await?;
    store(&location, state)
}

/// The store at an existing `location` (nothing is created), its S3 settings checked.
pub(crate) async fn existing_store(location: &VaultLocation, state: &StateDir) -> Result<Store> {
    probe(location, state).await?;
    store(location, state)
}

/// The store at `location`. S3 settings come from `STATE/s3.toml`, overridden by `AWS_*`.
fn store(location: &VaultLocation, state: &StateDir) -> Result<Store> {
    Ok(match location {
        VaultLocation::Local(dir) => Store::local(dir)?,
        VaultLocation::S3 { bucket, prefix } => Store::s3(bucket, prefix, &s3_options(state)?)?,
    })
}

fn s3_options(state: &StateDir) -> Result<S3Options> {
    Ok(S3Options::load(&state.s3_config())?.overridden_by(S3Options::from_env()?))
}

/// Fails fast when an S3 location is misconfigured (wrong endpoint, credentials, bucket): one
/// request retried for at most [`PROBE_BUDGET_SECS`], before the store with the patient retry
/// policy takes over. A transfer rides out a server restart, and the probe a blip of a second
/// or two (a single retry made a 0.2 s outage fail `gc` and `prune`); a typo should not take
/// minutes to report.
async fn probe(location: &VaultLocation, state: &StateDir) -> Result<()> {
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
