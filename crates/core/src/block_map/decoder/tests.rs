//! The decoder fed in pieces: the same checks and errors however the bytes are split.

use jiff::Timestamp;
use proptest::prelude::*;

use super::super::seal;
use super::super::tests::sample;
use super::body::MAX_RESERVED;
use super::*;
use crate::{BlockSize, ChunkId};

/// Decodes `bytes` fed in pieces that end at each of `cuts`.
fn decode_split(bytes: &[u8], cuts: &[usize]) -> Result<BlockMap> {
    let mut decoder = MapDecoder::new(Some(bytes.len() as u64));
    let mut from = 0;
    for &cut in cuts {
        let cut = cut.clamp(from, bytes.len());
        decoder.feed(&bytes[from..cut]);
        from = cut;
    }
    decoder.feed(&bytes[from..]);
    decoder.finish()
}

/// Both results, errors compared by what they say.
fn same(a: &Result<BlockMap>, b: &Result<BlockMap>) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => a.to_string() == b.to_string(),
        _ => false,
    }
}

#[test]
fn a_truncated_body_names_the_length_the_runs_present_call_for() {
    let bytes = sample().encode();
    assert_eq!(bytes.len(), 192);
    // Where the bytes end, and the least length the run headers that are there call for:
    // inside a run header, that header; inside or after a run's ids with a run to come,
    // those ids and the next header; inside the last run's ids, the end of the map.
    for (end, expected) in [(100, 112), (130, 160), (144, 160), (150, 160), (191, 192)] {
        for cuts in [vec![], vec![1, 97, 113, 129], vec![96, 145]] {
            let err = decode_split(&bytes[..end], &cuts).expect_err("truncated");
            assert!(
                matches!(err, Error::Truncated { expected: e, actual: a, .. }
                    if e == expected && a == end as u64),
                "cut at {end} into {cuts:?}: {err}"
            );
        }
    }
}

#[test]
fn trailing_bytes_and_a_bad_checksum_are_found_at_the_end() {
    let mut bytes = sample().encode();
    bytes.extend_from_slice(b"xyz");
    let err = decode_split(&bytes, &[150]).expect_err("trailing");
    assert_eq!(
        err.to_string(),
        "block map is malformed: 3 trailing bytes after the last block id"
    );
    let mut flipped = sample().encode();
    flipped[170] ^= 1; // inside the last id
    let err = decode_split(&flipped, &[120, 171]).expect_err("checksum");
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
}

#[test]
fn the_room_made_for_ids_is_bounded_by_the_hint_and_a_cap() {
    // A header that claims a huge disk, and size hints larger than the bytes: the ids
    // reserved are bounded by the hint, and by the cap whatever the hint; the decode fails
    // cleanly as truncated.
    let bs = BlockSize::new(64 << 10).expect("bs");
    let huge = BlockMap::zeroed(1 << 50, bs, Timestamp::UNIX_EPOCH).encode();
    for (hint, bound) in [(1 << 20, 1 << 20), (1 << 40, MAX_RESERVED as usize)] {
        let mut decoder = MapDecoder::new(Some(hint));
        decoder.feed(&huge[..BlockMap::HEADER_LEN]);
        let State::Body(body) = &decoder.state else {
            panic!("the header is in");
        };
        let reserved = body.ids_reserved();
        assert!(
            reserved > 0 && reserved <= bound / ChunkId::LEN,
            "{reserved} ids"
        );
        assert!(matches!(decoder.finish(), Err(Error::Truncated { .. })));
    }
}

/// The whole-buffer decode this decoder replaced (`7c64200`), kept as the reference the
/// decoder must agree with, error for error.
mod reference {
    use jiff::Timestamp;

    use super::super::super::{BlockMap, WHAT, id_at};
    use crate::wire::{check_header, u32_at, u64_at};
    use crate::{BlockSize, ChunkId, Error, Result};

