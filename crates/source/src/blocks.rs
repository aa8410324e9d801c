use std::ops::Range;

use blockvault_core::BlockSize;

/// A set of blocks of a disk as ascending runs of block numbers: the blocks that hold data, or
/// the blocks a change hint marks dirty. A disk whose million data blocks lie in a few extents
/// costs a few runs, not a list of a million numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataBlocks {
    runs: Vec<Range<usize>>,
    len: usize,
}

impl DataBlocks {
    /// The blocks of a `size`-byte disk that overlap any of `extents` (byte ranges, in any
    /// order, overlapping or not): each extent is rounded out to whole blocks. What lies past
    /// the disk's end is cut off, and empty extents add nothing.
    pub(crate) fn covering(
        extents: impl IntoIterator<Item = Range<u64>>,
        block_size: BlockSize,
        size: u64,
    ) -> DataBlocks {
        let bs = block_size.bytes();
        let mut extents: Vec<Range<u64>> = extents
            .into_iter()
            .map(|e| e.start..e.end.min(size))
            .filter(|e| e.start < e.end)
            .collect();
        // Sources report their extents in order already; sorting those costs one pass.
        extents.sort_unstable_by_key(|e| e.start);
        let mut blocks = DataBlocks::default();
        for extent in extents {
            blocks.add(
                (extent.start / bs) as usize,
                ((extent.end - 1) / bs) as usize,
            );
        }
        blocks
    }

    /// Blocks `first..=last`, after every block added so far but for those it already has
    /// (neighbouring or overlapping extents may share blocks). Extents must come sorted by
    /// their first block.
    fn add(&mut self, first: usize, last: usize) {
        let from = match self.runs.last() {
            Some(run) => first.max(run.end),
            None => first,
        };
        if from > last {
            return;
        }
        self.len += last + 1 - from;
        match self.runs.last_mut() {
            Some(run) if run.end == from => run.end = last + 1,
            _ => self.runs.push(from..last + 1),
        }
    }

    /// The blocks in both sets.
    pub(crate) fn intersection(&self, other: &DataBlocks) -> DataBlocks {
        let mut both = DataBlocks::default();
        let (mut a, mut b) = (self.runs.iter().peekable(), other.runs.iter().peekable());
        while let (Some(x), Some(y)) = (a.peek(), b.peek()) {
            let (start, end) = (x.start.max(y.start), x.end.min(y.end));
            if start < end {
                both.add(start, end - 1);
            }
            // The run that ends first cannot meet anything further in the other set.
            if x.end <= y.end {
                a.next();
            } else {
                b.next();
            }
        }
        both
    }

    /// The runs, ascending, none empty, none touching the next.
    pub(crate) fn runs(&self) -> &[Range<usize>] {
        &self.runs
    }

    /// Blocks in all.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The block numbers, ascending.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.runs.iter().flat_map(Clone::clone)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn data_blocks_join_neighbouring_extents_and_count_a_shared_block_once() {
        let mut blocks = DataBlocks::default();
        for (first, last) in [(0, 2), (2, 3), (5, 5), (5, 7), (6, 6), (9, 9)] {
            blocks.add(first, last);
        }
        assert_eq!(
            blocks.iter().collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 5, 6, 7, 9]
        );
        assert_eq!(blocks.len(), 8);
        assert_eq!(blocks.runs, vec![0..4, 5..8, 9..10]);
    }

    #[test]
    fn extents_are_rounded_out_cut_at_the_end_and_may_come_in_any_order() {
        let bs = BlockSize::new(64 << 10).expect("bs");
        let k = 64 << 10;
        let size = 10 * k + 100;
        let blocks = DataBlocks::covering(
            [
                9 * k + 1..20 * k, // past the end: blocks 9 and 10 (the short tail)
                k - 1..k + 1,      // straddles blocks 0 and 1
                5 * k..5 * k,      // empty
                3 * k..4 * k,      // exactly block 3
                3 * k + 5..3 * k + 6,
                40 * k..41 * k, // wholly past the end
            ],
            bs,
            size,
        );
        assert_eq!(blocks.runs, vec![0..2, 3..4, 9..11]);
        assert_eq!(blocks.len(), 5);
        assert!(DataBlocks::covering([], bs, size).is_empty());
    }

    fn set(bits: &[bool]) -> DataBlocks {
        let mut blocks = DataBlocks::default();
        for (i, _) in bits.iter().enumerate().filter(|(_, b)| **b) {
            blocks.add(i, i);
        }
        blocks
    }

    proptest! {
        #[test]
        fn intersection_is_the_blocks_in_both(
            a in proptest::collection::vec(any::<bool>(), 0..64),
            b in proptest::collection::vec(any::<bool>(), 0..64),
        ) {
            let both: Vec<bool> = (0..a.len().max(b.len()))
                .map(|i| a.get(i) == Some(&true) && b.get(i) == Some(&true))
                .collect();
            let got = set(&a).intersection(&set(&b));
            prop_assert_eq!(&got, &set(&both));
            prop_assert_eq!(got.len(), both.iter().filter(|b| **b).count());
        }
    }
}
