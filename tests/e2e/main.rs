//! End-to-end tests through the library crates: real sparse image files, a real vault
//! directory, the real codec. (The CLI has its own end-to-end tests next to it, in
//! `crates/cli/tests/`, because only there does cargo hand a test the built binary.)

mod daemon;
mod early_send;
mod encrypted_fixtures;
mod faults;
mod fixtures;
mod forget;
mod gc;
mod in_place;
mod late_vault;
mod rolling_verify;
mod roundtrip;
mod s3;
mod s3_gc;
mod soft_delete;
mod support;
mod verify_prune;
