//! Crash trials: randomized SIGKILLs of the real `blockvault` binary (and, on S3, of the S3
//! server) while it backs up, transfers, prunes, collects garbage and verifies, on a directory
//! vault, a replicated vault (two directories) and an S3 vault (the Garage of
//! `scripts/test.sh`). After every kill the next command restarts the engine, and the
//! invariants of [`invariants`] are checked: no job left In progress, nothing reported or
//! listed lost, `verify --all` clean, every point restoring byte for byte from every tier it
//! is in (and, replicated, from the secondary alone), both disks of a point from one instant.
//!
//! - `schedule`: the seeded RNG, the settings (`BLOCKVAULT_CRASH_SEED`,
//!   `BLOCKVAULT_CRASH_TRIALS`), and the trials drawn from the seed.
//! - `disks`: the VM, two sparse disks written together with a generation marker.
//! - `world`: a vault of one kind, its host, the binary run under a fault.
//! - `server`: the Garage process and the S3 vault's leases.
//! - `invariants`: the ledger of what was reported and listed, and the checks.
//! - `restores`: restoring points a few at once and comparing them with their generation.
//! - `planted`: losses planted by hand, which the checks must see.
//! - `trials`: one test per vault kind, and the report a failure prints (seed, schedule, what
//!   ran, how to reproduce).
//!
//! A default run is bounded for CI (tens of trials); `BLOCKVAULT_CRASH_TRIALS=N` runs N trials
//! per vault kind (see the README, "Crash trials").

mod disks;
mod invariants;
mod planted;
mod restores;
mod schedule;
mod server;
#[path = "../cli/support.rs"]
#[expect(
    dead_code,
    reason = "the CLI tests' helpers, shared whole; the trials use a few of them"
)]
mod support;
mod trials;
mod world;
