//! The vocabulary of blockvault and its on-disk formats.
//!
//! Every other crate speaks in these types: [`ChunkId`] (the id of a block's content),
//! [`BlockMap`] (one disk at one point), [`RecoveryPoint`] (one VM at one point), the names
//! ([`VmName`], [`DiskName`], [`PointId`]) and [`BlockSize`]; [`vocabulary!`] declares the
//! closed sets of words the other crates name things with (job operations and statuses, policy
//! types). This crate does no I/O.
//!
//! # The chunk codec
//!
//! [`ChunkCodec`] is the one place a chunk id is computed and a chunk object encoded or
//! decoded: [`ChunkCodec::id`] (zero blocks get [`ChunkId::ZERO`] without hashing; others
//! BLAKE3-256), [`ChunkCodec::encode`] (zstd level 1 when smaller, the raw bytes otherwise) and
//! [`ChunkCodec::decode`] (decode, then check the content against its id). Every writer and
//! reader in the other crates is handed its repository's codec (the store holds it) and calls
//! nothing else: the source scanner, the write session, copy, the point reader and the
//! restores, verify, the store's read checks and its resync. A plain vault uses
//! [`ChunkCodec::plain`]; an encrypted one [`ChunkCodec::keyed`] (keyed BLAKE3 ids, AES-256-GCM
//! per chunk bound to its id, the object's encryption byte 1), named by the vault config's
//! [`Encryption`], which also seals every other object of the vault ([`SealedObject`]). No
//! other crate changes how it hashes or decodes. [`ChunkId::of`] is what the plain codec uses;
//! outside this crate only tests call it.
//!
//! # Encryption
//!
//! The `crypt` module: the [`MasterKey`], [`KeySlot`]s that wrap it under argon2id-stretched
//! passphrases ([`Kdf`]), kept in the vault config or a [`KeyFile`] ([`KeyHome`]), and the
//! sealed forms of chunks and of every other object. Its module docs give the scheme, the
//! reasoning (a key per object from a random salt, so nonces never repeat), and what an
//! encrypted vault still reveals to its store.
//!
//! # Formats
//!
//! Eleven objects are stored, each versioned from day one with a magic number that never
//! changes, a format version, and an encryption-scheme byte (0 = none; 1 = AES-256-GCM, used by
//! chunks and by the sealed envelope an encrypted vault wraps every other object but its config
//! in):
//!
//! | object | magic | layout | integrity |
//! |---|---|---|---|
//! | chunk | `BVCHUNK\0` | 16-byte header + raw or zstd-1 payload ([`ChunkObject`]); encrypted (scheme 1): + 24-byte salt, the payload sealed, 16-byte tag | content re-hashed against its id on every read; encrypted: authenticated with its id first |
//! | block map | `BVBLKMAP` | 96-byte header + the ids as runs: zero blocks counted, the others one 32-byte id each ([`BlockMap`]; version 1, every id written out, is still read) | BLAKE3 of header and body |
//! | recovery point | `BVPOINT\0` | 48-byte header + JSON body ([`RecoveryPoint`]) | BLAKE3 of header and body |
//! | vault config | `BVVAULT\0` | 48-byte header + JSON body ([`VaultConfig`]; version 2 when replicated, 3 when encrypted: the [`Encryption`] with its key slots) | BLAKE3 of header and body |
//! | lease | `BVLEASE\0` | 48-byte header + JSON body ([`LeaseRecord`]) | BLAKE3 of header and body |
//! | GC epoch | `BVGCEPOC` | 48-byte header + JSON body ([`GcEpoch`]) | BLAKE3 of header and body |
//! | GC candidates | `BVFORGOT` | 20-byte header, the previous epoch, sorted ids ([`ForgottenChunks`]) | BLAKE3 of everything before it |
//! | soft-delete marker | `BVDELETE` | 48-byte header + JSON body ([`SoftDeleteMarker`]) | BLAKE3 of header and body |
//! | point soft-delete marker | `BVDELPNT` | 48-byte header + JSON body ([`PointDeleteMarker`]) | BLAKE3 of header and body |
//! | protection record | `BVPROTEC` | 48-byte header + JSON body ([`ProtectionRecord`]) | BLAKE3 of header and body |
//! | sealed object | `BVSEALED` | 40-byte header (scheme, segment length, salt) + segments of AES-256-GCM ciphertext and tag: any of the objects above but chunks and the config, in an encrypted vault ([`SealedObject`]) | every segment authenticated, bound to the object's key path |
//!
//! Decoding checks, in order: magic, length of the header, version (newer than this build reads
//! is refused, never guessed at), encryption scheme, length of the body, checksum, then the
//! fields. Every failure is an [`Error`] naming the object and what is wrong.
//!
//! All-zero blocks have the reserved id [`ChunkId::ZERO`]: they are detected without hashing,
//! never stored, and restored as holes.
//!
//! Old-version and corrupt fixtures of each format (and an encrypted vault's config, chunk and
//! sealed record, `encrypted/`) live in `testdata/formats/` at the root of
//! the repository, with the tests that load them in `tests/`. Every decoder is also run on
//! structurally mutated encodings, checksums re-sealed (`crates/core/tests/mutations`, in the
//! suite), and has a coverage-guided fuzz target in `fuzz/` (cargo fuzz, nightly).

mod block_map;
mod block_size;
mod chunk;
mod chunk_set;
mod codec;
mod crypt;
mod deleted;
mod error;
mod forgotten;
mod framed;
mod hex;
mod id;
mod lease;
mod names;
mod point;
mod protection;
mod state_dir;
mod text;
mod vocabulary;
mod wire;

pub use crate::state_dir::StateDir;
pub use crate::text::bytes;
pub use crate::{
    block_map::{BlockMap, MapDecoder, MapEncoder},
    block_size::BlockSize,
    chunk::{ChunkDecoder, ChunkEncoder, ChunkObject, Codec},
    chunk_set::ChunkSet,
    codec::ChunkCodec,
    crypt::{
        Encryption, Kdf, KeyFile, KeyHome, KeySlot, MasterKey, ObjectOpener, ObjectSealer,
        SealedObject,
    },
    deleted::{PointDeleteMarker, SOFT_DELETE_DAYS, SoftDeleteMarker},
    error::{Error, ErrorKind, Result},
    forgotten::ForgottenChunks,
    id::{ChunkId, is_zero},
    lease::{GcEpoch, LeaseKind, LeaseRecord},
    names::{DiskName, MAX_NAME_LEN, PointId, VmName},
    point::{
        Capture, Consistency, DiskFormat, DiskRecord, PointStats, RecoveryPoint, Redundancy,
        ReplicaOf, VaultConfig,
    },
    protection::{HeldState, HostIdentity, ProtectionRecord},
};

#[doc(hidden)]
pub use crate::vocabulary::__private;
