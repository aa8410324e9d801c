//! A block map fed to `MapDecoder` in pieces the fuzzer chooses, with a size hint it chooses:
//! the result must be the whole-buffer decode's (the same map, or the same error).
//!
//! Input: a byte `k`, then `k % 16` cut positions (u16, little endian), then a byte choosing
//! the size hint (none, the true size, or a false one), then the encoding.
#![no_main]

use blockvault_core::BlockMap;
use blockvault_fuzz::{oracle, seal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let k = usize::from(k % 16);
    if rest.len() < 2 * k + 1 {
        return;
    }
    let (cuts, rest) = rest.split_at(2 * k);
    let mut cuts: Vec<usize> = cuts
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])))
        .collect();
    cuts.sort_unstable();
    let (&hint, encoding) = rest.split_first().unwrap_or((&0, &[]));
    let len = encoding.len() as u64;
    let hint = match hint % 6 {
        0 => Some(len),
        1 => None,
        2 => Some(0),
        3 => Some(len / 2),
        4 => Some(u64::MAX),
        _ => Some(len.saturating_mul(u64::from(hint))),
    };
    let mut sealed = encoding.to_vec();
    seal::block_map(&mut sealed);
    for bytes in [encoding, &sealed[..]] {
        let whole = BlockMap::decode(bytes);
        oracle::block_map_split(bytes, &whole, &cuts, hint);
    }
});
