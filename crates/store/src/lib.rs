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
//! | `leases/<kind>-<id>` | a writer's (backup, transfer) or a sweeping collector's lease, or a collector's hold on new writers (`sweep-pending`) |
//! | `gc/epoch` | the last sweep's epoch: chunk caches built under another are stale |
//! | `gc/forgotten/<epoch>` | that sweep's candidates and the epoch before it: a cache one sweep behind drops them instead of listing every chunk |
//! | `damaged/<64 hex>` | a chunk verify found bad, to be sent again by the next backup |
//! | `deleted/<vm>` | the [`SoftDeleteMarker`](blockvault_core::SoftDeleteMarker) of a VM whose points are soft-deleted (protection stopped with *delete data*): when they were deleted and when they are purged |
//! | `deleted-points/<vm>/<point>` | the [`PointDeleteMarker`](blockvault_core::PointDeleteMarker) of one point a user forgot (`blockvault forget`): soft-deleted like a VM's, purged alone |
//!
//! In an encrypted vault every object but the config, chunks (encrypted by the chunk codec)
//! and `damaged/` marks is sealed (see "Encryption").
//!
//! The vault describes itself: listing `points/` gives the VMs and their points, a point names
//! its maps (with their digests), a map names its chunks. A new host can restore from the
//! objects alone, and sees from `deleted/` which VMs' points are soft-deleted (listed as such,
//! not restorable until undeleted). A soft-deleted VM's points stay whole until the purge,
//! which deletes each point (record first, then maps) and then the marker; a forgotten point
//! (`deleted-points/`) likewise stays whole until its own purge.
//!
//! # Backends
//!
//! [`Store`] is the one type callers use: it gives the objects above their types, keys and
//! checks (a file per kind: `config.rs`, `chunks.rs`, `maps.rs`, `points.rs`,
//! `coordination.rs`; the checks in `checks.rs`). Where the bytes are kept is a [`Backend`]
//! (`backend.rs`), the store trait: put, get, ask for, delete and list objects, with the
//! durability of chunks (a directory names them durably in batches) and the order of the
//! commit (a replicated vault's) as the places where backends differ. Its implementations:
//! any `object_store` (S3, `InMemory`; `objects.rs`), a local directory (`directory.rs`), and
//! the replicated wrapper over two backends (`replicated.rs`). One conformance suite
//! (`conformance.rs`) runs on each. Retries are a wrapper one level down, around S3's
//! `ObjectStore` (`retrying.rs`), where requests and listings can be resumed.
//!
//! # Crash semantics
//!
//! A backup writes chunks, then block maps, then the point record. Every object is written
//! whole with one `PUT`, atomic on every backend (`LocalFileSystem` writes a staging file and
//! renames it) and durable before it returns (the local directory fsyncs file and directory).
//! One exception: a local directory's chunk files are durable when they appear, but their
//! names only at the next [`Store::sync_chunks`] (one fsync per directory for a batch of
//! chunks instead of one per chunk; see `chunk_files.rs`), and the point record passes that
//! barrier first. So a point exists
//! exactly when its record does, and everything it names was durable first; a crash before
//! the record leaves only unreferenced chunks and maps, which garbage collection removes and
//! the next backup reuses. A crash mid-put can also leave a local directory's staging file,
//! which no listing shows; garbage collection removes those once older than its grace period
//! (`leftovers.rs`).
//!
//! Nothing depends on conditional writes (Garage ignores `If-None-Match`): chunks are content
//! addressed, so a duplicate `PUT` stores the same bytes again.
//!
//! # Garbage collection without compare-and-swap
//!
//! A backup may commit a point that names chunks it never uploaded: those its parent point
//! names, and those this host's chunk index says the vault holds. So "mark the chunks live
//! points name, then delete the others once they are old" is not enough on its own: a backup
//! that started before the mark may name an old chunk whose last point was deleted meanwhile,
//! and commit after the sweep deleted it. Garage ignores conditional writes, so the collector
//! cannot delete "only if nobody references it" atomically either. The collector
//! (`blockvault_vault::Vault::collect_garbage`) uses leases instead, written and listed the way
//! restic and borg lock repositories, but held exclusively only for the short sweep:
//!
//! 1. **Writers hold a lease.** A backup or transfer writes `leases/writer-<id>` before it
//!    reads anything that decides what it may skip (the parent's maps, the chunk index, the
//!    GC epoch), rewrites it every 20 s, and removes it after its commit. Then it lists the
//!    leases: if a live sweeper's lease is there (or a pending sweep's hold, see "Busy
//!    vaults"), it withdraws its own, waits for the sweep to end, listing without a lease of
//!    its own, and starts over. A writer always yields to a sweep.
//! 2. **Mark** (no lease, blocks nothing; the long part): read every committed point's maps and
//!    collect the chunk ids they name; list `chunks/`. Candidates are the chunks no map names
//!    and older than a grace period. "Every committed point" includes the records a replicated
//!    vault's secondary holds alone (commits cut short, see `commit.rs`), and for a record
//!    that cannot be read, every map stored under its id ([`Store::list_map_disks`]): a
//!    damaged record stops nothing and loses nothing it may name.
//! 3. **Sweep** (exclusive, short): wait, holding no lease, until no live writer lease is
//!    listed (so backups that start meanwhile are not held up), then write
//!    `leases/sweeper-<id>` and list again. A writer that slipped in between makes the sweeper
//!    withdraw and wait again. Each side writes before it lists, so either the writer's
//!    listing sees the sweeper's lease or the sweeper's sees the writer's: no writer runs
//!    unseen during a sweep. Then list the points again and drop from the candidates every
//!    chunk named by a point committed during the mark. Write a new `gc/epoch`, delete the
//!    candidates and the block maps of backups that never committed, and remove the lease.
//!    Backups wait at most for this, never for the mark or the wait (unless the wait turns
//!    into a hold, see "Busy vaults").
//! 4. **Caches follow the epoch.** A host's chunk index records the epoch it was built under;
//!    a writer that finds another epoch in the vault rebuilds it from a listing, so no host
//!    trusts a cache that predates a sweep. The epoch is written before the first delete, so a
//!    collector killed mid-sweep leaves every cache stale, never wrong; the next collection
//!    deletes what the killed one left. Before the epoch, the sweep writes its candidates
//!    (`gc/forgotten/<epoch>`, naming the epoch before): a cache of exactly that previous
//!    epoch drops them and moves on instead of listing every chunk, which is as safe, since
//!    the candidates are a superset of what the sweep deletes. Further behind, it rebuilds.
//!
//! While the sweep holds its lease no writer runs, so the only chunks anything can name are
//! those of committed points, and those were all read.
//!
//! **Leases expire by the store's clock.** A lease not rewritten for five minutes is dead (its
//! holder crashed) and is removed by the next sweep. "Rewritten" and "now" are both the
//! store's times: the object's last-modified time, against the last-modified time of the
//! judge's own lease, written just before it lists. So host clocks play no part: a collector
//! whose clock runs fast cannot take a live writer for dead, and a crashed sweeper whose
//! clock ran ahead blocks nobody past its five minutes. A holder that could not rewrite its
//! lease for half of that, or whose rewrites were ever that far apart (the process was
//! paused, the store unreachable), has lost it for good: a writer refuses to commit and a
//! sweeper stops deleting, so a holder judged dead never acts on stale knowledge. The one gap
//! no lease can close without fencing tokens: a pause of more than five minutes between that
//! last check and the commit's single `PUT`. Leases are removed on every path, error or not.
//! The grace period (one hour by default) is a second line of defence that spares freshly
//! uploaded chunks. Collectors do not run two sweeps at once: a sweeper that lists another
//! live sweeper's lease withdraws (of two that write at once, at least one sees the other),
//! and they try again at jittered times.
//!
//! **Busy vaults.** The sweep waits for a moment with no writer at all. Where backups overlap
//! without a pause it would wait in vain, so once it has waited `--hold-after` (five minutes
//! by default), whatever held it, the collector writes `leases/sweep-pending-<id>`. Writers
//! treat it like a sweeper's lease when they start: they wait, and write no lease while they
//! do (their retries would look like running writers to the sweep). The writers already
//! running go on and commit. Once they are done the sweeper takes its own lease and drops the
//! hold. The hold lasts at most `--hold-for` (fifteen minutes), then new writers get in again;
//! a vault that still finds no pause for the whole `--wait` (one hour) is not collected that
//! day (`gc` says who held it up). `gc` stopped by SIGINT or SIGTERM (Ctrl-C), and a daemon
//! stopped mid-collection, remove their leases before they exit; a collector killed outright
//! (`kill -9`, a crash) leaves its hold behind, and new writers wait until it expires, for at
//! most the lease time.
//!
//! On a replicated vault the mark lists the secondary as well, so garbage only the secondary
//! holds (a put that failed on the primary after the secondary's went through) is collected
//! too; live chunks the primary lacks stay for verify to heal.
//!
//! Readers (restore, verify) take no lease: the collector only deletes chunks that no
//! committed point names, so a restore of a live point is never affected. A restore of a
//! point that retention deletes while it runs may fail halfway, as the point is going anyway.
//!
//! `damaged/<id>` marks a chunk verify found bad: writers take no chunk in that list as
//! present, so the next backup that holds its data uploads it again and clears the mark.
//!
//! # Integrity
//!
//! Every read checks what it read: chunks are decoded with the vault's chunk codec
//! ([`Store::codec`], the one place chunks are encoded, decoded and identified; see
//! `blockvault_core::ChunkCodec`) and re-hashed against their id ([`Store::read_chunk`]),
//! maps against the digest in their point record, every other object is opened with the
//! codec (see "Encryption") and then checked against its checksum, as the config is.
//! Failures are [`Error::ChunkCorrupt`], [`Error::MapCorrupt`] and friends, naming the object;
//! an object that fails to open is corrupt exactly as one that fails its checksum, so verify,
//! garbage collection and a replicated read's heal treat it as damage.
//!
//! # Encryption
//!
//! An encrypted vault's store has a keyed codec ([`Store::with_codec`]). Chunks are sealed by
//! the codec itself (keyed ids, AES-256-GCM bound to the id). Every other object the store
//! writes is sealed whole by it (`blockvault_core::SealedObject`, bound to its key path, so it
//! cannot be moved to another key) and opened before it is decoded: block maps (sealed as they
//! are encoded and opened as they arrive, in segments, so a large one is never held whole;
//! their digest in the point record is BLAKE3 of the stored bytes, so a copy is checked
//! without the key), point records, soft-delete markers of VMs and points, protection
//! records, leases, the GC epoch and its candidates. Two objects stay plain: the vault config
//! (it holds the key slots a reader needs first; it names no VM) and the empty
//! `damaged/<id>` marks. A plain object found in an encrypted store (planted), or a sealed one
//! in a plain store, is refused as corrupt. A plain vault's codec seals nothing: its objects
//! are byte for byte what they always were.
//!
//! What the store can still see: the keys (VM names, point ids with their UTC times, disk
//! names, keyed chunk ids, lease kinds and ids, epoch ids), every object's size and
//! modification time, and the config (ids, block size, redundancy, key slots). Copies between
//! stores (replication, resync, quarantine) are byte copies under the same key, so sealed
//! objects stay valid; a quarantined record sits under another key and is not read.
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
//!   primary's alone, with one exception: a record on the secondary alone is a commit cut
//!   short (a point is deleted from the secondary first), a complete point there, and
//!   garbage collection keeps what it names and finishes its commit (see `commit.rs`). The
//!   secondary holds its own `vault.config`, a single vault that names the vault it replicates
//!   ([`VaultConfig::for_replica`](blockvault_core::VaultConfig::for_replica)): it can be
//!   opened alone to restore when the primary is lost.
//! - A secondary that cannot be opened ([`Store::with_secondary_unavailable`]) leaves reads on
//!   the primary and fails every write with [`Error::SecondaryUnavailable`]: a replicated vault
//!   never silently becomes a single one.
//! - A single store pays nothing for this: one branch on an `Option` per operation, and the
//!   fallback code runs only on a read that already failed.
//!
//! # Retries (S3)
//!
//! A request to S3 that fails in transit or with a 5xx answer is retried for a time budget
//! ([`S3Options::retry_budget_secs`], 90 s by default), not a count, so that a restart of the
//! server is ridden out however many tries it takes: `object_store` retries each HTTP request
//! within it, and a wrapper retries, within the same budget, the operations it does not
//! (deletes, listings cut off mid-body). Only operations that are safe to repeat are
//! repeated. See `retry.rs`.
//!
//! # S3 settings and errors
//!
//! The endpoint, region and access key id go into every request's URL and headers, where
//! `object_store` unwraps what it parses: they are checked before a store is built
//! (`endpoint.rs`; [`Error::Setting`] or [`Error::Config`], naming the setting), so no setting
//! can panic. A failed request is said in one line, its method and URL, the HTTP status with
//! the S3 error code and message (not the XML), and what to check (`request_error.rs`).
//!
//! # CPU work
//!
//! Decompression and hashing never run on a tokio worker: [`cpu::run`] carries them to the
//! rayon pool.

mod backend;
mod checks;
mod chunk_files;
mod chunks;
mod commit;
mod config;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod coordination;
pub mod cpu;
mod directory;
mod endpoint;
mod error;
mod layout;
mod leftovers;
mod listing;
mod location;
mod maps;
mod objects;
mod points;
mod pool;
mod protection;
mod repairs;
mod replica;
mod replicated;
mod request_error;
mod resync;
mod retry;
mod retrying;
mod s3;
#[cfg(test)]
mod sealed_tests;
mod sizes;
mod store;
#[cfg(any(test, feature = "conformance"))]
pub mod testing;

pub use crate::{
    backend::{Backend, Pieces},
    coordination::{ListedChunk, ListedLease},
    error::{Error, Result},
    leftovers::Leftovers,
    listing::{DamagedPoint, PointListing},
    location::VaultLocation,
    repairs::Repairs,
    resync::{NoResyncProgress, ObjectCounts, ResyncOptions, ResyncProgress, ResyncReport},
    s3::{S3Options, Secret},
    sizes::MetadataBytes,
    store::Store,
};
