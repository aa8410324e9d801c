//! A block map decoded as its bytes arrive, so that a reader never holds the encoding and the
//! map at once (at a million blocks each is 32 MB).
//!
//! Feeding the whole encoding at once is [`BlockMap::decode`]; the checks, their order and
//! their errors are the same however the bytes are split: magic, header length, version and
//! encryption as soon as the header is in, then the fields the header alone decides (block
//! size, block count), the structure of the runs as each run header arrives, and at the end
//! the body's length, the checksum, the reserved bytes and the creation time. A map whose
//! checksum fails is dropped whole: nothing decoded from it is returned.

mod body;
#[cfg(test)]
mod tests;

use self::body::Body;
use super::{BlockMap, WHAT};
use crate::wire::check_header;
use crate::{Error, Result};

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
    /// that only up to [`MAX_RESERVED`](body::MAX_RESERVED): a store that misstates a size costs no more.
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
                    &[0],
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
