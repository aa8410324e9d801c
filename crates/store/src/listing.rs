//! Listing a VM's points so that a damaged record damages only itself.
//!
//! A point record that fails its checks (on every copy, for a replicated store) is not an error
//! of the listing: the listing names it as [`DamagedPoint`] beside the points that read, so one
//! bad record never hides the VM's other points, and a caller that must not lose what a damaged
//! record names (garbage collection) still learns that it exists. A record listed and then
//! deleted before it was read (retention on another host) is simply not there.

use blockvault_core::{DiskName, PointId, RecoveryPoint, VmName};
use futures::{StreamExt, stream};
use serde::Serialize;

use crate::store::Entries;
use crate::{Error, Result, Store, layout};

/// How many point records a listing fetches at once.
const LIST_CONCURRENCY: usize = 16;

/// A point record that is listed but cannot be read: its bytes fail their checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DamagedPoint {
    pub vm: VmName,
    pub id: PointId,
    /// What is wrong with it (the decoder's error, and the replica's when it is bad too).
    pub problem: String,
}

/// The committed points of one VM: those whose records read, and those whose records are
/// damaged.
#[derive(Clone, Debug, Default)]
pub struct PointListing {
    /// Oldest first.
    pub points: Vec<RecoveryPoint>,
    /// Sorted by id (which starts with the point's UTC time).
    pub damaged: Vec<DamagedPoint>,
}

impl PointListing {
    /// No record at all, healthy or damaged.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty() && self.damaged.is_empty()
    }

    /// The newest point whose record reads.
    pub fn latest(&self) -> Option<&RecoveryPoint> {
        self.points.last()
    }

    /// Whether `id` is one of the damaged records.
    pub fn is_damaged(&self, id: &PointId) -> bool {
        self.damaged.iter().any(|d| &d.id == id)
    }
}

impl Store {
    /// The committed points of `vm`: every record listed is read (on a replicated store a
    /// damaged primary copy is read from the secondary and healed); those that fail their
    /// checks everywhere are [`PointListing::damaged`]. Fails only for what stops the listing
    /// itself (the store unreachable).
    pub async fn list_points(&self, vm: &VmName) -> Result<PointListing> {
        let ids = self.list_point_ids(vm).await?;
        let reads: Vec<(PointId, Result<RecoveryPoint>)> = stream::iter(ids)
            .map(|id| async move {
                let read = self.get_point(vm, &id).await;
                (id, read)
            })
            .buffer_unordered(LIST_CONCURRENCY)
            .collect()
            .await;
        let mut listing = PointListing::default();
        for (id, read) in reads {
            match read {
                Ok(point) => listing.points.push(point),
                Err(Error::PointMissing { .. }) => {}
                Err(e) if e.is_corrupt() => listing.damaged.push(DamagedPoint {
                    vm: vm.clone(),
                    id,
                    problem: e.to_string(),
                }),
                Err(e) => return Err(e),
            }
        }
        listing
            .points
            .sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
        listing.damaged.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(listing)
    }

    /// The disks that have a block map stored under point `id` of `vm`, whatever its record
    /// says (for a record that cannot be read: what it may name). On a replicated store, the
    /// primary's and the secondary's.
    pub async fn list_map_disks(&self, vm: &VmName, id: &PointId) -> Result<Vec<DiskName>> {
        let prefix = layout::maps_of(vm, id);
        let mut names: Vec<String> = self.list_names(&prefix, Entries::Objects).await?;
        if let Some(secondary) = self.secondary() {
            names.extend(
                secondary
                    .list_names::<String>(&prefix, Entries::Objects)
                    .await?,
            );
        }
        let mut disks: Vec<DiskName> = names
            .iter()
            .filter_map(|name| name.strip_suffix(".map"))
            .filter_map(|disk| DiskName::new(disk).ok())
            .collect();
        disks.sort();
        disks.dedup();
        Ok(disks)
    }

    /// Sets a damaged point record aside: its bytes go to `quarantine/points/<vm>/<point>`
    /// (from the primary, or the secondary when the primary lacks it), then the record is
    /// deleted, so the VM's listing is whole again and garbage collection frees what only it
    /// named. Refuses a record that reads ([`Error::PointNotDamaged`]): that is retention's
    /// to delete. Copying the bytes back to `points/<vm>/<point>` undoes it.
    pub async fn quarantine_point(&self, vm: &VmName, id: &PointId) -> Result<()> {
        match self.get_point(vm, id).await {
            Ok(_) => {
                return Err(Error::PointNotDamaged {
                    vm: vm.clone(),
                    point: id.clone(),
                });
            }
            Err(e) if e.is_corrupt() => {}
            Err(e) => return Err(e),
        }
        self.set_aside_point(vm, id).await
    }

    /// Sets point record `id` of `vm` aside as [`Store::quarantine_point`] does, whether or
    /// not it reads: for a point its caller found unusable otherwise (the snapshot tier, whose
    /// point with a damaged map cannot restore). Nothing there is not an error.
    pub async fn set_aside_point(&self, vm: &VmName, id: &PointId) -> Result<()> {
        let key = layout::point(vm, id);
        let mut bytes = self.get(&key).await?;
        if let (None, Some(secondary)) = (&bytes, self.secondary()) {
            bytes = secondary.get(&key).await?;
        }
        if let Some(bytes) = bytes {
            self.put(&layout::quarantined_point(vm, id), bytes).await?;
        }
        self.delete_record(vm, id).await
    }
}
