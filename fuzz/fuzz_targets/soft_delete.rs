//! A soft-delete marker (`SoftDeleteMarker::decode`).
#![no_main]

use blockvault_fuzz::{as_is_and_sealed, oracle, seal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    as_is_and_sealed(data, |bytes| seal::framed(bytes, true), oracle::soft_delete);
});
