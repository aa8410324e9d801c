//! A block map's encoding in pieces, so that a writer never holds it whole beside the map (at
//! a million blocks each is 32 MB).
//!
//! The checksum sits in the header, before the body it covers, so the body is walked twice:
//! once to hash it, once to hand it out. Walking it costs a copy of each id; hashing it is
//! what the whole encoding cost anyway.

use super::BlockMap;
use crate::ChunkId;

/// Bytes of body hashed at a time in the checksum pass.
const HASH_PIECE: usize = 64 << 10;

/// The encoding of a [`BlockMap`] (format version 2), handed out in pieces by
/// [`MapEncoder::fill`]: the header first, then the runs, each run header and id whole.
///
/// ```
/// # use blockvault_core::{BlockMap, BlockSize, ChunkId};
/// # let mut map = BlockMap::zeroed(1 << 30, BlockSize::new(1 << 20)?, jiff::Timestamp::UNIX_EPOCH);
/// # map.set(3, ChunkId::of(b"three"));
/// let mut encoder = map.encoder();
/// let mut pieces = Vec::new();
/// while !encoder.is_done() {
///     let mut piece = Vec::new();
///     encoder.fill(&mut piece, 100);
///     pieces.extend_from_slice(&piece);
/// }
/// assert_eq!(pieces, map.encode());
/// # Ok::<(), blockvault_core::Error>(())
/// ```
#[derive(Debug)]
pub struct MapEncoder<'a> {
    /// The header with its checksum, until it is handed out.
    header: Option<[u8; BlockMap::HEADER_LEN]>,
    runs: Runs<'a>,
}

/// Where the walk over the runs is.
#[derive(Debug)]
struct Runs<'a> {
    runs: Vec<(usize, &'a [ChunkId])>,
    /// The run being written.
    run: usize,
    /// Whether its run header is written.
    started: bool,
    /// Its ids written.
    ids: usize,
}

impl BlockMap {
    /// An encoder of this map (format version 2): the same bytes as [`BlockMap::encode`], in
    /// pieces of the caller's size.
    pub fn encoder(&self) -> MapEncoder<'_> {
        let runs = self.runs();
        let mut header = Vec::with_capacity(BlockMap::HEADER_LEN);
        self.header(&mut header, 2, runs.len() as u64);
        let mut hasher = blake3::Hasher::new();
        hasher.update(&header[..64]);
        let mut walk = Runs {
            runs,
            run: 0,
            started: false,
            ids: 0,
        };
        let mut piece = Vec::with_capacity(HASH_PIECE);
        while !walk.is_done() {
            piece.clear();
            walk.fill(&mut piece, HASH_PIECE);
            hasher.update(&piece);
        }
        header[64..96].copy_from_slice(hasher.finalize().as_bytes());
        let mut sealed = [0u8; BlockMap::HEADER_LEN];
        sealed.copy_from_slice(&header);
        MapEncoder {
            header: Some(sealed),
            runs: Runs {
                runs: walk.runs,
                run: 0,
                started: false,
                ids: 0,
            },
        }
    }

    /// The length of [`BlockMap::encode`]'s bytes, without encoding.
    pub fn encoded_len(&self) -> u64 {
        let runs = self.extents.len() as u64 + u64::from(self.end() < self.len);
        BlockMap::HEADER_LEN as u64 + runs * 16 + self.ids.len() as u64 * ChunkId::LEN as u64
    }
}

impl MapEncoder<'_> {
    /// Appends the next bytes of the encoding to `out` while it stays within `max` bytes, in
    /// whole run headers and ids; the 96-byte header goes first whatever `max`, and an empty
    /// `out` always gets something, so that every call makes progress.
    pub fn fill(&mut self, out: &mut Vec<u8>, max: usize) {
        if let Some(header) = self.header.take() {
            out.extend_from_slice(&header);
        }
        self.runs.fill(out, max);
    }

    /// Whether every byte has been handed out.
    pub fn is_done(&self) -> bool {
        self.header.is_none() && self.runs.is_done()
    }
}

impl Runs<'_> {
    fn fill(&mut self, out: &mut Vec<u8>, max: usize) {
        while let Some(&(zeros, ids)) = self.runs.get(self.run) {
            if !self.started {
                if out.len() + 16 > max && !out.is_empty() {
                    return;
                }
                out.extend_from_slice(&(zeros as u64).to_le_bytes());
                out.extend_from_slice(&(ids.len() as u64).to_le_bytes());
                self.started = true;
            }
            let mut room = max.saturating_sub(out.len()) / ChunkId::LEN;
            if out.is_empty() {
                room = room.max(1);
            }
            let take = room.min(ids.len() - self.ids);
            for id in &ids[self.ids..self.ids + take] {
                out.extend_from_slice(id.as_bytes());
            }
            self.ids += take;
            if self.ids < ids.len() {
                return;
            }
            self.run += 1;
            self.started = false;
            self.ids = 0;
        }
    }

    fn is_done(&self) -> bool {
        self.run >= self.runs.len()
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use proptest::prelude::*;

    use super::*;
    use crate::BlockSize;

    proptest! {
        /// Pieces of any size put together are the whole encoding, which decodes to the map.
        #[test]
        fn the_pieces_make_the_encoding(
            blocks in 0usize..200,
            sets in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..80),
            max in 1usize..400,
        ) {
            let bs = BlockSize::new(64 << 10).expect("bs");
            let mut map = BlockMap::zeroed(blocks as u64 * bs.bytes() - u64::from(blocks > 0), bs, Timestamp::UNIX_EPOCH);
            for (at, value) in sets {
                if blocks > 0 {
                    let id = if value < 64 { ChunkId::ZERO } else { ChunkId::from_bytes([value; 32]) };
                    map.set(at % blocks, id);
                }
            }
            let mut encoder = map.encoder();
            let mut whole = Vec::new();
            let mut first = true;
            while !encoder.is_done() {
                let mut piece = Vec::new();
                encoder.fill(&mut piece, max);
                prop_assert!(!piece.is_empty(), "every piece holds something");
                // Over `max` only for the header or a lone item.
                let bound = if first { BlockMap::HEADER_LEN.max(max) } else { max.max(ChunkId::LEN) };
                prop_assert!(piece.len() <= bound, "{} bytes against {}", piece.len(), max);
                first = false;
                whole.extend_from_slice(&piece);
            }
            prop_assert_eq!(whole.len() as u64, map.encoded_len());
            prop_assert_eq!(BlockMap::decode(&whole).expect("decode"), map);
        }
    }
}
