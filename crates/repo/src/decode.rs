//! Decoding a chunk with the repository's codec and checking it against its id, with one zstd
//! context and one block buffer per thread (rayon workers), reused for every chunk (they hold
//! no key: they serve every codec): the point reader, the transfer and verify all decode
//! this way.

use std::cell::RefCell;

use blockvault_core::{ChunkCodec, ChunkDecoder, ChunkId};

thread_local! {
    static DECODER: RefCell<Option<(ChunkDecoder, Vec<u8>)>> = const { RefCell::new(None) };
}

/// Decodes `encoded` with `codec`, checks that its content is chunk `id`, and hands the
/// content to `then`. A decoding or hash failure goes through `corrupt`.
pub(crate) fn verified<R, E>(
    codec: &ChunkCodec,
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
        let result = codec
            .decode(&mut decoder, encoded, id, &mut buf)
            .map_err(&corrupt)
            .and_then(|()| then(&buf));
        *slot = Some((decoder, buf));
        result
    })
}
