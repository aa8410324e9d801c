//! What garbage collection must keep: every point whose chunks a restore may need.
//!
//! - The points whose records read, of every VM.
//! - On a replicated vault, also the records the secondary holds alone: commits cut short
//!   between the secondary's write and the primary's (see the store's `commit.rs`). They are
//!   complete points on the secondary, so their maps are marked like any other; the sweep,
//!   which runs only once no writer runs, finishes their commits on the primary.
//! - Damaged records: what one names is unknown, but a record names only maps stored under its
//!   own id (`maps/<vm>/<point>/`), so every map there is marked (read without a digest to
//!   check it against). Collection goes on around a damaged record and never deletes what it
//!   may name.

use std::collections::HashSet;

use blockvault_core::{DiskName, PointId, RecoveryPoint, VmName};
use blockvault_store::DamagedPoint;

use crate::{Result, Vault};

/// The points and records a collection keeps alive.
#[derive(Debug, Default)]
pub(crate) struct LivePoints {
    /// Every point whose record reads: the primary's, and the secondary's alone.
    pub(crate) points: Vec<RecoveryPoint>,
    /// Of those, the records only the secondary holds.
    pub(crate) unfinished: Vec<(VmName, PointId)>,
    /// Records that cannot be read.
    pub(crate) damaged: Vec<DamagedPoint>,
}

impl LivePoints {
    /// Whether a map directory under (`vm`, `id`) belongs to a record, healthy or damaged.
    pub(crate) fn names(&self) -> HashSet<(VmName, PointId)> {
        self.points
            .iter()
            .map(|p| (p.vm.clone(), p.id.clone()))
            .chain(self.damaged.iter().map(|d| (d.vm.clone(), d.id.clone())))
            .collect()
    }
}

/// Bytes of block maps held at once by a pass that reads every map (gc's mark, stats).
const MAP_BYTES_IN_FLIGHT: u64 = 32 << 20;

/// How many of `points`' maps to read at once: each read holds a whole map (32 bytes a
/// block) until it is reduced to its chunks, so the bytes in flight are bounded, not only the
/// count (a 1 TiB disk's map is 8 MiB); at most `concurrency`, at least one.
pub(crate) fn maps_in_flight(points: &[RecoveryPoint], concurrency: usize) -> usize {
    let largest = points
        .iter()
        .flat_map(|p| p.disks.iter().map(|d| d.blocks.saturating_mul(32)))
        .max()
        .unwrap_or(0)
        .max(1);
    ((MAP_BYTES_IN_FLIGHT / largest) as usize).clamp(1, concurrency.max(1))
}

/// One block map the mark reads.
#[derive(Clone, Debug)]
pub(crate) struct MapRef {
    pub(crate) vm: VmName,
    pub(crate) point: PointId,
    pub(crate) disk: DiskName,
    /// The digest its record names; none for a map under a damaged record.
    pub(crate) digest: Option<String>,
}

impl Vault {
    /// Every record of every VM (see the module docs). A record deleted between the listing
    /// and the read (retention or a purge on another host) is simply not there.
    pub(crate) async fn live_points(&self) -> Result<LivePoints> {
        let store = self.store();
        let mut live = LivePoints::default();
        for vm in store.list_vms_everywhere().await? {
            let listing = store.list_points(&vm).await?;
            let known: HashSet<PointId> = listing
                .points
                .iter()
                .map(|p| p.id.clone())
                .chain(listing.damaged.iter().map(|d| d.id.clone()))
                .collect();
            let unfinished = store.unfinished_commits(&vm, &known).await?;
            live.unfinished
                .extend(unfinished.points.iter().map(|p| (vm.clone(), p.id.clone())));
            live.points.extend(listing.points);
            live.points.extend(unfinished.points);
            live.damaged.extend(listing.damaged);
            live.damaged.extend(unfinished.damaged);
        }
        Ok(live)
    }

    /// The maps the mark reads for `points` and `damaged` records.
    pub(crate) async fn maps_to_mark(
        &self,
        points: &[RecoveryPoint],
        damaged: &[DamagedPoint],
    ) -> Result<Vec<MapRef>> {
        let mut maps: Vec<MapRef> = points
            .iter()
            .flat_map(|p| {
                p.disks.iter().map(|d| MapRef {
                    vm: p.vm.clone(),
                    point: p.id.clone(),
                    disk: d.name.clone(),
                    digest: Some(d.map_digest.clone()),
                })
            })
            .collect();
        for record in damaged {
            for disk in self.store().list_map_disks(&record.vm, &record.id).await? {
                maps.push(MapRef {
                    vm: record.vm.clone(),
                    point: record.id.clone(),
                    disk,
                    digest: None,
                });
            }
        }
        Ok(maps)
    }
}
