//! Key slots: the master key wrapped by a passphrase, stretched with argon2id. A vault's
//! config holds its slots (or, in key-file mode, a key file does); any one slot's passphrase
//! opens the vault.

use jiff::Timestamp;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::aead::{TAG_LEN, random};
use super::keys::MasterKey;
use crate::hex::{from_hex, to_hex};
use crate::{Error, Result};

/// How a passphrase is stretched into the key that wraps the master key: argon2id (RFC 9106),
/// its parameters stored in each slot so they can change without breaking old slots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kdf {
    /// Always `argon2id` in this version.
    pub algorithm: String,
    /// Memory per stretch, KiB.
    pub memory_kib: u32,
    /// Passes over that memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Kdf {
    /// Bounds on `memory_kib` a slot may ask for: at least 8 MiB (less makes guessing cheap), at
    /// most 4 GiB (a corrupt or hostile config must not make a host allocate without bound).
    pub const MEMORY_KIB: std::ops::RangeInclusive<u32> = 8 * 1024..=4 * 1024 * 1024;
    /// Bounds on `iterations`.
    pub const ITERATIONS: std::ops::RangeInclusive<u32> = 1..=64;

    /// The default: 64 MiB and 3 passes, one lane (RFC 9106's second recommendation with one
    /// lane, since the stretch runs on one thread): about a quarter of a second on a server
    /// core, each time a vault is opened, and each guess costs an attacker the same.
    pub fn recommended() -> Kdf {
        Kdf::argon2id(64 * 1024, 3).expect("within bounds")
    }

    /// argon2id with `memory_kib` KiB and `iterations` passes, one lane; a usage error outside
    /// [`Kdf::MEMORY_KIB`] and [`Kdf::ITERATIONS`].
    pub fn argon2id(memory_kib: u32, iterations: u32) -> Result<Kdf> {
        let kdf = Kdf {
            algorithm: "argon2id".to_owned(),
            memory_kib,
            iterations,
            parallelism: 1,
        };
        kdf.check()?;
        Ok(kdf)
    }

    fn check(&self) -> Result<()> {
        let bad = |reason: String| {
            Err(Error::Malformed {
                what: "key slot",
                reason,
            })
        };
        if self.algorithm != "argon2id" {
            return bad(format!("unknown key derivation {:?}", self.algorithm));
        }
        if !Self::MEMORY_KIB.contains(&self.memory_kib) {
            return bad(format!(
                "argon2id memory {} KiB is outside {}..={} KiB",
                self.memory_kib,
                Self::MEMORY_KIB.start(),
                Self::MEMORY_KIB.end()
            ));
        }
        if !Self::ITERATIONS.contains(&self.iterations) {
            return bad(format!(
                "argon2id iterations {} is outside {}..={}",
                self.iterations,
                Self::ITERATIONS.start(),
                Self::ITERATIONS.end()
            ));
        }
        if !(1..=16).contains(&self.parallelism) {
            return bad(format!(
                "argon2id parallelism {} is outside 1..=16",
                self.parallelism
            ));
        }
        Ok(())
    }

    /// The 32-byte key `passphrase` stretches to with `salt`.
    fn stretch(&self, passphrase: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
        self.check()?;
        let params =
            argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
                .map_err(|e| Error::Malformed {
                    what: "key slot",
                    reason: format!("argon2id parameters: {e}"),
                })?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase, salt, out.as_mut())
            .map_err(|e| Error::Malformed {
                what: "key slot",
                reason: format!("argon2id: {e}"),
            })?;
        Ok(out)
    }
}

/// The master key wrapped by one passphrase: AES-256-GCM under the argon2id stretch of the
/// passphrase, the master key's id and the slot's id as associated data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySlot {
    /// Eight hex digits, to name the slot (`vault key remove`).
    pub id: String,
    pub created: Timestamp,
    pub kdf: Kdf,
    /// The argon2id salt, hex (32 bytes).
    pub salt: String,
    /// Nonce, wrapped master key and tag, hex (12 + 32 + 16 bytes).
    pub wrapped: String,
}

