//! The vault tier: backing up VM disk images into a vault and restoring any point out of it.
//!
//! A [`Vault`] is a [`Store`](blockvault_store::Store) that holds a vault config. On it:
//!
//! - [`Vault::backup`] reads every disk of a VM once (holes skipped, zero blocks recognised
//!   without hashing, BLAKE3 on all cores), compresses only blocks whose content the vault is not
//!   known to hold, uploads them with bounded concurrency, then commits block maps and the
//!   recovery point record. The previous point's maps make the next backup incremental: only
//!   changed, non-zero blocks are stored.
//! - [`Vault::restore`] writes each disk of a point to a sparse partial file, verifying every
//!   block against its id, and renames the files into place only once all are complete. In
//!   place, it hashes the existing disks and rewrites only the blocks that differ from the
//!   point (a rollback costs a read of the disks plus the churn).
//! - [`Vault::transfer`] copies a point from another vault-format store (the local snapshot
//!   tier) without recompressing: the Transfer subtask of a backup job.
//! - [`Vault::points`] and [`Vault::resolve`] list points and pick one by id, id prefix or time.
//! - [`Vault::replace_secondary`] gives a replicated vault a new secondary (or mends its own)
//!   by a resync from the primary; [`Vault::promote`] makes a replica the vault itself when
//!   the primary is lost (`secondary.rs` says what the vault id means for both).
//!
//! # Crash semantics
//!
//! A point exists once its record is written, which happens after its chunks and maps are
//! durable. A backup killed at any moment leaves the previous points intact and restorable; the
//! chunks it uploaded are reused by the next backup. A restore killed at any moment leaves only
//! hidden `.NAME.blockvault-partial` files, never a file under a disk's name that looks complete
//! and is not. An in-place restore killed at any moment leaves each disk a mix of old and
//! restored blocks; running it again finishes it (it is idempotent: blocks already right are
//! neither fetched nor written).
//!
//! # Concurrency
//!
//! The scan runs on a blocking thread that fans out on the rayon pool; compression runs on the
//! same rayon workers; uploads and downloads run on tokio with at most
//! [`TransferOptions::concurrency`] objects in flight. A bounded channel between the scan and the
//! uploads keeps memory flat whatever the disk size.

mod backup;
mod decode;
mod early;
mod error;
mod gc;
mod in_place;
mod index;
mod landed;
mod lease;
mod live;
mod marks;
mod progress;
mod restore;
mod secondary;
mod tmp;
mod transfer;
mod vault;
mod verify;

pub use crate::{
    backup::{BackupReport, BackupRequest},
    early::{EarlySend, HELD_BYTES, Sent},
    error::{Error, Result},
    gc::{GcOptions, GcReport},
    index::{ChunkIndex, Journal},
    lease::{LEASE_TTL, Lease, SweepWait, Sweeper},
    progress::{NoProgress, Progress},
    restore::{RestoreReport, RestoreRequest, RestoredDisk},
    secondary::SecondaryReplaced,
    transfer::{TransferReport, TransferRequest},
    vault::{PointSelector, Vault},
    verify::{Affected, BadChunk, BadMap, Repaired, VerifyReport},
};

/// How much a transfer does at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferOptions {
    /// Objects in flight at once (uploads during a backup, downloads during a restore). Each
    /// holds at most one block in memory.
    pub concurrency: usize,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions { concurrency: 8 }
    }
}
