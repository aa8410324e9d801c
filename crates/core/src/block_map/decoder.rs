//! A block map decoded as its bytes arrive, so that a reader never holds the encoding and the
//! map at once (at a million blocks each is 32 MB).
//!
//! Feeding the whole encoding at once is [`BlockMap::decode`]; the checks, their order and
//! their errors are the same however the bytes are split: magic, header length, version and
//! encryption as soon as the header is in, then the fields the header alone decides (block
//! size, block count), the structure of the runs as each run header arrives, and at the end
//! the body's length, the checksum, the reserved bytes and the creation time. A map whose
//! checksum fails is dropped whole: nothing decoded from it is returned.

use jiff::Timestamp;

use super::{BlockMap, WHAT, id_at};
use crate::wire::{check_header, u32_at, u64_at};
use crate::{BlockSize, ChunkId, Error, Result};

/// The most bytes of ids reserved up front from a size hint (as many for the extents): a map
/// of two million data blocks. A larger map's lists grow as its ids arrive.
const MAX_RESERVED: u64 = 64 << 20;

/// Decodes a block map from its encoding fed in pieces of any size; see the module docs.
///
/// ```
/// # use blockvault_core::{BlockMap, BlockSize, MapDecoder};
/// # let map = BlockMap::zeroed(1 << 30, BlockSize::new(1 << 20)?, jiff::Timestamp::UNIX_EPOCH);
/// let encoded = map.encode();
/// let mut decoder = MapDecoder::new(Some(encoded.len() as u64));
/// for piece in encoded.chunks(7) {
///     decoder.feed(piece);
/// }
/// assert_eq!(decoder.finish()?, map);
/// # Ok::<(), blockvault_core::Error>(())
/// ```
pub struct MapDecoder {
    /// The encoding's length if known beforehand (an object's size): room for the ids is
    /// made once instead of the list doubling as it grows. Trusted for nothing else, and for
    /// that only up to [`MAX_RESERVED`]: a store that misstates a size costs no more.
    size_hint: Option<u64>,
    /// Bytes fed so far.
    fed: u64,
    state: State,
    /// The first problem found; once set, feeding only counts bytes.
    failed: Option<Error>,
}

enum State {
    /// Gathering the 96-byte header.
    Header(Vec<u8>),
    Body(Box<Body>),
}

/// Everything known once the header is in.
struct Body {
    header: [u8; BlockMap::HEADER_LEN],
    map: BlockMap,
    /// BLAKE3 of header bytes 0..64, then of the body so far.
    hasher: blake3::Hasher,
    /// Blocks in the disk, from the header.
    count: u64,
    /// A run header or id split between two feeds.
    partial: Vec<u8>,
    /// Body bytes consumed by whole run headers and ids (not counting `partial`).
    at: u64,
    /// The block the next id is for.
    index: u64,
    /// Blocks the run headers read so far cover (version 2).
    covered: u64,
    next: Next,
    /// Bytes after the end of the body.
    trailing: u64,
}

/// What the body holds next.
#[derive(Clone, Copy)]
enum Next {
    /// Version 1: `left` ids until the end.
    Ids { left: u64 },
    /// Version 2: a run header, with `runs` runs left counting this one.
    RunHeader { runs: u64 },
    /// Version 2: `left` ids of the current run, then `runs` more runs.
    RunIds { left: u64, runs: u64 },
    /// Nothing: any byte is one too many.
    End,
}

impl MapDecoder {
    /// A decoder for an encoding of `size_hint` bytes, if known.
    pub fn new(size_hint: Option<u64>) -> MapDecoder {
        MapDecoder {
            size_hint,
            fed: 0,
            state: State::Header(Vec::with_capacity(BlockMap::HEADER_LEN)),
            failed: None,
        }
    }

    /// Feeds the next bytes of the encoding. A problem found is kept for [`MapDecoder::finish`];
    /// from then on bytes are only counted.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        self.fed += bytes.len() as u64;
        if self.failed.is_some() {
            return;
        }
        if let State::Header(head) = &mut self.state {
            let took = (BlockMap::HEADER_LEN - head.len()).min(bytes.len());
            head.extend_from_slice(&bytes[..took]);
            bytes = &bytes[took..];
            if head.len() < BlockMap::HEADER_LEN {
                return;
            }
            match Body::start(head, self.size_hint) {
                Ok(body) => self.state = State::Body(Box::new(body)),
                Err(e) => {
                    self.failed = Some(e);
                    return;
                }
            }
        }
        if let State::Body(body) = &mut self.state
            && let Err(e) = body.feed(bytes)
        {
            self.failed = Some(e);
        }
    }

    /// The map, once every byte is fed and every check has passed.
    pub fn finish(self) -> Result<BlockMap> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        match self.state {
            State::Header(head) => Err(
                match check_header(
                    WHAT,
                    &head,
                    &BlockMap::MAGIC,
                    BlockMap::HEADER_LEN,
                    BlockMap::VERSION,
                    10,
                ) {
                    Err(e) => e,
                    // A header shorter than its length always fails the checks above.
                    Ok(_) => Error::Truncated {
                        what: WHAT,
                        expected: BlockMap::HEADER_LEN as u64,
                        actual: head.len() as u64,
                    },
                },
            ),
            State::Body(body) => body.finish(self.fed),
        }
    }
}

