//! The body of a block map as its bytes arrive: what the header alone decides, then each run
//! header and id checked and decoded as it completes, then the checks of the end.

use jiff::Timestamp;

use super::super::{BlockMap, WHAT, id_at};
use crate::wire::{check_header, u32_at, u64_at};
use crate::{BlockSize, ChunkId, Error, Result};

/// The most bytes of ids reserved up front from a size hint (as many for the extents): a map
/// of two million data blocks. A larger map's lists grow as its ids arrive.
pub(super) const MAX_RESERVED: u64 = 64 << 20;

/// Everything known once the header is in.
pub(super) struct Body {
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

fn malformed(reason: String) -> Error {
    Error::Malformed { what: WHAT, reason }
}

fn overflows() -> Error {
    malformed("block count overflows".to_owned())
}

impl Body {
    /// Checks what the header alone decides and makes room for the ids.
    pub(super) fn start(head: &[u8], size_hint: Option<u64>) -> Result<Body> {
        let version = check_header(
            WHAT,
            head,
            &BlockMap::MAGIC,
            BlockMap::HEADER_LEN,
            BlockMap::VERSION,
            10,
            &[0],
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

    /// The room made for ids so far.
    #[cfg(test)]
    pub(super) fn ids_reserved(&self) -> usize {
        self.map.ids.capacity()
    }

    /// Decodes what `bytes` completes.
    pub(super) fn feed(&mut self, mut bytes: &[u8]) -> Result<()> {
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

    pub(super) fn finish(mut self, fed: u64) -> Result<BlockMap> {
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
