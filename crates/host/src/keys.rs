//! Key management of encrypted vaults (`vault init --encryption`, `vault key ...`): create a
//! vault's key, list its slots, add, change and remove passphrases, export and import the key.
//!
//! # Data flow
//!
//! Everything here works on the vault's config ([`Store::config`]) and, in key-file mode, on
//! the key file this host keeps ([`key_file_path`]); no chunk, map or record is read or
//! written. A change proves the key first: the current passphrase (`BLOCKVAULT_PASSWORD_*`)
//! must open a slot ([`unlock`]); a new passphrase comes from `BLOCKVAULT_NEW_PASSWORD_*` or
//! is typed twice. Changing a passphrase rewraps the master key: the vault's data stays as
//! it is.
//!
//! # Crash semantics
//!
//! Every check comes before the first write. Slots kept in the vault are written to the
//! secondary's config first (a replicated vault's replica carries the same encryption), then
//! to the primary's: an interruption between the two leaves the replica one change ahead,
//! which `vault key import` of an export, or the same command again, puts right. A key file
//! is replaced by a rename. Copies exported earlier are not touched: they keep the slots they
//! had, so a passphrase removed here still opens such a copy. Two changes at once to one vault
//! are not serialized: the later write wins (key changes are rare and made by hand; `vault key
//! list` shows the outcome). Reading a passphrase and stretching it (argon2id) run on tokio's
//! blocking threads.

mod create;
mod files;

use std::path::{Path, PathBuf};

use blockvault_core::{Encryption, Kdf, KeyFile, KeyHome, KeySlot, MasterKey, VaultConfig};
use blockvault_store::{Store, VaultLocation};

pub use self::create::{CreatedKey, NewEncryption};
use crate::{
    Error, Host, PassphraseSource, Result, VaultAbout, canonical, key_file_path, slots, unlock,
};

/// An encrypted vault's key as `vault key list` shows it: no passphrase needed.
#[derive(Clone, Debug)]
pub struct KeysView {
    /// The vault's location, canonical.
    pub location: VaultLocation,
    pub vault_id: String,
    /// As the config holds it (no slots in key-file mode).
    pub encryption: Encryption,
    /// Key-file mode: where this host looks for the key file.
    pub key_file: Option<PathBuf>,
    /// The slots: the config's, or the key file's; the error when the key file cannot be read.
    pub slots: std::result::Result<Vec<KeySlot>, String>,
}

/// What a change of key slots did.
#[derive(Clone, Debug)]
pub struct SlotsChanged {
    pub vault_id: String,
    pub key_id: String,
    pub key: KeyHome,
    /// The slot the current passphrase opened.
    pub opened: String,
    /// Slots made (or restored by an import).
    pub added: Vec<String>,
    /// Slots taken out.
    pub removed: Vec<String>,
    /// The slots now.
    pub slots: Vec<KeySlot>,
    /// What was written: configs by location, the key file by path.
    pub written: Vec<String>,
    /// What the user should know (a passphrase file others can read).
    pub warnings: Vec<String>,
}

/// An encrypted vault's config and its replica's, read and checked, nothing written.
struct Keyed {
    location: VaultLocation,
    primary: Store,
    config: VaultConfig,
    encryption: Encryption,
    /// A replicated vault's secondary store and config.
    replica: Option<(Store, VaultConfig)>,
}

impl Keyed {
    fn about(&self) -> VaultAbout {
        VaultAbout {
            id: self.config.id.clone(),
            location: self.location.to_string(),
        }
    }
}

impl Host {
    /// The key of the encrypted vault at `location`: its slots and where they are kept.
    pub async fn vault_keys(&self, location: &VaultLocation) -> Result<KeysView> {
        let location = canonical(location);
        let store = self.existing_store(&location).await?;
        let config = store.config().await?;
        let encryption = encrypted(&config, &location)?;
        let key_file =
            (encryption.key == KeyHome::KeyFile).then(|| key_file_path(self.state(), &config.id));
        let slots = slots(self.state(), &config, &encryption).map_err(|e| crate::describe(&e));
        Ok(KeysView {
            location,
            vault_id: config.id,
            encryption,
            key_file,
            slots,
        })
    }

