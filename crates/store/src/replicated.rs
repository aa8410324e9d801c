//! The replicated backend: a wrapper over a primary and a secondary [`Backend`] (see
//! "Replication" in the crate docs).
//!
//! As a [`Backend`], every put and delete goes to both at once, a chunk is held when both hold
//! it, the point record (the commit) goes to the secondary first and is deleted from it first
//! (see `commit.rs`), and reads, listings and the raw object store are the primary's. The
//! fallback of a read whose primary copy is missing or bad needs the checks of the object's
//! kind, so the store asks for it ([`Replicated::recover_chunk`] and friends): the secondary's
//! copy is read, checked the same way, put back on the primary (healed), and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use blockvault_core::{BlockMap, ChunkCodec, ChunkId, DiskName, PointId, RecoveryPoint, VmName};
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{ListResult, MultipartUpload, ObjectMeta, ObjectStore};

use crate::backend::{Backend, Pieces};
use crate::checks::{self, decode_chunk};
use crate::error::{Error, Result};
use crate::layout;
use crate::leftovers::Leftovers;
use crate::repairs::Repairs;

/// A primary and its secondary, and what reads took from the secondary.
#[derive(Debug)]
pub(crate) struct Replicated {
    primary: Arc<dyn Backend>,
    /// The secondary (never itself replicated), or why it could not be opened: reads then use
    /// the primary alone and every write fails, naming the secondary.
    secondary: std::result::Result<Arc<dyn Backend>, Unavailable>,
    /// Shared by every copy of this wrapper (over the life of the store and its clones).
    counts: Arc<Counts>,
}

#[derive(Clone, Debug)]
struct Unavailable {
    location: String,
    reason: String,
    /// The primary's location, for the error's hint.
    primary: String,
}

#[derive(Debug, Default)]
struct Counts {
    chunks: AtomicU64,
    maps: AtomicU64,
    records: AtomicU64,
    unhealed: AtomicU64,
}

impl Replicated {
    /// `primary` replicated to `secondary`.
    pub(crate) fn new(primary: Arc<dyn Backend>, secondary: Arc<dyn Backend>) -> Replicated {
        Replicated {
            primary,
            secondary: Ok(secondary),
            counts: Arc::default(),
        }
    }

    /// `primary`, whose secondary at `location` cannot be opened (`reason`).
    pub(crate) fn unavailable(
        primary: Arc<dyn Backend>,
        location: String,
        reason: String,
    ) -> Replicated {
        let unavailable = Unavailable {
            location,
            reason,
            primary: primary.location().to_owned(),
        };
        Replicated {
            primary,
            secondary: Err(unavailable),
            counts: Arc::default(),
        }
    }

    /// This wrapper over another primary (the same, with other settings), counting on.
    pub(crate) fn with_primary(&self, primary: Arc<dyn Backend>) -> Replicated {
        Replicated {
            primary,
            secondary: self.secondary.clone(),
            counts: Arc::clone(&self.counts),
        }
    }

    /// When the secondary could not be opened: its location and why.
    pub(crate) fn secondary_unavailable(&self) -> Option<(&str, &str)> {
        match &self.secondary {
            Err(u) => Some((&u.location, &u.reason)),
            Ok(_) => None,
        }
    }

    /// What reads took from the secondary so far.
    pub(crate) fn repairs(&self) -> Repairs {
        let c = &self.counts;
        Repairs {
            chunks: c.chunks.load(Ordering::Relaxed),
            maps: c.maps.load(Ordering::Relaxed),
            records: c.records.load(Ordering::Relaxed),
            unhealed: c.unhealed.load(Ordering::Relaxed),
        }
    }

    fn secondary(&self) -> Result<&Arc<dyn Backend>> {
        self.secondary
            .as_ref()
            .map_err(|u| Error::SecondaryUnavailable {
                location: u.location.clone(),
                reason: u.reason.clone(),
                primary: u.primary.clone(),
            })
    }