impl KeySlot {
    /// A new slot holding `master` under `passphrase`.
    pub fn new(master: &MasterKey, passphrase: &[u8], kdf: Kdf, now: Timestamp) -> Result<KeySlot> {
        if passphrase.is_empty() {
            return Err(Error::Malformed {
                what: "passphrase",
                reason: "it is empty".to_owned(),
            });
        }
        let id = to_hex(&random::<4>());
        let salt = random::<32>();
        let kek = kdf.stretch(passphrase, &salt)?;
        let nonce = random::<NONCE_LEN>();
        let mut wrapped = master.as_bytes().to_vec();
        wrap_key(&kek)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(slot_aad(&master.key_id(), &id)),
                &mut wrapped,
            )
            .expect("32 bytes seal");
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&wrapped);
        Ok(KeySlot {
            id,
            created: now,
            kdf,
            salt: to_hex(&salt),
            wrapped: to_hex(&stored),
        })
    }

    /// The master key whose id is `key_id`, when `passphrase` is this slot's; `None` when it is
    /// not (or the slot was altered: the two cannot be told apart).
    pub fn open(&self, passphrase: &[u8], key_id: &str) -> Result<Option<MasterKey>> {
        let malformed = |reason: &str| Error::Malformed {
            what: "key slot",
            reason: format!("slot {}: {reason}", self.id),
        };
        let salt = from_hex(&self.salt).ok_or_else(|| malformed("its salt is not hex"))?;
        let stored = from_hex(&self.wrapped).ok_or_else(|| malformed("its key is not hex"))?;
        if stored.len() != NONCE_LEN + 32 + TAG_LEN || salt.len() < 16 {
            return Err(malformed("its key or salt has the wrong length"));
        }
        let kek = self.kdf.stretch(passphrase, &salt)?;
        let (nonce, sealed) = stored.split_at(NONCE_LEN);
        let mut nonce_bytes = [0u8; NONCE_LEN];
        nonce_bytes.copy_from_slice(nonce);
        let mut buf = Zeroizing::new(sealed.to_vec());
        let Ok(plain) = wrap_key(&kek).open_in_place(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(slot_aad(key_id, &self.id)),
            buf.as_mut_slice(),
        ) else {
            return Ok(None);
        };
        let mut key = [0u8; 32];
        key.copy_from_slice(plain);
        let master = MasterKey::from_bytes(key);
        // The id is in the associated data, so a key that opens is the key named.
        debug_assert_eq!(master.key_id(), key_id);
        Ok(Some(master))
    }
}

fn wrap_key(kek: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, kek).expect("a 32-byte key"))
}

fn slot_aad(key_id: &str, slot: &str) -> Vec<u8> {
    format!("blockvault key slot 1\0{key_id}\0{slot}").into_bytes()
}

/// Where an encrypted vault's key slots are kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyHome {
    /// In the vault's config (restic's and borg's "repokey"): the passphrase alone opens it.
    #[default]
    Vault,
    /// In a key file kept outside the vault (borg's "keyfile"): the store holds nothing that a
    /// passphrase could open, and a host needs the file and the passphrase.
    KeyFile,
}

impl std::fmt::Display for KeyHome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyHome::Vault => "in the vault (repokey)",
            KeyHome::KeyFile => "in a key file kept outside the vault",
        })
    }
}

/// How a vault is encrypted: in its config (and in the config of its snapshot tier and its
/// replica, which use the same key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    /// The codec: `aes-256-gcm` (keyed BLAKE3 chunk ids, AES-256-GCM per object).
    pub scheme: String,
    /// The master key's public id ([`MasterKey::key_id`]).
    pub key_id: String,
    /// Where the slots are.
    #[serde(default)]
    pub key: KeyHome,
    /// The slots (empty in key-file mode: they are in the key file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slots: Vec<KeySlot>,
}

impl Encryption {
    /// The one scheme this build writes.
    pub const SCHEME: &'static str = "aes-256-gcm";

    /// The encryption of a new vault: `master` behind one slot for `passphrase`.
    pub fn new(
        master: &MasterKey,
        passphrase: &[u8],
        kdf: Kdf,
        key: KeyHome,
        now: Timestamp,
    ) -> Result<Encryption> {
        Ok(Encryption {
            scheme: Self::SCHEME.to_owned(),
            key_id: master.key_id(),
            key,
            slots: vec![KeySlot::new(master, passphrase, kdf, now)?],
        })
    }

    /// The master key `passphrase` opens in one of `slots` (the config's, or a key file's).
    /// [`Error::WrongPassphrase`] when it opens none.
    pub fn unlock(&self, slots: &[KeySlot], passphrase: &[u8]) -> Result<MasterKey> {
        Ok(self.unlock_slot(slots, passphrase)?.0)
    }

    /// [`Encryption::unlock`], also naming the slot that opened (`vault key passwd` replaces
    /// it).
    pub fn unlock_slot<'s>(
        &self,
        slots: &'s [KeySlot],
        passphrase: &[u8],
    ) -> Result<(MasterKey, &'s KeySlot)> {
        if self.scheme != Self::SCHEME {
            return Err(Error::Malformed {
                what: "vault config",
                reason: format!(
                    "encryption scheme {:?} is not one this build reads ({})",
                    self.scheme,
                    Self::SCHEME
                ),
            });
        }
        for slot in slots {
            if let Some(master) = slot.open(passphrase, &self.key_id)? {
                return Ok((master, slot));
            }
        }
        Err(Error::WrongPassphrase { slots: slots.len() })
    }
}

/// A vault's key exported to a file (`vault key export`), or the key of a key-file vault: the
/// slots, still wrapped by their passphrases, and which vault and key they are for. Plain JSON,
/// so it can be printed and kept on paper.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// The format: 1.
    #[serde(rename = "blockvault-key")]
    pub format: u32,
    /// The vault's id.
    pub vault: String,
    pub key_id: String,
    pub slots: Vec<KeySlot>,
}

