//! `vault init --encryption`: a new vault whose config carries a new random master key behind
//! one key slot, kept in the config (repokey) or in a key file on this host.
//!
//! Everything that can be checked is checked before anything is written: the arguments, the
//! stores (empty), the key file's path (free), the passphrase. Then the key file (key-file
//! mode), then the configs (the secondary's first, as for every replicated vault). When a
//! config cannot be written the key file is removed again, and directories this made are
//! removed when they are still empty: a failed init leaves nothing behind.

use std::path::PathBuf;

use blockvault_core::{Encryption, Kdf, KeyFile, KeyHome, MasterKey, Redundancy};
use blockvault_jobs::Policy;
use blockvault_repo::Repository;
use blockvault_store::VaultLocation;
use blockvault_vault::Vault;

use super::{blocking, files};
use crate::{
    Error, Host, Passphrase, PassphraseSource, RedundancyKind, Result, VaultAbout, canonical,
    key_file_path, secondary_for,
};

/// How a new vault is encrypted (`vault init --encryption`).
#[derive(Clone, Debug)]
pub struct NewEncryption {
    /// Where its key slots are kept.
    pub key: KeyHome,
    /// How its first passphrase is stretched.
    pub kdf: Kdf,
    /// Key-file mode only: where the key file goes. Default: where this host looks for it
    /// ([`key_file_path`]: `BLOCKVAULT_KEY_FILE`, else `STATE/keys/<vault id>.key`).
    pub key_file: Option<PathBuf>,
}

/// The key of a vault just created.
#[derive(Clone, Debug)]
pub struct CreatedKey {
    /// As the vault's config holds it (no slots in key-file mode).
    pub encryption: Encryption,
    /// Key-file mode: where the key file was written.
    pub key_file: Option<PathBuf>,
    /// Whether this host finds that key file by itself; when not, `BLOCKVAULT_KEY_FILE`
    /// must name it.
    pub key_file_found: bool,
    /// The id of the one key slot.
    pub slot: String,
    /// What the user should know (a passphrase file others can read).
    pub warnings: Vec<String>,
}

impl Host {
    /// A new encrypted vault at `location` (see [`Host::create_vault`] for the redundancy):
    /// a random master key behind one slot for the passphrase of
    /// `BLOCKVAULT_PASSWORD_FILE`/`_COMMAND` (so one setting serves init and every later
    /// command) or typed twice on the terminal. No source is a usage error.
    pub async fn create_encrypted_vault(
        &self,
        location: &VaultLocation,
        redundancy: Option<RedundancyKind>,
        secondary: Option<VaultLocation>,
        new: &NewEncryption,
    ) -> Result<(Vault, CreatedKey)> {
        if new.key == KeyHome::Vault && new.key_file.is_some() {
            return Err(Error::Usage(
                "--key-file is for --encryption key-file (a vault that keeps its key in the \
                 vault has no key file; `vault key export` writes a copy)"
                    .into(),
            ));
        }
        let secondary = secondary_for(location, redundancy, secondary)?;
        if let Some(path) = &new.key_file {
            files::check_free(path)?;
        }
        let made: Vec<PathBuf> = [Some(location), secondary.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|l| match l {
                VaultLocation::Local(dir) if std::fs::symlink_metadata(dir).is_err() => {
                    Some(dir.clone())
                }
                _ => None,
            })
            .collect();
        let created = self.init_encrypted(location, secondary.as_ref(), new).await;
        if created.is_err() {
            for dir in &made {
                let _ = std::fs::remove_dir(dir);
            }
        }
        let created = created?;
        self.catalog()
            .await?
            .call(|c| c.ensure_policy(&Policy::default_policy(), jiff::Timestamp::now()))
            .await?;
        Ok(created)
    }

    async fn init_encrypted(
        &self,
        location: &VaultLocation,
        secondary: Option<&VaultLocation>,
        new: &NewEncryption,
    ) -> Result<(Vault, CreatedKey)> {
        let primary = self.new_store(location).await?;
        let secondary = match secondary {
            Some(s) => Some(self.new_store(s).await?),
            None => None,
        };
        primary.check_empty().await?;
        if let Some(s) = &secondary {
            s.check_empty().await?;
        }
        let redundancy = match &secondary {
            None => Redundancy::Single,
            Some(s) => Redundancy::Replicated {
                secondary: s.location().to_owned(),
            },
        };
        let mut config = Repository::new_config(&primary, redundancy);
        let default_path = key_file_path(self.state(), &config.id);
        let key_file = match new.key {
            KeyHome::Vault => None,
            KeyHome::KeyFile => Some(new.key_file.clone().unwrap_or(default_path.clone())),
        };
        if let Some(path) = &key_file {
            files::check_free(path)?;
        }
        let about = VaultAbout {
            id: config.id.clone(),
            location: canonical(location).to_string(),
        };
        let (key, kdf) = (new.key, new.kdf.clone());
        let (mut encryption, warnings, master) = blocking(move || {
            let mut warnings = Vec::new();
            let passphrase = first_passphrase(&about, &mut warnings)?;
            let master = MasterKey::generate();
            let encryption = Encryption::new(
                &master,
                passphrase.as_bytes(),
                kdf,
                key,
                jiff::Timestamp::now(),
            )?;
            Ok((encryption, warnings, master))
        })
        .await?;
        let slot = encryption.slots[0].id.clone();
        if let Some(path) = &key_file {
            let slots = std::mem::take(&mut encryption.slots);
            files::write_new(path, &KeyFile::new(&config.id, &encryption, slots))?;
        }
        config.encryption = Some(encryption.clone());
        let written = match secondary {
            None => primary.init(&config).await.map(|()| primary),
            Some(s) => primary.init_replicated(s, &config).await,
        };
        let store = match written {
            Ok(store) => store,
            Err(e) => {
                if let Some(path) = &key_file {
                    let _ = std::fs::remove_file(path);
                }
                return Err(e.into());
            }
        };
        // The new vault's store seals with its key from now on, this process holds the key
        // (no second unlock), and the snapshot tier learns it for the first backup.
        let store = store.with_codec(self.keyring().add(&master));
        crate::vaults::remember(self.state(), location, &config);
        let key_file_found = key_file.as_ref().is_none_or(|p| *p == default_path);
        Ok((
            Vault::from_config(store, config),
            CreatedKey {
                encryption,
                key_file,
                key_file_found,
                slot,
                warnings,
            },
        ))
    }
}

/// The first passphrase of a new vault: from the file or command that will open it later,
/// else typed twice.
fn first_passphrase(about: &VaultAbout, warnings: &mut Vec<String>) -> Result<Passphrase> {
    let source = PassphraseSource::current()?.ok_or_else(|| {
        Error::Usage(
            "an encrypted vault needs a passphrase and none was given: set \
             BLOCKVAULT_PASSWORD_FILE (a file holding it) or BLOCKVAULT_PASSWORD_COMMAND (a \
             command printing it, such as a secret manager's), which then open the vault for \
             every later command too, or run on a terminal to type it"
                .into(),
        )
    })?;
    match source {
        PassphraseSource::Prompt => source.read_new(about, warnings),
        _ => source.read(about, warnings),
    }
}