    /// Adds a key slot for a new passphrase (`kdf`, else [`Kdf::recommended`]) once the
    /// current one opens the vault.
    pub async fn add_key_slot(
        &self,
        location: &VaultLocation,
        kdf: Option<Kdf>,
    ) -> Result<SlotsChanged> {
        let keyed = self.keyed(location).await?;
        refuse_replica(&keyed)?;
        let mut slots = slots(self.state(), &keyed.config, &keyed.encryption)?;
        let (master, opened) = self.unlock(&keyed, &keyed.encryption).await?;
        let kdf = kdf.unwrap_or_else(Kdf::recommended);
        let (slot, warnings) = new_slot(keyed.about(), master, kdf).await?;
        let added = vec![slot.id.clone()];
        slots.push(slot);
        self.save(&keyed, opened, added, Vec::new(), slots, warnings)
            .await
    }

    /// Replaces the slot the current passphrase opens with one for a new passphrase (`kdf`,
    /// else the old slot's): a rewrap, nothing else changes. The old passphrase no longer
    /// opens the vault (unless another slot holds it too).
    pub async fn change_passphrase(
        &self,
        location: &VaultLocation,
        kdf: Option<Kdf>,
    ) -> Result<SlotsChanged> {
        let keyed = self.keyed(location).await?;
        refuse_replica(&keyed)?;
        let mut slots = slots(self.state(), &keyed.config, &keyed.encryption)?;
        let (master, opened) = self.unlock(&keyed, &keyed.encryption).await?;
        let Some(at) = slots.iter().position(|s| s.id == opened) else {
            return Err(Error::Other(format!("slot {opened} vanished while open")));
        };
        let kdf = kdf.unwrap_or_else(|| slots[at].kdf.clone());
        let (slot, warnings) = new_slot(keyed.about(), master, kdf).await?;
        let added = vec![slot.id.clone()];
        slots[at] = slot;
        self.save(&keyed, opened.clone(), added, vec![opened], slots, warnings)
            .await
    }

    /// Removes slot `id`: refused for an unknown id (not found) and for the last slot (the
    /// key would be lost); the passphrase of some slot must open the vault first.
    pub async fn remove_key_slot(
        &self,
        location: &VaultLocation,
        id: &str,
    ) -> Result<SlotsChanged> {
        let keyed = self.keyed(location).await?;
        refuse_replica(&keyed)?;
        let mut slots = slots(self.state(), &keyed.config, &keyed.encryption)?;
        if !slots.iter().any(|s| s.id == id) {
            let ids: Vec<&str> = slots.iter().map(|s| s.id.as_str()).collect();
            return Err(Error::NotFound(format!(
                "vault {} has no key slot {id} (its slots: {}; `blockvault vault key list`)",
                keyed.config.id,
                ids.join(", ")
            )));
        }
        if slots.len() == 1 {
            return Err(Error::Refused(format!(
                "slot {id} is the last key slot of vault {}: without it no passphrase opens \
                 the vault and its data is lost for good; add another first (`blockvault vault \
                 key add`)",
                keyed.config.id
            )));
        }
        let (_, opened) = self.unlock(&keyed, &keyed.encryption).await?;
        slots.retain(|s| s.id != id);
        self.save(
            &keyed,
            opened,
            Vec::new(),
            vec![id.to_owned()],
            slots,
            Vec::new(),
        )
        .await
    }

    /// The vault's key as a [`KeyFile`] (its slots, still wrapped), once the current
    /// passphrase opens it: proof the export is usable. Written to `to` when given (mode
    /// 0600; refused when a file is there, checked first).
    pub async fn export_key(&self, location: &VaultLocation, to: Option<&Path>) -> Result<KeyFile> {
        if let Some(to) = to {
            files::check_free(to)?;
        }
        let keyed = self.keyed(location).await?;
        let slots = slots(self.state(), &keyed.config, &keyed.encryption)?;
        self.unlock(&keyed, &keyed.encryption).await?;
        let file = KeyFile::new(&keyed.config.id, &keyed.encryption, slots);
        if let Some(to) = to {
            files::write_new(to, &file)?;
        }
        Ok(file)
    }

