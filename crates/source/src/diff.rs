use blockvault_core::BlockMap;

use crate::{ChangeHint, DataBlocks};

/// The blocks of `new` that hold data and that `old` does not have at the same position: the
/// blocks an incremental backup must consider sending. Without an `old` map, or when the block
/// sizes differ, that is every non-zero block.
///
/// Blocks that became all-zero are not listed: the new map records them as zero and nothing needs
/// storing. A block whose length changed (the tail of a resized disk) counts as changed.
///
/// The blocks come in order, as they are found: a full backup of a million blocks need not
/// hold a list of a million numbers.
pub fn changed_blocks<'a>(
    old: Option<&'a BlockMap>,
    new: &'a BlockMap,
) -> impl Iterator<Item = usize> + 'a {
    let comparable = old.filter(|o| o.block_size() == new.block_size());
    new.data()
        .filter(move |&(i, id)| match comparable {
            Some(old) if i < old.len() => old.get(i) != Some(id) || old.len_of(i) != new.len_of(i),
            _ => true,
        })
        .map(|(i, _)| i)
}

/// The blocks where `scanned` (a full scan of the disk now) differs from `parent` (the map the
/// hint is relative to) that `hint` did not mark dirty: what a map built on the hint would have
/// got wrong. Empty for a sound hint, for [`ChangeHint::Everything`], and when the maps differ
/// in size or block size (the hint would not have been applied to them).
///
/// The periodic check of change tracking: a scan of the whole disk, compared with what the
/// hint claimed.
pub fn missed_by_hint(parent: &BlockMap, scanned: &BlockMap, hint: &ChangeHint) -> Vec<usize> {
    let ChangeHint::Dirty(extents) = hint else {
        return Vec::new();
    };
    if parent.block_size() != scanned.block_size() || parent.disk_size() != scanned.disk_size() {
        return Vec::new();
    }
    let dirty = DataBlocks::covering(
        extents.iter().cloned(),
        scanned.block_size(),
        scanned.disk_size(),
    );
    let mut runs = dirty.runs().iter().peekable();
    let mut missed = Vec::new();
    for i in 0..scanned.len() {
        while runs.peek().is_some_and(|r| r.end <= i) {
            runs.next();
        }
        let is_dirty = runs.peek().is_some_and(|r| r.start <= i);
        if !is_dirty && parent.get(i) != scanned.get(i) {
            missed.push(i);
        }
    }
    missed
}

#[cfg(test)]
mod tests {
    use blockvault_core::{BlockSize, ChunkId};
    use jiff::Timestamp;

    use super::*;

    fn map(ids: &[u8], tail: u64) -> BlockMap {
        let bs = BlockSize::new(64 << 10).expect("bs");
        let size = (ids.len() as u64 - 1) * bs.bytes() + tail;
        let ids = ids
            .iter()
            .map(|&b| {
                if b == 0 {
                    ChunkId::ZERO
                } else {
                    ChunkId::of(&[b])
                }
            })
            .collect();
        BlockMap::from_ids(size, bs, Timestamp::UNIX_EPOCH, ids).expect("map")
    }

    #[test]
    fn only_new_non_zero_blocks_are_changed() {
        let old = map(&[1, 2, 0, 4, 5], 65536);
        let new = map(&[1, 9, 3, 0, 5], 65536);
        assert_eq!(
            changed_blocks(Some(&old), &new).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(
            changed_blocks(None, &new).collect::<Vec<_>>(),
            vec![0, 1, 2, 4]
        );
    }

    #[test]
    fn growth_and_tail_changes_count() {
        let old = map(&[1, 2], 100);
        let new = map(&[1, 2, 3], 65536);
        assert_eq!(
            changed_blocks(Some(&old), &new).collect::<Vec<_>>(),
            vec![1, 2]
        );
    }

    #[test]
    fn a_different_block_size_means_everything_changed() {
        let new = map(&[1, 2], 65536);
        let bs = BlockSize::new(128 << 10).expect("bs");
        let old = BlockMap::from_ids(
            2 * 65536,
            bs,
            Timestamp::UNIX_EPOCH,
            vec![ChunkId::of(&[1])],
        )
        .expect("map");
        assert_eq!(
            changed_blocks(Some(&old), &new).collect::<Vec<_>>(),
            vec![0, 1]
        );
    }

    #[test]
    fn a_hint_that_missed_a_change_is_caught_by_the_full_scan() {
        let k = 64u64 << 10;
        let parent = map(&[1, 2, 3, 4, 5], k);
        let scanned = map(&[1, 9, 3, 0, 5], k);
        // Blocks 1 and 3 changed (3 to zero); the hint names block 1 only.
        let hint = ChangeHint::Dirty(std::iter::once(k + 10..k + 11).collect());
        assert_eq!(missed_by_hint(&parent, &scanned, &hint), vec![3]);
        let sound = ChangeHint::Dirty(vec![k..2 * k, 3 * k + 5..3 * k + 6]);
        assert!(missed_by_hint(&parent, &scanned, &sound).is_empty());
        assert!(missed_by_hint(&parent, &scanned, &ChangeHint::Everything).is_empty());
        // Maps of other sizes: the hint would have been refused, nothing to check.
        let longer = map(&[1, 9, 3, 0, 5, 6], k);
        assert!(missed_by_hint(&parent, &longer, &ChangeHint::Dirty(vec![])).is_empty());
        assert_eq!(
            missed_by_hint(&parent, &scanned, &ChangeHint::Dirty(vec![])),
            vec![1, 3]
        );
    }
}
