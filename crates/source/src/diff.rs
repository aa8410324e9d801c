use blockvault_core::BlockMap;

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
}
