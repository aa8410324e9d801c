//! The store: a vault's objects, typed, over a [`Backend`] (see `backend.rs` for the trait and
//! its implementations). This file holds the type, how one is opened, and the plumbing every
//! kind of object goes through; each kind has a file of its own (`config.rs`, `chunks.rs`,
//! `maps.rs`, `points.rs`, `coordination.rs`), and so has replication (`replica.rs`).

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::memory::InMemory;
use object_store::path::Path;

use blockvault_core::ChunkCodec;
use bytes::Bytes;

use crate::backend::Backend;
use crate::directory::DirBackend;
use crate::error::Result;
use crate::leftovers::Leftovers;
use crate::objects::ObjectBackend;
use crate::replicated::Replicated;

/// Vault objects (chunks, block maps, recovery points, the vault config) over any
/// [`ObjectStore`]: a local directory, S3, or memory for tests.
///
/// Writes are whole-object `PUT`s, which every backend makes atomic (a reader sees the old
/// object, the new one, or none, never a partial one) and durable before they return (object
/// stores acknowledge a PUT once it is stored; a local directory fsyncs the file and its
/// directory), but for a local directory's chunks, whose names become durable in batches
/// ([`Store::put_chunk`], [`Store::sync_chunks`]). Nothing relies on conditional writes.
///
/// A store may be *replicated* ([`Store::replicated`]): every write then goes to a secondary
/// store too, and reads fall back to it (see the crate docs).
///
/// A store knows its vault's [`ChunkCodec`] ([`Store::codec`]): its read checks decode chunks
/// with it, it seals every other object it writes but the vault config and damage marks
/// (block maps, point records, markers, protection records, leases, GC records) and opens
/// them before it decodes them, and the repository over it hands it to every writer and
/// reader. A store is plain until [`Store::with_codec`] gives it an encrypted vault's codec.
#[derive(Clone, Debug)]
pub struct Store {
    /// The one place this store reads from, and (when single) writes to: the primary.
    pub(crate) here: Arc<dyn Backend>,
    /// The secondary of a replicated vault; `None` for a single store (the fast path).
    pub(crate) replica: Option<Replica>,
    /// How this vault's chunks are identified, encoded and decoded.
    pub(crate) codec: ChunkCodec,
}

/// What makes a store replicated.
#[derive(Clone, Debug)]
pub(crate) struct Replica {
    /// The primary and the secondary as one backend: every write of the store goes through it.
    pub(crate) wrapper: Arc<Replicated>,
    /// The secondary as a store of its own, when it could be opened.
    pub(crate) secondary: Option<Box<Store>>,
}

impl Store {
    /// A store in the existing directory `dir`.
    pub fn local(dir: impl AsRef<FsPath>) -> Result<Store> {
        Ok(Store::from_backend(Arc::new(DirBackend::open(
            dir.as_ref(),
        )?)))
    }

    /// An empty store in memory (unit tests).
    pub fn in_memory() -> Store {
        Store::new(Arc::new(InMemory::new()), "memory")
    }

    /// A store over any object store; `location` names it in messages.
    pub fn new(objects: Arc<dyn ObjectStore>, location: impl Into<String>) -> Store {
        Store::from_backend(Arc::new(ObjectBackend::new(objects, location)))
    }

    /// A single store over any backend.
    pub fn from_backend(backend: Arc<dyn Backend>) -> Store {
        Store {
            here: backend,
            replica: None,
            codec: ChunkCodec::plain(),
        }
    }

    /// This store with chunks identified, encoded and decoded, and its other objects sealed
    /// and opened, by `codec` (a replicated store's secondary too: it holds the same vault).
    pub fn with_codec(mut self, codec: ChunkCodec) -> Store {
        if let Some(secondary) = self.replica.as_mut().and_then(|r| r.secondary.as_mut()) {
            secondary.codec = codec.clone();
        }
        self.codec = codec;
        self
    }