    /// Imports the key file at `path`: it must hold this vault's key (else
    /// [`WrongKey`](blockvault_core::Error::WrongKey)) and the current passphrase must open
    /// it. Key-file mode: installed where this host looks for it (refused when a file is
    /// there). Kept in the vault: the file's slots the config lacks are added back.
    pub async fn import_key(&self, location: &VaultLocation, path: &Path) -> Result<SlotsChanged> {
        let file = files::read(path)?;
        let keyed = self.keyed(location).await?;
        if file.key_id != keyed.encryption.key_id {
            return Err(Error::Core(blockvault_core::Error::WrongKey {
                expected: keyed.encryption.key_id.clone(),
                actual: file.key_id,
            }));
        }
        let (have, installing) = match keyed.encryption.key {
            KeyHome::Vault => {
                refuse_replica(&keyed)?;
                (keyed.encryption.slots.clone(), None)
            }
            KeyHome::KeyFile => {
                let to = key_file_path(self.state(), &keyed.config.id);
                files::check_free(&to)?;
                (Vec::new(), Some(to))
            }
        };
        // The file's own slots must open with the current passphrase.
        let in_file = Encryption {
            key: KeyHome::Vault,
            slots: file.slots.clone(),
            ..keyed.encryption.clone()
        };
        let (_, opened) = self.unlock(&keyed, &in_file).await?;
        let added: Vec<String> = file
            .slots
            .iter()
            .filter(|s| !have.iter().any(|h| h.id == s.id))
            .map(|s| s.id.clone())
            .collect();
        if let Some(to) = installing {
            let file = KeyFile::new(&keyed.config.id, &keyed.encryption, file.slots);
            files::write_new(&to, &file)?;
            return Ok(SlotsChanged {
                vault_id: keyed.config.id.clone(),
                key_id: keyed.encryption.key_id.clone(),
                key: KeyHome::KeyFile,
                opened,
                added,
                removed: Vec::new(),
                slots: file.slots,
                written: vec![to.display().to_string()],
                warnings: Vec::new(),
            });
        }
        let mut slots = have;
        slots.extend(file.slots.into_iter().filter(|s| added.contains(&s.id)));
        if added.is_empty() {
            return Ok(SlotsChanged {
                vault_id: keyed.config.id.clone(),
                key_id: keyed.encryption.key_id.clone(),
                key: KeyHome::Vault,
                opened,
                added,
                removed: Vec::new(),
                slots,
                written: Vec::new(),
                warnings: Vec::new(),
            });
        }
        self.save(&keyed, opened, added, Vec::new(), slots, Vec::new())
            .await
    }

    /// The encrypted vault at `location` and its replica's config, checked to carry the same
    /// key.
    async fn keyed(&self, location: &VaultLocation) -> Result<Keyed> {
        let location = canonical(location);
        let primary = self.existing_store(&location).await?;
        let config = primary.config().await?;
        let encryption = encrypted(&config, &location)?;
        let replica = match config.redundancy.secondary() {
            None => None,
            Some(secondary) => {
                let unavailable = |reason: String| {
                    Error::Other(format!(
                        "the secondary store {secondary} of this replicated vault cannot be \
                         opened ({reason}); its config carries the key slots too, so nothing \
                         was changed: bring it back (or `blockvault vault replace-secondary`) \
                         and run this again"
                    ))
                };
                let at: VaultLocation = secondary
                    .parse()
                    .map_err(|e: blockvault_store::Error| unavailable(e.to_string()))?;
                let store = self
                    .existing_store(&at)
                    .await
                    .map_err(|e| unavailable(crate::describe(&e)))?;
                let replica = store
                    .config()
                    .await
                    .map_err(|e| unavailable(e.to_string()))?;
                let same = replica
                    .replica_of
                    .as_ref()
                    .is_some_and(|of| of.vault == config.id)
                    && replica.encryption.as_ref().map(|e| &e.key_id) == Some(&encryption.key_id);
                if !same {
                    return Err(unavailable(format!(
                        "it does not hold the replica of vault {} with key {}",
                        config.id, encryption.key_id
                    )));
                }
                Some((store, replica))
            }
        };
        Ok(Keyed {
            location,
            primary,
            config,
            encryption,
            replica,
        })
    }

