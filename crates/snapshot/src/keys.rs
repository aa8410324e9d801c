//! Which key each VM's snapshot tier holds, and which key it must hold.
//!
//! The Transfer copies a point from the tier into the vault as bytes, so the tier of a VM is
//! encoded with its vault's codec: a VM's tier repository is created with the vault's
//! `encryption` in its config (the wrapped key slots, or in key-file mode the `Encryption` as
//! it is) and the vault's id, so it opens through the process's
//! [`Keyring`](blockvault_repo::Keyring) like the vault (the same passphrase, the same key
//! file), and an instant restore from it needs the passphrase but not the vault.
//!
//! A Snapshot must never wait for an S3 vault, so the tier learns the vault's encryption from
//! what this host saw of it last: a memo per vault location, `<root>/.vaults/<hash>.json`
//! (location, vault id, encryption: no secret), written each time the host opens the vault.
//! A first backup of a VM to a vault this host never opened before cannot know it: its tier
//! is made plain, and when the vault then turns out to be encrypted the Transfer refuses to
//! copy (the point stays in the tier) and the next backup starts the tier afresh.
//!
//! A tier under another key than its vault's (the vault was made again with a new key, the VM
//! moved to another vault, a plain tier for an encrypted vault or the reverse) cannot feed it:
//! [`SnapshotTier::open_for`] starts it fresh, dropping its points (their vault copies, if
//! transferred, stay), and says which it dropped. A vault whose passphrases changed (same key,
//! other slots) has its slots copied into the tier, so the tier opens with the new passphrase.

use std::path::{Path, PathBuf};

use blockvault_core::{Encryption, VaultConfig};
use blockvault_repo::Repository;
use blockvault_store::Store;
use serde::{Deserialize, Serialize};

use crate::{Error, Result, SnapshotTier};

/// The directory of the memos, beside the VMs' directories (not a VM name: it starts with a
/// dot).
const MEMOS: &str = ".vaults";

/// What this host saw of the vault at a location.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Memo {
    location: String,
    vault: String,
    #[serde(default)]
    encryption: Option<Encryption>,
}

/// The encryption a VM's tier must have, when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierKey {
    /// The id of the vault the tier feeds.
    pub vault: String,
    /// Its encryption (`None`: plain).
    pub encryption: Option<Encryption>,
}

impl TierKey {
    /// The key of the vault `config` describes.
    pub fn of(config: &VaultConfig) -> TierKey {
        TierKey {
            vault: config.id.clone(),
            encryption: config.encryption.clone(),
        }
    }

    fn key_id(&self) -> Option<&str> {
        self.encryption.as_ref().map(|e| e.key_id.as_str())
    }
}

/// The outcome of [`SnapshotTier::open_for`].
#[derive(Debug)]
pub struct OpenedTier {
    pub repository: Repository,
    /// Set when the tier was under another key and started fresh: what it was under.
    pub restarted_from: Option<String>,
}

impl SnapshotTier {
    /// Remembers what this host saw of the vault at `location` (see the module docs); a
    /// memo that cannot be written costs a first backup its tier's key, never an error.
    pub fn remember(&self, location: &str, config: &VaultConfig) {
        let memo = Memo {
            location: location.to_owned(),
            vault: config.id.clone(),
            encryption: config.encryption.clone(),
        };
        let path = self.memo_path(location);
        if read_memo(&path).as_ref() == Some(&memo) {
            return;
        }
        if let Ok(text) = serde_json::to_vec_pretty(&memo) {
            let _ = std::fs::create_dir_all(self.root().join(MEMOS));
            let staged = path.with_extension("json.new");
            if std::fs::write(&staged, text).is_ok() {
                let _ = std::fs::rename(&staged, &path);
            }
        }
    }

    /// The key of the vault at `location` as this host last saw it.
    pub fn remembered(&self, location: &str) -> Option<TierKey> {
        let memo = read_memo(&self.memo_path(location))?;
        (memo.location == location).then_some(TierKey {
            vault: memo.vault,
            encryption: memo.encryption,
        })
    }

    fn memo_path(&self, location: &str) -> PathBuf {
        let hash = blake3::hash(location.as_bytes()).to_hex();
        self.root()
            .join(MEMOS)
            .join(format!("{}.json", &hash[..16]))
    }

