use jiff::Timestamp;

use crate::{BlockSize, ChunkId, Error, Result};

mod decoder;
mod encoder;

pub use decoder::MapDecoder;
pub use encoder::MapEncoder;

const WHAT: &str = "block map";

/// The full description of one disk at one point: its size, block size, and the id of every
/// block in order ([`ChunkId::ZERO`] for all-zero blocks). Like a PBS fixed index, a block map
/// stands alone: restoring a point never walks a chain of incrementals.
///
/// Encoding (little endian): a 96-byte header, then the body.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | magic `BVBLKMAP` |
/// | 8 | 2 | format version (2; 1 is still read) |
/// | 10 | 1 | encryption scheme (0 = none; reserved for keyed ids + AEAD) |
/// | 11 | 1 | reserved, 0 |
/// | 12 | 4 | block size in bytes |
/// | 16 | 8 | disk size in bytes |
/// | 24 | 8 | creation time, Unix milliseconds (signed) |
/// | 32 | 8 | block count (= ceil(disk size / block size)) |
/// | 40 | 8 | version 2: number of runs in the body; version 1: reserved, 0 |
/// | 48 | 16 | reserved, 0 |
/// | 64 | 32 | BLAKE3 of bytes 0..64 followed by the body |
/// | 96 | | the body |
///
/// Version 2's body is a sequence of runs, each a u64 count of zero blocks, a u64 count `n`
/// of non-zero blocks, and those `n` ids (32 bytes each); the runs cover every block in order.
/// Zero blocks cost nothing, so a 1 TiB disk holding 4 GiB costs what 4 GiB costs (at 4 MiB
/// blocks, about 32 KiB instead of 8 MiB). Version 1's body is every id in order, `block
/// count` × 32 bytes (8 MiB per TiB of disk at 4 MiB blocks, holes included).
///
/// In memory a map holds only its data blocks: the runs of non-zero blocks (where each starts)
/// and their ids, so a 1 TiB disk holding a few GiB costs what those GiB cost, whatever the
/// block size.
#[derive(Clone, PartialEq, Eq)]
pub struct BlockMap {
    disk_size: u64,
    block_size: BlockSize,
    created: Timestamp,
    /// Blocks in the disk.
    len: usize,
    /// The runs of non-zero blocks, in block order, each as long as it can be (a zero block
    /// or more between two), so that equal maps are equal field by field.
    extents: Vec<Extent>,
    /// The non-zero ids, in block order: extent `k` owns `ids[extents[k].at..]` up to where
    /// the next extent's ids start.
    ids: Vec<ChunkId>,
}

/// A run of non-zero blocks: its first block, and where its ids start in [`BlockMap::ids`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Extent {
    first: usize,
    at: usize,
}

impl BlockMap {
    pub const MAGIC: [u8; 8] = *b"BVBLKMAP";
    /// The format version written; every version up to it is read.
    pub const VERSION: u16 = 2;
    pub const HEADER_LEN: usize = 96;

    /// A map whose every block is zero (an empty, fully sparse disk).
    pub fn zeroed(disk_size: u64, block_size: BlockSize, created: Timestamp) -> BlockMap {
        BlockMap {
            disk_size,
            block_size,
            created,
            len: block_size.blocks_for(disk_size) as usize,
            extents: Vec::new(),
            ids: Vec::new(),
        }
    }

    /// A map from the id of every block; `ids.len()` must equal the block count for
    /// `disk_size`.
    pub fn from_ids(
        disk_size: u64,
        block_size: BlockSize,
        created: Timestamp,
        ids: Vec<ChunkId>,
    ) -> Result<BlockMap> {
        let expected = block_size.blocks_for(disk_size);
        if ids.len() as u64 != expected {
            return Err(Error::Malformed {
                what: WHAT,
                reason: format!(
                    "{} ids for a {disk_size}-byte disk of {block_size} blocks, expected {expected}",
                    ids.len()
                ),
            });
        }
        let mut map = BlockMap::zeroed(disk_size, block_size, created);
        for (index, id) in ids.into_iter().enumerate() {
            map.push(index, id);
        }
        Ok(map)
    }

