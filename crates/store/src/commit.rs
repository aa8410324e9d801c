//! The commit window of a replicated store, and how it is closed.
//!
//! A point record goes to the secondary first, then to the primary ([`Store::put_point`]); a
//! point is deleted from the secondary first, then from the primary ([`Store::delete_point`]).
//! So a record that only the secondary holds is always a commit cut short between its two
//! writes (a kill, or a primary write that failed and whose take-back failed too), never a
//! deletion cut short: everything it names was durable on both stores before the commit began.
//! Such a record is a complete point on the secondary, so garbage collection must keep what it
//! names ([`Store::unfinished_commits`]) or the replica loses a point that restores there; once
//! no writer runs, the collector finishes the commit on the primary
//! ([`Store::finish_commit`]), so that the two stores agree again and retention sees the point.

use std::collections::HashSet;

use blockvault_core::{PointId, VmName};

use crate::{DamagedPoint, Error, PointListing, Result, Store, layout};

impl Store {
    /// The VMs with at least one point record on this store or, when replicated, on its
    /// secondary.
    pub async fn list_vms_everywhere(&self) -> Result<Vec<VmName>> {
        let mut vms = self.list_vms().await?;
        if let Some(secondary) = self.secondary() {
            vms.extend(secondary.list_vms().await?);
            vms.sort();
            vms.dedup();
        }
        Ok(vms)
    }

    /// The ids of `vm`'s point records on this store and, when replicated, on its secondary:
    /// for a purge, which must not leave a commit cut short for the collector to finish.
    pub async fn list_point_ids_everywhere(&self, vm: &VmName) -> Result<Vec<PointId>> {
        let mut ids = self.list_point_ids(vm).await?;
        if let Some(secondary) = self.secondary() {
            ids.extend(secondary.list_point_ids(vm).await?);
            ids.sort();
            ids.dedup();
        }
        Ok(ids)
    }

    /// The point records of `vm` that only the secondary holds, read from it: commits cut
    /// short (see the module docs). `known` holds the ids the primary lists. Empty for a
    /// single store, or one whose secondary is unavailable.
    pub async fn unfinished_commits(
        &self,
        vm: &VmName,
        known: &HashSet<PointId>,
    ) -> Result<PointListing> {
        let mut listing = PointListing::default();
        let Some(secondary) = self.secondary() else {
            return Ok(listing);
        };
        for id in secondary.list_point_ids(vm).await? {
            if known.contains(&id) {
                continue;
            }
            match secondary.get_point_here(vm, &id).await {
                Ok((point, _)) => listing.points.push(point),
                Err(Error::PointMissing { .. }) => {}
                Err(e) if e.is_corrupt() => listing.damaged.push(DamagedPoint {
                    vm: vm.clone(),
                    id,
                    problem: format!("{e} (on the secondary {})", secondary.location()),
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(listing)
    }

    /// Finishes a commit cut short: copies `id`'s record from the secondary to the primary,
    /// checked first. Call only while no writer runs (the collector's sweep): a commit in
    /// flight finishes on its own.
    pub async fn finish_commit(&self, vm: &VmName, id: &PointId) -> Result<()> {
        let Some(secondary) = self.secondary() else {
            return Ok(());
        };
        let (_, bytes) = secondary.get_point_here(vm, id).await?;
        self.put_here(&layout::point(vm, id), bytes).await
    }
}