impl std::fmt::Debug for MapDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapDecoder")
            .field("fed", &self.fed)
            .field("header_in", &matches!(self.state, State::Body(_)))
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

fn malformed(reason: String) -> Error {
    Error::Malformed { what: WHAT, reason }
}

fn overflows() -> Error {
    malformed("block count overflows".to_owned())
}

impl Body {
    /// Checks what the header alone decides and makes room for the ids.
    fn start(head: &[u8], size_hint: Option<u64>) -> Result<Body> {
        let version = check_header(
            WHAT,
            head,
            &BlockMap::MAGIC,
            BlockMap::HEADER_LEN,
            BlockMap::VERSION,
            10,
        )?;
        let block_size =
            BlockSize::new(u64::from(u32_at(head, 12))).map_err(|e| malformed(e.to_string()))?;
        let disk_size = u64_at(head, 16);
        let count = u64_at(head, 32);
        if count != block_size.blocks_for(disk_size) {
            return Err(malformed(format!(
                "block count {count} does not cover a {disk_size}-byte disk of {block_size} blocks"
            )));
        }
        // The creation time is checked last, as a field; until then the map has none.
        let mut map = BlockMap::zeroed(disk_size, block_size, Timestamp::UNIX_EPOCH);
        let next = if version == 1 {
            count
                .checked_mul(ChunkId::LEN as u64)
                .ok_or_else(overflows)?;
            Next::Ids { left: count }
        } else {
            let runs = u64_at(head, 40);
            if let Some(size) = size_hint {
                // At most this many ids fit in the object, each at least 32 bytes, and each
                // extent costs a run header besides.
                let body = size.saturating_sub(BlockMap::HEADER_LEN as u64);
                let ids = (body.saturating_sub(runs.saturating_mul(16)) / ChunkId::LEN as u64)
                    .min(count)
                    .min(MAX_RESERVED / ChunkId::LEN as u64);
                map.reserve(usize::try_from(ids).unwrap_or(0));
                let extents = runs
                    .min(body / (16 + ChunkId::LEN as u64))
                    .min(MAX_RESERVED / 16);
                map.extents
                    .reserve_exact(usize::try_from(extents).unwrap_or(0));
            }
            Next::RunHeader { runs }
        };
        let mut header = [0u8; BlockMap::HEADER_LEN];
        header.copy_from_slice(head);
        let mut hasher = blake3::Hasher::new();
        hasher.update(&header[..64]);
        let mut body = Body {
            header,
            map,
            hasher,
            count,
            partial: Vec::with_capacity(ChunkId::LEN),
            at: 0,
            index: 0,
            covered: 0,
            next,
            trailing: 0,
        };
        body.settle()?;
        Ok(body)
    }

    /// Decodes what `bytes` completes.
    fn feed(&mut self, mut bytes: &[u8]) -> Result<()> {
        // Hashed whole rather than item by item, which is several times slower. Bytes past the
        // end are hashed too, harmlessly: they fail the length check before the checksum's.
        self.hasher.update(bytes);
        while !bytes.is_empty() {
            match self.next {
                Next::End => {
                    self.trailing += bytes.len() as u64;
                    return Ok(());
                }
                Next::RunHeader { runs } => {
                    let Some(run) = self.take::<16>(&mut bytes) else {
                        return Ok(());
                    };
                    let zeros = u64_at(&run, 0);
                    let literals = u64_at(&run, 8);
                    self.covered = match self
                        .covered
                        .checked_add(zeros)
                        .and_then(|b| b.checked_add(literals))
                    {
                        Some(b) if b <= self.count => b,
                        _ => {
                            return Err(malformed(format!(
                                "runs cover more than {} blocks",
                                self.count
                            )));
                        }
                    };
                    literals
                        .checked_mul(ChunkId::LEN as u64)
                        .and_then(|len| self.at.checked_add(len))
                        .ok_or_else(overflows)?;
                    self.index += zeros;
                    self.next = Next::RunIds {
                        left: literals,
                        runs: runs - 1,
                    };
                }
                Next::Ids { left } | Next::RunIds { left, .. } => {
                    let Some(id) = self.take::<{ ChunkId::LEN }>(&mut bytes) else {
                        return Ok(());
                    };
                    // Blocks past the end of the address space cannot be in a map whose
                    // runs were checked against its block count.
                    self.map.push(self.index as usize, id_at(&id));
                    self.index += 1;
                    self.next = match self.next {
                        Next::RunIds { runs, .. } => Next::RunIds {
                            left: left - 1,
                            runs,
                        },
                        _ => Next::Ids { left: left - 1 },
                    };
                }
            }
            self.settle()?;
        }
        Ok(())
    }

