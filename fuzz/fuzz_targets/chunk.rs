//! A chunk object (`ChunkDecoder::decode_into`).
#![no_main]

use blockvault_fuzz::{as_is_and_sealed, oracle, seal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    as_is_and_sealed(data, seal::chunk, oracle::chunk);
});
