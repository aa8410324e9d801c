//! Backups as jobs, through the binary: a Snapshot subtask into the host's snapshot tier, then
//! a Transfer subtask to the vault, recorded in the catalog (`STATE/catalog.sqlite`).
//!
//! - `faults`: the bad input and faults of issue 4, one test each: a missing disk, the host
//!   killed during Snapshot and during Transfer, the vault failing during Transfer, a full
//!   snapshot file system, two backups of one VM at once.
//! - `model`: what the job model promises when all goes well: hooks and consistency, the two
//!   tiers and their expiry, a fresh host rebuilding its view from the vault, the `jobs`
//!   views, in-place restore.
//! - `hung_vault`: an S3 endpoint that never answers does not delay the Snapshot (issue 21).
//! - `recovery`: a killed job is Failed at once by the next command, ends when it died, and
//!   leaves no lock file (issue 21).

mod faults;
pub mod fixture;
mod hung_vault;
mod model;
mod recovery;