    pub(super) fn decode(bytes: &[u8]) -> Result<BlockMap> {
        let version = check_header(
            WHAT,
            bytes,
            &BlockMap::MAGIC,
            BlockMap::HEADER_LEN,
            BlockMap::VERSION,
            10,
            &[0],
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
        let body = &bytes[BlockMap::HEADER_LEN..];
        let reserved = if version == 1 { 40 } else { 48 };
        let expected = match version {
            1 => count.checked_mul(ChunkId::LEN as u64),
            _ => runs_length(body, u64_at(bytes, 40), count)?,
        }
        .and_then(|len| len.checked_add(BlockMap::HEADER_LEN as u64))
        .ok_or_else(|| malformed("block count overflows".to_owned()))?;
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
        let mut hasher = blake3::Hasher::new();
        hasher.update(&bytes[..64]);
        hasher.update(body);
        if hasher.finalize().as_bytes() != &bytes[64..96] {
            return Err(Error::ChecksumMismatch { what: WHAT });
        }
        if bytes[reserved..64].iter().any(|&b| b != 0) || bytes[11] != 0 {
            return Err(malformed("reserved header bytes are not zero".to_owned()));
        }
        // As the decoder reads it since (`from_millisecond` refuses the last second).
        let created = Timestamp::from_nanosecond(i128::from(created_ms) * 1_000_000)
            .map_err(|e| malformed(format!("creation time: {e}")))?;
        let mut map = BlockMap::zeroed(disk_size, block_size, created);
        match version {
            1 => {
                for (index, bytes) in body.chunks_exact(ChunkId::LEN).enumerate() {
                    map.push(index, id_at(bytes));
                }
            }
            _ => push_runs(&mut map, body),
        }
        Ok(map)
    }

    fn runs_length(body: &[u8], runs: u64, count: u64) -> Result<Option<u64>> {
        let malformed = |reason: String| Error::Malformed { what: WHAT, reason };
        let (mut at, mut blocks) = (0u64, 0u64);
        for _ in 0..runs {
            let Some(next) = at.checked_add(16) else {
                return Ok(None);
            };
            if next > body.len() as u64 {
                // Truncated inside the run headers: at least this much was due.
                return Ok(Some(next));
            }
            let zeros = u64_at(body, at as usize);
            let literals = u64_at(body, at as usize + 8);
            blocks = match blocks
                .checked_add(zeros)
                .and_then(|b| b.checked_add(literals))
            {
                Some(b) if b <= count => b,
                _ => return Err(malformed(format!("runs cover more than {count} blocks"))),
            };
            let Some(end) = literals
                .checked_mul(ChunkId::LEN as u64)
                .and_then(|len| next.checked_add(len))
            else {
                return Ok(None);
            };
            at = end;
        }
        if blocks != count && at <= body.len() as u64 {
            return Err(malformed(format!("runs cover {blocks} blocks of {count}")));
        }
        Ok(Some(at))
    }

    fn push_runs(map: &mut BlockMap, body: &[u8]) {
        let (mut at, mut index) = (0, 0);
        while index < map.len {
            let zeros = u64_at(body, at) as usize;
            let literals = u64_at(body, at + 8) as usize;
            at += 16;
            index += zeros;
            for bytes in body[at..at + literals * ChunkId::LEN].chunks_exact(ChunkId::LEN) {
                map.push(index, id_at(bytes));
                index += 1;
            }
            at += literals * ChunkId::LEN;
        }
    }
}

proptest! {
    /// However the bytes are split, the decoder reaches what one whole feed reaches, and
    /// what the old whole-buffer decode reached, for sound maps of both versions and for
    /// maps damaged anywhere (re-sealed or not, so that checks past the checksum are
    /// reached too).
    #[test]
    fn any_split_decodes_as_the_whole(
        blocks in 0usize..40,
        sets in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..30),
        damage in proptest::option::of((any::<usize>(), any::<u8>())),
        keep in proptest::option::of(any::<usize>()),
        reseal in any::<bool>(),
        v1 in any::<bool>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let bs = BlockSize::new(64 << 10).expect("bs");
        let mut map = BlockMap::zeroed(blocks as u64 * bs.bytes(), bs, Timestamp::UNIX_EPOCH);
        for (at, value) in sets {
            if blocks > 0 {
                map.set(at % blocks, ChunkId::from_bytes([value | 1; 32]));
            }
        }
        let mut bytes = if v1 { map.encode_v1() } else { map.encode() };
        if let Some((at, xor)) = damage {
            let at = at % bytes.len();
            bytes[at] ^= xor;
        }
        if reseal && bytes.len() >= BlockMap::HEADER_LEN {
            seal(&mut bytes);
        }
        if let Some(keep) = keep {
            bytes.truncate(keep % (bytes.len() + 1));
        }
        let whole = BlockMap::decode(&bytes);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let split = decode_split(&bytes, &cuts);
        prop_assert!(same(&whole, &split), "{:?} against {:?}", whole, split);
        let before = reference::decode(&bytes);
        prop_assert!(same(&whole, &before), "{:?} against the old decode's {:?}", whole, before);
        if damage.is_none() && keep.is_none() {
            prop_assert_eq!(whole.expect("sound"), map);
        }
    }
}
