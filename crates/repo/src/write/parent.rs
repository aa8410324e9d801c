//! The parent of a write session: the point whose maps make it incremental, chosen by the
//! caller ([`ParentChoice`]), and its maps, read (or shared with another reader in this
//! process) once the writer holds its guard.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use blockvault_core::{BlockMap, DiskName, RecoveryPoint, VmName};

use crate::{Repository, Result};

/// Which point a write session is incremental from.
#[derive(Clone, Debug, Default)]
pub enum ParentChoice {
    /// The newest point of the VM in this repository whose record reads (read under the
    /// writer's guard): what a backup does by default.
    #[default]
    Newest,
    /// This point of this repository (the caller found it, for example the newest point of
    /// the VM in either tier that this repository also holds).
    Point(Box<RecoveryPoint>),
    /// None: every block is read and every chunk is checked against what the repository
    /// holds.
    Nothing,
}

/// A parent point and its maps of the disks being written again.
#[derive(Debug, Default)]
pub(crate) struct Parent {
    pub(crate) point: Option<RecoveryPoint>,
    pub(crate) maps: HashMap<DiskName, Arc<BlockMap>>,
}

impl Repository {
    /// The parent `choice` names for a write of `vm`'s disks `names`, with its maps. Call with
    /// the writer's guard held.
    pub(crate) async fn read_parent(
        &self,
        vm: &VmName,
        choice: &ParentChoice,
        names: &HashSet<DiskName>,
        warnings: &mut Vec<String>,
    ) -> Result<Parent> {
        let point = match choice {
            ParentChoice::Newest => self.latest_point(vm).await?,
            ParentChoice::Point(point) => Some(point.as_ref().clone()),
            ParentChoice::Nothing => None,
        };
        let maps = self.previous_maps(point.as_ref(), names, warnings).await;
        Ok(Parent { point, maps })
    }

    /// The block maps of the parent point for the disks being backed up again. A map that
    /// cannot be read only costs a full scan of that disk, so it is a warning, not an error.
    ///
    /// A map another reader in this process holds is shared, not read again (see
    /// [`SharedMaps`]).
    pub(crate) async fn previous_maps(
        &self,
        parent: Option<&RecoveryPoint>,
        names: &HashSet<DiskName>,
        warnings: &mut Vec<String>,
    ) -> HashMap<DiskName, Arc<BlockMap>> {
        let mut maps = HashMap::new();
        let Some(parent) = parent else {
            return maps;
        };
        for disk in parent.disks.iter().filter(|d| names.contains(&d.name)) {
            // This store's copy is still read and checked, so damage to it is noticed (and
            // on a replicated store healed, by the read below) as when nothing is shared.
            if let Some(map) = SharedMaps::get(&disk.map_digest)
                && let Ok(true) = self
                    .store()
                    .map_matches(&parent.vm, &parent.id, &disk.name, &disk.map_digest)
                    .await
            {
                maps.insert(disk.name.clone(), map);
                continue;
            }
            match self
                .store()
                .get_map(&parent.vm, &parent.id, &disk.name, Some(&disk.map_digest))
                .await
            {
                Ok(map) => {
                    maps.insert(disk.name.clone(), SharedMaps::share(&disk.map_digest, map));
                }
                Err(e) => warnings.push(format!(
                    "the previous point's map of disk {} is unusable ({e}); the disk was backed \
                     up in full",
                    disk.name
                )),
            }
        }
        maps
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The block maps this process's writers hold, by digest. A backup job's Snapshot and its
/// early send both read the newest map of each disk, from the snapshot tier and from the
/// vault, and when the vault's newest point is the tier's (transfers keeping up) the two are
/// the same map, with the same digest: 32 MB each for a disk of a million blocks. The digest
/// is checked as a map is read, so a map found here is the one asked for; the second reader
/// still reads its own store's copy and checks its digest (the bytes, not a second decoded
/// map), so a damaged copy warns as before. Only weak references are kept: a map lives as
/// long as a writer holds it.
struct SharedMaps;

static SHARED_MAPS: Mutex<Vec<(String, std::sync::Weak<BlockMap>)>> = Mutex::new(Vec::new());

impl SharedMaps {
    fn get(digest: &str) -> Option<Arc<BlockMap>> {
        let mut maps = lock(&SHARED_MAPS);
        maps.retain(|(_, map)| map.strong_count() > 0);
        maps.iter()
            .find(|(d, _)| d == digest)
            .and_then(|(_, map)| map.upgrade())
    }

    /// `map`, read with digest `digest`, shared; or the one another reader shared meanwhile.
    fn share(digest: &str, map: BlockMap) -> Arc<BlockMap> {
        if let Some(shared) = SharedMaps::get(digest) {
            return shared;
        }
        let map = Arc::new(map);
        lock(&SHARED_MAPS).push((digest.to_owned(), Arc::downgrade(&map)));
        map
    }
}

#[cfg(test)]
mod tests {
    use blockvault_core::{BlockSize, ChunkId};
    use jiff::Timestamp;

    use super::*;

    #[test]
    fn a_map_held_by_one_reader_is_shared_with_the_next_and_forgotten_when_dropped() {
        let map = || {
            let ids = vec![ChunkId::of(b"a"); 4];
            BlockMap::from_ids(4 << 20, BlockSize::default(), Timestamp::UNIX_EPOCH, ids)
                .expect("map")
        };
        let digest = "shared-map-test";
        let first = SharedMaps::share(digest, map());
        let second = SharedMaps::share(digest, map());
        assert!(
            Arc::ptr_eq(&first, &second),
            "the second read is the first map"
        );
        let found = SharedMaps::get(digest).expect("held, so found");
        assert!(Arc::ptr_eq(&first, &found));
        drop((first, second, found));
        assert!(
            SharedMaps::get(digest).is_none(),
            "no reader holds it any more"
        );
    }
}