    pub fn disk_size(&self) -> u64 {
        self.disk_size
    }

    pub fn block_size(&self) -> BlockSize {
        self.block_size
    }

    pub fn created(&self) -> Timestamp {
        self.created
    }

    /// Blocks in the disk, zero or not.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The id of block `index` ([`ChunkId::ZERO`] for a zero block), or `None` past the end.
    pub fn get(&self, index: usize) -> Option<ChunkId> {
        if index >= self.len {
            return None;
        }
        Some(self.slot(index).map_or(ChunkId::ZERO, |at| self.ids[at]))
    }

    /// The id of every block in order, zeros included.
    pub fn iter(&self) -> impl Iterator<Item = ChunkId> + '_ {
        let mut data = self.data().peekable();
        (0..self.len).map(move |index| match data.peek() {
            Some(&(at, id)) if at == index => {
                data.next();
                id
            }
            _ => ChunkId::ZERO,
        })
    }

    /// The blocks that hold data, in order: (index, id).
    pub fn data(&self) -> impl Iterator<Item = (usize, ChunkId)> + '_ {
        (0..self.extents.len()).flat_map(move |k| {
            let first = self.extents[k].first;
            self.extent_ids(k)
                .iter()
                .enumerate()
                .map(move |(j, id)| (first + j, *id))
        })
    }

    /// The ids of the blocks that hold data, in block order (repeats included).
    pub fn data_ids(&self) -> &[ChunkId] {
        &self.ids
    }

    /// Blocks that are not all-zero.
    pub fn data_blocks(&self) -> usize {
        self.ids.len()
    }

    /// Makes room for `blocks` more data blocks at once (a scan knows how many it will set),
    /// instead of the list doubling as it grows.
    pub fn reserve(&mut self, blocks: usize) {
        self.ids.reserve_exact(blocks);
    }

    /// Gives back room reserved and not used (blocks found all-zero).
    pub fn shrink_to_fit(&mut self) {
        self.ids.shrink_to_fit();
        self.extents.shrink_to_fit();
    }

    /// Sets block `index` to `id`. Setting blocks in ascending order (as a scan does) costs
    /// nothing more than storing the id; setting an earlier block rebuilds the map's lists.
    ///
    /// # Panics
    /// When `index` is past the end of the disk.
    pub fn set(&mut self, index: usize, id: ChunkId) {
        assert!(
            index < self.len,
            "block {index} of a {}-block map",
            self.len
        );
        if index >= self.end() {
            self.push(index, id);
            return;
        }
        match self.slot(index) {
            Some(at) if !id.is_zero() => self.ids[at] = id,
            None if id.is_zero() => {}
            _ => {
                let mut data: Vec<(usize, ChunkId)> =
                    self.data().filter(|&(at, _)| at != index).collect();
                let at = data.partition_point(|&(at, _)| at < index);
                data.insert(at, (index, id));
                self.extents.clear();
                self.ids.clear();
                for (at, id) in data {
                    self.push(at, id);
                }
            }
        }
    }

    /// Records block `index` (at or after [`BlockMap::end`]) as `id`; zero ids cost nothing.
    fn push(&mut self, index: usize, id: ChunkId) {
        if id.is_zero() {
            return;
        }
        debug_assert!(index >= self.end(), "blocks are pushed in order");
        if self.extents.is_empty() || index != self.end() {
            self.extents.push(Extent {
                first: index,
                at: self.ids.len(),
            });
        }
        self.ids.push(id);
    }

    /// The block after the last data block (0 for a map without data).
    fn end(&self) -> usize {
        self.extents
            .last()
            .map_or(0, |e| e.first + (self.ids.len() - e.at))
    }

    /// Where block `index`'s id is in `ids`, if it holds data.
    fn slot(&self, index: usize) -> Option<usize> {
        let k = self
            .extents
            .partition_point(|e| e.first <= index)
            .checked_sub(1)?;
        let offset = index - self.extents[k].first;
        (offset < self.extent_ids(k).len()).then(|| self.extents[k].at + offset)
    }

    /// The ids of extent `k`.
    fn extent_ids(&self, k: usize) -> &[ChunkId] {
        let end = self.extents.get(k + 1).map_or(self.ids.len(), |e| e.at);
        &self.ids[self.extents[k].at..end]
    }

    /// Byte offset of block `index` in the disk.
    pub fn offset_of(&self, index: usize) -> u64 {
        index as u64 * self.block_size.bytes()
    }

    /// Length of block `index`: the block size, or less for the last block of a disk whose size
    /// is not a multiple of it.
    pub fn len_of(&self, index: usize) -> usize {
        let start = self.offset_of(index);
        (self.disk_size - start).min(self.block_size.bytes()) as usize
    }

    /// The map in the current format (version 2): zero ids as run lengths, so a sparse disk's
    /// map costs what its data blocks cost, not its size.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len() as usize);
        self.encoder().fill(&mut out, usize::MAX);
        out
    }

    /// The map in format version 1 (every id written out), which builds before version 2
    /// read. Nothing writes it any more; it stays for the format fixtures.
    pub fn encode_v1(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::HEADER_LEN + self.len * ChunkId::LEN);
        self.header(&mut out, 1, 0);
        for id in self.iter() {
            out.extend_from_slice(id.as_bytes());
        }
        seal(&mut out);
        out
    }

    /// Bytes 0..96 with the checksum left zero (see [`seal`]). `runs` goes at 40 (version 2;
    /// reserved and zero in version 1).
    fn header(&self, out: &mut Vec<u8>, version: u16, runs: u64) {
        out.extend_from_slice(&Self::MAGIC);
        out.extend_from_slice(&version.to_le_bytes());
        out.push(0); // encryption: none
        out.push(0); // reserved
        out.extend_from_slice(&self.block_size.get().to_le_bytes());
        out.extend_from_slice(&self.disk_size.to_le_bytes());
        out.extend_from_slice(&(self.created.as_millisecond()).to_le_bytes());
        out.extend_from_slice(&(self.len as u64).to_le_bytes());
        out.extend_from_slice(&runs.to_le_bytes());
        out.extend_from_slice(&[0u8; 16]);
        out.extend_from_slice(&[0u8; 32]);
        debug_assert_eq!(out.len(), Self::HEADER_LEN);
    }

    /// The blocks as alternating runs, (zero blocks, then the ids of non-zero blocks), until
    /// the end; only the last run may have no ids.
    fn runs(&self) -> Vec<(usize, &[ChunkId])> {
        let mut runs = Vec::with_capacity(self.extents.len() + 1);
        let mut at = 0;
        for (k, extent) in self.extents.iter().enumerate() {
            let ids = self.extent_ids(k);
            runs.push((extent.first - at, ids));
            at = extent.first + ids.len();
        }
        if at < self.len {
            runs.push((self.len - at, &[][..]));
        }
        runs
    }

    /// Decodes a map of either format version, after checking its header, structure, length
    /// and checksum. [`MapDecoder`] does the same with the bytes in pieces.
    pub fn decode(bytes: &[u8]) -> Result<BlockMap> {
        let mut decoder = MapDecoder::new(Some(bytes.len() as u64));
        decoder.feed(bytes);
        decoder.finish()
    }
}

