//! What a copy into a repository holds and has read before it copies anything, whether an
//! early send read it while the Snapshot ran or the Transfer itself.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use blockvault_core::{BlockMap, ChunkId, ChunkSet, DiskName, RecoveryPoint, VmName};

use crate::guard::Held;
use crate::write::ParentChoice;
use crate::{ChunkIndex, Error, Repository, Result};

/// What a writer into this vault holds and has read before it copies anything: its guard
/// (a vault's lease), the chunks verify found damaged, the newest point of the VM and
/// its maps, and this host's chunk index; and what an early send already stored.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) held: Box<dyn Held>,
    pub(crate) damaged: HashSet<ChunkId>,
    pub(crate) warnings: Vec<String>,
    pub(crate) parent: Option<RecoveryPoint>,
    pub(crate) previous: HashMap<DiskName, Arc<BlockMap>>,
    pub(crate) index: Option<ChunkIndex>,
    /// Chunks an early send stored, and the bytes it stored.
    pub(crate) sent: ChunkSet,
    pub(crate) sent_bytes: u64,
}

impl Prepared {
    /// Whether the vault is known to hold `id`, found at block `place` (disk, index) when the
    /// caller knows where: the newest point's map has it at the same place, or the index has
    /// it, and verify did not find it damaged.
    ///
    /// The newest point's chunks are found by place, not in a set of them (a million ids
    /// would cost 32 MB): a block that did not change is where it was, and one that moved is
    /// in the index, which names every chunk this host stored or listed. A chunk another host
    /// stored since is copied again, harmlessly, or asked about first when there is no index.
    pub(crate) fn knows(&self, place: Option<(&DiskName, usize)>, id: &ChunkId) -> bool {
        if id.is_zero() {
            return true;
        }
        if self.damaged.contains(id) {
            return false;
        }
        let in_place = place.is_some_and(|(disk, block)| {
            self.previous
                .get(disk)
                .is_some_and(|map| map.get(block) == Some(*id))
        });
        in_place || self.index.as_ref().is_some_and(|x| x.contains(id))
    }

    /// Releases the guard; a failure to remove it is returned as a warning.
    pub(crate) async fn release(self) -> Option<String> {
        self.held.release().await
    }
}

impl Repository {
    /// What a transfer of `vm`'s disks `disks` does first: the writer's lease, then, under it,
    /// the newest point, its maps and the chunk index. The lease is released on failure.
    pub(crate) async fn prepare_write(
        &self,
        vm: &VmName,
        disks: &HashSet<DiskName>,
    ) -> Result<Prepared> {
        let mut warnings = Vec::new();
        let (held, damaged) = self
            .begin_write(&format!("transfer of {vm}"), &mut warnings)
            .await?;
        let read = async {
            let parent = self
                .read_parent(vm, &ParentChoice::Newest, disks, &mut warnings)
                .await?;
            let index = self.chunk_index().await?;
            Ok::<_, Error>((parent.point, parent.maps, index))
        }
        .await;
        match read {
            Ok((parent, previous, index)) => Ok(Prepared {
                held,
                damaged,
                warnings,
                parent,
                previous,
                index,
                sent: ChunkSet::new(),
                sent_bytes: 0,
            }),
            Err(e) => {
                held.release().await;
                Err(e)
            }
        }
    }
}

/// What an early send leaves for the Transfer.
#[derive(Debug)]
pub struct Sent {
    /// The writer's lease and what was read under it, or why they could not be had (the
    /// Transfer's own error then: it would have met the same).
    pub(crate) prepared: Result<Prepared>,
    /// Offers declined, for the report.
    pub declined: u64,
}
