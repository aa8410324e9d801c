//! Opening a vault from what the user gave: a location, the state directory, the environment.

use std::path::PathBuf;

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

/// The store at `location`. S3 settings come from `STATE/s3.toml`, overridden by `AWS_*`.
pub fn store(location: &VaultLocation, state: &std::path::Path) -> anyhow::Result<Store> {
    Ok(match location {
        VaultLocation::Local(dir) => Store::local(dir)?,
        VaultLocation::S3 { bucket, prefix } => {
            let options =
                S3Options::load(&state.join("s3.toml"))?.overridden_by(S3Options::from_env());
            Store::s3(bucket, prefix, &options)?
        }
    })
}

/// The vault at `location`, keeping this host's knowledge of it (the chunk index) in `state`.
pub async fn vault(location: &VaultLocation, state: &std::path::Path) -> anyhow::Result<Vault> {
    Ok(Vault::open(store(location, state)?)
        .await?
        .with_state_dir(state))
}

/// Transfer settings: `--concurrency`, else 8 for a directory and 16 for S3 (round trips to an
/// object store hide behind more requests in flight).
pub fn transfer(location: &VaultLocation, concurrency: Option<u16>) -> TransferOptions {
    let default = match location {
        VaultLocation::Local(_) => 8,
        VaultLocation::S3 { .. } => 16,
    };
    TransferOptions {
        concurrency: concurrency.map_or(default, usize::from),
    }
}
