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
//!
//! The vault describes itself: listing `points/` gives the VMs and their points, a point names
//! its maps (with their digests), a map names its chunks. A new host can restore from the
//! objects alone.
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
//! # Replication
//!
//! A vault's redundancy is `single` (one store) or `replicated`: a [`Store::replicated`] pairs
//! the primary with a secondary store (another directory, bucket or endpoint), and every caller
//! of the store gets the same behaviour:
//!
//! - Every put and delete goes to both stores, at once; a put that fails on either fails the
//!   operation, and the error ([`Error::InStore`]) says which store. The point record, the
//!   commit, goes to the secondary first and then to the primary; if the primary refuses it,
//!   the secondary's copy is taken back, so a failed backup commits nowhere.
//! - Reads go to the primary. A chunk, block map or point record that is missing there, or
//!   that fails its check (a chunk that does not decode to its id, a map that does not match
//!   its digest), is read from the secondary, checked the same way, used, and put back on the
//!   primary: healed. [`Store::repairs`] counts these, so a restore can say what it repaired.
//!   [`Store::get_chunk`] returns bytes unverified: a caller that decodes them itself and finds
//!   them corrupt asks [`Store::chunk_from_replica`]. Bad on both stores is
//!   [`Error::ReplicaAlsoBad`], which names both problems.
//! - Listings (points, VMs, chunks), whether a point exists, and the vault config are the
//!   primary's alone. The
//!   secondary holds its own `vault.config`, a single vault that names the vault it replicates
//!   ([`VaultConfig::for_replica`](blockvault_core::VaultConfig::for_replica)): it can be
//!   opened alone to restore when the primary is lost.
//! - A secondary that cannot be opened ([`Store::with_secondary_unavailable`]) leaves reads on
//!   the primary and fails every write with [`Error::SecondaryUnavailable`]: a replicated vault
//!   never silently becomes a single one.
//! - A single store pays nothing for this: one branch on an `Option` per put, and the
//!   fallback code runs only on a read that already failed.
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
mod replica;
mod s3;
mod store;

pub use crate::{
    error::{Error, Result},
    location::VaultLocation,
    replica::Repairs,
    s3::{S3Options, Secret},
    store::Store,
};
