//! A list of forgotten chunks (`ForgottenChunks::decode`).
#![no_main]

use blockvault_fuzz::{as_is_and_sealed, oracle, seal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    as_is_and_sealed(data, seal::forgotten, oracle::forgotten);
});