    /// `vm`'s snapshots, ready for a Snapshot into a vault whose key is `key` (unknown:
    /// whatever the tier holds, plain when it is new). A tier under another key is started
    /// fresh (see the module docs). Call with the VM's snapshot lock held.
    pub async fn open_for(
        &self,
        vm: &blockvault_core::VmName,
        key: Option<&TierKey>,
    ) -> Result<OpenedTier> {
        let dir = self.dir(vm);
        let held = config_of(&dir).await;
        if let (Some(config), Some(key)) = (&held, key) {
            let held_key = config.encryption.as_ref().map(|e| e.key_id.as_str());
            if held_key != key.key_id() {
                // The new key unlocks first: a tier is never dropped for a key that then
                // does not open.
                let probe = VaultConfig {
                    id: key.vault.clone(),
                    encryption: key.encryption.clone(),
                    ..config.clone()
                };
                self.keyring().codec(&probe, &dir.display().to_string())?;
                std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                let repository = init(self, &dir, Some(key)).await?;
                let was = match held_key {
                    Some(id) => format!("key {id}"),
                    None => "no key (plain)".to_owned(),
                };
                return Ok(OpenedTier {
                    repository,
                    restarted_from: Some(was),
                });
            }
            if config.encryption != key.encryption {
                // The same key with other slots: the vault's passphrases changed.
                let updated = VaultConfig {
                    encryption: key.encryption.clone(),
                    ..config.clone()
                };
                write_spare(&dir, &updated)?;
                Store::local(&dir)?.write_config(&updated).await?;
            }
        }
        if let Some(repository) = self.open(vm).await? {
            return Ok(OpenedTier {
                repository,
                restarted_from: None,
            });
        }
        // A directory without a config is what an interrupted first use leaves: start over.
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        Ok(OpenedTier {
            repository: init(self, &dir, key).await?,
            restarted_from: None,
        })
    }

    /// `repository` (a tier's) with its codec from this tier's keyring.
    pub(crate) fn keyed(&self, repository: Repository) -> Result<Repository> {
        let codec = self
            .keyring()
            .codec(repository.config(), repository.store().location())?;
        let store = repository.store().clone().with_codec(codec);
        let config = repository.config().clone();
        Ok(repository.with_store(store, config))
    }
}

/// The config of the tier in `dir`, if it reads.
async fn config_of(dir: &Path) -> Option<VaultConfig> {
    Store::local(dir).ok()?.config().await.ok()
}

/// A new tier repository in `dir` under `key`: an encrypted vault's tier takes its id and
/// encryption (so it unlocks as the vault does), a plain one a fresh id. The key is unlocked
/// before anything is written: a tier that cannot be opened is not made.
async fn init(tier: &SnapshotTier, dir: &Path, key: Option<&TierKey>) -> Result<Repository> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let store = Store::local(dir)?;
    let mut config = Repository::new_config(&store, blockvault_core::Redundancy::Single);
    if let Some(TierKey {
        vault,
        encryption: Some(encryption),
    }) = key
    {
        config.id = vault.clone();
        config.encryption = Some(encryption.clone());
    }
    let codec = match tier.keyring().codec(&config, store.location()) {
        Ok(codec) => codec,
        Err(e) => {
            // Nothing of the tier stays: the directory was just made, empty.
            let _ = std::fs::remove_dir(dir);
            return Err(e.into());
        }
    };
    // The spare first: a config without it would be rebuilt plain if it were damaged.
    write_spare(dir, &config)?;
    store.init(&config).await?;
    Ok(Repository::from_config(store.with_codec(codec), config))
}

/// The spare copy of the key of `vm`'s tier, beside the memos: where heal.rs finds the
/// encryption of a tier whose config it rebuilds (the config itself is what was damaged).
fn spare_path(root: &Path, vm: &str) -> PathBuf {
    root.join(MEMOS).join(format!("tier-{vm}.json"))
}

/// Writes the spare copy of the key of the tier in `dir` (see [`spare_for`]).
fn write_spare(dir: &Path, config: &VaultConfig) -> Result<()> {
    let (Some(root), Some(vm)) = (dir.parent(), dir.file_name()) else {
        return Ok(());
    };
    let memo = Memo {
        location: dir.display().to_string(),
        vault: config.id.clone(),
        encryption: config.encryption.clone(),
    };
    let path = spare_path(root, &vm.to_string_lossy());
    let memos = root.join(MEMOS);
    std::fs::create_dir_all(&memos).map_err(|e| Error::io(&memos, e))?;
    let text = serde_json::to_vec_pretty(&memo).unwrap_or_default();
    let staged = path.with_extension("json.new");
    std::fs::write(&staged, text).map_err(|e| Error::io(&staged, e))?;
    std::fs::rename(&staged, &path).map_err(|e| Error::io(&path, e))
}

/// The key of the tier in `dir` as its spare copy has it (see [`write_spare`]): what a
/// rebuilt config keeps.
pub(crate) fn spare_for(dir: &Path) -> Option<TierKey> {
    let (root, vm) = (dir.parent()?, dir.file_name()?);
    let memo = read_memo(&spare_path(root, &vm.to_string_lossy()))?;
    Some(TierKey {
        vault: memo.vault,
        encryption: memo.encryption,
    })
}

