//! The master key of an encrypted vault and the keys derived from it.

use zeroize::{Zeroize, Zeroizing};

use super::aead::random;
use crate::hex::to_hex;

/// The random 256-bit key an encrypted vault is encrypted under. It never leaves memory in
/// clear: a vault stores it wrapped by a passphrase ([`KeySlot`](crate::KeySlot)). Every key
/// the vault uses is derived from it with BLAKE3's key derivation, one context per purpose,
/// so no key serves two purposes. Zeroed on drop; `Debug` shows only its [`key id`](Self::key_id).
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl MasterKey {
    /// A new random master key (the operating system's random source).
    pub fn generate() -> MasterKey {
        MasterKey(Zeroizing::new(random::<32>()))
    }

    pub(crate) fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        MasterKey(Zeroizing::new(bytes))
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A public name of this key: 16 hex digits derived from it (one way), so a vault's config,
    /// its key file and its snapshot tier can say which key they need without revealing it.
    pub fn key_id(&self) -> String {
        to_hex(&self.derive("blockvault 2026-12 key id")[..8])
    }

    /// The key for one purpose (BLAKE3 `derive_key` with `context`).
    pub(crate) fn derive(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, self.as_bytes())
    }

    /// The keys the codec works with.
    pub(crate) fn vault_keys(&self) -> VaultKeys {
        VaultKeys {
            ids: self.derive("blockvault 2026-12 chunk ids"),
            chunks: self.derive("blockvault 2026-12 chunk objects"),
            objects: self.derive("blockvault 2026-12 sealed objects"),
            key_id: self.key_id(),
        }
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.key_id())
    }
}

/// The keys a keyed codec holds, each derived from the master key for one purpose.
pub(crate) struct VaultKeys {
    /// Keys BLAKE3 for chunk ids.
    pub(crate) ids: [u8; 32],
    /// Derives each chunk object's AES-256-GCM key from its salt.
    pub(crate) chunks: [u8; 32],
    /// Derives each sealed object's (maps, records, markers, leases) key from its salt.
    pub(crate) objects: [u8; 32],
    /// The master key's public id.
    pub(crate) key_id: String,
}

impl Drop for VaultKeys {
    fn drop(&mut self) {
        self.ids.zeroize();
        self.chunks.zeroize();
        self.objects.zeroize();
    }
}

impl std::fmt::Debug for VaultKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VaultKeys({})", self.key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_their_purposes_apart() {
        let (a, b) = (MasterKey::generate(), MasterKey::generate());
        assert_ne!(a.as_bytes(), b.as_bytes());
        assert_ne!(a.key_id(), b.key_id());
        assert_eq!(a.key_id().len(), 16);
        let keys = a.vault_keys();
        assert_ne!(keys.ids, keys.chunks);
        assert_ne!(keys.chunks, keys.objects);
        assert_ne!(&keys.ids, a.as_bytes());
        assert!(!format!("{a:?}").contains(&to_hex(a.as_bytes())));
    }
}
