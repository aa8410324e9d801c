//! The soft-delete markers: what a vault says about a VM whose backup data was deleted, or
//! about one point a user forgot, waiting out its soft-delete period (SPEC "Protection
//! lifecycle").

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::{PointId, Result, VmName, framed};

/// Days soft-deleted backup data stays (listable, restorable after `undelete`) before it is
/// purged (Azure Backup's soft-delete period).
pub const SOFT_DELETE_DAYS: i64 = 14;

/// The marker of a VM whose backup data is soft-deleted: stored in the vault next to the VM's
/// points, so any host reading the vault sees that the points are deleted and when they go.
/// Its presence is the soft-delete; `undelete` and the purge remove it.
///
/// Encoding: the framed JSON envelope (magic `BVDELETE`, version 1; see the crate docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftDeleteMarker {
    pub vm: VmName,
    /// When the data was deleted (protection stopped with *delete data*).
    pub deleted: Timestamp,
    /// When the soft-delete period ends: from then on the points are purged and cannot be
    /// undeleted. Always `deleted` + [`SOFT_DELETE_DAYS`] days when blockvault writes it.
    pub purge_after: Timestamp,
}

impl SoftDeleteMarker {
    pub const MAGIC: [u8; 8] = *b"BVDELETE";
    pub const VERSION: u16 = 1;

    /// The marker of `vm` deleted at `deleted`, purged [`SOFT_DELETE_DAYS`] days later.
    pub fn new(vm: VmName, deleted: Timestamp) -> SoftDeleteMarker {
        SoftDeleteMarker {
            vm,
            deleted,
            purge_after: deleted + SignedDuration::from_hours(24 * SOFT_DELETE_DAYS),
        }
    }

    /// Whether the soft-delete period is over at `now` (the data is due for purge).
    pub fn purge_due(&self, now: Timestamp) -> bool {
        now >= self.purge_after
    }

    pub fn encode(&self) -> Vec<u8> {
        framed::encode(&Self::MAGIC, Self::VERSION, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<SoftDeleteMarker> {
        let (_version, marker) =
            framed::decode("soft-delete marker", &Self::MAGIC, Self::VERSION, bytes)?;
        Ok(marker)
    }
}

/// The marker of one point a user forgot (`blockvault forget`): the point stays whole in the
/// vault, listed as soft-deleted and refused by restore, until `undelete` removes the marker
/// or the purge deletes the point after [`SOFT_DELETE_DAYS`] days. Stored in the vault next
/// to the point (`deleted-points/<vm>/<point>`), so any host reading the vault sees it.
///
/// Encoding: the framed JSON envelope (magic `BVDELPNT`, version 1; see the crate docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointDeleteMarker {
    pub vm: VmName,
    pub point: PointId,
    /// When the point was forgotten.
    pub deleted: Timestamp,
    /// When the soft-delete period ends: `deleted` + [`SOFT_DELETE_DAYS`] days when
    /// blockvault writes it. From then on the point is purged and cannot be undeleted.
    pub purge_after: Timestamp,
}

impl PointDeleteMarker {
    pub const MAGIC: [u8; 8] = *b"BVDELPNT";
    pub const VERSION: u16 = 1;

    /// The marker of `point` of `vm` forgotten at `deleted`, purged [`SOFT_DELETE_DAYS`] days
    /// later.
    pub fn new(vm: VmName, point: PointId, deleted: Timestamp) -> PointDeleteMarker {
        PointDeleteMarker {
            vm,
            point,
            deleted,
            purge_after: deleted + SignedDuration::from_hours(24 * SOFT_DELETE_DAYS),
        }
    }

    /// Whether the soft-delete period is over at `now` (the point is due for purge).
    pub fn purge_due(&self, now: Timestamp) -> bool {
        now >= self.purge_after
    }

    pub fn encode(&self) -> Vec<u8> {
        framed::encode(&Self::MAGIC, Self::VERSION, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<PointDeleteMarker> {
        let (_version, marker) = framed::decode(
            "point soft-delete marker",
            &Self::MAGIC,
            Self::VERSION,
            bytes,
        )?;
        Ok(marker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn markers_round_trip_and_purge_fourteen_days_later() {
        let deleted: Timestamp = "2026-11-23T10:00:00Z".parse().expect("ts");
        let marker = SoftDeleteMarker::new(VmName::new("web01").expect("vm"), deleted);
        assert_eq!(
            marker.purge_after,
            "2026-12-07T10:00:00Z".parse::<Timestamp>().expect("ts")
        );
        assert!(!marker.purge_due(marker.purge_after - SignedDuration::from_secs(1)));
        assert!(marker.purge_due(marker.purge_after));
        let bytes = marker.encode();
        assert_eq!(&bytes[..8], b"BVDELETE");
        assert_eq!(SoftDeleteMarker::decode(&bytes).expect("decode"), marker);
        let mut flipped = bytes.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 1;
        assert!(matches!(
            SoftDeleteMarker::decode(&flipped),
            Err(Error::ChecksumMismatch { .. })
        ));
    }
    #[test]
    fn point_markers_round_trip_and_purge_fourteen_days_later() {
        let deleted: Timestamp = "2026-11-23T10:00:00Z".parse().expect("ts");
        let point = PointId::generate(deleted, b"p");
        let marker =
            PointDeleteMarker::new(VmName::new("web01").expect("vm"), point.clone(), deleted);
        assert_eq!(marker.point, point);
        assert!(!marker.purge_due(marker.purge_after - SignedDuration::from_secs(1)));
        assert!(marker.purge_due(marker.purge_after));
        let bytes = marker.encode();
        assert_eq!(&bytes[..8], b"BVDELPNT");
        assert_eq!(PointDeleteMarker::decode(&bytes).expect("decode"), marker);
        // A VM's marker is not a point's.
        let vm_marker = SoftDeleteMarker::new(marker.vm.clone(), deleted).encode();
        assert!(PointDeleteMarker::decode(&vm_marker).is_err());
    }
}
