//! How this host unlocks an encrypted vault: the key slots (from the vault's config, or from
//! its key file in key-file mode), then a passphrase from the sources of `passphrase.rs`,
//! tried against every slot. The repositories' [`Keyring`](blockvault_repo::Keyring) calls it
//! once per key and process.

use std::path::PathBuf;

use blockvault_core::{Encryption, KeyFile, KeyHome, KeySlot, MasterKey, StateDir, VaultConfig};
use blockvault_repo::Unlock;

use crate::{Error, PassphraseSource, Result, VaultAbout};

/// The environment variable that names a key file (key-file mode) in place of
/// `STATE/keys/<vault id>.key`.
pub const KEY_FILE_ENV: &str = "BLOCKVAULT_KEY_FILE";

/// This host's [`Unlock`]: passphrases from `BLOCKVAULT_PASSWORD_FILE`,
/// `BLOCKVAULT_PASSWORD_COMMAND` or the terminal; key files from `BLOCKVAULT_KEY_FILE` or
/// the state directory. Warnings (a passphrase file others can read) go to standard error:
/// an unlock happens deep inside whatever opened the vault, with no report to carry them.
#[derive(Debug)]
pub struct HostUnlock {
    state: StateDir,
}

impl HostUnlock {
    pub fn new(state: StateDir) -> HostUnlock {
        HostUnlock { state }
    }
}

impl Unlock for HostUnlock {
    fn unlock(
        &self,
        config: &VaultConfig,
        encryption: &Encryption,
        location: &str,
    ) -> std::result::Result<MasterKey, Box<dyn std::error::Error + Send + Sync>> {
        Ok(unlock(&self.state, config, encryption, location)?.0)
    }
}

/// The master key of the vault `config` describes, and the id of the slot the passphrase
/// opened (for `vault key passwd`, which replaces that slot).
pub fn unlock(
    state: &StateDir,
    config: &VaultConfig,
    encryption: &Encryption,
    location: &str,
) -> Result<(MasterKey, String)> {
    let slots = slots(state, config, encryption)?;
    let about = VaultAbout {
        id: config.id.clone(),
        location: location.to_owned(),
    };
    let source = PassphraseSource::current()?.ok_or(Error::NoPassphrase)?;
    let mut warnings = Vec::new();
    let passphrase = source.read(&about, &mut warnings);
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    let passphrase = passphrase?;
    match encryption.unlock_slot(&slots, passphrase.as_bytes()) {
        Ok((master, slot)) => Ok((master, slot.id.clone())),
        Err(e @ blockvault_core::Error::WrongPassphrase { .. }) => Err(Error::Core(e)),
        // A slot or scheme this build cannot read: the vault's config is at fault.
        Err(e) => Err(Error::Other(format!("vault {}: {e}", config.id))),
    }
}

/// Where this host looks for the key file of vault `vault_id`: `BLOCKVAULT_KEY_FILE`, else
/// `STATE/keys/<vault id>.key`.
pub fn key_file_path(state: &StateDir, vault_id: &str) -> PathBuf {
    match std::env::var_os(KEY_FILE_ENV).filter(|v| !v.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => state.key_file(vault_id),
    }
}

/// The key slots of the vault: its config's, or its key file's (checked to be for this key).
pub fn slots(
    state: &StateDir,
    config: &VaultConfig,
    encryption: &Encryption,
) -> Result<Vec<KeySlot>> {
    match encryption.key {
        KeyHome::Vault => Ok(encryption.slots.clone()),
        KeyHome::KeyFile => {
            let path = key_file_path(state, &config.id);
            let text = std::fs::read_to_string(&path).map_err(|e| Error::KeyFileMissing {
                vault: config.id.clone(),
                path: path.clone(),
                problem: e.to_string(),
            })?;
            let file = KeyFile::decode(&text).map_err(|e| Error::KeyFileMissing {
                vault: config.id.clone(),
                path: path.clone(),
                problem: e.to_string(),
            })?;
            if file.key_id != encryption.key_id {
                return Err(Error::Core(blockvault_core::Error::WrongKey {
                    expected: encryption.key_id.clone(),
                    actual: file.key_id,
                }));
            }
            Ok(file.slots)
        }
    }
}