    /// Moves past what is complete: a run with no ids left, the last run, the last id.
    fn settle(&mut self) -> Result<()> {
        loop {
            self.next = match self.next {
                Next::Ids { left: 0 } => Next::End,
                Next::RunIds { left: 0, runs } => Next::RunHeader { runs },
                Next::RunHeader { runs: 0 } => {
                    if self.covered != self.count {
                        return Err(malformed(format!(
                            "runs cover {} blocks of {}",
                            self.covered, self.count
                        )));
                    }
                    Next::End
                }
                _ => return Ok(()),
            };
        }
    }

    /// The next `N`-byte item, joined with what an earlier feed left in `partial`; `None`
    /// when `bytes` ends first (what there was waits in `partial`).
    fn take<const N: usize>(&mut self, bytes: &mut &[u8]) -> Option<[u8; N]> {
        let took = (N - self.partial.len()).min(bytes.len());
        let (piece, rest) = bytes.split_at(took);
        *bytes = rest;
        let mut item = [0u8; N];
        if self.partial.is_empty() && took == N {
            item.copy_from_slice(piece);
        } else {
            self.partial.extend_from_slice(piece);
            if self.partial.len() < N {
                return None;
            }
            item.copy_from_slice(&self.partial);
            self.partial.clear();
        }
        self.at += N as u64;
        Some(item)
    }

    /// The length the encoding should have had, when it ended before its body did.
    fn expected(&self) -> Result<Option<u64>> {
        let due = match self.next {
            Next::End => return Ok(None),
            Next::Ids { left } => Some(left * ChunkId::LEN as u64),
            // At least the run header was due.
            Next::RunHeader { .. } => Some(16),
            // The rest of this run, and the header of the next if there is one.
            Next::RunIds { left, runs } => {
                (left * ChunkId::LEN as u64).checked_add(if runs > 0 { 16 } else { 0 })
            }
        };
        due.and_then(|due| due.checked_add(self.at))
            .and_then(|body| body.checked_add(BlockMap::HEADER_LEN as u64))
            .map(Some)
            .ok_or_else(overflows)
    }

    fn finish(mut self, fed: u64) -> Result<BlockMap> {
        if let Some(expected) = self.expected()? {
            return Err(Error::Truncated {
                what: WHAT,
                expected,
                actual: fed,
            });
        }
        if self.trailing > 0 {
            return Err(malformed(format!(
                "{} trailing bytes after the last block id",
                self.trailing
            )));
        }
        if self.hasher.finalize().as_bytes() != &self.header[64..96] {
            return Err(Error::ChecksumMismatch { what: WHAT });
        }
        let reserved = if u16::from_le_bytes([self.header[8], self.header[9]]) == 1 {
            40
        } else {
            48
        };
        if self.header[reserved..64].iter().any(|&b| b != 0) || self.header[11] != 0 {
            return Err(malformed("reserved header bytes are not zero".to_owned()));
        }
        let created_ms = u64_at(&self.header, 24) as i64;
        // From nanoseconds: jiff's `from_millisecond` refuses the last second of its range,
        // whose times `as_millisecond` gives (a map made then would not read back).
        self.map.created = Timestamp::from_nanosecond(i128::from(created_ms) * 1_000_000)
            .map_err(|e| malformed(format!("creation time: {e}")))?;
        self.map.shrink_to_fit();
        Ok(self.map)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::seal;
    use super::super::tests::sample;
    use super::*;

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
            let reserved = body.map.ids.capacity();
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
            )?;
            let malformed = |reason: String| Error::Malformed { what: WHAT, reason };
            let block_size = BlockSize::new(u64::from(u32_at(bytes, 12)))
                .map_err(|e| malformed(e.to_string()))?;
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
}