    /// Chunk `id` from the secondary, for a reader that found the primary's copy bad
    /// (`problem`): read, verified against its id with the vault's `codec`, healed, counted.
    /// Without an available secondary, or when its copy is bad too, fails with `problem` (and
    /// what is wrong with the secondary's copy).
    pub(crate) async fn recover_chunk(
        &self,
        id: &ChunkId,
        problem: Error,
        codec: &ChunkCodec,
    ) -> Result<Bytes> {
        let Ok(secondary) = &self.secondary else {
            return Err(problem);
        };
        let fetched = match secondary.get(&layout::chunk(id)).await {
            Ok(Some(bytes)) => decode_chunk(codec, bytes.clone(), *id).await.map(|_| bytes),
            Ok(None) => Err(Error::ChunkMissing { id: *id }),
            Err(e) => Err(e),
        };
        let good = fetched.map_err(|e| also_bad(problem, &**secondary, e))?;
        self.heal(&layout::chunk(id), good.clone(), &self.counts.chunks)
            .await;
        Ok(good)
    }

    /// A block map from the secondary, whose primary copy is bad (`problem`): checked as the
    /// store checks the primary's, healed.
    pub(crate) async fn recover_map(
        &self,
        vm: &VmName,
        point: &PointId,
        disk: &DiskName,
        digest: Option<&str>,
        problem: Error,
        codec: &ChunkCodec,
    ) -> Result<BlockMap> {
        let Ok(secondary) = &self.secondary else {
            return Err(problem);
        };
        let (map, bytes) = checks::read_map_bytes(&**secondary, codec, vm, point, disk, digest)
            .await
            .map_err(|e| also_bad(problem, &**secondary, e))?;
        self.heal(&layout::map(vm, point, disk), bytes, &self.counts.maps)
            .await;
        Ok(map)
    }

    /// A point record from the secondary, whose primary copy is bad (`problem`).
    pub(crate) async fn recover_point(
        &self,
        vm: &VmName,
        id: &PointId,
        problem: Error,
        codec: &ChunkCodec,
    ) -> Result<RecoveryPoint> {
        let Ok(secondary) = &self.secondary else {
            return Err(problem);
        };
        let (point, bytes) = checks::read_point(&**secondary, codec, vm, id)
            .await
            .map_err(|e| also_bad(problem, &**secondary, e))?;
        self.heal(&layout::point(vm, id), bytes, &self.counts.records)
            .await;
        Ok(point)
    }

