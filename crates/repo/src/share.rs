//! A share of a repository's chunks: slice `k` of `n` of the chunk id space, what a rolling
//! verification reads in one go (see [`Repository::verify_share`](crate::Repository::verify_share)).
//!
//! The id space is cut into `n` ranges of equal width by the first eight bytes of an id, read
//! as a big-endian number: slice `k` holds the ids whose prefix `p` has `p * n / 2^64 == k`.
//! Which slice an id is in depends on the id alone, not on which other chunks exist, so the `n`
//! slices of one `n` always partition every set of chunks: reading slice `d mod n` on day `d`
//! reads each chunk that exists for `n` consecutive days exactly once, however many chunks
//! come and go meanwhile (a chunk written on a day after its slice was read waits at most `n`
//! days). Ids are BLAKE3 digests (keyed or not), so the slices hold about as many chunks each.

use std::fmt;

use blockvault_core::ChunkId;
use serde::Serialize;

/// Slice `slice` of `of` equal ranges of the chunk id space (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ChunkShare {
    slice: u32,
    of: u32,
}

impl Default for ChunkShare {
    fn default() -> ChunkShare {
        ChunkShare::ALL
    }
}

impl ChunkShare {
    /// Every chunk: the one slice of one.
    pub const ALL: ChunkShare = ChunkShare { slice: 0, of: 1 };

    /// Slice `slice` (counted from 0) of `of`; `None` unless `slice < of`.
    pub fn new(slice: u32, of: u32) -> Option<ChunkShare> {
        (slice < of).then_some(ChunkShare { slice, of })
    }

    /// The slice of day `day` (any day count, e.g. days since the Unix epoch) when the whole
    /// id space is read every `every` days: slice `day mod every`. `None` when `every` is 0.
    pub fn of_day(day: i64, every: u32) -> Option<ChunkShare> {
        if every == 0 {
            return None;
        }
        let slice = day.rem_euclid(i64::from(every));
        ChunkShare::new(u32::try_from(slice).ok()?, every)
    }

    /// Which slice, from 0.
    pub fn slice(&self) -> u32 {
        self.slice
    }

    /// Of how many.
    pub fn of(&self) -> u32 {
        self.of
    }

    pub fn is_all(&self) -> bool {
        self.of == 1
    }

    /// Whether chunk `id` is in this slice.
    pub fn contains(&self, id: &ChunkId) -> bool {
        if self.is_all() {
            return true;
        }
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&id.as_bytes()[..8]);
        let p = u128::from(u64::from_be_bytes(prefix));
        (p * u128::from(self.of)) >> 64 == u128::from(self.slice)
    }
}

/// `slice 3 of 30` (counted from 1 for people), or `every chunk`.
impl fmt::Display for ChunkShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            f.write_str("every chunk")
        } else {
            write!(f, "slice {} of {}", self.slice + 1, self.of)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(first: u64, salt: u8) -> ChunkId {
        let mut bytes = [salt; 32];
        bytes[..8].copy_from_slice(&first.to_be_bytes());
        ChunkId::from_bytes(bytes)
    }

    #[test]
    fn n_consecutive_days_read_every_chunk_exactly_once() {
        let ids: Vec<ChunkId> = (0..2000u32)
            .map(|n| ChunkId::hash(&n.to_le_bytes()))
            .chain([id(0, 1), id(u64::MAX, 2), id(1 << 63, 3), ChunkId::ZERO])
            .collect();
        for every in [1u32, 2, 7, 30, 365] {
            // Any N consecutive days, also across the epoch.
            for first_day in [-3i64, 0, 20_000, 20_013] {
                for id in &ids {
                    let reads = (first_day..first_day + i64::from(every))
                        .filter(|&d| ChunkShare::of_day(d, every).is_some_and(|s| s.contains(id)))
                        .count();
                    assert_eq!(reads, 1, "{id} over {every} days from day {first_day}");
                }
            }
        }
    }

    #[test]
    fn slices_are_about_even() {
        let every = 10;
        let mut counts = [0u32; 10];
        for n in 0..10_000u32 {
            let id = ChunkId::hash(&n.to_le_bytes());
            let slice = (0..every)
                .find(|&k| ChunkShare::new(k, every).is_some_and(|s| s.contains(&id)))
                .expect("in a slice");
            counts[slice as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn the_ends_of_the_id_space_fall_in_the_first_and_last_slices() {
        let first = ChunkShare::new(0, 30).expect("share");
        let last = ChunkShare::new(29, 30).expect("share");
        assert!(first.contains(&id(0, 0)));
        assert!(last.contains(&id(u64::MAX, 0xff)));
        assert!(!last.contains(&id(0, 0)));
        assert_eq!(last.to_string(), "slice 30 of 30");
        assert_eq!(ChunkShare::ALL.to_string(), "every chunk");
    }

    #[test]
    fn no_share_of_zero_days_or_past_the_end() {
        assert_eq!(ChunkShare::of_day(5, 0), None);
        assert_eq!(ChunkShare::new(3, 3), None);
        assert_eq!(ChunkShare::of_day(-1, 7), ChunkShare::new(6, 7));
    }
}
