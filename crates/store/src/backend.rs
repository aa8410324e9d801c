//! The store trait: what a vault's objects need from the place they are kept.
//!
//! [`Store`](crate::Store) gives the vault's objects their types, their keys (`layout.rs`) and
//! their checks (`checks.rs`); a [`Backend`] only keeps bytes under keys, and is one of:
//!
//! | implementation | what it is |
//! |---|---|
//! | `ObjectBackend` (`objects.rs`) | any `object_store`: S3 (behind the `Retrying` wrapper, `retrying.rs`), `InMemory`, test doubles |
//! | `DirBackend` (`directory.rs`) | a local directory: `LocalFileSystem` for most objects, chunk files with batched directory fsyncs (`chunk_files.rs`), chunk reads into reused buffers (`pool.rs`), staging leftovers (`leftovers.rs`) |
//! | `Replicated` (`replicated.rs`) | a wrapper over two backends: writes go to both, reads to the primary, the commit in its order |
//!
//! The required methods are what every place must do with any object: put it whole, start an
//! upload in parts, get it (whole or piece by piece), ask for it, delete it, list a prefix.
//! The provided ones are where the kinds of a vault's objects differ between places, each
//! with the behaviour of a plain object store as its default:
//!
//! - **chunks** ([`Backend::put_chunk`], [`Backend::get_chunk`], [`Backend::has_chunk`]) are
//!   the only objects a backup writes by the thousand, so a directory keeps them its own way;
//!   and **durability** ([`Backend::sync_chunks`]): a directory makes chunk names durable in
//!   batches, a barrier every commit passes;
//! - **the commit** ([`Backend::commit`], [`Backend::uncommit`]): a point record is the one
//!   object whose order across the copies of a replicated vault matters;
//! - **housekeeping** ([`Backend::remove_staging_leftovers`]): what a killed writer can leave
//!   in a directory, which no listing shows.
//!
//! Checks are not a backend's business: every backend returns the bytes it holds, and the
//! store decodes and verifies them, whatever they came from. A replicated store's fallback to
//! its secondary needs those checks, so it is the store that asks for it, through the
//! wrapper's own methods.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use blockvault_core::ChunkId;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{ListResult, MultipartUpload, ObjectMeta, ObjectStore};

use crate::error::Result;
use crate::layout;
use crate::leftovers::Leftovers;

/// An object's bytes as a backend delivers them, piece by piece.
pub type Pieces = BoxStream<'static, Result<Bytes>>;

/// Where a vault's objects are kept: bytes under keys, with the durability of each kind.
///
/// Every put is atomic (the object appears whole or not at all) and durable when it returns,
/// but for [`Backend::put_chunk`], whose name may become durable only at the next
/// [`Backend::sync_chunks`]. Errors name the operation and the key.
#[async_trait::async_trait]
pub trait Backend: fmt::Debug + Send + Sync {
    /// Where the objects live, for messages.
    fn location(&self) -> &str;

    /// The object store underneath (of the primary, for a replicated store), for raw access in
    /// wrappers and tests.
    fn objects(&self) -> &Arc<dyn ObjectStore>;

    /// This backend, putting objects larger than `bytes` in parts (tests lower it).
    fn with_multipart_threshold(&self, bytes: usize) -> Arc<dyn Backend>;

    // ---- any object -------------------------------------------------------------------------

    /// Puts `bytes` under `key`, replacing any object there.
    async fn put(&self, key: &Path, bytes: Bytes) -> Result<()>;

    /// Starts an upload in parts to `key`: the object appears when it completes. `None` where
    /// objects are written to more than one place: the caller puts the object whole.
    async fn upload(&self, key: &Path) -> Result<Option<Box<dyn MultipartUpload>>>;

    /// The object under `key`; `None` when there is none.
    async fn get(&self, key: &Path) -> Result<Option<Bytes>>;

    /// The object under `key` piece by piece, with its size: for objects read once and not
    /// kept whole. `None` when there is none.
    async fn get_pieces(&self, key: &Path) -> Result<Option<(u64, Pieces)>>;

    /// Whether there is an object under `key`.
    async fn head(&self, key: &Path) -> Result<bool>;

    /// Deletes the object under `key`; one that is already gone is not an error.
    async fn delete(&self, key: &Path) -> Result<()>;

    /// Every object under `prefix` (everything without one), with its size and age.
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>>;

    /// The objects and the sub-prefixes right under `prefix`.
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult>;

    // ---- chunks -----------------------------------------------------------------------------

    /// Puts an encoded chunk. Readable when it returns; durable under its name once
    /// [`Backend::sync_chunks`] returns (at once, by default).
    async fn put_chunk(&self, id: &ChunkId, encoded: Bytes) -> Result<()> {
        self.put(&layout::chunk(id), encoded).await
    }

    /// The encoded bytes of chunk `id` as stored, unverified; `None` when there is none.
    async fn get_chunk(&self, id: &ChunkId) -> Result<Option<Bytes>> {
        self.get(&layout::chunk(id)).await
    }

    /// Whether chunk `id` is stored (everywhere, for a replicated store). A chunk found is
    /// durable under its name once [`Backend::sync_chunks`] returns, whoever put it.
    async fn has_chunk(&self, id: &ChunkId) -> Result<bool> {
        self.head(&layout::chunk(id)).await
    }

    /// Makes every chunk put (or found) so far durable under its name.
    async fn sync_chunks(&self) -> Result<()> {
        Ok(())
    }

    /// Makes every chunk stored durable under its name, whoever put it.
    async fn sync_every_chunk(&self) -> Result<()> {
        Ok(())
    }

    /// Whether chunk puts become durable only at [`Backend::sync_chunks`].
    fn syncs_chunks_in_batches(&self) -> bool {
        false
    }

    // ---- the commit -------------------------------------------------------------------------

    /// Puts a point record, the commit of a backup, after everything it names.
    async fn commit(&self, key: &Path, bytes: Bytes) -> Result<()> {
        self.put(key, bytes).await
    }

    /// Deletes a point record, before what it names.
    async fn uncommit(&self, key: &Path) -> Result<()> {
        self.delete(key).await
    }

    // ---- housekeeping -----------------------------------------------------------------------

    /// Removes (or with `count_only`, counts) what writers killed mid-put left behind that no
    /// listing shows, last written more than `older_than` ago (any age when zero). Nothing,
    /// by default: an object store's unfinished uploads are its lifecycle rules' to abort.
    async fn remove_staging_leftovers(
        &self,
        _older_than: Duration,
        _count_only: bool,
    ) -> Leftovers {
        Leftovers::default()
    }
}
