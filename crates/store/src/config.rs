//! The vault config: `vault.config`, whose presence makes a location a vault. It is each
//! store's own: on a replicated store the primary's alone (the secondary holds one of its own
//! that names the vault it replicates).

use blockvault_core::VaultConfig;
use futures::StreamExt;

use crate::{Error, Result, Store, layout};

impl Store {
    /// Makes this location a vault by writing its config. Refuses a location that already holds
    /// a vault or any other object.
    ///
    /// On a replicated store the config goes to the primary only: the secondary holds its own
    /// (see [`Store::init_replicated`]).
    pub async fn init(&self, config: &VaultConfig) -> Result<()> {
        self.check_empty().await?;
        self.write_config(config).await
    }

    /// Refuses a location that already holds a vault or any other object: what [`Store::init`]
    /// checks before it writes.
    pub async fn check_empty(&self) -> Result<()> {
        match self.config().await {
            Ok(_) => {
                return Err(Error::AlreadyAVault {
                    location: self.location().to_owned(),
                });
            }
            Err(Error::NotAVault { .. }) => {}
            Err(other) => return Err(other),
        }
        let mut any = self.here.list(None);
        if any.next().await.is_some() {
            return Err(Error::NotEmpty {
                location: self.location().to_owned(),
            });
        }
        Ok(())
    }

    /// Replaces the vault config of this store (the primary only, on a replicated store). For
    /// changes the caller has checked are allowed, such as the redundancy of an empty vault.
    pub async fn write_config(&self, config: &VaultConfig) -> Result<()> {
        self.put_here(&layout::config(), config.encode().into())
            .await
    }

    /// The vault config; [`Error::NotAVault`] when this location is not a vault.
    pub async fn config(&self) -> Result<VaultConfig> {
        let key = layout::config();
        let bytes = match self.get(&key).await? {
            Some(bytes) => bytes,
            None if self.bucket_missing().await => {
                return Err(Error::BucketMissing {
                    location: self.location().to_owned(),
                });
            }
            None => {
                return Err(Error::NotAVault {
                    location: self.location().to_owned(),
                    reason: "it has no vault.config".to_owned(),
                });
            }
        };
        VaultConfig::decode(&bytes).map_err(|source| Error::ConfigCorrupt {
            location: self.location().to_owned(),
            source,
        })
    }

    /// Moves this store's vault config aside to `quarantine/vault.config.<unix time>` (its
    /// bytes as they were): for a config that cannot be read, before a new one is written
    /// ([`Store::write_config`]). The location is not a vault until then. A config already
    /// gone is not an error.
    pub async fn set_aside_config(&self, now: jiff::Timestamp) -> Result<()> {
        let key = layout::config();
        if let Some(bytes) = self.here.get(&key).await? {
            self.put_here(&layout::quarantined_config(now.as_second()), bytes)
                .await?;
            self.here.delete(&key).await?;
        }
        Ok(())
    }

    /// Whether listing says the bucket itself does not exist (an S3 `GET` of a missing object
    /// and of an object in a missing bucket both answer 404).
    async fn bucket_missing(&self) -> bool {
        match self.here.list_with_delimiter(None).await {
            Err(Error::Backend {
                error: object_store::Error::NotFound { .. },
                ..
            }) => true,
            Err(Error::Backend { error, .. }) => error.to_string().contains("NoSuchBucket"),
            Err(other) => other.to_string().contains("NoSuchBucket"),
            Ok(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use blockvault_core::{BlockSize, Redundancy};

    use super::*;

    #[tokio::test]
    async fn a_config_set_aside_keeps_its_bytes_and_leaves_no_vault() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::local(dir.path()).expect("store");
        let config = VaultConfig {
            id: "0123456789abcdef".to_owned(),
            created: jiff::Timestamp::UNIX_EPOCH,
            default_block_size: BlockSize::DEFAULT,
            redundancy: Redundancy::Single,
            replica_of: None,
            encryption: None,
        };
        store.init(&config).await.expect("init");
        let at = jiff::Timestamp::from_second(1_800_000_000).expect("time");
        store.set_aside_config(at).await.expect("set aside");
        assert!(matches!(store.config().await, Err(Error::NotAVault { .. })));
        let aside = std::fs::read(dir.path().join("quarantine/vault.config.1800000000"))
            .expect("the config's bytes are kept aside");
        assert_eq!(aside, config.encode());
        // Again, with nothing left to set aside: not an error.
        store.set_aside_config(at).await.expect("set aside twice");
    }
}
