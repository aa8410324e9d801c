use jiff::Timestamp;

use crate::wire::{check_header, u32_at, u64_at};
use crate::{BlockSize, ChunkId, Error, Result};

const WHAT: &str = "block map";

/// The full description of one disk at one point: its size, block size, and the id of every
/// block in order ([`ChunkId::ZERO`] for all-zero blocks). Like a PBS fixed index, a block map
/// stands alone: restoring a point never walks a chain of incrementals.
///
/// Encoding, version 1 (little endian, 96-byte header, then `block_count` × 32-byte ids):
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | magic `BVBLKMAP` |
/// | 8 | 2 | format version (1) |
/// | 10 | 1 | encryption scheme (0 = none; reserved for keyed ids + AEAD) |
/// | 11 | 1 | reserved, 0 |
/// | 12 | 4 | block size in bytes |
/// | 16 | 8 | disk size in bytes |
/// | 24 | 8 | creation time, Unix milliseconds (signed) |
/// | 32 | 8 | block count (= ceil(disk size / block size)) |
/// | 40 | 24 | reserved, 0 |
/// | 64 | 32 | BLAKE3 of bytes 0..64 followed by the body |
/// | 96 | 32·n | block ids |
///
/// At 4 MiB blocks a map costs 8 MiB per TiB of disk.
#[derive(Clone, PartialEq, Eq)]
pub struct BlockMap {
    disk_size: u64,
    block_size: BlockSize,
    created: Timestamp,
    ids: Vec<ChunkId>,
}

impl BlockMap {
    pub const MAGIC: [u8; 8] = *b"BVBLKMAP";
    pub const VERSION: u16 = 1;
    pub const HEADER_LEN: usize = 96;

    /// A map whose every block is zero (an empty, fully sparse disk).
    pub fn zeroed(disk_size: u64, block_size: BlockSize, created: Timestamp) -> BlockMap {
        let n = block_size.blocks_for(disk_size) as usize;
        BlockMap {
            disk_size,
            block_size,
            created,
            ids: vec![ChunkId::ZERO; n],
        }
    }

    /// A map from its ids; `ids.len()` must equal the block count for `disk_size`.
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
        Ok(BlockMap {
            disk_size,
            block_size,
            created,
            ids,
        })
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

    pub fn ids(&self) -> &[ChunkId] {
        &self.ids
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn set(&mut self, index: usize, id: ChunkId) {
        self.ids[index] = id;
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

    /// Blocks that are not all-zero.
    pub fn data_blocks(&self) -> usize {
        self.ids.iter().filter(|id| !id.is_zero()).count()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::HEADER_LEN + self.ids.len() * ChunkId::LEN);
        out.extend_from_slice(&Self::MAGIC);
        out.extend_from_slice(&Self::VERSION.to_le_bytes());
        out.push(0); // encryption: none
        out.push(0); // reserved
        out.extend_from_slice(&self.block_size.get().to_le_bytes());
        out.extend_from_slice(&self.disk_size.to_le_bytes());
        out.extend_from_slice(&(self.created.as_millisecond()).to_le_bytes());
        out.extend_from_slice(&(self.ids.len() as u64).to_le_bytes());
        out.extend_from_slice(&[0u8; 24]);
        debug_assert_eq!(out.len(), 64);
        let mut hasher = blake3::Hasher::new();
        hasher.update(&out);
        for id in &self.ids {
            hasher.update(id.as_bytes());
        }
        out.extend_from_slice(hasher.finalize().as_bytes());
        for id in &self.ids {
            out.extend_from_slice(id.as_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<BlockMap> {
        check_header(
            WHAT,
            bytes,
            &Self::MAGIC,
            Self::HEADER_LEN,
            Self::VERSION,
            10,
        )?;
        let malformed = |reason: String| Error::Malformed { what: WHAT, reason };
        let block_size =
            BlockSize::new(u64::from(u32_at(bytes, 12))).map_err(|e| malformed(e.to_string()))?;
        let disk_size = u64_at(bytes, 16);
        let created_ms = u64_at(bytes, 24) as i64;
        let count = u64_at(bytes, 32);
        if count != block_size.blocks_for(disk_size) {
            return Err(malformed(format!(
                "block count {count} does not cover a {disk_size}-byte disk of {block_size} blocks"
            )));
        }
        let body_len = count
            .checked_mul(ChunkId::LEN as u64)
            .ok_or_else(|| malformed("block count overflows".to_owned()))?;
        let expected = Self::HEADER_LEN as u64 + body_len;
        if (bytes.len() as u64) < expected {
            return Err(Error::Truncated {
                what: WHAT,
                expected,
                actual: bytes.len() as u64,
            });
        }
        if (bytes.len() as u64) > expected {
            return Err(malformed(format!(
                "{} trailing bytes after the last block id",
                bytes.len() as u64 - expected
            )));
        }
        let body = &bytes[Self::HEADER_LEN..];
        let mut hasher = blake3::Hasher::new();
        hasher.update(&bytes[..64]);
        hasher.update(body);
        if hasher.finalize().as_bytes() != &bytes[64..96] {
            return Err(Error::ChecksumMismatch { what: WHAT });
        }
        if bytes[40..64].iter().any(|&b| b != 0) || bytes[11] != 0 {
            return Err(malformed("reserved header bytes are not zero".to_owned()));
        }
        let created = Timestamp::from_millisecond(created_ms)
            .map_err(|e| malformed(format!("creation time: {e}")))?;
        let ids = body
            .chunks_exact(ChunkId::LEN)
            .map(|c| {
                let mut id = [0u8; 32];
                id.copy_from_slice(c);
                ChunkId::from_bytes(id)
            })
            .collect();
        Ok(BlockMap {
            disk_size,
            block_size,
            created,
            ids,
        })
    }
}

impl std::fmt::Debug for BlockMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockMap")
            .field("disk_size", &self.disk_size)
            .field("block_size", &self.block_size)
            .field("created", &self.created)
            .field("blocks", &self.ids.len())
            .field("data_blocks", &self.data_blocks())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample() -> BlockMap {
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
    fn any_flipped_bit_is_caught() {
        let bytes = sample().encode();
        for at in (0..bytes.len()).step_by(7) {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(
                BlockMap::decode(&bad).is_err(),
                "flip at {at} went unnoticed"
            );
        }
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
        let mut v2 = bytes.clone();
        v2[8] = 2;
        let err = BlockMap::decode(&v2).expect_err("version");
        assert!(
            matches!(err, Error::UnsupportedVersion { version: 2, .. }),
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
