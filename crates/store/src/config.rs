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

    /// Whether listing says the bucket itself does not exist (an S3 `GET` of a missing object
    /// and of an object in a missing bucket both answer 404).
    async fn bucket_missing(&self) -> bool {
        match self.here.list_with_delimiter(None).await {
            Err(Error::Backend {
                source: object_store::Error::NotFound { .. },
                ..
            }) => true,
            Err(Error::Backend { source, .. }) => source.to_string().contains("NoSuchBucket"),
            Err(other) => other.to_string().contains("NoSuchBucket"),
            Ok(_) => false,
        }
    }
}
