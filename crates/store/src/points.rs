//! Recovery point records (`points/<vm>/<point>`, the commit of a backup) and soft-delete
//! markers (`deleted/<vm>` of a VM, `deleted-points/<vm>/<point>` of a forgotten point), each
//! sealed with the vault's codec (stored as encoded in a plain vault) and opened before it is
//! decoded: one that does not open is corrupt like one that fails its checksum. Listing them
//! so that a damaged record damages only itself is `listing.rs`'s; the commit window of a
//! replicated store is `commit.rs`'s.

use blockvault_core::{PointDeleteMarker, PointId, RecoveryPoint, SoftDeleteMarker, VmName};
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
        let bytes = self.seal(&key, point.encode());
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
                Some(replica) => {
                    replica
                        .wrapper
                        .recover_point(vm, id, problem, &self.codec)
                        .await
                }
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
        checks::read_point(&*self.here, &self.codec, vm, id).await
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
        let key = layout::soft_delete(&marker.vm);
        self.put(&key, self.seal(&key, marker.encode())).await
    }

    /// The soft-delete marker of `vm`: `None` when its points are not soft-deleted.
    pub async fn soft_delete(&self, vm: &VmName) -> Result<Option<SoftDeleteMarker>> {
        let key = layout::soft_delete(vm);
        let Some(bytes) = self.get(&key).await? else {
            return Ok(None);
        };
        checks::open(&self.codec, &key, &bytes)
            .and_then(|plain| SoftDeleteMarker::decode(&plain))
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

    // ---- forgotten points -------------------------------------------------------------------

    /// Marks one point as soft-deleted (`deleted-points/<vm>/<point>`), replacing any marker
    /// of it. The point itself is not touched.
    pub async fn put_point_delete(&self, marker: &PointDeleteMarker) -> Result<()> {
        let key = layout::point_delete(&marker.vm, &marker.point);
        self.put(&key, self.seal(&key, marker.encode())).await
    }

    /// The soft-delete marker of point `id` of `vm`: `None` when it is not forgotten.
    pub async fn point_delete(
        &self,
        vm: &VmName,
        id: &PointId,
    ) -> Result<Option<PointDeleteMarker>> {
        let Some(bytes) = self.get(&layout::point_delete(vm, id)).await? else {
            return Ok(None);
        };
        self.decode_point_delete(vm, id, &bytes).map(Some)
    }

    /// The markers of every forgotten point of `vm`, oldest point first. A marker that cannot
    /// be read is [`Error::PointDeleteCorrupt`]: better no answer than a deleted point shown
    /// as restorable.
    pub async fn point_deletes(&self, vm: &VmName) -> Result<Vec<PointDeleteMarker>> {
        let ids: Vec<PointId> = self
            .list_names(&layout::point_deletes_of(vm), Entries::Objects)
            .await?;
        let mut markers = Vec::with_capacity(ids.len());
        for id in ids {
            // Gone between the listing and the read (an undelete, a purge): not forgotten.
            if let Some(bytes) = self.get(&layout::point_delete(vm, &id)).await? {
                markers.push(self.decode_point_delete(vm, &id, &bytes)?);
            }
        }
        Ok(markers)
    }

    /// The VMs with at least one forgotten point.
    pub async fn point_delete_vms(&self) -> Result<Vec<VmName>> {
        self.list_names(&layout::point_deletes_root(), Entries::Prefixes)
            .await
    }

    /// Removes the soft-delete marker of point `id` of `vm` (undelete, or the end of its
    /// purge); no marker is not an error.
    pub async fn remove_point_delete(&self, vm: &VmName, id: &PointId) -> Result<()> {
        self.delete(&layout::point_delete(vm, id)).await
    }

    /// The marker stored as `bytes` at point `id` of `vm`'s key, opened and checked.
    fn decode_point_delete(
        &self,
        vm: &VmName,
        id: &PointId,
        bytes: &[u8],
    ) -> Result<PointDeleteMarker> {
        let corrupt = |source| Error::PointDeleteCorrupt {
            vm: vm.clone(),
            point: id.clone(),
            source,
        };
        let plain =
            checks::open(&self.codec, &layout::point_delete(vm, id), bytes).map_err(corrupt)?;
        match PointDeleteMarker::decode(&plain) {
            // A marker must name the point its key names.
            Ok(marker) if marker.vm == *vm && marker.point == *id => Ok(marker),
            Ok(marker) => Err(corrupt(blockvault_core::Error::Malformed {
                what: "point soft-delete marker",
                reason: format!("it names point {} of VM {}", marker.point, marker.vm),
            })),
            Err(source) => Err(corrupt(source)),
        }
    }
}