impl KeyFile {
    pub fn new(vault: &str, encryption: &Encryption, slots: Vec<KeySlot>) -> KeyFile {
        KeyFile {
            format: 1,
            vault: vault.to_owned(),
            key_id: encryption.key_id.clone(),
            slots,
        }
    }

    pub fn encode(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    pub fn decode(text: &str) -> Result<KeyFile> {
        let file: KeyFile = serde_json::from_str(text).map_err(|e| Error::Malformed {
            what: "key file",
            reason: e.to_string(),
        })?;
        if file.format != 1 {
            return Err(Error::UnsupportedVersion {
                what: "key file",
                version: u16::try_from(file.format).unwrap_or(u16::MAX),
                supported: 1,
            });
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> Kdf {
        Kdf::argon2id(8 * 1024, 1).expect("kdf")
    }

    #[test]
    fn the_right_passphrase_opens_its_slot_and_a_wrong_one_none() {
        let master = MasterKey::generate();
        let enc = Encryption::new(
            &master,
            b"correct horse",
            quick(),
            KeyHome::Vault,
            Timestamp::UNIX_EPOCH,
        )
        .expect("new");
        let opened = enc.unlock(&enc.slots, b"correct horse").expect("unlock");
        assert_eq!(opened.as_bytes(), master.as_bytes());
        let err = enc
            .unlock(&enc.slots, b"correct horse ")
            .expect_err("wrong");
        assert!(matches!(err, Error::WrongPassphrase { slots: 1 }), "{err}");
        assert_eq!(err.kind(), crate::ErrorKind::Locked);
    }

    #[test]
    fn any_slot_opens_and_each_holds_the_same_key() {
        let master = MasterKey::generate();
        let mut enc = Encryption::new(
            &master,
            b"one",
            quick(),
            KeyHome::Vault,
            Timestamp::UNIX_EPOCH,
        )
        .expect("new");
        enc.slots
            .push(KeySlot::new(&master, b"two", quick(), Timestamp::UNIX_EPOCH).expect("slot"));
        for pass in [&b"one"[..], b"two"] {
            assert_eq!(
                enc.unlock(&enc.slots, pass).expect("unlock").key_id(),
                enc.key_id
            );
        }
        // The passphrase is nowhere in the slots, nor the key.
        let text = serde_json::to_string(&enc).expect("json");
        assert!(!text.contains(&to_hex(master.as_bytes())));
    }

    #[test]
    fn an_altered_slot_or_one_moved_to_another_key_opens_nothing() {
        let master = MasterKey::generate();
        let slot = KeySlot::new(&master, b"pw", quick(), Timestamp::UNIX_EPOCH).expect("slot");
        let mut bad = slot.clone();
        let mut wrapped = from_hex(&bad.wrapped).expect("hex");
        wrapped[20] ^= 1;
        bad.wrapped = to_hex(&wrapped);
        assert!(bad.open(b"pw", &master.key_id()).expect("opens").is_none());
        assert!(
            slot.open(b"pw", "0000000000000000")
                .expect("opens")
                .is_none()
        );
        let mut renamed = slot.clone();
        renamed.id = "ffffffff".to_owned();
        assert!(
            renamed
                .open(b"pw", &master.key_id())
                .expect("opens")
                .is_none()
        );
    }

    #[test]
    fn out_of_range_parameters_are_refused_before_any_stretch() {
        assert!(Kdf::argon2id(1024, 1).is_err());
        assert!(Kdf::argon2id(8 * 1024, 0).is_err());
        assert!(Kdf::argon2id(u32::MAX, 1).is_err());
        let master = MasterKey::generate();
        let mut slot = KeySlot::new(&master, b"pw", quick(), Timestamp::UNIX_EPOCH).expect("slot");
        slot.kdf.memory_kib = u32::MAX;
        assert!(slot.open(b"pw", &master.key_id()).is_err());
        assert!(KeySlot::new(&master, b"", quick(), Timestamp::UNIX_EPOCH).is_err());
    }

    #[test]
    fn a_key_file_round_trips_and_refuses_other_formats() {
        let master = MasterKey::generate();
        let enc = Encryption::new(
            &master,
            b"pw",
            quick(),
            KeyHome::KeyFile,
            Timestamp::UNIX_EPOCH,
        )
        .expect("new");
        let file = KeyFile::new("0123456789abcdef", &enc, enc.slots.clone());
        let back = KeyFile::decode(&file.encode()).expect("decode");
        assert_eq!(back, file);
        assert!(
            KeyFile::decode(
                &file
                    .encode()
                    .replace("\"blockvault-key\": 1", "\"blockvault-key\": 2")
            )
            .is_err()
        );
        assert!(KeyFile::decode("not json").is_err());
    }
}
