//! A block map decoded whole (`BlockMap::decode`), against the reference decoder and in a few
//! fixed splits, and encoded again.
#![no_main]

use blockvault_fuzz::{as_is_and_sealed, oracle, seal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    as_is_and_sealed(data, seal::block_map, |bytes| {
        let _ = oracle::block_map(bytes);
    });
});
