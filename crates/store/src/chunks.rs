//! Chunks: `chunks/<2 hex>/<64 hex>`, each an encoded block keyed by its id. Stored and read
//! the backend's way (a directory keeps them as files of its own, see `directory.rs`),
//! verified here.

use blockvault_core::ChunkId;
use bytes::Bytes;
use futures::TryStreamExt;

use crate::checks::decode_chunk;
use crate::{Error, Result, Store, layout};

impl Store {
    /// Whether the vault holds chunk `id` (one `HEAD`).
    ///
    /// On a replicated store, whether both stores hold it (one `HEAD` each): a chunk only the
    /// primary holds is uploaded again, so the secondary gets it too.
    ///
    /// In a local directory, a chunk found is synced with this store's next
    /// [`Store::sync_chunks`] (another process may have put it moments ago).
    pub async fn has_chunk(&self, id: &ChunkId) -> Result<bool> {
        self.backend().has_chunk(id).await
    }

    /// Stores an encoded chunk under `id`. Content addressing makes a repeated put harmless, so
    /// callers decide what to skip; this never reads first.
    ///
    /// When it returns the chunk is readable, and durable on every backend but a local
    /// directory, where its file is but its name becomes durable at the next
    /// [`Store::sync_chunks`]: call that before recording the chunk as stored anywhere that
    /// outlives the process (a point record does it itself).
    pub async fn put_chunk(&self, id: &ChunkId, encoded: Bytes) -> Result<()> {
        self.backend().put_chunk(id, encoded).await
    }

    /// Makes every chunk put so far durable under its name (a local directory's batched
    /// directory fsyncs; nothing to do elsewhere).
    pub async fn sync_chunks(&self) -> Result<()> {
        self.backend().sync_chunks().await
    }

    /// Makes every chunk in the store durable under its name (after a listing that may have
    /// seen chunks another process has not synced yet; nothing to do but in a directory).
    pub async fn sync_every_chunk(&self) -> Result<()> {
        self.backend().sync_every_chunk().await
    }

    /// Whether chunk puts become durable only at [`Store::sync_chunks`] (a local directory),
    /// so that callers record landed chunks in batches.
    pub fn syncs_chunks_in_batches(&self) -> bool {
        self.backend().syncs_chunks_in_batches()
    }

    /// The encoded bytes of chunk `id`, unverified; see [`Store::read_chunk`]. On a replicated
    /// store a chunk missing from the primary is read from the secondary, verified, and put
    /// back on the primary; a caller that finds the bytes corrupt asks
    /// [`Store::chunk_from_replica`].
    pub async fn get_chunk(&self, id: &ChunkId) -> Result<Bytes> {
        match self.backend().get_chunk(id).await? {
            Some(bytes) => Ok(bytes),
            None => {
                self.chunk_from_replica(id, Error::ChunkMissing { id: *id })
                    .await
            }
        }
    }

    /// Chunk `id` decoded with the store's codec and verified against its id (decompressed
    /// and re-hashed on the rayon pool).
    ///
    /// On a replicated store a chunk missing or corrupt on the primary is read from the
    /// secondary (and healed on the primary).
    pub async fn read_chunk(&self, id: &ChunkId) -> Result<Vec<u8>> {
        let encoded = self.get_chunk(id).await?;
        match decode_chunk(&self.codec, encoded, *id).await {
            Err(problem @ Error::ChunkCorrupt { .. }) if self.replica.is_some() => {
                let good = self.chunk_from_replica(id, problem).await?;
                decode_chunk(&self.codec, good, *id).await
            }
            other => other,
        }
    }

    /// Chunk `id` from the secondary, for a caller that found the primary's copy bad
    /// (`problem`): read, verified against its id, put back on the primary, counted. Without
    /// an available secondary, or when its copy is bad too, fails with `problem` (and what is
    /// wrong with the secondary's copy).
    pub async fn chunk_from_replica(&self, id: &ChunkId, problem: Error) -> Result<Bytes> {
        match &self.replica {
            Some(replica) => {
                replica
                    .wrapper
                    .recover_chunk(id, problem, &self.codec)
                    .await
            }
            None => Err(problem),
        }
    }

    /// Every chunk id in the vault (streamed from a listing; objects that are not chunks are
    /// skipped).
    pub fn list_chunks(&self) -> impl futures::Stream<Item = Result<ChunkId>> + '_ {
        self.here
            .list(Some(&layout::chunks_root()))
            .try_filter_map(|meta| async move {
                Ok(meta
                    .location
                    .filename()
                    .and_then(|name| name.parse::<ChunkId>().ok()))
            })
    }

    /// Removes chunk `id`. Only garbage collection may call this, and only for a chunk no live
    /// map names (see the collector for how that is decided safely).
    pub async fn delete_chunk(&self, id: &ChunkId) -> Result<()> {
        self.delete(&layout::chunk(id)).await
    }
}