fn read_memo(path: &Path) -> Option<Memo> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use blockvault_core::{Kdf, KeyHome, MasterKey, VmName};
    use blockvault_repo::Keyring;

    use super::*;

    fn key(keyring: &Keyring, vault: &str) -> TierKey {
        let master = MasterKey::generate();
        keyring.add(&master);
        let kdf = Kdf::argon2id(8 * 1024, 1).expect("kdf");
        let encryption = Encryption::new(
            &master,
            b"test passphrase",
            kdf,
            KeyHome::Vault,
            jiff::Timestamp::now(),
        )
        .expect("encryption");
        TierKey {
            vault: vault.to_owned(),
            encryption: Some(encryption),
        }
    }

    fn flip(path: &Path) {
        let mut bytes = std::fs::read(path).expect("read");
        let at = bytes.len() / 2;
        bytes[at] ^= 0x40;
        std::fs::write(path, bytes).expect("write");
    }

    #[tokio::test]
    async fn a_tier_takes_its_vaults_key_keeps_it_when_healed_and_restarts_under_another() {
        let tmp = tempfile::tempdir().expect("tmp");
        let keyring = Keyring::without_unlock();
        let tier = SnapshotTier::new(tmp.path().join("snapshots")).with_keyring(keyring.clone());
        let vm = VmName::new("vm1").expect("vm");
        let first = key(&keyring, "vault-a");
        let opened = tier.open_for(&vm, Some(&first)).await.expect("init");
        assert!(opened.restarted_from.is_none());
        let repo = opened.repository;
        assert_eq!(repo.config().id, "vault-a");
        assert_eq!(repo.config().encryption, first.encryption);
        assert!(repo.codec().is_encrypted());
        assert_eq!(
            tier.vms().await.expect("vms"),
            vec![vm.clone()],
            "memos are no VM"
        );

        // A damaged config is rebuilt with the key it had (its spare copy).
        flip(&tier.dir(&vm).join("vault.config"));
        let healed = tier.open(&vm).await.expect("open").expect("a tier");
        assert_eq!(healed.config().encryption, first.encryption);
        assert_eq!(healed.codec(), repo.codec());

        // Another key: the tier starts fresh under it, saying what it was under.
        let second = key(&keyring, "vault-b");
        let opened = tier.open_for(&vm, Some(&second)).await.expect("restart");
        let was = opened.restarted_from.expect("restarted");
        let first_id = first.encryption.as_ref().map(|e| e.key_id.clone());
        assert!(was.contains(&first_id.expect("id")), "{was}");
        assert_eq!(opened.repository.config().encryption, second.encryption);
        // The same key again: nothing restarts.
        let again = tier.open_for(&vm, Some(&second)).await.expect("open");
        assert!(again.restarted_from.is_none());
        // Plain when the vault is plain.
        let plain = TierKey {
            vault: "plain".to_owned(),
            encryption: None,
        };
        let opened = tier.open_for(&vm, Some(&plain)).await.expect("plain");
        assert!(opened.restarted_from.is_some());
        assert!(!opened.repository.codec().is_encrypted());
    }

    #[tokio::test]
    async fn a_key_that_does_not_unlock_makes_no_tier_and_drops_none() {
        let tmp = tempfile::tempdir().expect("tmp");
        let tier = SnapshotTier::new(tmp.path().join("snapshots"));
        let vm = VmName::new("vm1").expect("vm");
        // A key this process never unlocked (no unlock in the keyring).
        let locked = key(&Keyring::without_unlock(), "vault-x");
        let error = tier.open_for(&vm, Some(&locked)).await.expect_err("locked");
        assert_eq!(error.kind(), blockvault_core::ErrorKind::Locked, "{error}");
        assert!(!tier.dir(&vm).exists(), "no tier made");

        // A plain tier with a point is not dropped for a key that does not unlock.
        tier.open_for(&vm, None).await.expect("plain tier");
        let error = tier.open_for(&vm, Some(&locked)).await.expect_err("locked");
        assert_eq!(error.kind(), blockvault_core::ErrorKind::Locked, "{error}");
        assert!(tier.dir(&vm).join("vault.config").is_file(), "kept");
    }

    #[test]
    fn the_key_of_a_vault_is_remembered_by_location() {
        let tmp = tempfile::tempdir().expect("tmp");
        let tier = SnapshotTier::new(tmp.path().join("snapshots"));
        assert!(tier.remembered("/srv/vault").is_none());
        let config = VaultConfig {
            id: "v1".to_owned(),
            created: jiff::Timestamp::now(),
            default_block_size: blockvault_core::BlockSize::DEFAULT,
            redundancy: blockvault_core::Redundancy::Single,
            replica_of: None,
            encryption: key(&Keyring::without_unlock(), "v1").encryption,
        };
        tier.remember("/srv/vault", &config);
        assert_eq!(tier.remembered("/srv/vault"), Some(TierKey::of(&config)));
        assert!(tier.remembered("/srv/other").is_none());
    }
}