    /// How this vault's chunks are identified, encoded and decoded: the one codec every
    /// writer and reader of the vault uses.
    pub fn codec(&self) -> &ChunkCodec {
        &self.codec
    }

    /// Uploads objects larger than `bytes` in parts (tests lower it to exercise multipart).
    pub fn with_multipart_threshold(mut self, bytes: usize) -> Store {
        self.here = self.here.with_multipart_threshold(bytes);
        if let Some(replica) = &mut self.replica {
            replica.wrapper = Arc::new(replica.wrapper.with_primary(Arc::clone(&self.here)));
        }
        self
    }

    /// Where the store lives, for messages.
    pub fn location(&self) -> &str {
        self.here.location()
    }

    /// The object store underneath, for wrappers and tests.
    pub fn objects(&self) -> &Arc<dyn ObjectStore> {
        self.here.objects()
    }

    /// What every write goes through: this store's backend, or the replicated wrapper over it
    /// and its secondary.
    pub(crate) fn backend(&self) -> &dyn Backend {
        match &self.replica {
            None => &*self.here,
            Some(replica) => &*replica.wrapper,
        }
    }

    /// Removes the staging files writers that died left in this store (and in a replicated
    /// vault's secondary) whose last write is older than `older_than` (any age when zero);
    /// with `count_only`, counts them and removes nothing. Stores that are not directories
    /// have none: an S3 upload a killed writer left is the bucket's lifecycle rules' to abort
    /// (see the README). See `leftovers.rs`.
    ///
    /// A point's map directory that held only a leftover goes too: listings would show it as
    /// the maps of a point that never committed, which nothing could delete.
    pub async fn remove_staging_leftovers(
        &self,
        older_than: Duration,
        count_only: bool,
    ) -> Leftovers {
        self.backend()
            .remove_staging_leftovers(older_than, count_only)
            .await
    }

    // ---- plumbing ---------------------------------------------------------------------------

    /// The last path segments of the objects or of the sub-prefixes right under `prefix` that
    /// parse as `T`, sorted (others are skipped).
    pub(crate) async fn list_names<T: std::str::FromStr + Ord>(
        &self,
        prefix: &Path,
        entries: Entries,
    ) -> Result<Vec<T>> {
        let listing = self.here.list_with_delimiter(Some(prefix)).await?;
        let paths: Vec<&Path> = match entries {
            Entries::Objects => listing.objects.iter().map(|o| &o.location).collect(),
            Entries::Prefixes => listing.common_prefixes.iter().collect(),
        };
        let mut names: Vec<T> = paths
            .into_iter()
            .filter_map(|p| p.filename().and_then(|n| n.parse().ok()))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The stored form of `plain`, the encoding of the object at `key`: sealed with this
    /// vault's codec, or `plain` itself in a plain vault.
    pub(crate) fn seal(&self, key: &Path, plain: Vec<u8>) -> Bytes {
        self.codec.seal_object(key.as_ref(), plain).into()
    }

    /// Puts an object: into this store, and into the secondary too when replicated.
    pub(crate) async fn put(&self, key: &Path, bytes: Bytes) -> Result<()> {
        self.backend().put(key, bytes).await
    }

    /// Puts an object into this store only.
    pub(crate) async fn put_here(&self, key: &Path, bytes: Bytes) -> Result<()> {
        self.here.put(key, bytes).await
    }

    /// Deletes one object, from the secondary too when replicated; an object that is already
    /// gone is not an error.
    pub(crate) async fn delete(&self, key: &Path) -> Result<()> {
        self.backend().delete(key).await
    }

    /// Deletes one object from this store only.
    pub(crate) async fn delete_here(&self, key: &Path) -> Result<()> {
        self.here.delete(key).await
    }

    /// Object `key` as this store (not its secondary) holds it; `None` when there is none.
    pub(crate) async fn get(&self, key: &Path) -> Result<Option<Bytes>> {
        self.here.get(key).await
    }
}

/// What [`Store::list_names`] lists under a prefix.
pub(crate) enum Entries {
    Objects,
    Prefixes,
}
