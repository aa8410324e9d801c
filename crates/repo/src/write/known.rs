//! Skip known: what the scan may leave out of the put stage, and the ids a write session has
//! claimed (each new chunk is compressed and sent at most once).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use blockvault_core::{BlockMap, ChunkId, ChunkSet, DiskName};

use crate::ChunkIndex;

/// What the scan may skip: a block whose id the previous point's map has at the same place,
/// a chunk the vault's chunk index holds (when there is one), and an id this backup has
/// already claimed. Chunks verify found bad are never taken as present.
///
/// The previous point's chunks are found by position, not in a set of them: a block that did
/// not change is where it was, and one that moved is in the index. Without an index a moved
/// block costs a `HEAD` before its upload, never a second copy.
pub(super) struct Known {
    pub(super) previous: Arc<HashMap<DiskName, Arc<BlockMap>>>,
    pub(super) claimed: Arc<Claimed>,
    pub(super) index: Option<Arc<ChunkIndex>>,
    pub(super) damaged: HashSet<ChunkId>,
}

impl Known {
    /// True the first time a new id is seen: the caller must send it. `previous` is the
    /// previous point's map of the disk block `index` belongs to. A block found only in the
    /// index costs a `pread` there (see [`ChunkIndex`]): a disk that moved all its blocks, a
    /// million of them, about a second on the scan's workers.
    pub(super) fn claim(&self, previous: Option<&BlockMap>, index: usize, id: ChunkId) -> bool {
        if self.damaged.contains(&id) {
            return self.claimed.insert(id);
        }
        let in_place = previous.is_some_and(|map| map.get(index) == Some(id));
        if in_place || self.index.as_ref().is_some_and(|i| i.contains(&id)) {
            return false;
        }
        self.claimed.insert(id)
    }
}

/// The new ids a backup has claimed, in 64 shards by ranges of the ids' first byte: the scan's
/// workers seldom wait on one another, and the shards in order are one sorted list, which is
/// the list of chunks the backup stored when it succeeds (see [`Claimed::into_set`]).
///
/// A shard keeps its ids sorted, 32 bytes each, and the latest in a small hash set that is
/// merged into them when it reaches a sixteenth of their number (at least 1,024): a million
/// ids cost about 34 MB, where hash sets cost 50 to 70 bytes an id and twice that while one
/// grew.
pub(super) struct Claimed {
    shards: Vec<Mutex<Shard>>,
}

#[derive(Default)]
struct Shard {
    sorted: ChunkSet,
    recent: HashSet<ChunkId>,
}

impl Shard {
    fn insert(&mut self, id: ChunkId) -> bool {
        if self.sorted.contains(&id) || !self.recent.insert(id) {
            return false;
        }
        if self.recent.len() >= (self.sorted.len() / 16).max(1024) {
            self.settle();
        }
        true
    }

    /// Moves the recent ids into the sorted ones.
    fn settle(&mut self) {
        self.sorted.merge(&self.recent.drain().collect());
    }
}

const SHARDS: usize = 64;

impl Default for Claimed {
    fn default() -> Claimed {
        Claimed {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl Claimed {
    /// True if `id` was not claimed before.
    fn insert(&self, id: ChunkId) -> bool {
        let shard = usize::from(id.as_bytes()[0]) * SHARDS / 256;
        lock(&self.shards[shard]).insert(id)
    }

    /// Every id claimed but those of `except`, as one set; the shards are freed one by one
    /// as they are copied out.
    pub(super) fn into_set(self, except: &ChunkSet) -> ChunkSet {
        let mut shards: Vec<Shard> = self
            .shards
            .into_iter()
            .map(|s| s.into_inner().unwrap_or_else(PoisonError::into_inner))
            .collect();
        let total = shards.iter().map(|s| s.sorted.len() + s.recent.len()).sum();
        let mut ids = Vec::with_capacity(total);
        for shard in &mut shards {
            shard.settle();
            let shard = std::mem::take(shard);
            ids.extend(shard.sorted.iter().filter(|id| !except.contains(id)));
        }
        // Already sorted and distinct, so the sort in `from_vec` is one pass over them.
        ChunkSet::from_vec(ids)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claimed_ids_are_claimed_once_and_come_out_sorted_without_the_exceptions() {
        // Enough ids that every shard settles its recent ids into its sorted ones many times.
        let ids: Vec<ChunkId> = (0u32..200_000)
            .map(|n| ChunkId::of(&n.to_le_bytes()))
            .collect();
        let claimed = Claimed::default();
        let firsts = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|w| {
                    let (claimed, ids) = (&claimed, &ids);
                    // Every worker claims every id, each in its own order.
                    scope.spawn(move || {
                        let order: Box<dyn Iterator<Item = &ChunkId>> = if w % 2 == 0 {
                            Box::new(ids.iter())
                        } else {
                            Box::new(ids.iter().rev())
                        };
                        order.filter(|id| claimed.insert(**id)).count()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("worker"))
                .sum::<usize>()
        });
        assert_eq!(firsts, ids.len(), "each id claimed exactly once");
        let except = ChunkSet::from_vec(ids[..10].to_vec());
        let set = claimed.into_set(&except);
        let mut expected = ids[10..].to_vec();
        expected.sort_unstable();
        assert_eq!(set.as_slice(), &expected[..]);
    }
}