    /// Puts a good copy read from the secondary back on the primary and counts it in `kind`.
    /// A failed put is counted, not returned: the read itself succeeded.
    async fn heal(&self, key: &Path, good: Bytes, kind: &AtomicU64) {
        kind.fetch_add(1, Ordering::Relaxed);
        if self.primary.put(key, good).await.is_err() {
            self.counts.unhealed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[async_trait::async_trait]
impl Backend for Replicated {
    fn location(&self) -> &str {
        self.primary.location()
    }

    fn objects(&self) -> &Arc<dyn ObjectStore> {
        self.primary.objects()
    }

    fn with_multipart_threshold(&self, bytes: usize) -> Arc<dyn Backend> {
        Arc::new(self.with_primary(self.primary.with_multipart_threshold(bytes)))
    }

    /// Puts into both stores at once; both finish before this returns. The primary's error
    /// first when both fail.
    async fn put(&self, key: &Path, bytes: Bytes) -> Result<()> {
        let secondary = self.secondary()?;
        let (p, s) = futures::join!(
            self.primary.put(key, bytes.clone()),
            secondary.put(key, bytes)
        );
        p.map_err(|e| in_store("primary", &*self.primary, e))?;
        s.map_err(|e| in_store("secondary", &**secondary, e))
    }

    /// None: both stores get the same bytes, so the object is encoded whole, once.
    async fn upload(&self, _key: &Path) -> Result<Option<Box<dyn MultipartUpload>>> {
        Ok(None)
    }

    async fn get(&self, key: &Path) -> Result<Option<Bytes>> {
        self.primary.get(key).await
    }

    async fn get_pieces(&self, key: &Path) -> Result<Option<(u64, Pieces)>> {
        self.primary.get_pieces(key).await
    }

    async fn head(&self, key: &Path) -> Result<bool> {
        self.primary.head(key).await
    }

    async fn delete(&self, key: &Path) -> Result<()> {
        let secondary = self.secondary()?;
        let (p, s) = futures::join!(self.primary.delete(key), secondary.delete(key));
        p.map_err(|e| in_store("primary", &*self.primary, e))?;
        s.map_err(|e| in_store("secondary", &**secondary, e))
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.primary.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.primary.list_with_delimiter(prefix).await
    }

    /// Into both stores as plain objects: the batched syncs of a directory's chunk files are
    /// for a single store.
    async fn put_chunk(&self, id: &ChunkId, encoded: Bytes) -> Result<()> {
        self.put(&layout::chunk(id), encoded).await
    }

    async fn get_chunk(&self, id: &ChunkId) -> Result<Option<Bytes>> {
        self.primary.get_chunk(id).await
    }

    /// Whether both stores hold it (one `HEAD` each): a chunk only the primary holds is
    /// uploaded again, so the secondary gets it too.
    async fn has_chunk(&self, id: &ChunkId) -> Result<bool> {
        let Ok(secondary) = &self.secondary else {
            // The upload that follows fails, naming the secondary.
            return Ok(false);
        };
        let key = layout::chunk(id);
        let (p, s) = futures::join!(self.primary.head(&key), secondary.head(&key));
        Ok(p.map_err(|e| in_store("primary", &*self.primary, e))?
            && s.map_err(|e| in_store("secondary", &**secondary, e))?)
    }

    async fn sync_chunks(&self) -> Result<()> {
        self.primary.sync_chunks().await
    }

    async fn sync_every_chunk(&self) -> Result<()> {
        self.primary.sync_every_chunk().await
    }

    /// Secondary first, then primary; a primary failure takes the secondary's copy back (best
    /// effort: a leftover record on the secondary names only objects the secondary holds, so
    /// it is a complete point there).
    async fn commit(&self, key: &Path, bytes: Bytes) -> Result<()> {
        let secondary = self.secondary()?;
        secondary
            .put(key, bytes.clone())
            .await
            .map_err(|e| in_store("secondary", &**secondary, e))?;
        if let Err(e) = self.primary.put(key, bytes).await {
            let _ = secondary.delete(key).await;
            return Err(in_store("primary", &*self.primary, e));
        }
        Ok(())
    }

    /// Secondary first, then primary, so that a deletion cut short never leaves a record on
    /// the secondary alone.
    async fn uncommit(&self, key: &Path) -> Result<()> {
        let secondary = self.secondary()?;
        secondary.delete(key).await?;
        self.primary.delete(key).await
    }

    /// The primary's and the (available) secondary's.
    async fn remove_staging_leftovers(&self, older_than: Duration, count_only: bool) -> Leftovers {
        let mut found = self
            .primary
            .remove_staging_leftovers(older_than, count_only)
            .await;
        if let Ok(secondary) = &self.secondary {
            found.add(
                secondary
                    .remove_staging_leftovers(older_than, count_only)
                    .await,
            );
        }
        found
    }
}

fn in_store(role: &'static str, store: &dyn Backend, source: Error) -> Error {
    Error::InStore {
        role,
        location: store.location().to_owned(),
        source: Box::new(source),
    }
}

fn also_bad(primary: Error, secondary: &dyn Backend, error: Error) -> Error {
    Error::ReplicaAlsoBad {
        primary: Box::new(primary),
        location: secondary.location().to_owned(),
        secondary: Box::new(error),
    }
}
