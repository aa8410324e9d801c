//! The objects through which writers and the garbage collector coordinate (leases, the GC
//! epoch and the chunks its sweep may delete) and through which verify hands damaged chunks to
//! the next backup. The protocol that uses them is in the crate docs, "Garbage collection
//! without compare-and-swap".
//!
//! They live on the primary store only: it is where writers and collectors meet, and where
//! listings come from. A replicated vault's secondary holds only data.
//!
//! Leases, the epoch and the candidates are sealed with the vault's codec (leases name hosts
//! and VMs); a damage mark is empty, its key naming only a chunk id.

use blockvault_core::{ChunkId, ForgottenChunks, GcEpoch, LeaseRecord, VmName};
use futures::{Stream, StreamExt, TryStreamExt};
use jiff::Timestamp;
use object_store::path::Path;

use crate::{Error, Result, Store, layout};

/// A lease as a listing finds it.
#[derive(Clone, Debug)]
pub struct ListedLease {
    /// The record, or `None` when it does not decode (a torn or foreign object: treated as
    /// alive until it is as old as a lease).
    pub record: Option<LeaseRecord>,
    /// The object's key, for messages and removal.
    pub key: String,
    /// When the store last wrote it (the store's clock).
    pub last_modified: Timestamp,
}

/// A chunk object as a listing finds it.
#[derive(Clone, Copy, Debug)]
pub struct ListedChunk {
    pub id: ChunkId,
    /// When the store last wrote it (the store's clock).
    pub last_modified: Timestamp,
    pub size: u64,
}

impl Store {
    // ---- leases -----------------------------------------------------------------------------

    /// Writes (or rewrites, to refresh it) a lease.
    pub async fn put_lease(&self, lease: &LeaseRecord) -> Result<()> {
        let key = layout::lease(lease.kind, &lease.id);
        self.put_here(&key, self.seal(&key, lease.encode())).await
    }

    /// Removes a lease; one already gone is not an error.
    pub async fn delete_lease(&self, lease: &LeaseRecord) -> Result<()> {
        self.delete_here(&layout::lease(lease.kind, &lease.id))
            .await
    }

    /// Removes a lease by key (a dead holder's, found by [`Store::list_leases`]).
    pub async fn delete_lease_key(&self, key: &str) -> Result<()> {
        self.delete_here(&Path::from(key)).await
    }

    /// Every lease in the vault, read one by one (there are a handful).
    pub async fn list_leases(&self) -> Result<Vec<ListedLease>> {
        let root = layout::leases_root();
        let metas: Vec<object_store::ObjectMeta> =
            self.here.list(Some(&root)).try_collect().await?;
        let mut leases = Vec::with_capacity(metas.len());
        for meta in metas {
            // A lease released between the listing and the read is simply gone.
            let Some(bytes) = self.get(&meta.location).await? else {
                continue;
            };
            leases.push(ListedLease {
                record: crate::checks::open(&self.codec, &meta.location, &bytes)
                    .and_then(|plain| LeaseRecord::decode(&plain))
                    .ok(),
                key: meta.location.to_string(),
                last_modified: timestamp(&meta),
            });
        }
        Ok(leases)
    }

    // ---- the GC epoch -----------------------------------------------------------------------

    /// The epoch of the last sweep, or `None` when no sweep ever ran.
    pub async fn gc_epoch(&self) -> Result<Option<GcEpoch>> {
        let key = layout::gc_epoch();
        match self.get(&key).await? {
            None => Ok(None),
            Some(bytes) => crate::checks::open(&self.codec, &key, &bytes)
                .and_then(|plain| GcEpoch::decode(&plain))
                .map(Some)
                .map_err(|source| Error::ObjectCorrupt {
                    key: key.to_string(),
                    source,
                }),
        }
    }

    pub async fn put_gc_epoch(&self, epoch: &GcEpoch) -> Result<()> {
        let key = layout::gc_epoch();
        self.put_here(&key, self.seal(&key, epoch.encode())).await
    }

    /// Ships the candidates of the sweep that begins epoch `epoch`, encoded
    /// ([`ForgottenChunks`]), sealed here; written before the epoch itself, so a host that
    /// sees the epoch finds them.
    pub async fn put_forgotten(&self, epoch: &str, encoded: Vec<u8>) -> Result<()> {
        let key = layout::forgotten(epoch);
        self.put_here(&key, self.seal(&key, encoded)).await
    }

    /// What the sweep that began epoch `epoch` may have deleted; `None` when it is missing
    /// or does not open or decode (a host then rebuilds its cache from a listing, as it always
    /// may).
    pub async fn forgotten(&self, epoch: &str) -> Result<Option<ForgottenChunks>> {
        let key = layout::forgotten(epoch);
        Ok(self.get(&key).await?.and_then(|bytes| {
            crate::checks::open(&self.codec, &key, &bytes)
                .and_then(|plain| ForgottenChunks::decode(&plain))
                .ok()
        }))
    }

    /// Deletes the candidate lists of every sweep but the one that began epoch `keep`: a
    /// cache further behind rebuilds anyway.
    pub async fn delete_forgotten_except(&self, keep: &str) -> Result<()> {
        let root = layout::forgotten_root();
        let old: Vec<Path> = self
            .here
            .list(Some(&root))
            .try_filter_map(|meta| async move {
                Ok((meta.location.filename() != Some(keep)).then_some(meta.location))
            })
            .try_collect()
            .await?;
        for key in old {
            self.delete_here(&key).await?;
        }
        Ok(())
    }

    // ---- damaged chunks ---------------------------------------------------------------------

    /// Records that chunk `id` is bad (missing, unreadable or not matching its id), so that the
    /// next backup that holds its data uploads it again instead of trusting the vault has it.
    pub async fn mark_damaged(&self, id: &ChunkId) -> Result<()> {
        self.put_here(&layout::damaged(id), bytes::Bytes::new())
            .await
    }

    /// The chunks marked damaged (usually none: one `LIST`).
    pub async fn damaged_chunks(&self) -> Result<Vec<ChunkId>> {
        let root = layout::damaged_root();
        self.here
            .list(Some(&root))
            .try_filter_map(|meta| async move {
                Ok(meta
                    .location
                    .filename()
                    .and_then(|n| n.parse::<ChunkId>().ok()))
            })
            .try_collect()
            .await
    }

    /// Clears the mark once a good copy of `id` was written.
    pub async fn clear_damaged(&self, id: &ChunkId) -> Result<()> {
        self.delete_here(&layout::damaged(id)).await
    }

    // ---- listings for the collector ---------------------------------------------------------

    /// Every chunk object with its age and size, streamed from a listing.
    pub fn list_chunk_objects(&self) -> impl Stream<Item = Result<ListedChunk>> + '_ {
        let root = layout::chunks_root();
        self.here
            .list(Some(&root))
            .try_filter_map(|meta| async move {
                Ok(meta
                    .location
                    .filename()
                    .and_then(|name| name.parse::<ChunkId>().ok())
                    .map(|id| ListedChunk {
                        id,
                        last_modified: timestamp(&meta),
                        size: meta.size,
                    }))
            })
            .boxed()
    }

    /// The VMs that have block maps (of points, or of backups that never committed).
    pub async fn list_map_vms(&self) -> Result<Vec<VmName>> {
        self.list_names(&layout::maps_root(), crate::store::Entries::Prefixes)
            .await
    }
}

fn timestamp(meta: &object_store::ObjectMeta) -> Timestamp {
    Timestamp::from_millisecond(meta.last_modified.timestamp_millis())
        .unwrap_or(Timestamp::UNIX_EPOCH)
}
