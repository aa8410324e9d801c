//! The repository: the data path of both tiers, once. A [`Repository`] is a
//! [`Store`](blockvault_store::Store) that holds a vault config; the vault (shared, leased,
//! collected) and the host's snapshot tier (one repository per VM) are both built on it.
//!
//! The data path, as named stages:
//!
//! - **write** ([`Repository::backup`]): reads every disk of a VM once (holes skipped, zero
//!   blocks recognised without hashing, BLAKE3 on all cores), encodes (zstd) only blocks whose
//!   content the repository is not known to hold, puts them with bounded concurrency, then
//!   commits block maps and the recovery point record. The parent point's maps (chosen by the
//!   caller, [`ParentChoice`]; by default the newest point) make the next point incremental:
//!   only changed, non-zero blocks are stored.
//! - **copy** ([`Repository::transfer`]): copies a point from another repository (the snapshot
//!   tier) without recompressing: the Transfer subtask of a backup job. An [`EarlySend`] tees
//!   the chunks a write session stores into the copy while the scan still runs.
//! - **read** ([`PointReader`]): random access over a point's disks, every block verified
//!   against its id, with a small cache; the restores below stream through its verified block
//!   path.
//! - **restore** ([`Repository::restore`]): writes each disk of a point to a sparse partial
//!   file and renames the files into place only once all are complete. In place, it hashes
//!   the existing disks and rewrites only the blocks that differ from the point (a rollback
//!   costs a read of the disks plus the churn).
//! - **verify** ([`Repository::verify`]): re-reads every chunk some points name, or the
//!   [`ChunkShare`] of them a rolling verification reads today ([`Repository::verify_share`]).
//! - [`Repository::points`] and [`Repository::resolve`] list points and pick one by id, id
//!   prefix or time; the [`ChunkIndex`] is this host's knowledge of what a repository holds.
//!
//! Every stage identifies, encodes and decodes chunks with the repository's
//! [`ChunkCodec`](blockvault_core::ChunkCodec) ([`Repository::codec`], its store's): the scan's
//! ids, the write session's objects, and the verified reads of copy, the point reader, the
//! restores (in place, the current disks' ids too) and verify. Nothing here hashes or decodes a
//! chunk on its own: encrypting chunks will change the codec, not these stages.
//!
//! Writers hold a [`WriteGuard`] while they write: the vault's is a lease that keeps garbage
//! collection out of their way; the snapshot tier's is [`NoGuard`] (its engine locks instead).
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

mod copy;
mod decode;
mod error;
mod guard;
mod index;
mod keyring;
mod landed;
mod options;
mod progress;
mod reader;
mod repository;
mod restore;
mod select;
mod share;
mod tmp;
mod verify;
mod write;
mod writer;

pub use crate::{
    copy::{EarlySend, HELD_BYTES, Sent, TransferReport, TransferRequest},
    error::{Error, Result},
    guard::{Held, NoGuard, WriteGuard},
    index::{ChunkIndex, Journal},
    keyring::{Keyring, Unlock},
    options::TransferOptions,
    progress::{NoProgress, Progress},
    reader::{CACHED_BLOCKS, PointReader},
    repository::Repository,
    restore::{RestoreReport, RestoreRequest, RestoredDisk},
    select::PointSelector,
    share::ChunkShare,
    tmp::{replace as replace_via_tmp, sweep_stale as sweep_stale_tmps},
    verify::{Affected, BadChunk, BadMap, Repaired, VerifyReport},
    write::{
        BackupReport, BackupRequest, DiskInput, DiskScan, ParentChoice, disk_name, new_point_id,
    },
};
