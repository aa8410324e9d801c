//! The chunks a writer (backup, early send, transfer) put in a vault, recorded once durable.
//!
//! Recorded means journaled, when the vault has a chunk index on this host, and collected for
//! the index. A chunk's name in a local directory becomes durable only at the store's next
//! [`Store::sync_chunks`], so there landed chunks wait in a batch and are recorded after that
//! sync, at most [`SYNC_EVERY`] later and at [`Landed::finish`]: a journal or index that names
//! a chunk whose name a host crash could still take would make later backups skip it. Where
//! every put is durable when it returns (S3), each chunk is recorded as it lands.
//!
//! A writer killed between syncs leaves chunks in the directory that its journal does not
//! name. The next writer finds the journal left behind and asks the store (a `stat`) about
//! each chunk its index lacks ([`ChunkIndex::may_lack_landed`](crate::ChunkIndex)), so a retry
//! still writes only what is missing; a chunk found that way is synced before its commit.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use blockvault_core::{ChunkId, ChunkSet};
use blockvault_store::Store;

use crate::{Journal, Result};

/// How long landed chunks of a local directory wait for their directory sync. The journal
/// only spares the retry of a killed backup from writing them again, so a few seconds of
/// them lost cost little, while each sync fsyncs up to 257 directories.
pub(crate) const SYNC_EVERY: Duration = Duration::from_secs(5);

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Landed {
    store: Store,
    journal: Option<Journal>,
    batches: bool,
    /// Whether the ids recorded are kept for [`Landed::finish`] (see [`Landed::uncounted`]).
    keep: bool,
    lists: Mutex<Lists>,
    /// One sync at a time: a sync that found its directories taken by another still running
    /// must not record its batch before that other one is done.
    syncing: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Lists {
    /// Put, waiting for their sync: (id, stored size).
    unsynced: Vec<(ChunkId, u64)>,
    recorded: Vec<ChunkId>,
    /// The stored size of the chunks recorded, each time one was put.
    bytes: u64,
    synced_at: Instant,
}

/// What a writer recorded: the chunks, and the bytes it stored (a chunk put twice, twice).
#[derive(Debug)]
pub(crate) struct Recorded {
    pub(crate) ids: ChunkSet,
    pub(crate) bytes: u64,
}

impl Landed {
    pub(crate) fn new(store: &Store, journal: Option<Journal>) -> Landed {
        Landed {
            store: store.clone(),
            journal,
            batches: store.syncs_chunks_in_batches(),
            keep: true,
            lists: Mutex::new(Lists {
                unsynced: Vec::new(),
                recorded: Vec::new(),
                bytes: 0,
                synced_at: Instant::now(),
            }),
            syncing: tokio::sync::Mutex::new(()),
        }
    }

    /// A `Landed` that syncs and journals but keeps no list of the ids: [`Landed::finish`]
    /// returns none. For a writer that knows them otherwise (a backup: the ids it claimed).
    pub(crate) fn uncounted(store: &Store, journal: Option<Journal>) -> Landed {
        Landed {
            keep: false,
            ..Landed::new(store, journal)
        }
    }

    /// Chunk `id` was put, `size` bytes: recorded now, or with its batch (see the module
    /// docs).
    pub(crate) async fn put(&self, id: ChunkId, size: u64) -> Result<()> {
        if !self.batches {
            return self.record(vec![(id, size)]);
        }
        let due = {
            let mut lists = self.lists();
            lists.unsynced.push((id, size));
            lists.synced_at.elapsed() >= SYNC_EVERY
        };
        if due { self.sync().await } else { Ok(()) }
    }

    /// Makes every chunk put so far durable, then records it.
    pub(crate) async fn sync(&self) -> Result<()> {
        let _one = self.syncing.lock().await;
        let batch = {
            let mut lists = self.lists();
            lists.synced_at = Instant::now();
            std::mem::take(&mut lists.unsynced)
        };
        if batch.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.store.sync_chunks().await {
            // Not durable, so not recorded: a retry sends them again.
            return Err(e.into());
        }
        self.record(batch)
    }

    /// Syncs what is left; returns every chunk recorded, with the sync's outcome.
    pub(crate) async fn finish(self) -> (Recorded, Result<()>) {
        let synced = self.sync().await;
        let lists = self
            .lists
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let recorded = Recorded {
            ids: ChunkSet::from_vec(lists.recorded),
            bytes: lists.bytes,
        };
        (recorded, synced)
    }

    fn record(&self, batch: Vec<(ChunkId, u64)>) -> Result<()> {
        let ids: Vec<ChunkId> = batch.iter().map(|(id, _)| *id).collect();
        if let Some(journal) = &self.journal {
            journal.record_all(&ids)?;
        }
        let mut lists = self.lists();
        if self.keep {
            lists.recorded.extend(ids);
        }
        lists.bytes += batch.iter().map(|(_, size)| size).sum::<u64>();
        Ok(())
    }

    fn lists(&self) -> std::sync::MutexGuard<'_, Lists> {
        self.lists.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChunkIndex;

    /// The ids in the journal beside index `path`.
    fn journaled(path: &std::path::Path) -> Vec<ChunkId> {
        std::fs::read(path.with_extension("log"))
            .unwrap_or_default()
            .chunks_exact(32)
            .filter_map(|c| c.try_into().ok().map(ChunkId::from_bytes))
            .collect()
    }

    /// A `Landed` for `store` whose journal lies in `dir`; returns the index path too.
    async fn journaling(store: &Store, dir: &std::path::Path) -> (Landed, std::path::PathBuf) {
        let path = dir.join("state/chunks.idx");
        let index = ChunkIndex::load_or_rebuild(store, &path, None)
            .await
            .expect("index");
        (
            Landed::new(store, Some(index.journal().expect("journal"))),
            path,
        )
    }

    async fn put(store: &Store, landed: &Landed, name: &[u8]) -> ChunkId {
        let id = ChunkId::of(name);
        store
            .put_chunk(&id, name.to_vec().into())
            .await
            .expect("put");
        landed.put(id, name.len() as u64).await.expect("landed");
        id
    }

    #[tokio::test]
    async fn a_directory_store_records_landed_chunks_only_after_their_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::local(dir.path()).expect("store");
        let (landed, path) = journaling(&store, dir.path()).await;
        let a = put(&store, &landed, b"a").await;
        let b = put(&store, &landed, b"b").await;
        // Their names are not durable yet, so nothing outside this process may name them.
        assert!(journaled(&path).is_empty());
        let (recorded, synced) = landed.finish().await;
        synced.expect("sync");
        assert_eq!(recorded.ids, ChunkSet::from_vec(vec![a, b]));
        assert_eq!(recorded.bytes, 2);
        let mut journal = journaled(&path);
        journal.sort();
        assert_eq!(journal, recorded.ids.as_slice());
    }

    #[tokio::test]
    async fn a_store_durable_on_every_put_records_each_chunk_as_it_lands() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::in_memory();
        let (landed, path) = journaling(&store, dir.path()).await;
        let a = put(&store, &landed, b"a").await;
        assert_eq!(journaled(&path), [a]);
        let (recorded, synced) = landed.finish().await;
        synced.expect("sync");
        assert_eq!(recorded.ids, ChunkSet::from_vec(vec![a]));
    }
}
