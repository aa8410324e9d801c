//! The keys of the encrypted vaults a process works with: each unlocked once (a passphrase
//! stretch costs a quarter of a second, and a prompt the user's attention), then kept in
//! memory by key id for every repository under it: the vault, its replica, and the snapshot
//! tier of each VM it protects, which share its key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use blockvault_core::{ChunkCodec, Encryption, MasterKey, VaultConfig};

use crate::{Error, Result};

/// How a process unlocks a vault's master key: the host's answer reads a passphrase (a file,
/// a command, the terminal) and, for a key-file vault, the key file. Its errors are returned
/// as they are, inside [`Error::Locked`].
pub trait Unlock: Send + Sync + std::fmt::Debug {
    /// The master key of the vault `config` describes (`config.encryption` is set), which
    /// lives at `location` (for the prompt and messages).
    fn unlock(
        &self,
        config: &VaultConfig,
        encryption: &Encryption,
        location: &str,
    ) -> std::result::Result<MasterKey, Box<dyn std::error::Error + Send + Sync>>;
}

/// The unlocked keys, by key id, and how to unlock the others. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    codecs: Mutex<HashMap<String, ChunkCodec>>,
    unlock: Option<Arc<dyn Unlock>>,
}

impl Keyring {
    /// A keyring that unlocks with `unlock`.
    pub fn new(unlock: Arc<dyn Unlock>) -> Keyring {
        Keyring {
            inner: Arc::new(Inner {
                codecs: Mutex::default(),
                unlock: Some(unlock),
            }),
        }
    }

    /// A keyring that unlocks nothing: plain vaults open, encrypted ones fail as locked unless
    /// their key was [added](Keyring::add).
    pub fn without_unlock() -> Keyring {
        Keyring::default()
    }

    /// Adds an unlocked key (a new vault's, or one a test made); its codec.
    pub fn add(&self, master: &MasterKey) -> ChunkCodec {
        let codec = ChunkCodec::keyed(master);
        self.codecs().insert(master.key_id(), codec.clone());
        codec
    }

    /// The codec of the repository whose config is `config`, at `location`: plain for a plain
    /// vault; for an encrypted one, its key's codec, unlocked now when this keyring does not
    /// hold it yet (one unlock at a time, so two repositories under one key prompt once).
    pub fn codec(&self, config: &VaultConfig, location: &str) -> Result<ChunkCodec> {
        let Some(encryption) = &config.encryption else {
            return Ok(ChunkCodec::plain());
        };
        let mut codecs = self.codecs();
        if let Some(codec) = codecs.get(&encryption.key_id) {
            return Ok(codec.clone());
        }
        let Some(unlock) = &self.inner.unlock else {
            return Err(Error::Locked {
                vault: config.id.clone(),
                source: "no key for it was given to this process".into(),
            });
        };
        let master = unlock
            .unlock(config, encryption, location)
            .map_err(|source| Error::Locked {
                vault: config.id.clone(),
                source,
            })?;
        if master.key_id() != encryption.key_id {
            return Err(Error::Locked {
                vault: config.id.clone(),
                source: Box::new(blockvault_core::Error::WrongKey {
                    expected: encryption.key_id.clone(),
                    actual: master.key_id(),
                }),
            });
        }
        let codec = ChunkCodec::keyed(&master);
        codecs.insert(encryption.key_id.clone(), codec.clone());
        Ok(codec)
    }

    fn codecs(&self) -> std::sync::MutexGuard<'_, HashMap<String, ChunkCodec>> {
        self.inner
            .codecs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
