//! The snapshot tier heals itself: it is this host's rebuildable state, so what is damaged is
//! set aside and everything else goes on. One damaged object never hides the VM's other
//! snapshot points, never stops expiry (so the tier never grows without bound) and never fails
//! the next backup.
//!
//! - A point record that cannot be read is moved to `quarantine/points/<vm>/<point>` in the
//!   VM's directory when the points are listed ([`SnapshotTier::points`]); its maps and chunks
//!   are then what no point names, and the next sweep frees them.
//! - A point whose block map cannot be read cannot restore from the tier: the sweep sets its
//!   record aside the same way and goes on (its copy in the vault, if transferred, is intact).
//! - A `vault.config` that cannot be read is moved to `quarantine/vault.config.<unix time>` and
//!   a new one written in its place ([`SnapshotTier::open`]): the tier's config only gives new
//!   disks a default block size, and nothing outside the tier knows its id.

use std::path::Path;

use blockvault_core::{BlockSize, PointId, Redundancy, VaultConfig, VmName};
use blockvault_repo::Repository;
use blockvault_store::{PointListing, Store};
use jiff::Timestamp;

use crate::{Error, Result, SnapshotTier};

impl SnapshotTier {
    /// The points of `vm`'s snapshot repository `vault`, with its damaged records set aside.
    pub(crate) async fn healthy_points(
        &self,
        vm: &VmName,
        vault: &Repository,
    ) -> Result<PointListing> {
        let mut listing = vault.store().list_points(vm).await?;
        for damaged in &listing.damaged {
            set_aside(vault.store(), vm, &damaged.id).await?;
        }
        listing.damaged.clear();
        Ok(listing)
    }

    /// Opens the snapshot repository in `dir`, whose `vault.config` is there; one that cannot
    /// be read is set aside and rebuilt.
    pub(crate) async fn open_healing(&self, dir: &Path) -> Result<Repository> {
        match Repository::open_local(dir).await {
            Ok(repo) => Ok(repo),
            Err(blockvault_repo::Error::Store(e)) if e.is_corrupt() => {
                let config = dir.join("vault.config");
                let quarantine = dir.join("quarantine");
                std::fs::create_dir_all(&quarantine).map_err(|e| Error::io(&quarantine, e))?;
                let aside =
                    quarantine.join(format!("vault.config.{}", Timestamp::now().as_second()));
                std::fs::rename(&config, &aside).map_err(|e| Error::io(&config, e))?;
                let store = Store::local(dir)?;
                let config = rebuilt_config(dir);
                store.write_config(&config).await?;
                Ok(Repository::from_config(store, config))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Sets `id`'s record aside; one another process set aside first is not an error.
pub(crate) async fn set_aside(store: &Store, vm: &VmName, id: &PointId) -> Result<()> {
    match store.set_aside_point(vm, id).await {
        Ok(()) | Err(blockvault_store::Error::PointMissing { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A new config for the snapshot vault in `dir`: a fresh id, the default block size.
fn rebuilt_config(dir: &Path) -> VaultConfig {
    let created = Timestamp::now();
    let seed = format!("{}:{}:rebuilt", dir.display(), created.as_nanosecond());
    VaultConfig {
        id: blake3::hash(seed.as_bytes()).to_hex()[..16].to_owned(),
        created,
        default_block_size: BlockSize::DEFAULT,
        redundancy: Redundancy::Single,
        replica_of: None,
    }
}
