//! Structure-aware mutation of every on-disk format, on the stable toolchain: the fixtures of
//! `testdata/formats/` and values encoded fresh are mutated (bits flipped, fields set to
//! boundary values, cut short, extended, items repeated or swapped, JSON bodies edited) and,
//! most of the time, sealed again with a correct checksum, so that the checks behind the
//! checksum are reached. Every decoder must then return a clean error naming its object or a
//! value that encodes to bytes decoding to the same value; block maps must decode alike
//! whole, in pieces, and by a reference decoder (see `oracle.rs`).
//!
//! The cases are fixed by [`SEEDS`]: every run tries the same ones. `BLOCKVAULT_MUTATIONS=N`
//! runs N cases per format instead of the default (a longer hunt: the cases after the first
//! ones are new). A failure prints the seed, the case, the mutations and the bytes.
//!
//! The coverage-guided fuzz targets in `fuzz/` share `oracle.rs` and `seal.rs`.

mod formats;
mod json;
mod mutate;
mod oracle;
mod regressions;
mod seal;
mod values;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use crate::formats::Format;
use crate::mutate::{Rng, mutate};
use crate::values::Seed;

/// Each seed starts its own generator: its own fresh values and its own share of the cases.
const SEEDS: [u64; 4] = [1, 0x5eed, 0xb10c_5a17, 21];

/// Cases per format when `BLOCKVAULT_MUTATIONS` is not set.
const DEFAULT_CASES: usize = 4000;

fn cases() -> usize {
    match std::env::var("BLOCKVAULT_MUTATIONS") {
        Ok(n) => n
            .parse()
            .unwrap_or_else(|_| panic!("BLOCKVAULT_MUTATIONS={n:?} is not a number of cases")),
        Err(_) => DEFAULT_CASES,
    }
}

/// Runs `format`'s cases over the encodings `seeds` makes; returns how many mutants ended in
/// each outcome.
fn run(format: &Format) -> BTreeMap<&'static str, usize> {
    let mut tally = BTreeMap::new();
    for seed in SEEDS {
        let mut rng = Rng::new(seed);
        let originals = (format.values)(&mut rng);
        for original in &originals {
            check(format, seed, None, original, &[], &original.bytes);
        }
        for case in 0..cases().div_ceil(SEEDS.len()) {
            let original = &originals[rng.below(originals.len())];
            let mut bytes = original.bytes.clone();
            let mut log = Vec::new();
            for _ in 0..1 + rng.below(3) {
                let step = match format.structured {
                    Some(structured) if rng.one_in(4) => structured(&mut rng, &mut bytes),
                    _ => {
                        let fields = (format.fields)(&bytes);
                        mutate(&mut rng, &mut bytes, &fields)
                    }
                };
                log.push(step);
            }
            if !rng.one_in(5) {
                let fix = !rng.one_in(4);
                (format.seal)(&mut bytes, fix);
                log.push(if fix { "seal, lengths fixed" } else { "seal" }.to_owned());
            }
            check(format, seed, Some(case), original, &log, &bytes);
            *tally.entry((format.outcome)(&bytes)).or_default() += 1;
        }
    }
    eprintln!("{}: {tally:?}", format.name);
    let count = |outcome| tally.get(outcome).copied().unwrap_or(0);
    let total: usize = tally.values().sum();
    // The mutants reach past the checksum to the checks of the fields, and some are sound.
    assert!(count("decodes") > 0, "no {} mutant decodes", format.name);
    assert!(
        count("malformed") > 0,
        "no {} mutant reaches a field check",
        format.name
    );
    assert!(
        count("checksum") * 2 < total,
        "most {} mutants fail the checksum",
        format.name
    );
    tally
}

/// Runs the oracle on one mutant; a failure says how to find it again.
fn check(
    format: &Format,
    seed: u64,
    case: Option<usize>,
    original: &Seed,
    log: &[String],
    bytes: &[u8],
) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| (format.check)(bytes))) {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        eprintln!(
            "{} failed: seed {seed:#x}, case {case:?}, from {}, after {log:?}\nbytes ({}): {hex}",
            format.name,
            original.label,
            bytes.len()
        );
        resume_unwind(panic);
    }
}

#[test]
fn chunk_mutants_decode_or_fail_cleanly() {
    run(&formats::CHUNK);
}

#[test]
fn block_map_mutants_decode_alike_whole_in_pieces_and_by_the_reference() {
    run(&formats::BLOCK_MAP);
}

#[test]
fn point_mutants_decode_or_fail_cleanly() {
    run(&formats::POINT);
}

#[test]
fn vault_config_mutants_decode_or_fail_cleanly() {
    run(&formats::VAULT_CONFIG);
}

#[test]
fn lease_mutants_decode_or_fail_cleanly() {
    run(&formats::LEASE);
}

#[test]
fn gc_epoch_mutants_decode_or_fail_cleanly() {
    run(&formats::GC_EPOCH);
}

#[test]
fn soft_delete_mutants_decode_or_fail_cleanly() {
    run(&formats::SOFT_DELETE);
}

#[test]
fn protection_record_mutants_decode_or_fail_cleanly() {
    run(&formats::PROTECTION);
}

#[test]
fn forgotten_chunks_mutants_decode_or_fail_cleanly() {
    run(&formats::FORGOTTEN);
}

/// Writes the encodings the cases start from (fixtures and fresh values, every seed's) into
/// `$BLOCKVAULT_FUZZ_SEEDS/<fuzz target>/`, as the seed corpora of the fuzz targets
/// (`fuzz/run.sh` runs it so); without the variable, into a temp directory, checking only
/// that every target gets seeds.
#[test]
fn write_fuzz_seeds() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = std::env::var_os("BLOCKVAULT_FUZZ_SEEDS")
        .unwrap_or_else(|| temp.path().as_os_str().to_owned());
    for format in formats::ALL {
        let target = std::path::Path::new(&dir).join(format.target);
        std::fs::create_dir_all(&target).expect("the seed directory");
        let mut written = 0;
        for seed in SEEDS {
            for value in (format.values)(&mut Rng::new(seed)) {
                let name = blake3::hash(&value.bytes).to_hex();
                std::fs::write(target.join(&name[..16]), &value.bytes).expect("a seed written");
                written += 1;
            }
        }
        assert!(written > 0, "no seeds for {}", format.target);
    }
}
