use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// The identity of a block's content: BLAKE3-256 of the uncompressed bytes, as the plain
/// [`ChunkCodec`](crate::ChunkCodec) computes it (the codec is the one place ids are made).
///
/// [`ChunkId::ZERO`] (all 32 bytes zero) is reserved for an all-zero block of any length. Such
/// blocks are never hashed, never stored, and restore as holes; no BLAKE3 output is expected to
/// collide with it.
///
/// `Display` prints a short 16-hex-digit form for messages; [`ChunkId::to_hex`] gives the full
/// 64 digits used in object keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId([u8; 32]);

impl ChunkId {
    /// The reserved id of an all-zero block.
    pub const ZERO: ChunkId = ChunkId([0; 32]);

    /// Length of an id in bytes.
    pub const LEN: usize = 32;

    /// The id of `data` under the plain codec: [`ChunkId::ZERO`] when every byte is zero, its
    /// BLAKE3 digest otherwise. The data path computes ids through its repository's
    /// [`ChunkCodec::id`](crate::ChunkCodec::id); tests call this directly.
    pub fn of(data: &[u8]) -> ChunkId {
        if is_zero(data) {
            ChunkId::ZERO
        } else {
            ChunkId::hash(data)
        }
    }

    /// BLAKE3 of `data`, without the zero check. Callers that already know the block is not
    /// all-zero use this; the hash of a zero block is *not* [`ChunkId::ZERO`]. One block hashes
    /// on the calling thread: callers parallelise across blocks.
    pub fn hash(data: &[u8]) -> ChunkId {
        ChunkId(*blake3::hash(data).as_bytes())
    }

    pub const fn from_bytes(bytes: [u8; 32]) -> ChunkId {
        ChunkId(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn is_zero(&self) -> bool {
        *self == ChunkId::ZERO
    }

    /// The full 64-digit lowercase hex form.
    pub fn to_hex(&self) -> String {
        crate::hex::to_hex(&self.0)
    }
}

/// Whether every byte of `data` is zero. Folds 64-byte pieces (the compiler vectorises the
/// fold), so it runs at memory speed and stops at the first non-zero piece.
pub fn is_zero(data: &[u8]) -> bool {
    let mut pieces = data.chunks_exact(64);
    pieces.all(|piece| piece.iter().fold(0u8, |acc, &b| acc | b) == 0)
        && pieces.remainder().iter().all(|&b| b == 0)
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        f.write_str(&hex[..16])
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({self})")
    }
}

impl FromStr for ChunkId {
    type Err = Error;

    /// Parses the full 64-digit hex form.
    fn from_str(s: &str) -> Result<ChunkId> {
        let invalid = |reason| Error::InvalidName {
            what: "chunk id",
            value: s.to_owned(),
            reason,
        };
        if s.len() != 64 {
            return Err(invalid("expected 64 hex digits"));
        }
        let bytes = crate::hex::from_hex(s).ok_or_else(|| invalid("not hex"))?;
        let mut out = [0u8; 32];
        out.copy_from_slice(&bytes);
        Ok(ChunkId(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_blocks_get_the_reserved_id_without_hashing() {
        assert_eq!(ChunkId::of(&[0u8; 4096]), ChunkId::ZERO);
        assert_eq!(ChunkId::of(&[]), ChunkId::ZERO);
        assert_ne!(ChunkId::hash(&[0u8; 4096]), ChunkId::ZERO);
    }

    #[test]
    fn is_zero_finds_a_single_set_byte_anywhere() {
        let mut buf = vec![0u8; 1000];
        for i in [0, 1, 15, 16, 63, 64, 500, 998, 999] {
            buf[i] = 1;
            assert!(!is_zero(&buf), "byte {i}");
            assert!(!is_zero(&buf[1..]) || i == 0, "unaligned, byte {i}");
            buf[i] = 0;
        }
        assert!(is_zero(&buf));
        assert!(is_zero(&buf[3..997]));
    }

    #[test]
    fn id_is_blake3_of_the_content() {
        let id = ChunkId::of(b"hello");
        assert_eq!(id.as_bytes(), blake3::hash(b"hello").as_bytes());
        assert_eq!(id.to_hex(), blake3::hash(b"hello").to_hex().as_str());
    }

    #[test]
    fn hex_round_trip_and_short_display() {
        let id = ChunkId::of(b"some block");
        let parsed: ChunkId = id.to_hex().parse().expect("parse");
        assert_eq!(parsed, id);
        assert_eq!(id.to_string().len(), 16);
        assert!(id.to_hex().starts_with(&id.to_string()));
        assert!("xyz".parse::<ChunkId>().is_err());
        assert!("G".repeat(64).parse::<ChunkId>().is_err());
    }
}
