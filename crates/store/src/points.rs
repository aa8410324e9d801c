//! Recovery point records (`points/<vm>/<point>`, the commit of a backup) and soft-delete
//! markers (`deleted/<vm>`). Listing them so that a damaged record damages only itself is
//! `listing.rs`'s; the commit window of a replicated store is `commit.rs`'s.

use blockvault_core::{PointId, RecoveryPoint, SoftDeleteMarker, VmName};
use bytes::Bytes;

use crate::checks;
use crate::store::Entries;
use crate::{Error, Result, Store, layout};

impl Store {
    /// Writes a point record: the commit of a backup. Write it only after every chunk and map it
    /// names has been put: puts are durable when they return, so the record never names
    /// something a crash could lose.
    ///
    /// On a replicated store the record goes to the secondary first, then to the primary
    /// (whose listing is what says a point exists); if the primary refuses it, the secondary's
    /// copy is removed again, so a failed commit commits nowhere.
    pub async fn put_point(&self, point: &RecoveryPoint) -> Result<()> {
        // The commit: everything the point names is durable first.
        self.sync_chunks().await?;
        let key = layout::point(&point.vm, &point.id);
        let bytes: Bytes = point.encode().into();
        self.backend().commit(&key, bytes).await
    }

    /// A point record; on a replicated store one corrupt on the primary is read from the
    /// secondary and healed on the primary. A record missing from the primary is
    /// [`Error::PointMissing`] whatever the secondary holds: the primary says which points
    /// exist (a commit lands on the secondary first).
    pub async fn get_point(&self, vm: &VmName, id: &PointId) -> Result<RecoveryPoint> {
        match self.get_point_here(vm, id).await {
            Ok((point, _)) => Ok(point),
            Err(problem) if problem.is_corrupt() => match &self.replica {
                Some(replica) => replica.wrapper.recover_point(vm, id, problem).await,
                None => Err(problem),
            },
            Err(e) => Err(e),
        }
    }

    /// The point record as this store (not its secondary) holds it, with its bytes.
    pub(crate) async fn get_point_here(
        &self,
        vm: &VmName,
        id: &PointId,
    ) -> Result<(RecoveryPoint, Bytes)> {
        checks::read_point(&*self.here, vm, id).await
    }

    /// The VMs that have at least one point.
    pub async fn list_vms(&self) -> Result<Vec<VmName>> {
        self.list_names(&layout::points_root(), Entries::Prefixes)
            .await
    }

    /// The ids of the committed points of `vm`, oldest first.
    pub async fn list_point_ids(&self, vm: &VmName) -> Result<Vec<PointId>> {
        self.list_names(&layout::points_of(vm), Entries::Objects)
            .await
    }

    /// Removes a point: its record first (so the point stops existing at once), then its maps.
    /// A crash in between leaves orphan maps, which [`Store::list_map_point_ids`] finds.
    /// On a replicated store the record goes from the secondary first (see `commit.rs`).
    pub async fn delete_point(&self, vm: &VmName, id: &PointId) -> Result<()> {
        self.delete_record(vm, id).await?;
        self.delete_maps(vm, id).await
    }

    /// Deletes a point record: on a replicated store from the secondary first, then from the
    /// primary, so that a deletion cut short never leaves a record on the secondary alone.
    pub(crate) async fn delete_record(&self, vm: &VmName, id: &PointId) -> Result<()> {
        self.backend().uncommit(&layout::point(vm, id)).await
    }

    // ---- soft delete ------------------------------------------------------------------------

    /// Marks the points of `marker.vm` as soft-deleted (`deleted/<vm>`), replacing any marker.
    pub async fn put_soft_delete(&self, marker: &SoftDeleteMarker) -> Result<()> {
        self.put(&layout::soft_delete(&marker.vm), marker.encode().into())
            .await
    }

    /// The soft-delete marker of `vm`: `None` when its points are not soft-deleted.
    pub async fn soft_delete(&self, vm: &VmName) -> Result<Option<SoftDeleteMarker>> {
        let Some(bytes) = self.get(&layout::soft_delete(vm)).await? else {
            return Ok(None);
        };
        SoftDeleteMarker::decode(&bytes)
            .map(Some)
            .map_err(|source| Error::SoftDeleteCorrupt {
                vm: vm.clone(),
                source,
            })
    }

    /// Removes the soft-delete marker of `vm` (undelete, or the end of a purge); no marker is
    /// not an error.
    pub async fn remove_soft_delete(&self, vm: &VmName) -> Result<()> {
        self.delete(&layout::soft_delete(vm)).await
    }
}
