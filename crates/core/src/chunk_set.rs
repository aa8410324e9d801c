use crate::ChunkId;

/// A set of chunk ids built once and then only searched: one sorted list, 32 bytes an id.
///
/// The sets a backup keeps (the chunks the vault's newest point names, the chunks a Snapshot
/// has just written) hold a million ids for a disk of a million blocks. A `HashSet` of them
/// costs 50 to 70 bytes an id at its load factor, and twice that for a moment each time it
/// grows; this costs 32, is built in place from the `Vec` it is given, and answers by
/// bisection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkSet {
    /// Sorted, no duplicates.
    ids: Vec<ChunkId>,
}

impl ChunkSet {
    pub fn new() -> ChunkSet {
        ChunkSet::default()
    }

    /// The set of `ids` (any order, duplicates allowed), sorted in place: no copy is made.
    pub fn from_vec(mut ids: Vec<ChunkId>) -> ChunkSet {
        ids.sort_unstable();
        ids.dedup();
        ids.shrink_to_fit();
        ChunkSet { ids }
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.ids.binary_search(id).is_ok()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The ids, in ascending order.
    pub fn iter(&self) -> std::slice::Iter<'_, ChunkId> {
        self.ids.iter()
    }

    /// The ids, in ascending order.
    pub fn as_slice(&self) -> &[ChunkId] {
        &self.ids
    }

    pub fn into_vec(self) -> Vec<ChunkId> {
        self.ids
    }

    /// Adds every id of `other`, in place: the list grows once, by exactly what is added (the
    /// allocator can often do that without a copy), and the two runs are merged from the back,
    /// with no scratch list the size of the set.
    pub fn merge(&mut self, other: &ChunkSet) {
        let ids = &mut self.ids;
        let added = other
            .iter()
            .filter(|id| ids.binary_search(id).is_err())
            .count();
        if added == 0 {
            return;
        }
        let old = ids.len();
        ids.reserve_exact(added);
        ids.resize(old + added, ChunkId::ZERO);
        let (mut i, mut k) = (old, old + added);
        for id in other.iter().rev() {
            // The old ids above `id` move up to make its place.
            while i > 0 && ids[i - 1] > *id {
                ids[k - 1] = ids[i - 1];
                i -= 1;
                k -= 1;
            }
            if i > 0 && ids[i - 1] == *id {
                continue;
            }
            ids[k - 1] = *id;
            k -= 1;
        }
        debug_assert_eq!(i, k, "every id found its place");
    }

    /// Removes every id of `other`.
    pub fn remove_all(&mut self, other: &ChunkSet) {
        if !other.is_empty() {
            self.ids.retain(|id| !other.contains(id));
        }
    }
}

impl FromIterator<ChunkId> for ChunkSet {
    fn from_iter<I: IntoIterator<Item = ChunkId>>(iter: I) -> ChunkSet {
        ChunkSet::from_vec(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a ChunkSet {
    type Item = &'a ChunkId;
    type IntoIter = std::slice::Iter<'a, ChunkId>;

    fn into_iter(self) -> Self::IntoIter {
        self.ids.iter()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn id(n: u8) -> ChunkId {
        ChunkId::from_bytes([n; 32])
    }

    proptest! {
        #[test]
        fn answers_as_a_btree_set_does(
            members in proptest::collection::vec(any::<u8>(), 0..64),
            probes in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let set: ChunkSet = members.iter().map(|&n| id(n)).collect();
            let truth: BTreeSet<ChunkId> = members.iter().map(|&n| id(n)).collect();
            prop_assert_eq!(set.len(), truth.len());
            let sorted: Vec<ChunkId> = truth.iter().copied().collect();
            prop_assert_eq!(set.as_slice(), &sorted[..]);
            for n in probes {
                prop_assert_eq!(set.contains(&id(n)), truth.contains(&id(n)));
            }
        }

        #[test]
        fn merge_and_remove_all_are_the_union_and_the_difference(
            old in proptest::collection::vec(0u8..40, 0..40),
            new in proptest::collection::vec(0u8..40, 0..40),
        ) {
            let set = |ns: &[u8]| -> ChunkSet { ns.iter().map(|&n| id(n)).collect() };
            let truth = |ns: &[u8]| -> BTreeSet<ChunkId> { ns.iter().map(|&n| id(n)).collect() };
            let mut merged = set(&old);
            merged.merge(&set(&new));
            let union: Vec<ChunkId> = truth(&old).union(&truth(&new)).copied().collect();
            prop_assert_eq!(merged.as_slice(), &union[..]);
            let mut removed = set(&old);
            removed.remove_all(&set(&new));
            let difference: Vec<ChunkId> = truth(&old).difference(&truth(&new)).copied().collect();
            prop_assert_eq!(removed.as_slice(), &difference[..]);
        }
    }

    #[test]
    fn duplicates_and_order_do_not_matter() {
        let set = ChunkSet::from_vec(vec![id(3), id(1), id(3), id(2)]);
        assert_eq!(set.as_slice(), &[id(1), id(2), id(3)]);
        assert!(set.contains(&id(2)) && !set.contains(&id(4)) && !set.contains(&id(0)));
        assert!(ChunkSet::new().is_empty());
    }
}
