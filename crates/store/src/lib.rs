//! Vault objects over `object_store`: chunks, block maps, recovery points and the vault config.
//!
//! # Layout
//!
//! | key | object |
//! |---|---|
//! | `vault.config` | the [`VaultConfig`](blockvault_core::VaultConfig); its presence makes a location a vault |
//! | `chunks/<2 hex>/<64 hex>` | one chunk object, keyed by its full id (256 fan-out prefixes) |
//! | `maps/<vm>/<point>/<disk>.map` | the block map of one disk at one point |
//! | `points/<vm>/<point>` | the recovery point record |
//! | `deleted/<vm>` | the [`SoftDeleteMarker`](blockvault_core::SoftDeleteMarker) of a VM whose points are soft-deleted (protection stopped with *delete data*): when they were deleted and when they are purged |
//!
//! The vault describes itself: listing `points/` gives the VMs and their points, a point names
//! its maps (with their digests), a map names its chunks. A new host can restore from the
//! objects alone, and sees from `deleted/` which VMs' points are soft-deleted (listed as such,
//! not restorable until undeleted). A soft-deleted VM's points stay whole until the purge,
//! which deletes each point (record first, then maps) and then the marker.
//!
//! # Crash semantics
//!
//! A backup writes chunks, then block maps, then the point record. Every object is written
//! whole with one `PUT`, atomic on every backend (`LocalFileSystem` writes a staging file and
//! renames it) and durable before it returns (the local directory fsyncs file and directory).
//! So a point exists exactly when its record does, and everything it names was durable first;
//! a crash before the record leaves only unreferenced chunks and maps, which garbage collection
//! removes and the next backup reuses.
//!
//! Nothing depends on conditional writes (Garage ignores `If-None-Match`): chunks are content
//! addressed, so a duplicate `PUT` stores the same bytes again.
//!
//! # Integrity
//!
//! Every read checks what it read: chunks are decoded and re-hashed against their id
//! ([`Store::read_chunk`]), maps against the digest in their point record, records and the
//! config against their checksums. Failures are [`Error::ChunkCorrupt`], [`Error::MapCorrupt`]
//! and friends, naming the object.
//!
//! # CPU work
//!
//! Decompression and hashing never run on a tokio worker: [`cpu::run`] carries them to the
//! rayon pool.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod cpu;
mod error;
mod layout;
mod location;
mod s3;
mod store;

pub use crate::{
    error::{Error, Result},
    location::VaultLocation,
    s3::{S3Options, Secret},
    store::Store,
};
