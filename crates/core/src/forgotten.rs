//! The chunks a GC sweep may delete, shipped beside its epoch so that hosts whose chunk index
//! predates the sweep drop those ids instead of rebuilding the index from a full listing.

use crate::wire::{check_header, u64_at};
use crate::{ChunkId, ChunkSet, Error, Result};

const WHAT: &str = "forgotten chunks";

/// The candidates of the sweep that began GC epoch `epoch` (a superset of what it deleted:
/// a sweep cut short deletes fewer), and the epoch it followed.
///
/// A host whose index was saved under `previous` may move it to the new epoch by dropping
/// `ids`: its index named only chunks the vault held, and of those only these can be gone.
///
/// Encoding, version 1 (little endian):
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | magic `BVFORGOT` |
/// | 8 | 2 | format version (1) |
/// | 10 | 1 | encryption scheme (0 = none; reserved) |
/// | 11 | 1 | length `p` of the previous epoch's id (0: the vault had none) |
/// | 12 | 8 | number of ids `n` |
/// | 20 | p | the previous epoch's id, UTF-8 |
/// | 20 + p | 32 n | the ids, sorted and distinct |
/// | … | 32 | BLAKE3 of everything before it |
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForgottenChunks {
    pub previous: Option<String>,
    pub ids: ChunkSet,
}

impl ForgottenChunks {
    pub const MAGIC: [u8; 8] = *b"BVFORGOT";
    pub const VERSION: u16 = 1;
    const HEADER_LEN: usize = 20;

    pub fn encode(&self) -> Vec<u8> {
        Self::encode_sorted(
            self.previous.as_deref(),
            self.ids.as_slice().iter().copied(),
        )
    }

    /// The encoding of `ids` (sorted and distinct) after epoch `previous`, without a
    /// [`ChunkSet`] of them: a sweep of a million candidates writes them from its own list.
    pub fn encode_sorted(
        previous: Option<&str>,
        ids: impl ExactSizeIterator<Item = ChunkId>,
    ) -> Vec<u8> {
        let previous = previous.unwrap_or("").as_bytes();
        // Epoch ids are 16 hex digits; a longer one would not fit its length byte.
        let previous = &previous[..previous.len().min(255)];
        let mut out = Vec::with_capacity(Self::HEADER_LEN + previous.len() + 32 * ids.len() + 32);
        out.extend_from_slice(&Self::MAGIC);
        out.extend_from_slice(&Self::VERSION.to_le_bytes());
        out.push(0); // encryption: none
        out.push(previous.len() as u8);
        out.extend_from_slice(&(ids.len() as u64).to_le_bytes());
        out.extend_from_slice(previous);
        for id in ids {
            out.extend_from_slice(id.as_bytes());
        }
        let digest = blake3::hash(&out);
        out.extend_from_slice(digest.as_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<ForgottenChunks> {
        check_header(
            WHAT,
            bytes,
            &Self::MAGIC,
            Self::HEADER_LEN,
            Self::VERSION,
            10,
            &[0],
        )?;
        let previous_len = usize::from(bytes[11]);
        let count = u64_at(bytes, 12);
        let expected = count
            .checked_mul(32)
            .and_then(|ids| ids.checked_add((Self::HEADER_LEN + previous_len + 32) as u64))
            .ok_or(Error::Malformed {
                what: WHAT,
                reason: format!("{count} ids"),
            })?;
        if (bytes.len() as u64) < expected {
            return Err(Error::Truncated {
                what: WHAT,
                expected,
                actual: bytes.len() as u64,
            });
        }
        if bytes.len() as u64 > expected {
            return Err(Error::Malformed {
                what: WHAT,
                reason: format!(
                    "{} bytes more than {count} ids and the checksum take",
                    bytes.len() as u64 - expected
                ),
            });
        }
        let (body, digest) = bytes.split_at(bytes.len() - 32);
        if blake3::hash(body).as_bytes() != digest {
            return Err(Error::ChecksumMismatch { what: WHAT });
        }
        let previous = &body[Self::HEADER_LEN..Self::HEADER_LEN + previous_len];
        let previous = (!previous.is_empty())
            .then(|| String::from_utf8(previous.to_vec()))
            .transpose()
            .map_err(|_| Error::Malformed {
                what: WHAT,
                reason: "the previous epoch's id is not UTF-8".to_owned(),
            })?;
        let ids: Vec<ChunkId> = body[Self::HEADER_LEN + previous_len..]
            .chunks_exact(32)
            .filter_map(|c| c.try_into().ok().map(ChunkId::from_bytes))
            .collect();
        if ids.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::Malformed {
                what: WHAT,
                reason: "ids out of order".to_owned(),
            });
        }
        Ok(ForgottenChunks {
            previous,
            ids: ChunkSet::from_vec(ids),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(previous: Option<&str>) -> ForgottenChunks {
        ForgottenChunks {
            previous: previous.map(str::to_owned),
            ids: ChunkSet::from_vec((0u8..5).map(|i| ChunkId::of(&[i])).collect()),
        }
    }

    #[test]
    fn round_trips_with_and_without_a_previous_epoch() {
        for previous in [Some("0123456789abcdef"), None] {
            let forgotten = sample(previous);
            assert_eq!(
                ForgottenChunks::decode(&forgotten.encode()).expect("decode"),
                forgotten
            );
        }
        let empty = ForgottenChunks {
            previous: None,
            ids: ChunkSet::new(),
        };
        assert_eq!(
            ForgottenChunks::decode(&empty.encode()).expect("decode"),
            empty
        );
    }

    #[test]
    fn damage_of_any_kind_is_refused() {
        let bytes = sample(Some("e1")).encode();
        for cut in [bytes.len() - 1, 40, 19, 3, 0] {
            assert!(
                ForgottenChunks::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        for at in [8, 10, 11, 12, 21, 60, bytes.len() - 1] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x40;
            assert!(ForgottenChunks::decode(&flipped).is_err(), "flip at {at}");
        }
    }
}
