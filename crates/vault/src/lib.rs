//! The vault tier: a [`Repository`](blockvault_repo::Repository) that many hosts write and that
//! garbage collection cleans, and what only a vault has around it.
//!
//! A [`Vault`] is a repository whose writers hold a lease ([`Lease`], through the repository's
//! write-guard port), so that a collection's sweep never deletes what a running backup or
//! transfer relies on. On it:
//!
//! - The data path of `blockvault-repo`, delegated: [`Vault::backup`], [`Vault::restore`],
//!   [`Vault::transfer`] (from the snapshot tier, the Transfer subtask of a backup job),
//!   [`Vault::verify`] (or a [`ChunkShare`] of it: [`Vault::verify_share`]), [`Vault::points`] and [`Vault::resolve`]. The request and report types
//!   are re-exported here, so callers name them through this crate.
//! - [`Vault::collect_garbage`]: mark and sweep under leases (`gc.rs`, `live.rs`, `marks.rs`;
//!   the protocol is in the store crate's docs, "Garbage collection without compare-and-swap").
//! - [`Vault::stats`]: what the vault holds, per VM and in all (points, logical, referenced,
//!   unique and stored bytes, dedup and compression ratios, garbage, damaged chunks;
//!   `stats.rs` defines each figure).
//! - Damage: a chunk verify found bad is marked in the vault, sent again by the next writer
//!   (which clears the mark) and dropped from this host's index ([`Vault::drop_from_index`]).
//! - Replication: [`Vault::set_redundancy`] before the first backup,
//!   [`Vault::replace_secondary`] to give a replicated vault a new secondary (or mend its own)
//!   by a resync from the primary, [`Vault::promote`] to make a replica the vault itself when
//!   the primary is lost (`secondary.rs` says what the vault id means for both).
//!
//! # Crash semantics
//!
//! Those of the repository (a point exists once its record is written, after its chunks and
//! maps; restores never leave a file that looks complete and is not), plus: a writer killed
//! while it holds a lease leaves the lease, which others ignore once it is
//! [`LEASE_TTL`] old; a collection killed at any moment deletes nothing a committed point names.

mod error;
mod gc;
mod guard;
mod lease;
mod live;
mod marks;
mod secondary;
mod stats;
mod vault;

pub use crate::{
    error::{Error, Result},
    gc::{GcOptions, GcReport},
    lease::{LEASE_TTL, Lease, SweepWait, Sweeper},
    secondary::SecondaryReplaced,
    stats::{Figures, StatsOptions, VaultFigures, VaultStats, VmStats},
    vault::Vault,
};
/// The data path, from the repository crate: what callers of the vault name through it.
pub use blockvault_repo::{
    Affected, BackupReport, BackupRequest, BadChunk, BadMap, ChunkIndex, ChunkShare, DiskInput,
    DiskScan, EarlySend, HELD_BYTES, Journal, NoProgress, ParentChoice, PointReader, PointSelector,
    Progress, Repaired, RestoreReport, RestoreRequest, RestoredDisk, Sent, TransferOptions,
    TransferReport, TransferRequest, VerifyReport,
};