    /// The master key the current passphrase opens, and the slot it opened; the passphrase
    /// read and the stretch run off the tokio workers.
    async fn unlock(&self, keyed: &Keyed, encryption: &Encryption) -> Result<(MasterKey, String)> {
        let (state, config, encryption) = (
            self.state().clone(),
            keyed.config.clone(),
            encryption.clone(),
        );
        let location = keyed.location.to_string();
        blocking(move || unlock(&state, &config, &encryption, &location)).await
    }

    /// Writes `slots` where the vault keeps them: the key file, or the replica's config then
    /// the primary's.
    async fn save(
        &self,
        keyed: &Keyed,
        opened: String,
        added: Vec<String>,
        removed: Vec<String>,
        slots: Vec<KeySlot>,
        warnings: Vec<String>,
    ) -> Result<SlotsChanged> {
        let mut written = Vec::new();
        match keyed.encryption.key {
            KeyHome::KeyFile => {
                let path = key_file_path(self.state(), &keyed.config.id);
                let file = KeyFile::new(&keyed.config.id, &keyed.encryption, slots.clone());
                files::replace(&path, &file)?;
                written.push(path.display().to_string());
            }
            KeyHome::Vault => {
                let encryption = Encryption {
                    slots: slots.clone(),
                    ..keyed.encryption.clone()
                };
                if let Some((store, replica)) = &keyed.replica {
                    let mut replica = replica.clone();
                    replica.encryption = Some(encryption.clone());
                    store.write_config(&replica).await?;
                    written.push(store.location().to_owned());
                }
                let mut config = keyed.config.clone();
                config.encryption = Some(encryption);
                keyed.primary.write_config(&config).await?;
                written.insert(0, keyed.primary.location().to_owned());
            }
        }
        Ok(SlotsChanged {
            vault_id: keyed.config.id.clone(),
            key_id: keyed.encryption.key_id.clone(),
            key: keyed.encryption.key,
            opened,
            added,
            removed,
            slots,
            written,
            warnings,
        })
    }
}

/// The encryption of `config`; a vault without any is refused.
fn encrypted(config: &VaultConfig, location: &VaultLocation) -> Result<Encryption> {
    config.encryption.clone().ok_or_else(|| {
        Error::Refused(format!(
            "vault {} at {location} is not encrypted (it was created without --encryption), \
             so it has no key to manage",
            config.id
        ))
    })
}

/// Refuses to change the slots kept in a replica's config: they follow the primary's (every
/// change there writes them here too), and a change made here alone would be lost.
fn refuse_replica(keyed: &Keyed) -> Result<()> {
    if let (KeyHome::Vault, Some(of)) = (keyed.encryption.key, &keyed.config.replica_of) {
        return Err(Error::Refused(format!(
            "{} holds the replica of vault {} (primary {}): change the key slots on the vault \
             itself, which writes them to its replica too (or `blockvault vault promote` this \
             replica first, when the primary is lost)",
            keyed.location, of.vault, of.primary
        )));
    }
    Ok(())
}

/// A slot for a new passphrase (`BLOCKVAULT_NEW_PASSWORD_*`, else typed twice) holding
/// `master`, and the warnings of reading it; off the tokio workers.
async fn new_slot(
    about: VaultAbout,
    master: MasterKey,
    kdf: Kdf,
) -> Result<(KeySlot, Vec<String>)> {
    blocking(move || {
        let mut warnings = Vec::new();
        let passphrase = PassphraseSource::new_one()?
            .ok_or(Error::NoNewPassphrase)?
            .read_new(&about, &mut warnings)?;
        let slot = KeySlot::new(&master, passphrase.as_bytes(), kdf, jiff::Timestamp::now())?;
        Ok((slot, warnings))
    })
    .await
}

/// Runs `work` (a passphrase read from a terminal or a command, an argon2id stretch) on
/// tokio's blocking threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Other(format!("key work did not finish: {e}")))?
}
