//! How the daemon unlocks encrypted vaults: as [`HostUnlock`] does, but never on a terminal.
//! A daemon has no user to ask (and a prompt would hold every job behind it), so its
//! passphrases come from `BLOCKVAULT_PASSWORD_FILE` or `BLOCKVAULT_PASSWORD_COMMAND` only
//! (under systemd: a credential, see `packaging/systemd/blockvault.service`). A vault it
//! cannot unlock fails its own jobs with the locked error; the others go on.

use std::sync::Arc;

use blockvault_core::{Encryption, MasterKey, StateDir, VaultConfig};
use blockvault_repo::{Keyring, Unlock};

use crate::{Error, Host, HostUnlock, PassphraseSource};

/// [`HostUnlock`] without the prompt.
#[derive(Debug)]
pub struct DaemonUnlock {
    inner: HostUnlock,
}

impl DaemonUnlock {
    pub fn new(state: StateDir) -> DaemonUnlock {
        DaemonUnlock {
            inner: HostUnlock::new(state),
        }
    }
}

impl Unlock for DaemonUnlock {
    fn unlock(
        &self,
        config: &VaultConfig,
        encryption: &Encryption,
        location: &str,
    ) -> Result<MasterKey, Box<dyn std::error::Error + Send + Sync>> {
        match PassphraseSource::current()? {
            None | Some(PassphraseSource::Prompt) => Err(Box::new(Error::NoDaemonPassphrase)),
            Some(_) => self.inner.unlock(config, encryption, location),
        }
    }
}

impl Host {
    /// This host as the daemon uses it: its keys unlocked from a passphrase file or command,
    /// never a prompt ([`DaemonUnlock`]).
    pub fn for_daemon(&self) -> Host {
        let keyring = Keyring::new(Arc::new(DaemonUnlock::new(self.state().clone())));
        self.with_keyring(keyring)
    }
}
