//! Decoding a chunk and checking it against its id, with one zstd context and one block
//! buffer per thread (rayon workers), reused for every chunk: the restore and the transfer
//! both verify this way.

use std::cell::RefCell;

use blockvault_core::{ChunkDecoder, ChunkId};

thread_local! {
    static DECODER: RefCell<Option<(ChunkDecoder, Vec<u8>)>> = const { RefCell::new(None) };
}

/// Decodes `encoded`, checks that its content hashes to `id`, and hands the content to
/// `then`. A decoding or hash failure goes through `corrupt`.
pub(crate) fn verified<R, E>(
    encoded: &[u8],
    id: ChunkId,
    corrupt: impl Fn(blockvault_core::Error) -> E,
    then: impl FnOnce(&[u8]) -> Result<R, E>,
) -> Result<R, E> {
    DECODER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let (mut decoder, mut buf) = match slot.take() {
            Some(state) => state,
            None => (ChunkDecoder::new().map_err(&corrupt)?, Vec::new()),
        };
        let result = decoder
            .decode_verified(encoded, id, &mut buf)
            .map_err(&corrupt)
            .and_then(|()| then(&buf));
        *slot = Some((decoder, buf));
        result
    })
}
