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

use crate::keys::{self, TierKey};
use crate::{Result, SnapshotTier};

/// The points of `vm`'s snapshot repository `repo`, with its damaged records set aside.
pub(crate) async fn healthy_points(vm: &VmName, repo: &Repository) -> Result<PointListing> {
    let mut listing = repo.store().list_points(vm).await?;
    for damaged in &listing.damaged {
        set_aside(repo.store(), vm, &damaged.id).await?;
    }
    listing.damaged.clear();
    Ok(listing)
}

/// Opens the snapshot repository in `dir`, or `None` when there is none (no directory, or
/// no `vault.config` in it: what an interrupted first use leaves). A config that cannot be
/// read is set aside and rebuilt.
pub(crate) async fn open_healing(tier: &SnapshotTier, dir: &Path) -> Result<Option<Repository>> {
    let store = match Store::local(dir) {
        Ok(store) => store,
        Err(blockvault_store::Error::NotAVault { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match store.config().await {
        Ok(config) => Ok(Some(tier.keyed(Repository::from_config(store, config))?)),
        Err(blockvault_store::Error::NotAVault { .. }) => Ok(None),
        Err(e) if e.is_corrupt() => {
            store.set_aside_config(Timestamp::now()).await?;
            let config = rebuilt_config(dir);
            store.write_config(&config).await?;
            Ok(Some(tier.keyed(Repository::from_config(store, config))?))
        }
        Err(e) => Err(e.into()),
    }
}

/// Sets `id`'s record aside; one another process set aside first is not an error.
pub(crate) async fn set_aside(store: &Store, vm: &VmName, id: &PointId) -> Result<()> {
    match store.set_aside_point(vm, id).await {
        Ok(()) | Err(blockvault_store::Error::PointMissing { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A new config for the snapshot vault in `dir`: the default block size, and the key of its
/// spare copy (an encrypted tier's vault id and encryption), else a fresh id.
fn rebuilt_config(dir: &Path) -> VaultConfig {
    let created = Timestamp::now();
    let seed = format!("{}:{}:rebuilt", dir.display(), created.as_nanosecond());
    let mut config = VaultConfig {
        id: blake3::hash(seed.as_bytes()).to_hex()[..16].to_owned(),
        created,
        default_block_size: BlockSize::DEFAULT,
        redundancy: Redundancy::Single,
        replica_of: None,
        encryption: None,
    };
    if let Some(TierKey {
        vault,
        encryption: Some(encryption),
    }) = keys::spare_for(dir)
    {
        config.id = vault;
        config.encryption = Some(encryption);
    }
    config
}
