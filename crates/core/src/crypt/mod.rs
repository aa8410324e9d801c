//! Client-side encryption: the keys of an encrypted vault and the two sealed forms its objects
//! take.
//!
//! # Keys
//!
//! A vault's [`MasterKey`] is 256 random bits, made once at `vault init --encryption` and
//! never stored in clear: each [`KeySlot`] holds it wrapped (AES-256-GCM) under a passphrase
//! stretched by argon2id ([`Kdf`], parameters stored per slot). The slots live in the vault's
//! config ([`KeyHome::Vault`], "repokey") or in a [`KeyFile`] kept outside the vault
//! ([`KeyHome::KeyFile`]). Changing a passphrase rewraps; nothing else is re-encrypted. A lost
//! master key (every passphrase forgotten, or the key file lost in key-file mode) cannot be
//! recovered by anyone.
//!
//! From the master key, BLAKE3's key derivation makes one key per purpose: chunk ids (keyed
//! BLAKE3, so the store cannot test whether a chunk holds content it can guess, and two vaults
//! give the same block different ids), chunk objects, and sealed objects.
//!
//! # Chunks
//!
//! A chunk object keeps its 16-byte header (magic, version, codec, scheme 1, length), then a
//! random 24-byte salt, then the compressed payload sealed with AES-256-GCM and its tag. The
//! object's AES key is BLAKE3 keyed by the chunk key over the salt, so each key seals exactly
//! one object and the nonce can be fixed: there is no nonce to repeat and no limit of 2^32
//! messages per key, as random 96-bit nonces under one key would impose (a large vault writes
//! billions of chunks). The associated data is the header, the salt and the chunk's id: an
//! object moved to another id, or with any byte changed, fails to open, and a read fails it
//! as damage exactly as a bad hash is. The decoded block is then hashed with the keyed id as
//! before. Compression comes before encryption; the length of each object shows roughly how
//! well its block compressed, as it does in restic and borg.
//!
//! # Sealed objects
//!
//! Everything else that carries VM content or names is sealed whole ([`SealedObject`], magic
//! `BVSEALED`): block maps, point records, soft-delete markers, protection records, leases,
//! GC epochs and candidates. The same derive-per-object scheme, in segments of 1 MiB so that
//! a block map is sealed and opened as it streams; the object's key path is associated data,
//! so a record cannot be moved to another VM's or point's key. The vault config is not
//! sealed: it holds only the vault's id, block size, redundancy, the scheme and the key slots
//! (wrapped).
//!
//! # What the store still sees
//!
//! Object keys are as in a plain vault: VM names, disk names and point ids (which carry the
//! point's time) appear in key paths, chunk keys are keyed ids that reveal nothing. The store
//! also sees every object's size and time, how many chunks each backup adds, and which chunks
//! a restore reads. Name VMs and disks neutrally if their names are secret.
//!
//! # Randomness
//!
//! Master keys, salts and nonces come from the operating system (`getrandom`) through `ring`,
//! whose AES-256-GCM uses AES-NI and carry-less multiplication where the CPU has them.

pub(crate) mod aead;
mod keys;
mod seal;
mod slots;

pub use keys::MasterKey;
pub(crate) use keys::VaultKeys;
pub use seal::{ObjectOpener, ObjectSealer, SealedObject};
pub use slots::{Encryption, Kdf, KeyFile, KeyHome, KeySlot};

#[cfg(test)]
mod tests;
