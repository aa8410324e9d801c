//! The sweep of one VM's snapshots: what no committed point needs is deleted, through the
//! store (its listing of chunks, its staging leftovers), never by walking its files.

use std::collections::HashSet;
use std::path::Path;

use blockvault_core::{ChunkId, ChunkSet, PointId, VmName};
use blockvault_repo::Repository;
use blockvault_store::Store;
use futures::{StreamExt, TryStreamExt};

use crate::Result;
use crate::clones::sweep_clones;
use crate::heal::{healthy_points, set_aside};

/// Chunk deletes in flight at once.
const DELETES: usize = 8;

/// What an expiry or sweep freed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Point records (with their maps) deleted.
    pub points_removed: usize,
    /// Block maps of backups that never committed, deleted.
    pub orphan_maps_removed: usize,
    /// Chunks that no remaining point names, deleted.
    pub chunks_removed: u64,
    /// Half-written files a killed process left behind, deleted.
    pub leftovers_removed: u64,
    /// Bytes freed: of the files deleted, and what the file system freed for the clones
    /// deleted (`clone_bytes_freed`, counted here too).
    pub bytes_freed: u64,
    /// Kept clone directories of points no longer committed (expired, set aside), deleted.
    pub clone_dirs_removed: usize,
    /// Staging directories of captures whose process is gone, deleted.
    pub staging_dirs_removed: usize,
    /// What the file system freed for the clones deleted: only what they held alone (see
    /// `clones.rs`), never their apparent size.
    pub clone_bytes_freed: u64,
}

/// Deletes what no committed point of `vm` needs: maps of backups that never committed,
/// chunks no point's maps name, staging files a killed writer left, and in `clones` (the VM's
/// clones directory) the kept clones of points not committed and the staging directories of
/// captures whose process is gone. Call with the VM's snapshot lock held (a running
/// Snapshot's chunks are not named by any point yet).
///
/// A point whose map is damaged or missing cannot restore from the tier: its record is set
/// aside (see `heal.rs`) and its maps and chunks are swept with the rest. A map that cannot
/// be read for another reason (an I/O error) stops the sweep before any chunk or map is
/// deleted (staging leftovers go first): a chunk is only deleted when every live map was
/// read and none names it.
pub(crate) async fn sweep(vm: &VmName, vault: &Repository, clones: &Path) -> Result<SweepReport> {
    let store = vault.store();
    // First the staging files (of chunks, maps, records) a killed writer left: with the
    // snapshot lock held no writer of this VM runs, so whatever their age.
    let leftovers = store
        .remove_staging_leftovers(std::time::Duration::ZERO, false)
        .await;
    let mut points = healthy_points(vm, vault).await?.points;
    // Sorted and merged map by map: 32 bytes a live chunk, where a hash set took 50-70,
    // and points that share most of their chunks hold them once.
    let mut live = ChunkSet::new();
    let mut unusable = Vec::new();
    for point in &points {
        let mut named = ChunkSet::new();
        for disk in &point.disks {
            match store
                .get_map(vm, &point.id, &disk.name, Some(&disk.map_digest))
                .await
            {
                Ok(map) => named.merge(&ChunkSet::from_vec(map.data_ids().to_vec())),
                Err(e) if e.is_corrupt() || e.is_missing() => {
                    unusable.push(point.id.clone());
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if !unusable.contains(&point.id) {
            live.merge(&named);
        }
    }
    for id in &unusable {
        set_aside(store, vm, id).await?;
    }
    points.retain(|p| !unusable.contains(&p.id));
    let mut report = SweepReport {
        leftovers_removed: leftovers.files,
        bytes_freed: leftovers.bytes,
        ..SweepReport::default()
    };
    let committed: HashSet<&PointId> = points.iter().map(|p| &p.id).collect();
    let swept = {
        let clones = clones.to_owned();
        let committed: HashSet<PointId> = committed.iter().map(|&id| id.clone()).collect();
        tokio::task::spawn_blocking(move || sweep_clones(&clones, &committed))
            .await
            .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))?
    };
    report.clone_dirs_removed = swept.points;
    report.staging_dirs_removed = swept.staging;
    report.clone_bytes_freed = swept.bytes;
    report.bytes_freed += swept.bytes;
    for id in store.list_map_point_ids(vm).await? {
        if !committed.contains(&id) {
            store.delete_maps(vm, &id).await?;
            report.orphan_maps_removed += 1;
        }
    }
    sweep_chunks(store, &live, &mut report).await?;
    Ok(report)
}

/// Deletes the chunks the store lists that are not in `live`.
async fn sweep_chunks(store: &Store, live: &ChunkSet, report: &mut SweepReport) -> Result<()> {
    let garbage: Vec<(ChunkId, u64)> = store
        .list_chunk_objects()
        .try_filter_map(|chunk| async move {
            Ok((!live.contains(&chunk.id)).then_some((chunk.id, chunk.size)))
        })
        .try_collect()
        .await?;
    let mut deletes = futures::stream::iter(garbage)
        .map(|(id, size)| async move { store.delete_chunk(&id).await.map(|()| size) })
        .buffer_unordered(DELETES);
    while let Some(deleted) = deletes.next().await {
        report.bytes_freed += deleted?;
        report.chunks_removed += 1;
    }
    Ok(())
}