/// Fills in the checksum at 64..96: BLAKE3 of bytes 0..64 followed by the body.
fn seal(out: &mut [u8]) {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&out[..64]);
    hasher.update(&out[BlockMap::HEADER_LEN..]);
    out[64..96].copy_from_slice(hasher.finalize().as_bytes());
}

fn id_at(bytes: &[u8]) -> ChunkId {
    let mut id = [0u8; ChunkId::LEN];
    id.copy_from_slice(&bytes[..ChunkId::LEN]);
    ChunkId::from_bytes(id)
}

impl std::fmt::Debug for BlockMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockMap")
            .field("disk_size", &self.disk_size)
            .field("block_size", &self.block_size)
            .field("created", &self.created)
            .field("blocks", &self.len)
            .field("data_blocks", &self.data_blocks())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Six blocks, data in blocks 1 and 5: runs (1 zero, 1 id) and (3 zeros, 1 id), 192 bytes.
    pub(super) fn sample() -> BlockMap {
        let created: Timestamp = "2026-11-23T10:00:00Z".parse().expect("ts");
        let bs = BlockSize::new(64 << 10).expect("bs");
        let mut map = BlockMap::zeroed(5 * (64 << 10) + 100, bs, created);
        map.set(1, ChunkId::of(b"one"));
        map.set(5, ChunkId::of(b"tail"));
        map
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let map = sample();
        assert_eq!(map.len(), 6);
        assert_eq!(map.len_of(5), 100);
        assert_eq!(map.len_of(0), 64 << 10);
        let decoded = BlockMap::decode(&map.encode()).expect("decode");
        assert_eq!(decoded, map);
    }

    #[test]
    fn any_flipped_bit_is_caught_in_either_version() {
        for bytes in [sample().encode(), sample().encode_v1()] {
            for at in (0..bytes.len()).step_by(3) {
                let mut bad = bytes.clone();
                bad[at] ^= 0x10;
                assert!(
                    BlockMap::decode(&bad).is_err(),
                    "flip at {at} of version {} went unnoticed",
                    bytes[8]
                );
            }
        }
    }

    #[test]
    fn version_1_still_decodes_and_holes_cost_nothing_in_version_2() {
        let map = sample();
        assert_eq!(BlockMap::decode(&map.encode_v1()).expect("v1"), map);
        assert_eq!(map.encode_v1()[8], 1);
        assert_eq!(map.encode()[8], 2);

        // A 1 TiB disk at 4 MiB blocks with data in three places.
        let bs = BlockSize::new(4 << 20).expect("4 MiB");
        let mut big = BlockMap::zeroed(1 << 40, bs, Timestamp::UNIX_EPOCH);
        for at in [0, 1, 2, 100_000, 262_143] {
            big.set(at, ChunkId::of(&(at + 1).to_le_bytes()));
        }
        let v2 = big.encode();
        assert_eq!(v2.len(), 96 + 3 * 16 + 5 * 32, "three runs, five ids");
        assert_eq!(big.encode_v1().len(), 96 + 262_144 * 32);
        assert_eq!(BlockMap::decode(&v2).expect("v2"), big);
        let empty = BlockMap::zeroed(0, BlockSize::DEFAULT, Timestamp::UNIX_EPOCH);
        assert_eq!(BlockMap::decode(&empty.encode()).expect("empty"), empty);
    }

    #[test]
    fn version_2_runs_must_cover_the_disk_exactly() {
        // Re-sealed so that only the structure is wrong, not the checksum.
        let reseal = |mut bytes: Vec<u8>| {
            seal(&mut bytes);
            bytes
        };
        let good = sample().encode();
        let mut short = good.clone();
        let last_zeros = good.len() - 32 - 16;
        short[last_zeros..last_zeros + 8].copy_from_slice(&2u64.to_le_bytes());
        let err = BlockMap::decode(&reseal(short)).expect_err("runs past the end");
        assert!(matches!(err, Error::Malformed { .. }), "{err}");
        let mut fewer = good.clone();
        fewer[last_zeros..last_zeros + 8].copy_from_slice(&0u64.to_le_bytes());
        let err = BlockMap::decode(&reseal(fewer)).expect_err("runs short of the end");
        assert!(matches!(err, Error::Malformed { .. }), "{err}");
        let mut more_runs = good;
        more_runs[40] += 1;
        let err = BlockMap::decode(&reseal(more_runs)).expect_err("a run missing");
        assert!(matches!(err, Error::Truncated { .. }), "{err}");
    }

    #[test]
    fn truncation_wrong_magic_and_new_versions_are_named() {
        let bytes = sample().encode();
        let err = BlockMap::decode(&bytes[..bytes.len() - 1]).expect_err("truncated");
        assert!(matches!(err, Error::Truncated { .. }), "{err}");
        let err = BlockMap::decode(&bytes[..40]).expect_err("short header");
        assert!(matches!(err, Error::Truncated { .. }), "{err}");
        let err = BlockMap::decode(b"GIF89a..........").expect_err("magic");
        assert!(matches!(err, Error::BadMagic { .. }), "{err}");
        let mut v3 = bytes.clone();
        v3[8] = 3;
        let err = BlockMap::decode(&v3).expect_err("version");
        assert!(
            matches!(err, Error::UnsupportedVersion { version: 3, .. }),
            "{err}"
        );
        let mut enc = bytes;
        enc[10] = 1;
        let err = BlockMap::decode(&enc).expect_err("encrypted");
        assert!(
            matches!(err, Error::UnsupportedEncryption { scheme: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn from_ids_checks_the_count() {
        let bs = BlockSize::new(64 << 10).expect("bs");
        let err = BlockMap::from_ids(3 << 16, bs, Timestamp::UNIX_EPOCH, vec![ChunkId::ZERO; 2])
            .expect_err("count");
        assert!(matches!(err, Error::Malformed { .. }), "{err}");
    }

    proptest! {
        #[test]
        fn the_map_answers_as_a_list_of_every_id_does(
            len in 0usize..80,
            sets in proptest::collection::vec((any::<usize>(), 0u8..4), 0..60),
        ) {
            let bs = BlockSize::new(64 << 10).expect("bs");
            let mut map = BlockMap::zeroed(len as u64 * bs.bytes(), bs, Timestamp::UNIX_EPOCH);
            let mut model = vec![ChunkId::ZERO; len];
            for (at, value) in sets {
                if len == 0 {
                    break;
                }
                // Value 0 sets a zero block, so runs split and merge again.
                let id = if value == 0 { ChunkId::ZERO } else { ChunkId::from_bytes([value; 32]) };
                map.set(at % len, id);
                model[at % len] = id;
            }
            prop_assert_eq!(map.iter().collect::<Vec<_>>(), model.clone());
            for (index, id) in model.iter().enumerate() {
                prop_assert_eq!(map.get(index), Some(*id));
            }
            prop_assert_eq!(map.get(len), None);
            let data: Vec<(usize, ChunkId)> = model
                .iter()
                .enumerate()
                .filter(|(_, id)| !id.is_zero())
                .map(|(i, id)| (i, *id))
                .collect();
            prop_assert_eq!(map.data().collect::<Vec<_>>(), data.clone());
            prop_assert_eq!(map.data_blocks(), data.len());
            // Built in order from the same ids, it is the same map, field for field.
            let rebuilt = BlockMap::from_ids(map.disk_size(), bs, map.created(), model).expect("ids");
            prop_assert_eq!(&rebuilt, &map);
            prop_assert_eq!(BlockMap::decode(&map.encode_v1()).expect("v1"), map);
        }

        #[test]
        fn round_trip_any_map(
            shift in 16u32..=24,
            disk_size in 0u64..(1 << 26),
            seeds in proptest::collection::vec(any::<u8>(), 0..64),
            ms in -1_000_000_000_000i64..4_000_000_000_000,
        ) {
            let bs = BlockSize::new(1 << shift).expect("bs");
            let created = Timestamp::from_millisecond(ms).expect("ts");
            let mut map = BlockMap::zeroed(disk_size, bs, created);
            for (i, s) in seeds.iter().enumerate() {
                if !map.is_empty() {
                    let at = (usize::from(*s) * 31 + i) % map.len();
                    map.set(at, ChunkId::of(&[*s, 1]));
                }
            }
            prop_assert_eq!(BlockMap::decode(&map.encode()).expect("decode"), map);
        }
    }
}
